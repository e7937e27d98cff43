//! The registry itself: subjects, versions, global schema ids and compatibility settings,
//! held in memory and made durable through the [`EventLog`].
//!
//! Methods that change anything append to the log and fsync before returning, so they block:
//! async callers run them on a blocking thread.
//!
//! This file holds the operations; what a request names is validated in `request`, the
//! errors are in `error`, and the state with its check-then-apply event handling is in
//! `state`.

mod error;
mod request;
mod state;

use std::{
    path::Path,
    sync::{Mutex, MutexGuard},
};

use crate::{
    compatibility::{CompatibilityLevel, RegisteredVersion},
    event_log::{Event, EventLog},
};

pub use self::error::{OpenError, RegistryError};
pub use self::request::{CandidateSchema, VersionSelector};
use self::state::State;

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

#[cfg(test)]
mod tests {
    use super::*;

    const USER_V1: &str =
        r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"}]}"#;

    fn candidate(text: &str) -> CandidateSchema {
        CandidateSchema::parse(text, None, false).unwrap()
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
