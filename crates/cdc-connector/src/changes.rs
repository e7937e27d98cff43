//! Turns the pgoutput message sequence into row changes and checkpoints: the transaction
//! framing, the relation cache, and staging of streamed (in-progress) transactions until they
//! commit. Pure: no I/O, so every ordering rule is unit-tested.

use std::{collections::HashMap, sync::Arc};

use pgoutput::{
    copy::{Lsn, pg_micros_to_unix_micros},
    message::{LogicalMessage, OldTuple, Relation, TupleData},
    row::{ColumnValue, TypeNames, decode_tuple},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "INSERT",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Truncate => "TRUNCATE",
        }
    }
}

pub type Columns = Vec<(String, ColumnValue)>;

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
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Change(ChangeEvent),
    /// Every change before this point has been emitted: once Kafka holds them all, the slot
    /// may confirm `lsn`.
    Checkpoint {
        lsn: Lsn,
        commit_time_unix_micros: Option<i64>,
    },
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
    #[error("unexpected pgoutput message: {0}")]
    Unexpected(String),
}

struct CachedRelation {
    relation: Relation,
    qualified_name: Arc<str>,
}

struct OpenTransaction {
    xid: u32,
    commit_lsn: Lsn,
    commit_time_unix_micros: i64,
    next_sequence: u32,
}

/// A change of a streamed transaction, kept until the transaction commits or aborts.
struct StagedChange {
    subxid: u32,
    table: Arc<str>,
    operation: Operation,
    primary_key: Columns,
    before: Option<Columns>,
    after: Option<Columns>,
    event_lsn: Lsn,
}

#[derive(Default)]
pub struct ChangeAssembler {
    relations: HashMap<u32, CachedRelation>,
    types: TypeNames,
    open: Option<OpenTransaction>,
    /// The top-level xid of the streamed chunk being received.
    streaming: Option<u32>,
    staged: HashMap<u32, Vec<StagedChange>>,
}

impl ChangeAssembler {
    /// Whether a keepalive's position may be confirmed now: not inside a transaction or a
    /// streamed chunk, where a later message still belongs to what came before.
    pub fn between_transactions(&self) -> bool {
        self.open.is_none() && self.streaming.is_none()
    }

    /// Whether the next message is inside a streamed chunk (it then carries an xid).
    pub fn in_stream(&self) -> bool {
        self.streaming.is_some()
    }

    /// Rows staged for in-progress streamed transactions (memory held).
    pub fn staged_changes(&self) -> usize {
        self.staged.values().map(Vec::len).sum()
    }

    pub fn apply(&mut self, message: LogicalMessage, event_lsn: Lsn, out: &mut Vec<Output>) -> Result<(), AssembleError> {
        match message {
            LogicalMessage::Begin { final_lsn, commit_time, xid } => {
                self.open = Some(OpenTransaction {
                    xid,
                    commit_lsn: final_lsn,
                    commit_time_unix_micros: pg_micros_to_unix_micros(commit_time),
                    next_sequence: 0,
                });
            }
            LogicalMessage::Commit { end_lsn, commit_time, .. } => {
                if self.open.take().is_none() {
                    return Err(AssembleError::Unexpected("Commit without Begin".into()));
                }
                out.push(Output::Checkpoint {
                    lsn: end_lsn,
                    commit_time_unix_micros: Some(pg_micros_to_unix_micros(commit_time)),
                });
            }
            LogicalMessage::Relation(relation) => {
                let qualified_name: Arc<str> = format!("{}.{}", relation.namespace, relation.name).into();
                self.relations.insert(relation.id, CachedRelation { relation, qualified_name });
            }
            LogicalMessage::Type { type_id, namespace, name, .. } => {
                self.types.learn(type_id, &namespace, &name);
            }
            LogicalMessage::Insert { xid, relation_id, new } => {
                let (table, after) = self.row(relation_id, &new, false)?;
                let primary_key = self.key_of(relation_id, &after);
                self.emit(xid, table, Operation::Insert, primary_key, None, Some(after), event_lsn, out)?;
            }
            LogicalMessage::Update { xid, relation_id, old, new } => {
                let (table, after) = self.row(relation_id, &new, false)?;
                let before = match &old {
                    Some(old) => Some(self.old_row(relation_id, old)?),
                    None => None,
                };
                let primary_key = self.key_of(relation_id, &after);
                self.emit(xid, table, Operation::Update, primary_key, before, Some(after), event_lsn, out)?;
            }
            LogicalMessage::Delete { xid, relation_id, old } => {
                let before = self.old_row(relation_id, &old)?;
                let table = self.relation(relation_id)?.qualified_name.clone();
                let primary_key = self.key_of(relation_id, &before);
                self.emit(xid, table, Operation::Delete, primary_key, Some(before), None, event_lsn, out)?;
            }
            LogicalMessage::Truncate { xid, relation_ids, .. } => {
                for relation_id in relation_ids {
                    let table = self.relation(relation_id)?.qualified_name.clone();
                    self.emit(xid, table, Operation::Truncate, Vec::new(), None, None, event_lsn, out)?;
                }
            }
            LogicalMessage::Message { transactional, lsn, prefix, .. } => {
                // Publishing logical messages is not part of the change stream yet; a
                // non-transactional one (the connector's heartbeat among them) still marks a
                // position that may be confirmed.
                tracing::debug!(prefix, transactional, "logical decoding message");
                if !transactional && self.between_transactions() {
                    out.push(Output::Checkpoint { lsn, commit_time_unix_micros: None });
                }
            }
            LogicalMessage::Origin { name, .. } => {
                tracing::debug!(origin = name, "transaction replayed from another origin");
            }
            LogicalMessage::StreamStart { xid, .. } => {
                self.streaming = Some(xid);
            }
            LogicalMessage::StreamStop => {
                self.streaming = None;
            }
            LogicalMessage::StreamCommit { xid, end_lsn, commit_lsn, commit_time, .. } => {
                let staged = self.staged.remove(&xid).unwrap_or_default();
                let commit_time_unix_micros = pg_micros_to_unix_micros(commit_time);
                for (sequence, change) in staged.into_iter().enumerate() {
                    out.push(Output::Change(ChangeEvent {
                        table: change.table,
                        operation: change.operation,
                        primary_key: change.primary_key,
                        before: change.before,
                        after: change.after,
                        position: Position {
                            commit_lsn,
                            event_lsn: change.event_lsn,
                            xid,
                            sequence: u32::try_from(sequence).unwrap_or(u32::MAX),
                            commit_time_unix_micros,
                        },
                    }));
                }
                out.push(Output::Checkpoint {
                    lsn: end_lsn,
                    commit_time_unix_micros: Some(commit_time_unix_micros),
                });
            }
            LogicalMessage::StreamAbort { xid, subxid, .. } => {
                if xid == subxid {
                    self.staged.remove(&xid);
                } else if let Some(changes) = self.staged.get_mut(&xid) {
                    changes.retain(|change| change.subxid != subxid);
                }
            }
            other => {
                return Err(AssembleError::Unexpected(format!(
                    "{other:?} (two-phase decoding is not enabled)"
                )));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        row_xid: Option<u32>,
        table: Arc<str>,
        operation: Operation,
        primary_key: Columns,
        before: Option<Columns>,
        after: Option<Columns>,
        event_lsn: Lsn,
        out: &mut Vec<Output>,
    ) -> Result<(), AssembleError> {
        if let Some(top_xid) = self.streaming {
            self.staged.entry(top_xid).or_default().push(StagedChange {
                subxid: row_xid.unwrap_or(top_xid),
                table,
                operation,
                primary_key,
                before,
                after,
                event_lsn,
            });
            return Ok(());
        }
        let open = self
            .open
            .as_mut()
            .ok_or_else(|| AssembleError::Unexpected(format!("{} change outside a transaction", operation.as_str())))?;
        let sequence = open.next_sequence;
        open.next_sequence += 1;
        out.push(Output::Change(ChangeEvent {
            table,
            operation,
            primary_key,
            before,
            after,
            position: Position {
                commit_lsn: open.commit_lsn,
                event_lsn,
                xid: open.xid,
                sequence,
                commit_time_unix_micros: open.commit_time_unix_micros,
            },
        }));
        Ok(())
    }

    fn relation(&self, relation_id: u32) -> Result<&CachedRelation, AssembleError> {
        self.relations
            .get(&relation_id)
            .ok_or(AssembleError::UnknownRelation(relation_id))
    }

    fn row(&self, relation_id: u32, tuple: &TupleData, key_only: bool) -> Result<(Arc<str>, Columns), AssembleError> {
        let cached = self.relation(relation_id)?;
        let columns = decode_tuple(&cached.relation, tuple, key_only, &self.types).map_err(|source| AssembleError::Row {
            table: cached.qualified_name.to_string(),
            source,
        })?;
        Ok((cached.qualified_name.clone(), columns))
    }

    fn old_row(&self, relation_id: u32, old: &OldTuple) -> Result<Columns, AssembleError> {
        let (tuple, key_only) = match old {
            OldTuple::Key(tuple) => (tuple, true),
            OldTuple::Full(tuple) => (tuple, false),
        };
        Ok(self.row(relation_id, tuple, key_only)?.1)
    }

    /// The replica-identity columns of `row`, in table order. Empty for a table without one.
    fn key_of(&self, relation_id: u32, row: &Columns) -> Columns {
        let Some(cached) = self.relations.get(&relation_id) else {
            return Vec::new();
        };
        cached
            .relation
            .columns
            .iter()
            .zip(row)
            .filter(|(column, _)| column.is_key)
            .map(|(_, value)| value.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use pgoutput::{
        message::{Column, ReplicaIdentity, TupleValue},
        row::TypedValue,
    };

    use super::*;

    const BOOKINGS: u32 = 16_400;
    const INT8: u32 = 20;
    const TEXT: u32 = 25;

    fn relation() -> LogicalMessage {
        LogicalMessage::Relation(Relation {
            id: BOOKINGS,
            namespace: "public".into(),
            name: "bookings".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![
                Column { is_key: true, name: "booking_id".into(), type_id: INT8, type_modifier: -1 },
                Column { is_key: false, name: "status".into(), type_id: TEXT, type_modifier: -1 },
            ],
        })
    }

    fn tuple(id: &str, status: Option<&str>) -> TupleData {
        TupleData(vec![
            TupleValue::Text(id.as_bytes().to_vec()),
            status.map_or(TupleValue::Null, |s| TupleValue::Text(s.as_bytes().to_vec())),
        ])
    }

    fn insert(xid: Option<u32>, id: &str) -> LogicalMessage {
        LogicalMessage::Insert { xid, relation_id: BOOKINGS, new: tuple(id, Some("pending")) }
    }

    fn run(messages: Vec<LogicalMessage>) -> Vec<Output> {
        let mut assembler = ChangeAssembler::default();
        let mut out = Vec::new();
        for (index, message) in messages.into_iter().enumerate() {
            assembler.apply(message, 1000 + index as u64, &mut out).unwrap();
        }
        out
    }

    fn changes(outputs: &[Output]) -> Vec<&ChangeEvent> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Change(change) => Some(change),
                Output::Checkpoint { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_transaction_gives_sequenced_changes_then_its_checkpoint() {
        let out = run(vec![
            relation(),
            LogicalMessage::Begin { final_lsn: 500, commit_time: 0, xid: 7 },
            insert(None, "1"),
            LogicalMessage::Update { xid: None, relation_id: BOOKINGS, old: None, new: tuple("1", Some("confirmed")) },
            LogicalMessage::Delete { xid: None, relation_id: BOOKINGS, old: OldTuple::Key(tuple("1", None)) },
            LogicalMessage::Commit { flags: 0, commit_lsn: 500, end_lsn: 520, commit_time: 0 },
        ]);
        let seen = changes(&out);
        assert_eq!(
            seen.iter().map(|c| (c.operation, c.position.sequence, c.position.commit_lsn, c.position.xid)).collect::<Vec<_>>(),
            vec![(Operation::Insert, 0, 500, 7), (Operation::Update, 1, 500, 7), (Operation::Delete, 2, 500, 7)]
        );
        assert_eq!(out.last(), Some(&Output::Checkpoint { lsn: 520, commit_time_unix_micros: Some(pgoutput::copy::PG_EPOCH_OFFSET_MICROS) }));
        assert_eq!(&*seen[0].table, "public.bookings");
        assert_eq!(seen[0].primary_key, vec![("booking_id".to_string(), ColumnValue::Value(TypedValue::Long(1)))]);
        let deleted = seen[2].before.as_ref().unwrap();
        assert_eq!(deleted[1], ("status".to_string(), ColumnValue::NotInReplicaIdentity));
        assert!(seen[2].after.is_none());
    }

    #[test]
    fn streamed_transactions_are_staged_until_commit_and_aborts_are_dropped() {
        let mut assembler = ChangeAssembler::default();
        let mut out = Vec::new();
        for message in [
            relation(),
            LogicalMessage::StreamStart { xid: 9, first_segment: true },
            insert(Some(9), "1"),
            insert(Some(10), "2"), // a subtransaction that aborts
            LogicalMessage::StreamStop,
            LogicalMessage::StreamStart { xid: 11, first_segment: true },
            insert(Some(11), "3"), // a whole transaction that aborts
            LogicalMessage::StreamStop,
        ] {
            assembler.apply(message, 1, &mut out).unwrap();
        }
        assert!(out.is_empty(), "nothing may be published before commit: {out:?}");
        assert_eq!(assembler.staged_changes(), 3);
        for message in [
            LogicalMessage::StreamAbort { xid: 9, subxid: 10, abort_lsn: None, abort_time: None },
            LogicalMessage::StreamAbort { xid: 11, subxid: 11, abort_lsn: None, abort_time: None },
            LogicalMessage::StreamCommit { xid: 9, flags: 0, commit_lsn: 900, end_lsn: 950, commit_time: 0 },
        ] {
            assembler.apply(message, 2, &mut out).unwrap();
        }
        let seen = changes(&out);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].primary_key[0].1, ColumnValue::Value(TypedValue::Long(1)));
        assert_eq!((seen[0].position.commit_lsn, seen[0].position.xid, seen[0].position.sequence), (900, 9, 0));
        assert!(matches!(out.last(), Some(Output::Checkpoint { lsn: 950, .. })));
        assert_eq!(assembler.staged_changes(), 0);
    }

    #[test]
    fn keepalives_are_confirmable_only_between_transactions() {
        let mut assembler = ChangeAssembler::default();
        let mut out = Vec::new();
        assert!(assembler.between_transactions());
        assembler.apply(LogicalMessage::Begin { final_lsn: 1, commit_time: 0, xid: 1 }, 1, &mut out).unwrap();
        assert!(!assembler.between_transactions());
        assembler.apply(LogicalMessage::Commit { flags: 0, commit_lsn: 1, end_lsn: 2, commit_time: 0 }, 2, &mut out).unwrap();
        assembler.apply(LogicalMessage::StreamStart { xid: 3, first_segment: true }, 3, &mut out).unwrap();
        assert!(!assembler.between_transactions());
        assert!(assembler.in_stream());
        assembler.apply(LogicalMessage::StreamStop, 4, &mut out).unwrap();
        assert!(assembler.between_transactions());
    }

    #[test]
    fn truncate_gives_one_change_per_table() {
        let out = run(vec![
            relation(),
            LogicalMessage::Begin { final_lsn: 5, commit_time: 0, xid: 1 },
            LogicalMessage::Truncate { xid: None, options: 0, relation_ids: vec![BOOKINGS] },
            LogicalMessage::Commit { flags: 0, commit_lsn: 5, end_lsn: 6, commit_time: 0 },
        ]);
        let seen = changes(&out);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].operation, Operation::Truncate);
        assert!(seen[0].primary_key.is_empty());
    }

    #[test]
    fn protocol_violations_are_errors_not_panics() {
        let mut assembler = ChangeAssembler::default();
        let mut out = Vec::new();
        assembler.apply(LogicalMessage::Begin { final_lsn: 1, commit_time: 0, xid: 1 }, 1, &mut out).unwrap();
        assert!(matches!(assembler.apply(insert(None, "1"), 2, &mut out), Err(AssembleError::UnknownRelation(BOOKINGS))));
        let mut fresh = ChangeAssembler::default();
        assert!(fresh.apply(relation(), 1, &mut out).is_ok());
        assert!(fresh.apply(insert(None, "1"), 2, &mut out).is_err(), "a change outside a transaction");
        assert!(fresh.apply(LogicalMessage::Commit { flags: 0, commit_lsn: 1, end_lsn: 2, commit_time: 0 }, 3, &mut out).is_err());
    }

    #[test]
    fn heartbeat_messages_checkpoint_between_transactions() {
        let out = run(vec![LogicalMessage::Message {
            xid: None,
            transactional: false,
            lsn: 77,
            prefix: "cdc_connector.heartbeat".into(),
            content: Vec::new(),
        }]);
        assert_eq!(out, vec![Output::Checkpoint { lsn: 77, commit_time_unix_micros: None }]);
    }
}
