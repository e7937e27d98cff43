//! What the assembler emits: row changes, messages, transaction boundaries and checkpoints, and
//! why it can fail.

use std::sync::Arc;

use pgoutput::{copy::Lsn, row::ColumnValue};

use super::StagedTransaction;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Insert,
    Update,
    Delete,
    Truncate,
    /// A row of a snapshot.
    Read,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "INSERT",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Truncate => "TRUNCATE",
            Self::Read => "READ",
        }
    }
}

pub type Columns = Vec<(std::sync::Arc<str>, ColumnValue)>;

/// Where a change sits in the source WAL; `change_id` is derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub commit_lsn: Lsn,
    pub event_lsn: Lsn,
    pub xid: u32,
    pub sequence: u32,
    pub commit_time_unix_micros: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// `schema.table`.
    pub table: Arc<str>,
    pub operation: Operation,
    pub primary_key: Columns,
    pub before: Option<Columns>,
    pub after: Option<Columns>,
    pub position: Position,
    /// The id of the table's column metadata (`schema.table/version`, [`crate::table_schema`])
    /// this change was decoded with; None where none was read.
    pub table_schema: Option<Arc<str>>,
}

/// A `pg_logical_emit_message` message. Transactional ones carry their transaction's position.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageEvent {
    pub prefix: String,
    pub content: Vec<u8>,
    pub message_lsn: Lsn,
    pub position: Option<Position>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionEnd {
    pub xid: u32,
    pub commit_lsn: Lsn,
    pub end_lsn: Lsn,
    pub commit_time_unix_micros: i64,
}

#[derive(Debug)]
pub enum Output {
    Change(ChangeEvent),
    Message(MessageEvent),
    /// A transaction committed: every change of it was emitted before this. Once Kafka holds
    /// them all, the slot may confirm `end_lsn`.
    TransactionEnd(TransactionEnd),
    /// A position between transactions (a non-transactional message) that may be confirmed
    /// once everything before it is in Kafka.
    Checkpoint {
        lsn: Lsn,
    },
    /// A streamed transaction committed: its staged changes are read back with
    /// [`ChangeAssembler::replay_next`], then its [`Output::TransactionEnd`] follows.
    Replay(StagedTransaction),
}

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("pgoutput sent a change for relation {0} before describing it")]
    UnknownRelation(u32),
    #[error("cannot decode a row of {table}: {source}")]
    Row {
        table: String,
        source: pgoutput::error::DecodeError,
    },
    #[error("undecodable pgoutput message: {0}")]
    Decode(#[from] pgoutput::error::DecodeError),
    #[error("staging a streamed transaction on disk failed: {0}")]
    Spill(#[from] std::io::Error),
    #[error("unexpected pgoutput message: {0}")]
    Unexpected(String),
}

impl AssembleError {
    /// What the failure means for the connector: a staging file that cannot be written because
    /// its disk is full is transient (the transaction is received again from the slot once there
    /// is room); anything undecodable is definite.
    pub fn classify(&self) -> crate::error::ConnectorError {
        use crate::error::{ConnectorError, ErrorKind};
        match self {
            Self::Spill(error) => {
                ConnectorError::spill("staging a streamed transaction on disk", error)
            }
            Self::Row { .. } | Self::Decode(_) => ConnectorError::new(
                ErrorKind::Undecodable,
                "decoding pgoutput",
                self.to_string(),
            ),
            Self::UnknownRelation(_) | Self::Unexpected(_) => {
                ConnectorError::new(ErrorKind::Protocol, "decoding pgoutput", self.to_string())
            }
        }
    }
}
