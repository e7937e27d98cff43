//! The registry's durable state: an append-only file of JSON lines, one per event.
//!
//! Every change is appended and fsync'd before the request that caused it is answered, and
//! the whole file is replayed at start-up. A crash mid-append leaves an unterminated last
//! line; that event was never acknowledged, so it is dropped (with a warning) and cut off
//! the file so the next append starts on a clean line. Any other unreadable line is
//! corruption and stops start-up, because guessing would hand out wrong schema ids.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::compatibility::CompatibilityLevel;

pub const LOG_FILE_NAME: &str = "registry-events.jsonl";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    SchemaRegistered {
        subject: String,
        version: u32,
        id: u32,
        schema: String,
    },
    SubjectDeleted {
        subject: String,
    },
    VersionDeleted {
        subject: String,
        version: u32,
    },
    /// `subject` is `None` for the global level.
    CompatibilitySet {
        subject: Option<String>,
        compatibility: CompatibilityLevel,
    },
}

/// An event read back from the log, with the line it came from for error messages.
pub struct LoggedEvent {
    pub line: usize,
    pub event: Event,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("event log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("event log {path} is corrupt at line {line}: {source}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("event log {path} is not valid UTF-8: {source}")]
    NotUtf8 {
        path: PathBuf,
        source: std::string::FromUtf8Error,
    },
    #[error(
        "event log {path} could not be restored after a failed write, so no more changes are \
         accepted until the service restarts"
    )]
    Unwritable { path: PathBuf },
}

pub struct EventLog {
    path: PathBuf,
    file: File,
    /// Length of the file up to the last fully written event: a failed append is cut back to it.
    committed_len: u64,
    /// Set when a failed append could not be cut back, so later appends would follow garbage.
    unwritable: bool,
}

impl EventLog {
    /// Opens (creating if needed) the log in `data_dir` and returns it with every event in it.
    pub fn open(data_dir: &Path) -> Result<(Self, Vec<LoggedEvent>), LogError> {
        let path = data_dir.join(LOG_FILE_NAME);
        let io_error = |source| LogError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io_error)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_error)?;
        // The file's directory entry must be durable too, or a fresh log can vanish on a crash.
        File::open(data_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error)?;

        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_error)?;
        let text = String::from_utf8(bytes).map_err(|source| LogError::NotUtf8 {
            path: path.clone(),
            source,
        })?;

        let complete_len = text.rfind('\n').map_or(0, |newline| newline + 1);
        let torn_tail = &text[complete_len..];
        if !torn_tail.is_empty() {
            tracing::warn!(
                path = %path.display(),
                bytes = torn_tail.len(),
                "event log ends in an unterminated line, left by a crash mid-write; dropping it"
            );
            file.set_len(complete_len as u64).map_err(io_error)?;
            file.sync_all().map_err(io_error)?;
        }

        let mut events = Vec::new();
        for (index, line) in text[..complete_len].lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let event = serde_json::from_str(line).map_err(|source| LogError::Corrupt {
                path: path.clone(),
                line: index + 1,
                source,
            })?;
            events.push(LoggedEvent {
                line: index + 1,
                event,
            });
        }

        let log = Self {
            path,
            file,
            committed_len: complete_len as u64,
            unwritable: false,
        };
        Ok((log, events))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `event` and waits until it is on disk.
    pub fn append(&mut self, event: &Event) -> Result<(), LogError> {
        if self.unwritable {
            return Err(LogError::Unwritable {
                path: self.path.clone(),
            });
        }
        let mut line = serde_json::to_string(event).map_err(|source| LogError::Io {
            path: self.path.clone(),
            source: source.into(),
        })?;
        line.push('\n');
        let written = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.committed_len += line.len() as u64;
                Ok(())
            }
            Err(source) => {
                if self.file.set_len(self.committed_len).is_err() {
                    self.unwritable = true;
                }
                Err(LogError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_event(level: CompatibilityLevel) -> Event {
        Event::CompatibilitySet {
            subject: None,
            compatibility: level,
        }
    }

    #[test]
    fn appended_events_are_replayed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, events) = EventLog::open(dir.path()).unwrap();
        assert!(events.is_empty());
        log.append(&config_event(CompatibilityLevel::Full)).unwrap();
        log.append(&config_event(CompatibilityLevel::None)).unwrap();
        drop(log);
        let (_, events) = EventLog::open(dir.path()).unwrap();
        let replayed: Vec<Event> = events.into_iter().map(|e| e.event).collect();
        assert_eq!(
            replayed,
            [
                config_event(CompatibilityLevel::Full),
                config_event(CompatibilityLevel::None)
            ]
        );
    }

    #[test]
    fn torn_last_line_is_dropped_and_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = EventLog::open(dir.path()).unwrap();
        log.append(&config_event(CompatibilityLevel::Full)).unwrap();
        drop(log);
        let path = dir.path().join(LOG_FILE_NAME);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"event":"compatibility_set","sub"#)
            .unwrap();
        drop(file);

        let (mut log, events) = EventLog::open(dir.path()).unwrap();
        assert_eq!(events.len(), 1);
        // The next event must land on its own line, not glued to the torn fragment.
        log.append(&config_event(CompatibilityLevel::None)).unwrap();
        drop(log);
        let (_, events) = EventLog::open(dir.path()).unwrap();
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn a_bad_complete_line_is_corruption_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(LOG_FILE_NAME),
            "{\"event\":\"subject_deleted\",\"subject\":\"a\"}\nnot json\n",
        )
        .unwrap();
        let err = EventLog::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
