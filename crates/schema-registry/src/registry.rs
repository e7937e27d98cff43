//! The registry itself: subjects, versions, global schema ids and compatibility settings,
//! held in memory and made durable through the [`EventLog`].
//!
//! Methods that change anything append to the log and fsync before returning, so they block:
//! async callers run them on a blocking thread.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    str::FromStr,
    sync::{Mutex, MutexGuard},
};

use apache_avro::Schema;
use serde_json::Value;

use crate::{
    compatibility::{CompatibilityLevel, InvalidCompatibilityLevel, RegisteredVersion},
    event_log::{Event, EventLog, LogError},
};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {version} not found for subject '{subject}'.")]
    VersionNotFound { subject: String, version: String },
    #[error("Schema not found in subject '{0}'.")]
    SchemaNotFoundInSubject(String),
    #[error("Schema {0} not found.")]
    SchemaIdNotFound(String),
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between \
         [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error(transparent)]
    InvalidCompatibilityLevel(#[from] InvalidCompatibilityLevel),
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectCompatibilityNotConfigured(String),
    #[error(
        "Schema being registered is incompatible with an earlier schema for subject '{subject}' \
         under compatibility level {level}: {}", reasons.join("; ")
    )]
    Incompatible {
        subject: String,
        level: CompatibilityLevel,
        reasons: Vec<String>,
    },
    #[error("Error in the backend data store: {0}")]
    Store(#[from] LogError),
    #[error(
        "Error in the backend data store: refusing to record an event that contradicts the registry: {0}"
    )]
    ContradictoryEvent(String),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("event log {path} line {line} contradicts the events before it: {reason}")]
    Inconsistent {
        path: String,
        line: usize,
        reason: String,
    },
}

/// Which version of a subject a request means.
#[derive(Debug, Clone, Copy)]
pub enum VersionSelector {
    Latest,
    Number(u32),
}

impl FromStr for VersionSelector {
    type Err = RegistryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "latest" || text == "-1" {
            return Ok(Self::Latest);
        }
        match text.parse::<u32>() {
            Ok(number) if (1..=i32::MAX as u32).contains(&number) => Ok(Self::Number(number)),
            _ => Err(RegistryError::InvalidVersion(text.to_owned())),
        }
    }
}

/// A schema from a request, validated and reduced to the form that identifies it.
pub struct CandidateSchema {
    parsed: Schema,
    /// Compact JSON with sorted keys: formatting and key order carry no meaning in a schema,
    /// so schemas that differ only in them get the same id.
    canonical: String,
}

impl CandidateSchema {
    /// Validates a schema as sent to the API; only Avro is supported, without references.
    pub fn parse(
        text: &str,
        schema_type: Option<&str>,
        has_references: bool,
    ) -> Result<Self, RegistryError> {
        if let Some(other) = schema_type.filter(|t| !t.eq_ignore_ascii_case("AVRO")) {
            return Err(RegistryError::InvalidSchema(format!(
                "schema type {other} is not supported; this registry only stores AVRO schemas"
            )));
        }
        if has_references {
            return Err(RegistryError::InvalidSchema(
                "schema references are not supported; inline the referenced types".to_owned(),
            ));
        }
        let parsed = Schema::parse_str(text)
            .map_err(|error| RegistryError::InvalidSchema(error.to_string()))?;
        let canonical = canonical_json(text).map_err(|error| {
            RegistryError::InvalidSchema(format!("schema is not valid JSON: {error}"))
        })?;
        Ok(Self { parsed, canonical })
    }
}

fn canonical_json(text: &str) -> Result<String, serde_json::Error> {
    fn sort_keys(value: Value) -> Value {
        match value {
            // Sorted explicitly: serde_json keeps insertion order when any crate in the
            // build enables its `preserve_order` feature.
            Value::Object(map) => {
                let mut entries: Vec<(String, Value)> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k, sort_keys(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
            other => other,
        }
    }
    Ok(sort_keys(serde_json::from_str(text)?).to_string())
}

/// One version of a subject, as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
}

/// The outcome of a registration.
pub struct Registration {
    pub id: u32,
    /// False when the subject already had this schema and nothing changed.
    pub created_version: bool,
}

pub struct Registry {
    inner: Mutex<Inner>,
    /// The global level while none has been set through the API.
    default_compatibility: CompatibilityLevel,
}

struct Inner {
    state: State,
    log: EventLog,
}

#[derive(Default)]
struct State {
    /// Indexed by schema id - 1: ids are dense and start at 1.
    schemas: Vec<StoredSchema>,
    id_by_canonical: HashMap<String, u32>,
    subjects: BTreeMap<String, Vec<VersionEntry>>,
    global_compatibility: Option<CompatibilityLevel>,
    subject_compatibility: HashMap<String, CompatibilityLevel>,
}

struct StoredSchema {
    canonical: String,
    parsed: Schema,
}

struct VersionEntry {
    version: u32,
    id: u32,
    deleted: bool,
}

/// An event that has been checked against the state and can no longer fail to apply.
struct CheckedEvent {
    event: Event,
    /// The parsed schema, when the event introduces a new schema id.
    new_schema: Option<Schema>,
}

impl Registry {
    /// Opens the registry in `data_dir`, replaying its event log.
    pub fn open(
        data_dir: &Path,
        default_compatibility: CompatibilityLevel,
    ) -> Result<Self, OpenError> {
        let (log, events) = EventLog::open(data_dir)?;
        let mut state = State::default();
        for logged in events {
            let checked = state
                .check(logged.event)
                .map_err(|reason| OpenError::Inconsistent {
                    path: log.path().display().to_string(),
                    line: logged.line,
                    reason,
                })?;
            state.apply(checked);
        }
        tracing::info!(
            path = %log.path().display(),
            schemas = state.schemas.len(),
            subjects = state.subjects.len(),
            "event log replayed"
        );
        Ok(Self {
            inner: Mutex::new(Inner { state, log }),
            default_compatibility,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // State is only changed after every check passed, so a panic elsewhere while the
        // lock was held cannot have left it half-updated.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers `schema` under `subject`, or returns the id it already has there.
    pub fn register(
        &self,
        subject: &str,
        schema: CandidateSchema,
    ) -> Result<Registration, RegistryError> {
        let mut inner = self.lock();
        let state = &inner.state;
        if let Some(entry) = state.live_version_with(subject, &schema.canonical) {
            return Ok(Registration {
                id: entry.id,
                created_version: false,
            });
        }
        let level = state.effective_compatibility(subject, self.default_compatibility);
        let registered = state.live_versions(subject);
        let reasons = level.incompatibilities(&schema.parsed, &registered);
        if !reasons.is_empty() {
            return Err(RegistryError::Incompatible {
                subject: subject.to_owned(),
                level,
                reasons,
            });
        }
        let id = state
            .id_by_canonical
            .get(&schema.canonical)
            .copied()
            .unwrap_or(state.next_schema_id());
        let event = Event::SchemaRegistered {
            subject: subject.to_owned(),
            version: state.next_version(subject),
            id,
            schema: schema.canonical,
        };
        inner.commit(event)?;
        Ok(Registration {
            id,
            created_version: true,
        })
    }

    /// The live version of `subject` holding `schema`.
    pub fn lookup(
        &self,
        subject: &str,
        schema: &CandidateSchema,
    ) -> Result<SubjectVersion, RegistryError> {
        let inner = self.lock();
        let state = &inner.state;
        if state.live_entries(subject).next().is_none() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        let entry = state
            .live_version_with(subject, &schema.canonical)
            .ok_or_else(|| RegistryError::SchemaNotFoundInSubject(subject.to_owned()))?;
        Ok(state.describe(subject, entry))
    }

    pub fn subjects(&self, include_deleted: bool) -> Vec<String> {
        let inner = self.lock();
        inner
            .state
            .subjects
            .iter()
            .filter(|(_, versions)| include_deleted || versions.iter().any(|v| !v.deleted))
            .map(|(subject, _)| subject.clone())
            .collect()
    }

    pub fn versions(
        &self,
        subject: &str,
        include_deleted: bool,
    ) -> Result<Vec<u32>, RegistryError> {
        let inner = self.lock();
        let versions: Vec<u32> = inner
            .state
            .subjects
            .get(subject)
            .into_iter()
            .flatten()
            .filter(|entry| include_deleted || !entry.deleted)
            .map(|entry| entry.version)
            .collect();
        if versions.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        Ok(versions)
    }

    pub fn version(
        &self,
        subject: &str,
        selector: VersionSelector,
    ) -> Result<SubjectVersion, RegistryError> {
        let inner = self.lock();
        let entry = inner.state.select(subject, selector)?;
        Ok(inner.state.describe(subject, entry))
    }

    /// Soft-deletes every live version of `subject` and returns their numbers.
    pub fn delete_subject(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        let mut inner = self.lock();
        let deleted: Vec<u32> = inner
            .state
            .live_entries(subject)
            .map(|e| e.version)
            .collect();
        if deleted.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        inner.commit(Event::SubjectDeleted {
            subject: subject.to_owned(),
        })?;
        Ok(deleted)
    }

    /// Soft-deletes one version of `subject` and returns its number.
    pub fn delete_version(
        &self,
        subject: &str,
        selector: VersionSelector,
    ) -> Result<u32, RegistryError> {
        let mut inner = self.lock();
        let version = inner.state.select(subject, selector)?.version;
        inner.commit(Event::VersionDeleted {
            subject: subject.to_owned(),
            version,
        })?;
        Ok(version)
    }

    /// The schema with global id `id`. Soft deletion never removes it: old records still
    /// carry the id and must stay decodable.
    pub fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let inner = self.lock();
        inner
            .state
            .stored_schema(id)
            .map(|stored| stored.canonical.clone())
            .ok_or_else(|| RegistryError::SchemaIdNotFound(id.to_string()))
    }

    /// The live (subject, version) pairs that hold schema `id`.
    pub fn versions_of_schema(&self, id: u32) -> Result<Vec<(String, u32)>, RegistryError> {
        let inner = self.lock();
        let state = &inner.state;
        if state.stored_schema(id).is_none() {
            return Err(RegistryError::SchemaIdNotFound(id.to_string()));
        }
        Ok(state
            .subjects
            .iter()
            .flat_map(|(subject, versions)| {
                versions
                    .iter()
                    .filter(|entry| entry.id == id && !entry.deleted)
                    .map(|entry| (subject.clone(), entry.version))
            })
            .collect())
    }

    pub fn global_compatibility(&self) -> CompatibilityLevel {
        self.lock()
            .state
            .global_compatibility
            .unwrap_or(self.default_compatibility)
    }

    /// The level set for `subject` itself, if any.
    pub fn subject_compatibility(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.lock()
            .state
            .subject_compatibility
            .get(subject)
            .copied()
    }

    /// Sets the level of `subject`, or the global level when `subject` is `None`.
    pub fn set_compatibility(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Result<(), RegistryError> {
        self.lock().commit(Event::CompatibilitySet {
            subject: subject.map(str::to_owned),
            compatibility: level,
        })
    }

    /// Why `schema` could not be registered after the selected version of `subject` under
    /// the subject's level; empty when it could.
    pub fn test_compatibility(
        &self,
        subject: &str,
        selector: VersionSelector,
        schema: &CandidateSchema,
    ) -> Result<Vec<String>, RegistryError> {
        let inner = self.lock();
        let state = &inner.state;
        let entry = state.select(subject, selector)?;
        let stored = state
            .stored_schema(entry.id)
            .ok_or_else(|| RegistryError::SchemaIdNotFound(entry.id.to_string()))?;
        let level = state.effective_compatibility(subject, self.default_compatibility);
        let against = [RegisteredVersion {
            version: entry.version,
            schema: &stored.parsed,
        }];
        Ok(level.incompatibilities(&schema.parsed, &against))
    }
}

impl Inner {
    /// Makes `event` durable, then applies it.
    fn commit(&mut self, event: Event) -> Result<(), RegistryError> {
        // Events are built from the state under the same lock, so a contradiction is a bug;
        // checking before appending keeps it out of the log, where it would stop start-up.
        let checked = self
            .state
            .check(event)
            .map_err(RegistryError::ContradictoryEvent)?;
        self.log.append(&checked.event)?;
        self.state.apply(checked);
        Ok(())
    }
}

impl State {
    fn next_schema_id(&self) -> u32 {
        self.schemas.len() as u32 + 1
    }

    /// Versions keep counting past deleted ones, so a number never means two schemas.
    fn next_version(&self, subject: &str) -> u32 {
        self.subjects
            .get(subject)
            .and_then(|versions| versions.last())
            .map_or(1, |entry| entry.version + 1)
    }

    fn stored_schema(&self, id: u32) -> Option<&StoredSchema> {
        self.schemas.get((id as usize).checked_sub(1)?)
    }

    fn live_entries<'a>(&'a self, subject: &str) -> impl Iterator<Item = &'a VersionEntry> {
        self.subjects
            .get(subject)
            .into_iter()
            .flatten()
            .filter(|entry| !entry.deleted)
    }

    fn live_versions(&self, subject: &str) -> Vec<RegisteredVersion<'_>> {
        self.live_entries(subject)
            .filter_map(|entry| {
                self.stored_schema(entry.id)
                    .map(|stored| RegisteredVersion {
                        version: entry.version,
                        schema: &stored.parsed,
                    })
            })
            .collect()
    }

    fn live_version_with(&self, subject: &str, canonical: &str) -> Option<&VersionEntry> {
        let id = *self.id_by_canonical.get(canonical)?;
        self.live_entries(subject).find(|entry| entry.id == id)
    }

    fn select(
        &self,
        subject: &str,
        selector: VersionSelector,
    ) -> Result<&VersionEntry, RegistryError> {
        let mut live = self.live_entries(subject).peekable();
        if live.peek().is_none() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        let found = match selector {
            VersionSelector::Latest => live.last(),
            VersionSelector::Number(number) => live.find(|entry| entry.version == number),
        };
        found.ok_or_else(|| RegistryError::VersionNotFound {
            subject: subject.to_owned(),
            version: match selector {
                VersionSelector::Latest => "latest".to_owned(),
                VersionSelector::Number(number) => number.to_string(),
            },
        })
    }

    fn describe(&self, subject: &str, entry: &VersionEntry) -> SubjectVersion {
        SubjectVersion {
            subject: subject.to_owned(),
            version: entry.version,
            id: entry.id,
            schema: self
                .stored_schema(entry.id)
                .map(|stored| stored.canonical.clone())
                .unwrap_or_default(),
        }
    }

    fn effective_compatibility(
        &self,
        subject: &str,
        default: CompatibilityLevel,
    ) -> CompatibilityLevel {
        self.subject_compatibility
            .get(subject)
            .copied()
            .or(self.global_compatibility)
            .unwrap_or(default)
    }

    /// Checks that `event` fits the current state, without changing anything.
    fn check(&self, event: Event) -> Result<CheckedEvent, String> {
        let mut new_schema = None;
        match &event {
            Event::SchemaRegistered {
                subject,
                version,
                id,
                schema,
            } => {
                if *version < self.next_version(subject) {
                    return Err(format!(
                        "version {version} of subject '{subject}' is not newer than its latest"
                    ));
                }
                match self.stored_schema(*id) {
                    Some(stored) if stored.canonical != *schema => {
                        return Err(format!("schema id {id} is already used by another schema"));
                    }
                    Some(_) => {}
                    None if *id == self.next_schema_id() => {
                        if self.id_by_canonical.contains_key(schema) {
                            return Err(format!("schema {id} already has a smaller id"));
                        }
                        let parsed = Schema::parse_str(schema)
                            .map_err(|error| format!("schema {id} does not parse: {error}"))?;
                        new_schema = Some(parsed);
                    }
                    None => {
                        return Err(format!(
                            "schema id {id} skips ahead of the next id {}",
                            self.next_schema_id()
                        ));
                    }
                }
            }
            Event::SubjectDeleted { subject } => {
                if self.live_entries(subject).next().is_none() {
                    return Err(format!("subject '{subject}' has no versions to delete"));
                }
            }
            Event::VersionDeleted { subject, version } => {
                if !self
                    .live_entries(subject)
                    .any(|entry| entry.version == *version)
                {
                    return Err(format!(
                        "subject '{subject}' has no live version {version} to delete"
                    ));
                }
            }
            Event::CompatibilitySet { .. } => {}
        }
        Ok(CheckedEvent { event, new_schema })
    }

    fn apply(&mut self, checked: CheckedEvent) {
        match checked.event {
            Event::SchemaRegistered {
                subject,
                version,
                id,
                schema,
            } => {
                if let Some(parsed) = checked.new_schema {
                    self.id_by_canonical.insert(schema.clone(), id);
                    self.schemas.push(StoredSchema {
                        canonical: schema,
                        parsed,
                    });
                }
                self.subjects
                    .entry(subject)
                    .or_default()
                    .push(VersionEntry {
                        version,
                        id,
                        deleted: false,
                    });
            }
            Event::SubjectDeleted { subject } => {
                for entry in self.subjects.get_mut(&subject).into_iter().flatten() {
                    entry.deleted = true;
                }
            }
            Event::VersionDeleted { subject, version } => {
                for entry in self.subjects.get_mut(&subject).into_iter().flatten() {
                    if entry.version == version {
                        entry.deleted = true;
                    }
                }
            }
            Event::CompatibilitySet {
                subject: None,
                compatibility,
            } => self.global_compatibility = Some(compatibility),
            Event::CompatibilitySet {
                subject: Some(subject),
                compatibility,
            } => {
                self.subject_compatibility.insert(subject, compatibility);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER_V1: &str =
        r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"}]}"#;

    fn candidate(text: &str) -> CandidateSchema {
        CandidateSchema::parse(text, None, false).unwrap()
    }

    #[test]
    fn formatting_and_key_order_do_not_change_identity() {
        let reordered = "{ \"fields\": [{\"type\": \"long\", \"name\": \"id\"}],\n  \"name\": \"User\", \"type\": \"record\" }";
        assert_eq!(candidate(USER_V1).canonical, candidate(reordered).canonical);
    }

    #[test]
    fn unsupported_types_and_references_are_invalid_schemas() {
        let protobuf = CandidateSchema::parse("syntax = \"proto3\";", Some("PROTOBUF"), false);
        assert!(matches!(protobuf, Err(RegistryError::InvalidSchema(m)) if m.contains("PROTOBUF")));
        let with_refs = CandidateSchema::parse(USER_V1, Some("AVRO"), true);
        assert!(
            matches!(with_refs, Err(RegistryError::InvalidSchema(m)) if m.contains("references"))
        );
    }

    #[test]
    fn state_survives_reopening_and_ids_continue() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path(), CompatibilityLevel::Backward).unwrap();
        assert_eq!(registry.register("a", candidate(USER_V1)).unwrap().id, 1);
        registry
            .set_compatibility(Some("a"), CompatibilityLevel::None)
            .unwrap();
        drop(registry);

        let registry = Registry::open(dir.path(), CompatibilityLevel::Backward).unwrap();
        assert_eq!(
            registry.version("a", VersionSelector::Latest).unwrap().id,
            1
        );
        assert_eq!(
            registry.subject_compatibility("a"),
            Some(CompatibilityLevel::None)
        );
        let other = candidate(r#"{"type":"string"}"#);
        assert_eq!(registry.register("b", other).unwrap().id, 2);
    }

    #[test]
    fn versions_keep_counting_after_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path(), CompatibilityLevel::None).unwrap();
        registry.register("a", candidate(USER_V1)).unwrap();
        assert_eq!(registry.delete_subject("a").unwrap(), [1]);
        assert!(matches!(
            registry.version("a", VersionSelector::Latest),
            Err(RegistryError::SubjectNotFound(_))
        ));
        let again = registry.register("a", candidate(USER_V1)).unwrap();
        assert_eq!((again.id, again.created_version), (1, true));
        assert_eq!(registry.versions("a", false).unwrap(), [2]);
        assert_eq!(registry.versions("a", true).unwrap(), [1, 2]);
    }

    #[test]
    fn contradictory_log_is_a_startup_error() {
        let dir = tempfile::tempdir().unwrap();
        let line = format!(
            "{}\n",
            serde_json::to_string(&Event::SchemaRegistered {
                subject: "a".into(),
                version: 1,
                id: 5,
                schema: r#""string""#.into(),
            })
            .unwrap()
        );
        std::fs::write(dir.path().join(crate::event_log::LOG_FILE_NAME), line).unwrap();
        let err = Registry::open(dir.path(), CompatibilityLevel::Backward)
            .err()
            .unwrap();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
