//! The journal: one JSON line per row a committed operation changed, in commit order, so a test
//! can hold the CDC topic against what really happened.
//!
//! Row images are plain JSON as PostgreSQL computed them in the same statement (`RETURNING`):
//! integers and booleans as such, text as strings, numeric as its exact text, timestamptz as
//! microseconds since the epoch, date as days since 1970-01-01, uuid, enums and jsonb as text.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Position in the journal; entries are numbered in commit order.
    pub seq: u64,
    /// PostgreSQL transaction id (32-bit xid, as CDC records carry it).
    pub xid: i64,
    /// The planned operation this change belongs to.
    pub op_seq: u64,
    /// Schema-qualified, e.g. `public.bookings`.
    pub table: String,
    /// INSERT, UPDATE or DELETE.
    pub operation: String,
    pub key: Map<String, Value>,
    /// The row after the change; `None` for a deletion.
    pub row: Option<Value>,
}

/// One changed row, before it gets its place in the journal.
#[derive(Debug, Clone)]
pub struct RowChange {
    pub xid: i64,
    pub table: &'static str,
    pub operation: &'static str,
    pub key: Map<String, Value>,
    pub row: Option<Value>,
}

pub struct JournalWriter {
    out: BufWriter<File>,
    next_seq: u64,
}

impl JournalWriter {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            out: BufWriter::new(File::create(path)?),
            next_seq: 0,
        })
    }

    /// Appends one transaction's changes; the caller holds the journal across the commit, so
    /// the order of appends is the order of commits.
    pub fn append(&mut self, op_seq: u64, changes: Vec<RowChange>) -> std::io::Result<()> {
        for change in changes {
            let entry = JournalEntry {
                seq: self.next_seq,
                xid: change.xid,
                op_seq,
                table: change.table.to_string(),
                operation: change.operation.to_string(),
                key: change.key,
                row: change.row,
            };
            serde_json::to_writer(&mut self.out, &entry)?;
            self.out.write_all(b"\n")?;
            self.next_seq += 1;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalReadError {
    #[error("cannot read journal {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("journal {path} line {line}: {source}")]
    Parse {
        path: String,
        line: usize,
        source: serde_json::Error,
    },
}

/// Reads a journal back, in its (commit) order.
pub fn read(path: &Path) -> Result<Vec<JournalEntry>, JournalReadError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| JournalReadError::Io {
        path: display.clone(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|source| JournalReadError::Parse {
                path: display.clone(),
                line: index + 1,
                source,
            })
        })
        .collect()
}
