//! The registry's in-memory state and the only code that changes it: an event is first
//! checked against the state (so a contradictory one never reaches the log) and then applied.
//! Replaying the event log at start-up and committing a new event take the same two steps.

use std::collections::{BTreeMap, HashMap};

use apache_avro::Schema;

use super::{RegistryError, SubjectVersion, VersionSelector};
use crate::{
    compatibility::{CompatibilityLevel, RegisteredVersion},
    event_log::Event,
};

#[derive(Default)]
pub(super) struct State {
    /// Indexed by schema id - 1: ids are dense and start at 1.
    pub(super) schemas: Vec<StoredSchema>,
    pub(super) id_by_canonical: HashMap<String, u32>,
    pub(super) subjects: BTreeMap<String, Vec<VersionEntry>>,
    pub(super) global_compatibility: Option<CompatibilityLevel>,
    pub(super) subject_compatibility: HashMap<String, CompatibilityLevel>,
}

pub(super) struct StoredSchema {
    pub(super) canonical: String,
    pub(super) parsed: Schema,
}

pub(super) struct VersionEntry {
    pub(super) version: u32,
    pub(super) id: u32,
    pub(super) deleted: bool,
}

/// An event that has been checked against the state and can no longer fail to apply.
pub(super) struct CheckedEvent {
    pub(super) event: Event,
    /// The parsed schema, when the event introduces a new schema id.
    new_schema: Option<Schema>,
}
impl State {
    pub(super) fn next_schema_id(&self) -> u32 {
        self.schemas.len() as u32 + 1
    }

    /// Versions keep counting past deleted ones, so a number never means two schemas.
    pub(super) fn next_version(&self, subject: &str) -> u32 {
        self.subjects
            .get(subject)
            .and_then(|versions| versions.last())
            .map_or(1, |entry| entry.version + 1)
    }

    pub(super) fn stored_schema(&self, id: u32) -> Option<&StoredSchema> {
        self.schemas.get((id as usize).checked_sub(1)?)
    }

    pub(super) fn live_entries<'a>(
        &'a self,
        subject: &str,
    ) -> impl Iterator<Item = &'a VersionEntry> {
        self.subjects
            .get(subject)
            .into_iter()
            .flatten()
            .filter(|entry| !entry.deleted)
    }

    pub(super) fn live_versions(&self, subject: &str) -> Vec<RegisteredVersion<'_>> {
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

    pub(super) fn live_version_with(
        &self,
        subject: &str,
        canonical: &str,
    ) -> Option<&VersionEntry> {
        let id = *self.id_by_canonical.get(canonical)?;
        self.live_entries(subject).find(|entry| entry.id == id)
    }

    pub(super) fn select(
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

    pub(super) fn describe(&self, subject: &str, entry: &VersionEntry) -> SubjectVersion {
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

    pub(super) fn effective_compatibility(
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
    pub(super) fn check(&self, event: Event) -> Result<CheckedEvent, String> {
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

    pub(super) fn apply(&mut self, checked: CheckedEvent) {
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
