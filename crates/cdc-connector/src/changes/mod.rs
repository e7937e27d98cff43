//! Turns the pgoutput message sequence into row changes, messages and transaction boundaries:
//! the transaction framing, the relation cache, and staging of streamed (in-progress)
//! transactions until they commit. Staging goes to an anonymous temporary file, so a
//! transaction of any size costs a fixed buffer of memory, and an aborted one is never decoded.
//! No network I/O: every ordering rule is unit-tested.

mod event;
mod staging;

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use pgoutput::{
    copy::{Lsn, pg_micros_to_unix_micros},
    message::{
        LogicalMessage, OldTuple, Relation, StreamedMessage, TupleData, TuplePool,
        classify_streamed, decode_message_reusing,
    },
    row::{RowPool, TypeNames, copy_selected_into, decode_tuple_into},
};

pub use self::{event::*, staging::StagedTransaction};

struct CachedRelation {
    relation: Relation,
    table: TableRef,
}

/// What each change of a relation names: its table and, once read, its column metadata id,
/// fixed when the Relation message is applied rather than looked up per change.
#[derive(Clone)]
struct TableRef {
    name: Arc<str>,
    schema: Option<Arc<str>>,
}

/// A REPLICA IDENTITY FULL table flags every column as key in pgoutput; its real primary key
/// comes from the catalog (see [`ChangeAssembler::set_primary_key`]).
fn uses_full_identity(relation: &Relation) -> bool {
    matches!(
        relation.replica_identity,
        pgoutput::message::ReplicaIdentity::Full
    )
}

struct OpenTransaction {
    xid: u32,
    commit_lsn: Lsn,
    commit_time_unix_micros: i64,
    next_sequence: u32,
}

impl std::fmt::Debug for OpenTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "transaction {} committing at {:X}",
            self.xid, self.commit_lsn
        )
    }
}

#[derive(Default)]
pub struct ChangeAssembler {
    /// Looked up for every change (and twice for most), hence foldhash rather than SipHash.
    relations: HashMap<u32, CachedRelation, foldhash::fast::RandomState>,
    types: TypeNames,
    open: Option<OpenTransaction>,
    /// The top-level xid of the streamed chunk being received.
    streaming: Option<u32>,
    staged: HashMap<u32, StagedTransaction>,
    /// Where streamed transactions are staged; the system temporary directory when None.
    spill_directory: Option<PathBuf>,
    /// Primary-key columns by relation id, from the catalog, for REPLICA IDENTITY FULL tables.
    primary_keys: HashMap<u32, Vec<String>>,
    /// The column-metadata id of each relation, set just before its Relation message is applied.
    table_schemas: HashMap<u32, Arc<str>>,
    /// The buffers of changes already published ([`Self::recycle`]), decoded into again: a
    /// change then costs no allocation per column, which was most of its decoding's time.
    tuples: TuplePool,
    rows: RowPool,
    keys: RowPool,
}

impl ChangeAssembler {
    pub fn new(spill_directory: Option<PathBuf>) -> Self {
        Self {
            spill_directory,
            ..Self::default()
        }
    }

    /// Whether a keepalive's position may be confirmed now: not inside a transaction or a
    /// streamed chunk, where a later message still belongs to what came before.
    pub fn between_transactions(&self) -> bool {
        self.open.is_none() && self.streaming.is_none()
    }

    /// The types learned from the stream's Type messages.
    pub fn types(&self) -> &TypeNames {
        &self.types
    }

    /// Whether the next message is inside a streamed chunk (it then carries an xid).
    pub fn in_stream(&self) -> bool {
        self.streaming.is_some()
    }

    /// Records a table's primary-key columns as the catalog has them: under REPLICA IDENTITY
    /// FULL they key the records instead of the whole row (which would change with every
    /// UPDATE and scatter one row over partitions). Empty for a table without primary key.
    pub fn set_primary_key(&mut self, relation_id: u32, columns: Vec<String>) {
        self.primary_keys.insert(relation_id, columns);
    }

    /// The column metadata the relation's changes carry from its next Relation message on.
    pub fn set_table_schema(&mut self, relation_id: u32, id: Arc<str>) {
        self.table_schemas.insert(relation_id, id);
    }

    /// Teaches the decoder types pgoutput cannot classify (enums, user-defined ranges).
    pub fn types_mut(&mut self) -> &mut TypeNames {
        &mut self.types
    }

    /// pgoutput messages staged on disk for in-progress streamed transactions.
    pub fn staged_messages(&self) -> u64 {
        self.staged.values().map(|t| t.staged_messages).sum()
    }

    /// Decodes one pgoutput message (an XLogData payload starting at `wal_start`). Inside a
    /// stream, the messages of the streamed transaction are staged as received and decoded only
    /// at its replay, after its commit.
    pub fn apply(
        &mut self,
        data: &[u8],
        wal_start: Lsn,
        out: &mut Vec<Output>,
    ) -> Result<(), AssembleError> {
        if let Some(top_xid) = self.streaming
            && classify_streamed(data)? == StreamedMessage::OfTheTransaction
        {
            // Relations inside a stream describe the table as that transaction sees it, so they
            // are replayed with it at commit rather than applied now.
            let staged = match self.staged.entry(top_xid) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => entry.insert(
                    StagedTransaction::new(top_xid, self.spill_directory.as_ref())?,
                ),
            };
            return staged.stage(wal_start, data);
        }
        let message = decode_message_reusing(data, self.streaming.is_some(), &mut self.tuples)?;
        self.apply_decoded(message, wal_start, out)
    }

    fn apply_decoded(
        &mut self,
        message: LogicalMessage,
        event_lsn: Lsn,
        out: &mut Vec<Output>,
    ) -> Result<(), AssembleError> {
        match message {
            LogicalMessage::Begin {
                final_lsn,
                commit_time,
                xid,
            } => {
                self.open = Some(OpenTransaction {
                    xid,
                    commit_lsn: final_lsn,
                    commit_time_unix_micros: pg_micros_to_unix_micros(commit_time),
                    next_sequence: 0,
                });
            }
            LogicalMessage::Commit {
                end_lsn,
                commit_lsn,
                commit_time,
                ..
            } => {
                let open = self
                    .open
                    .take()
                    .ok_or_else(|| AssembleError::Unexpected("Commit without Begin".into()))?;
                out.push(Output::TransactionEnd(TransactionEnd {
                    xid: open.xid,
                    commit_lsn,
                    end_lsn,
                    commit_time_unix_micros: pg_micros_to_unix_micros(commit_time),
                }));
            }
            LogicalMessage::Relation(relation) => {
                let table = TableRef {
                    name: format!("{}.{}", relation.namespace, relation.name).into(),
                    schema: self.table_schemas.get(&relation.id).cloned(),
                };
                self.relations
                    .insert(relation.id, CachedRelation { relation, table });
            }
            LogicalMessage::Type {
                type_id,
                namespace,
                name,
                ..
            } => {
                self.types.learn(type_id, &namespace, &name);
            }
            LogicalMessage::Insert {
                relation_id, new, ..
            } => {
                let (table, after) = self.row(relation_id, new, false)?;
                let primary_key = self.key_of(relation_id, &after);
                self.emit_change(
                    table,
                    Operation::Insert,
                    primary_key,
                    None,
                    Some(after),
                    event_lsn,
                    out,
                )?;
            }
            LogicalMessage::Update {
                relation_id,
                old,
                new,
                ..
            } => {
                let (table, after) = self.row(relation_id, new, false)?;
                let before = match old {
                    Some(old) => Some(self.old_row(relation_id, old)?),
                    None => None,
                };
                let primary_key = self.key_of(relation_id, &after);
                self.emit_change(
                    table,
                    Operation::Update,
                    primary_key,
                    before,
                    Some(after),
                    event_lsn,
                    out,
                )?;
            }
            LogicalMessage::Delete {
                relation_id, old, ..
            } => {
                let before = self.old_row(relation_id, old)?;
                let table = self.relation(relation_id)?.table.clone();
                let primary_key = self.key_of(relation_id, &before);
                self.emit_change(
                    table,
                    Operation::Delete,
                    primary_key,
                    Some(before),
                    None,
                    event_lsn,
                    out,
                )?;
            }
            LogicalMessage::Truncate { relation_ids, .. } => {
                for relation_id in relation_ids {
                    let table = self.relation(relation_id)?.table.clone();
                    self.emit_change(
                        table,
                        Operation::Truncate,
                        Vec::new(),
                        None,
                        None,
                        event_lsn,
                        out,
                    )?;
                }
            }
            LogicalMessage::Message {
                transactional,
                lsn,
                prefix,
                content,
                ..
            } => {
                let position = if transactional {
                    Some(self.next_position(event_lsn, "a transactional message")?)
                } else {
                    None
                };
                out.push(Output::Message(MessageEvent {
                    prefix,
                    content,
                    message_lsn: lsn,
                    position,
                }));
                if !transactional && self.between_transactions() {
                    out.push(Output::Checkpoint { lsn });
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
            LogicalMessage::StreamCommit {
                xid,
                end_lsn,
                commit_lsn,
                commit_time,
                ..
            } => {
                let commit = OpenTransaction {
                    xid,
                    commit_lsn,
                    commit_time_unix_micros: pg_micros_to_unix_micros(commit_time),
                    next_sequence: 0,
                };
                match self.staged.remove(&xid) {
                    Some(mut staged) => {
                        record_spill(&staged);
                        staged.start_reading()?;
                        staged.commit = Some(commit);
                        staged.end_lsn = end_lsn;
                        out.push(Output::Replay(staged));
                    }
                    None => out.push(Output::TransactionEnd(TransactionEnd {
                        xid,
                        commit_lsn,
                        end_lsn,
                        commit_time_unix_micros: commit.commit_time_unix_micros,
                    })),
                }
            }
            LogicalMessage::StreamAbort { xid, subxid, .. } => {
                if xid == subxid {
                    // Dropping the staged transaction deletes its anonymous file.
                    if let Some(staged) = self.staged.remove(&xid) {
                        record_spill(&staged);
                    }
                } else if let Some(staged) = self.staged.get_mut(&xid) {
                    staged.aborted_subtransactions.insert(subxid);
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

    /// Decodes the staged messages of a committed streamed transaction one at a time, so a
    /// transaction of any size is published with bounded memory. Returns false when done; the
    /// transaction's [`Output::TransactionEnd`] is then in `out`.
    pub fn replay_next(
        &mut self,
        staged: &mut StagedTransaction,
        out: &mut Vec<Output>,
    ) -> Result<bool, AssembleError> {
        let mut buffer = std::mem::take(&mut staged.replayed);
        let saved = self.open.take();
        self.open = staged.commit.take();
        let result = loop {
            let wal_start = match staged.next_staged(&mut buffer) {
                Ok(Some(wal_start)) => wal_start,
                Ok(None) => break Ok(false),
                Err(e) => break Err(e),
            };
            let message = match decode_message_reusing(&buffer, true, &mut self.tuples) {
                Ok(message) => message,
                Err(e) => break Err(e.into()),
            };
            let row_xid = match &message {
                LogicalMessage::Insert { xid, .. }
                | LogicalMessage::Update { xid, .. }
                | LogicalMessage::Delete { xid, .. }
                | LogicalMessage::Truncate { xid, .. }
                | LogicalMessage::Message { xid, .. } => *xid,
                _ => None,
            };
            if row_xid.is_some_and(|x| staged.aborted_subtransactions.contains(&x)) {
                continue;
            }
            let emitted_before = out.len();
            if let Err(e) = self.apply_decoded(message, wal_start, out) {
                break Err(e);
            }
            if out.len() > emitted_before {
                break Ok(true);
            }
        };
        staged.replayed = buffer;
        staged.commit = self.open.take();
        self.open = saved;
        if matches!(result, Ok(false))
            && let Some(commit) = staged.commit.take()
        {
            out.push(Output::TransactionEnd(TransactionEnd {
                xid: commit.xid,
                commit_lsn: commit.commit_lsn,
                end_lsn: staged.end_lsn,
                commit_time_unix_micros: commit.commit_time_unix_micros,
            }));
        }
        result
    }

    /// The position of the open transaction's next change or message; `what` names it in the
    /// error (no text is built unless there is one).
    fn next_position(&mut self, event_lsn: Lsn, what: &str) -> Result<Position, AssembleError> {
        let open = self
            .open
            .as_mut()
            .ok_or_else(|| AssembleError::Unexpected(format!("{what} outside a transaction")))?;
        let sequence = open.next_sequence;
        open.next_sequence += 1;
        Ok(Position {
            commit_lsn: open.commit_lsn,
            event_lsn,
            xid: open.xid,
            sequence,
            commit_time_unix_micros: open.commit_time_unix_micros,
        })
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of one pgoutput change, passed as they are decoded"
    )]
    fn emit_change(
        &mut self,
        table: TableRef,
        operation: Operation,
        primary_key: Columns,
        before: Option<Columns>,
        after: Option<Columns>,
        event_lsn: Lsn,
        out: &mut Vec<Output>,
    ) -> Result<(), AssembleError> {
        let position = self.next_position(event_lsn, operation.as_str())?;
        out.push(Output::Change(ChangeEvent {
            table: table.name,
            operation,
            primary_key,
            before,
            after,
            position,
            table_schema: table.schema,
        }));
        Ok(())
    }

    fn relation(&self, relation_id: u32) -> Result<&CachedRelation, AssembleError> {
        self.relations
            .get(&relation_id)
            .ok_or(AssembleError::UnknownRelation(relation_id))
    }

    /// Takes back a change once published: its rows and key are decoded into again.
    pub fn recycle(&mut self, change: ChangeEvent) {
        for row in [change.before, change.after].into_iter().flatten() {
            self.rows.give(row);
        }
        self.keys.give(change.primary_key);
    }

    /// The tuple decoded into a row given back by [`Self::recycle`]; the tuple goes back to
    /// the pool the next message is decoded into.
    fn row(
        &mut self,
        relation_id: u32,
        tuple: TupleData,
        key_only: bool,
    ) -> Result<(TableRef, Columns), AssembleError> {
        let cached = self
            .relations
            .get(&relation_id)
            .ok_or(AssembleError::UnknownRelation(relation_id))?;
        let mut row = self.rows.take(&cached.relation);
        let decoded = decode_tuple_into(&cached.relation, &tuple, key_only, &self.types, &mut row);
        self.tuples.give(tuple);
        decoded.map_err(|source| AssembleError::Row {
            table: cached.table.name.to_string(),
            source,
        })?;
        Ok((cached.table.clone(), row))
    }

    fn old_row(&mut self, relation_id: u32, old: OldTuple) -> Result<Columns, AssembleError> {
        let (tuple, key_only) = match old {
            OldTuple::Key(tuple) => (tuple, true),
            OldTuple::Full(tuple) => (tuple, false),
        };
        Ok(self.row(relation_id, tuple, key_only)?.1)
    }

    /// The key columns of `row`, in table order: the replica-identity columns, or under
    /// REPLICA IDENTITY FULL the primary key. Empty for a table without one.
    fn key_of(&mut self, relation_id: u32, row: &Columns) -> Columns {
        let mut key = self.keys.take_any();
        let Some(cached) = self.relations.get(&relation_id) else {
            key.clear();
            return key;
        };
        let full_identity_key = uses_full_identity(&cached.relation).then(|| {
            self.primary_keys
                .get(&relation_id)
                .map(Vec::as_slice)
                .unwrap_or_default()
        });
        let columns = &cached.relation.columns;
        copy_selected_into(
            row,
            |index| {
                columns
                    .get(index)
                    .is_some_and(|column| match full_identity_key {
                        Some(key) => key.iter().any(|k| **k == *column.name),
                        None => column.is_key,
                    })
            },
            &mut key,
        );
        key
    }
}

/// Counts what a streamed transaction took on disk against what it was in pgoutput, once it
/// ends (`--spill-dir` sizing: the README's disk per million changes comes from these).
fn record_spill(staged: &StagedTransaction) {
    metrics::counter!("cdc_staged_bytes_total").increment(staged.staged_bytes);
    metrics::counter!("cdc_staged_pgoutput_bytes_total").increment(staged.pgoutput_bytes);
    tracing::debug!(
        xid = staged.xid,
        messages = staged.staged_messages,
        staged_bytes = staged.staged_bytes,
        pgoutput_bytes = staged.pgoutput_bytes,
        "streamed transaction staged"
    );
}

#[cfg(test)]
mod tests;
