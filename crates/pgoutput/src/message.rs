//! The pgoutput logical decoding protocol, versions 1 to 4: the payload of
//! each XLogData message.
//!
//! Timestamps are left as the protocol sends them (microseconds since
//! 2000-01-01); convert with [`crate::copy::pg_micros_to_unix_micros`].

use crate::copy::Lsn;
use crate::error::DecodeError;
use crate::reader::Reader;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogicalMessage {
    Begin {
        final_lsn: Lsn,
        commit_time: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: i64,
    },
    Origin {
        commit_lsn: Lsn,
        name: String,
    },
    /// Inside a stream the message also carries the streamed transaction's
    /// xid; it is dropped because a relation description is cached by
    /// relation id whichever transaction announced it.
    Relation(Relation),
    Type {
        xid: Option<u32>,
        type_id: u32,
        /// Empty for pg_catalog, as sent.
        namespace: String,
        name: String,
    },
    Insert {
        xid: Option<u32>,
        relation_id: u32,
        new: TupleData,
    },
    Update {
        xid: Option<u32>,
        relation_id: u32,
        /// Present only when the replica identity changed or is FULL.
        old: Option<OldTuple>,
        new: TupleData,
    },
    Delete {
        xid: Option<u32>,
        relation_id: u32,
        old: OldTuple,
    },
    Truncate {
        xid: Option<u32>,
        /// Bit 1: CASCADE, bit 2: RESTART IDENTITY.
        options: u8,
        relation_ids: Vec<u32>,
    },
    Message {
        xid: Option<u32>,
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Vec<u8>,
    },
    StreamStart {
        xid: u32,
        first_segment: bool,
    },
    StreamStop,
    StreamCommit {
        xid: u32,
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: i64,
    },
    /// `abort_lsn` and `abort_time` are only sent with protocol 4 and
    /// `streaming = parallel`.
    StreamAbort {
        xid: u32,
        subxid: u32,
        abort_lsn: Option<Lsn>,
        abort_time: Option<i64>,
    },
    BeginPrepare {
        prepare_lsn: Lsn,
        end_lsn: Lsn,
        prepare_time: i64,
        xid: u32,
        gid: String,
    },
    Prepare {
        flags: u8,
        prepare_lsn: Lsn,
        end_lsn: Lsn,
        prepare_time: i64,
        xid: u32,
        gid: String,
    },
    CommitPrepared {
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: i64,
        xid: u32,
        gid: String,
    },
    RollbackPrepared {
        flags: u8,
        prepare_end_lsn: Lsn,
        rollback_end_lsn: Lsn,
        prepare_time: i64,
        rollback_time: i64,
        xid: u32,
        gid: String,
    },
    StreamPrepare {
        flags: u8,
        prepare_lsn: Lsn,
        end_lsn: Lsn,
        prepare_time: i64,
        xid: u32,
        gid: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The table's OID.
    pub id: u32,
    /// Empty for pg_catalog, as sent.
    pub namespace: String,
    pub name: String,
    pub replica_identity: ReplicaIdentity,
    /// Generated columns are not sent (nor listed in tuples).
    pub columns: Vec<Column>,
}

/// `pg_class.relreplident`: which old values UPDATE and DELETE carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// `'d'`: the primary key.
    Default,
    /// `'n'`: nothing.
    Nothing,
    /// `'f'`: every column.
    Full,
    /// `'i'`: the columns of a chosen unique index.
    Index,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Part of the replica identity (all columns under FULL).
    pub is_key: bool,
    /// Shared: every decoded value carries its column's name.
    pub name: std::sync::Arc<str>,
    pub type_id: u32,
    pub type_modifier: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `'K'`: only replica identity columns carry values; the rest are sent
    /// as null.
    Key(TupleData),
    /// `'O'`: the whole old row (REPLICA IDENTITY FULL).
    Full(TupleData),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TupleData(pub Vec<TupleValue>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    /// `'n'`
    Null,
    /// `'u'`: a TOASTed value the change did not touch, so it was not sent.
    UnchangedToast,
    /// `'t'`: the type's text output.
    Text(Vec<u8>),
    /// `'b'`: the type's binary send format (only with `binary = true`).
    Binary(Vec<u8>),
}

impl TupleValue {
    /// The bytes this value holds, emptied, for a decoder to fill again (an empty vector with
    /// `capacity` when it holds none); the value is left [`TupleValue::Null`].
    pub fn take_buffer(&mut self, capacity: usize) -> Vec<u8> {
        match std::mem::replace(self, TupleValue::Null) {
            TupleValue::Text(mut bytes) | TupleValue::Binary(mut bytes) => {
                bytes.clear();
                bytes
            }
            TupleValue::Null | TupleValue::UnchangedToast => Vec::with_capacity(capacity),
        }
    }
}

/// A buffer larger than this is dropped rather than kept for reuse: one huge value must not
/// stay allocated for the rest of the stream.
pub(crate) const KEPT_BUFFER_BYTES: usize = 64 * 1024;

/// Tuples given back after use, whose vectors [`decode_message_reusing`] fills again: a
/// connector decodes millions of changes of the same shape, and reusing the previous change's
/// buffers saves an allocation and a free per column.
#[derive(Debug, Default)]
pub struct TuplePool(Vec<TupleData>);

impl TuplePool {
    /// More than a change's two tuples are never in use at once.
    const KEPT: usize = 4;

    pub fn give(&mut self, tuple: TupleData) {
        let holds_huge_value = tuple.0.iter().any(|value| match value {
            TupleValue::Text(bytes) | TupleValue::Binary(bytes) => {
                bytes.capacity() > KEPT_BUFFER_BYTES
            }
            TupleValue::Null | TupleValue::UnchangedToast => false,
        });
        if self.0.len() < Self::KEPT && !holds_huge_value {
            self.0.push(tuple);
        }
    }

    fn take(&mut self) -> TupleData {
        self.0.pop().unwrap_or(TupleData(Vec::new()))
    }
}

/// Smallest encoded size of one column description (flags, empty name's NUL,
/// type OID, type modifier), used to bound preallocation by what is left.
const MIN_COLUMN_DESCRIPTION_LEN: usize = 1 + 1 + 4 + 4;

/// Decodes one pgoutput message. `in_stream` must be true between a
/// StreamStart and the following StreamStop: there the data-carrying messages
/// are prefixed with the xid of the streamed transaction.
pub fn decode_message(buf: &[u8], in_stream: bool) -> Result<LogicalMessage, DecodeError> {
    decode_message_reusing(buf, in_stream, &mut TuplePool::default())
}

/// [`decode_message`] with the tuples of a row change decoded into tuples taken from `pool`
/// (new ones while it is empty); the caller gives them back once done with them.
pub fn decode_message_reusing(
    buf: &[u8],
    in_stream: bool,
    pool: &mut TuplePool,
) -> Result<LogicalMessage, DecodeError> {
    let mut reader = Reader::new(buf);
    let tag = read_tag(&mut reader)?;
    let (what, message) = match tag {
        b'B' => ("begin", decode_begin(&mut reader)?),
        b'C' => ("commit", decode_commit(&mut reader)?),
        b'O' => ("origin", decode_origin(&mut reader)?),
        b'R' => {
            let _streamed_xid = read_stream_xid(&mut reader, in_stream, "relation xid")?;
            (
                "relation",
                LogicalMessage::Relation(decode_relation(&mut reader)?),
            )
        }
        b'Y' => ("type", decode_type(&mut reader, in_stream)?),
        b'I' => ("insert", decode_insert(&mut reader, in_stream, pool)?),
        b'U' => ("update", decode_update(&mut reader, in_stream, pool)?),
        b'D' => ("delete", decode_delete(&mut reader, in_stream, pool)?),
        b'T' => ("truncate", decode_truncate(&mut reader, in_stream)?),
        b'M' => (
            "logical decoding message",
            decode_logical_message(&mut reader, in_stream)?,
        ),
        b'S' => ("stream start", decode_stream_start(&mut reader)?),
        b'E' => ("stream stop", LogicalMessage::StreamStop),
        b'c' => ("stream commit", decode_stream_commit(&mut reader)?),
        b'A' => ("stream abort", decode_stream_abort(&mut reader)?),
        b'b' => ("begin prepare", decode_begin_prepare(&mut reader)?),
        b'P' => ("prepare", decode_prepare(&mut reader)?),
        b'K' => ("commit prepared", decode_commit_prepared(&mut reader)?),
        b'r' => ("rollback prepared", decode_rollback_prepared(&mut reader)?),
        b'p' => ("stream prepare", decode_stream_prepare(&mut reader)?),
        other => return Err(DecodeError::unknown_tag("pgoutput message", other, 0)),
    };
    reader.finish(what)?;
    Ok(message)
}

/// What a message received inside a stream (between Stream Start and Stream Stop) is to the
/// streamed transaction, read from its tag and, for a logical decoding message, its flags.
///
/// The rest is not decoded: a consumer stages the bytes of the transaction's messages until it
/// commits, and decodes each once, at its replay (a streamed transaction can be millions of rows,
/// and one that aborts need never be decoded at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamedMessage {
    /// A change, a relation description or a transactional logical decoding message: part of the
    /// streamed transaction, applied only if and when it commits.
    OfTheTransaction,
    /// Anything else, applied when it arrives: a type description (it names a type whichever
    /// transaction announced it), a stream's stop, commit or abort...
    Control,
}

impl LogicalMessage {
    /// What this message, received inside a stream, is to the streamed transaction: what
    /// [`classify_streamed`] reads from its bytes alone.
    pub fn streamed(&self) -> StreamedMessage {
        match self {
            Self::Insert { .. }
            | Self::Update { .. }
            | Self::Delete { .. }
            | Self::Truncate { .. }
            | Self::Relation(_)
            | Self::Message {
                transactional: true,
                ..
            } => StreamedMessage::OfTheTransaction,
            _ => StreamedMessage::Control,
        }
    }
}

/// Classifies a message received inside a stream without decoding it (see [`StreamedMessage`]).
/// Agrees with [`decode_message`]`(buf, true)` on every message that decodes; a message
/// classified as part of the transaction is only checked when it is decoded.
pub fn classify_streamed(buf: &[u8]) -> Result<StreamedMessage, DecodeError> {
    let mut reader = Reader::new(buf);
    let tag = read_tag(&mut reader)?;
    Ok(match tag {
        b'I' | b'U' | b'D' | b'T' | b'R' => StreamedMessage::OfTheTransaction,
        b'M' => {
            reader.u32("logical decoding message xid")?;
            if reader.u8("logical decoding message flags")? & 1 != 0 {
                StreamedMessage::OfTheTransaction
            } else {
                StreamedMessage::Control
            }
        }
        _ => StreamedMessage::Control,
    })
}

/// A message's first byte, which says what it is; an empty message has none.
fn read_tag(reader: &mut Reader<'_>) -> Result<u8, DecodeError> {
    reader
        .u8("pgoutput message tag")
        .map_err(|_| DecodeError::Empty {
            what: "pgoutput message",
        })
}

fn read_stream_xid(
    reader: &mut Reader<'_>,
    in_stream: bool,
    what: &'static str,
) -> Result<Option<u32>, DecodeError> {
    if in_stream {
        reader.u32(what).map(Some)
    } else {
        Ok(None)
    }
}

fn decode_begin(reader: &mut Reader<'_>) -> Result<LogicalMessage, DecodeError> {
    Ok(LogicalMessage::Begin {
        final_lsn: reader.u64("begin final LSN")?,
        commit_time: reader.i64("begin commit time")?,
        xid: reader.u32("begin xid")?,
    })
}

fn decode_commit(reader: &mut Reader<'_>) -> Result<LogicalMessage, DecodeError> {
    Ok(LogicalMessage::Commit {
        flags: reader.u8("commit flags")?,
        commit_lsn: reader.u64("commit LSN")?,
        end_lsn: reader.u64("commit end LSN")?,
        commit_time: reader.i64("commit time")?,
    })
}

fn decode_origin(reader: &mut Reader<'_>) -> Result<LogicalMessage, DecodeError> {
    Ok(LogicalMessage::Origin {
        commit_lsn: reader.u64("origin commit LSN")?,
        name: reader.cstring("origin name")?,
    })
}

fn decode_relation(reader: &mut Reader<'_>) -> Result<Relation, DecodeError> {
    let id = reader.u32("relation id")?;
    let namespace = reader.cstring("relation namespace")?;
    let name = reader.cstring("relation name")?;
    let identity_offset = reader.offset();
    let replica_identity = match reader.u8("relation replica identity")? {
        b'd' => ReplicaIdentity::Default,
        b'n' => ReplicaIdentity::Nothing,
        b'f' => ReplicaIdentity::Full,
        b'i' => ReplicaIdentity::Index,
        other => {
            return Err(DecodeError::unknown_tag(
                "relation replica identity",
                other,
                identity_offset,
            ));
        }
    };
    let column_count = usize::from(reader.u16("relation column count")?);
    let mut columns =
        Vec::with_capacity(column_count.min(reader.remaining() / MIN_COLUMN_DESCRIPTION_LEN));
    for _ in 0..column_count {
        let flags = reader.u8("relation column flags")?;
        columns.push(Column {
            is_key: flags & 1 != 0,
            name: reader.cstring("relation column name")?.into(),
            type_id: reader.u32("relation column type id")?,
            type_modifier: reader.i32("relation column type modifier")?,
        });
    }
    Ok(Relation {
        id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn decode_type(reader: &mut Reader<'_>, in_stream: bool) -> Result<LogicalMessage, DecodeError> {
    Ok(LogicalMessage::Type {
        xid: read_stream_xid(reader, in_stream, "type xid")?,
        type_id: reader.u32("type id")?,
        namespace: reader.cstring("type namespace")?,
        name: reader.cstring("type name")?,
    })
}

fn decode_insert(
    reader: &mut Reader<'_>,
    in_stream: bool,
    pool: &mut TuplePool,
) -> Result<LogicalMessage, DecodeError> {
    let xid = read_stream_xid(reader, in_stream, "insert xid")?;
    let relation_id = reader.u32("insert relation id")?;
    let marker = reader.u8("insert tuple marker")?;
    expect_new_tuple_marker(reader, marker, "insert tuple marker")?;
    Ok(LogicalMessage::Insert {
        xid,
        relation_id,
        new: decode_tuple_data(reader, pool)?,
    })
}

fn decode_update(
    reader: &mut Reader<'_>,
    in_stream: bool,
    pool: &mut TuplePool,
) -> Result<LogicalMessage, DecodeError> {
    let xid = read_stream_xid(reader, in_stream, "update xid")?;
    let relation_id = reader.u32("update relation id")?;
    let mut marker = reader.u8("update tuple marker")?;
    let old = match marker {
        b'K' | b'O' => {
            let tuple = decode_tuple_data(reader, pool)?;
            let old = if marker == b'K' {
                OldTuple::Key(tuple)
            } else {
                OldTuple::Full(tuple)
            };
            marker = reader.u8("update new tuple marker")?;
            Some(old)
        }
        _ => None,
    };
    expect_new_tuple_marker(reader, marker, "update tuple marker")?;
    Ok(LogicalMessage::Update {
        xid,
        relation_id,
        old,
        new: decode_tuple_data(reader, pool)?,
    })
}

/// `marker` has just been read, so it sits one byte before the cursor.
fn expect_new_tuple_marker(
    reader: &Reader<'_>,
    marker: u8,
    what: &'static str,
) -> Result<(), DecodeError> {
    if marker == b'N' {
        Ok(())
    } else {
        Err(DecodeError::unknown_tag(what, marker, reader.offset() - 1))
    }
}

fn decode_delete(
    reader: &mut Reader<'_>,
    in_stream: bool,
    pool: &mut TuplePool,
) -> Result<LogicalMessage, DecodeError> {
    let xid = read_stream_xid(reader, in_stream, "delete xid")?;
    let relation_id = reader.u32("delete relation id")?;
    let marker_offset = reader.offset();
    let old = match reader.u8("delete tuple marker")? {
        b'K' => OldTuple::Key(decode_tuple_data(reader, pool)?),
        b'O' => OldTuple::Full(decode_tuple_data(reader, pool)?),
        other => {
            return Err(DecodeError::unknown_tag(
                "delete tuple marker",
                other,
                marker_offset,
            ));
        }
    };
    Ok(LogicalMessage::Delete {
        xid,
        relation_id,
        old,
    })
}

/// Decodes a tuple into one taken from `pool`, each value's bytes into the buffer the value at
/// its place held.
fn decode_tuple_data(
    reader: &mut Reader<'_>,
    pool: &mut TuplePool,
) -> Result<TupleData, DecodeError> {
    let column_count = usize::from(reader.u16("tuple column count")?);
    let mut tuple = pool.take();
    let values = &mut tuple.0;
    // Each column takes at least its one kind byte.
    values.reserve(
        column_count
            .min(reader.remaining())
            .saturating_sub(values.len()),
    );
    for index in 0..column_count {
        let kind_offset = reader.offset();
        if index == values.len() {
            values.push(TupleValue::Null);
        }
        let slot = &mut values[index];
        *slot = match reader.u8("tuple column kind")? {
            b'n' => TupleValue::Null,
            b'u' => TupleValue::UnchangedToast,
            b't' => {
                let text = reader.length_prefixed("tuple text value")?;
                let mut buffer = slot.take_buffer(text.len());
                buffer.extend_from_slice(text);
                TupleValue::Text(buffer)
            }
            b'b' => {
                let bytes = reader.length_prefixed("tuple binary value")?;
                let mut buffer = slot.take_buffer(bytes.len());
                buffer.extend_from_slice(bytes);
                TupleValue::Binary(buffer)
            }
            other => {
                return Err(DecodeError::unknown_tag(
                    "tuple column kind",
                    other,
                    kind_offset,
                ));
            }
        };
    }
    values.truncate(column_count);
    Ok(tuple)
}

fn decode_truncate(
    reader: &mut Reader<'_>,
    in_stream: bool,
) -> Result<LogicalMessage, DecodeError> {
    let xid = read_stream_xid(reader, in_stream, "truncate xid")?;
    let count_offset = reader.offset();
    let relation_count = reader.u32("truncate relation count")?;
    let options = reader.u8("truncate options")?;
    // Checked up front so a forged count cannot drive a huge allocation.
    let needed = u64::from(relation_count) * 4;
    if needed > reader.remaining() as u64 {
        return Err(DecodeError::InvalidField {
            what: "truncate relation count",
            offset: count_offset,
            detail: format!(
                "{relation_count} relations need {needed} bytes, only {} left",
                reader.remaining()
            ),
        });
    }
    let relation_ids = (0..relation_count)
        .map(|_| reader.u32("truncate relation id"))
        .collect::<Result<_, _>>()?;
    Ok(LogicalMessage::Truncate {
        xid,
        options,
        relation_ids,
    })
}

fn decode_logical_message(
    reader: &mut Reader<'_>,
    in_stream: bool,
) -> Result<LogicalMessage, DecodeError> {
    Ok(LogicalMessage::Message {
        xid: read_stream_xid(reader, in_stream, "logical decoding message xid")?,
        transactional: reader.u8("logical decoding message flags")? & 1 != 0,
        lsn: reader.u64("logical decoding message LSN")?,
        prefix: reader.cstring("logical decoding message prefix")?,
        content: reader
            .length_prefixed("logical decoding message content")?
            .to_vec(),
    })
}

fn decode_stream_start(reader: &mut Reader<'_>) -> Result<LogicalMessage, DecodeError> {
    Ok(LogicalMessage::StreamStart {
        xid: reader.u32("stream start xid")?,
        first_segment: reader.u8("stream start first segment flag")? == 1,
    })
}

fn decode_stream_commit(reader: &mut Reader<'_>) -> Result<LogicalMessage, DecodeError> {
    Ok(LogicalMessage::StreamCommit {
        xid: reader.u32("stream commit xid")?,
        flags: reader.u8("stream commit flags")?,
        commit_lsn: reader.u64("stream commit LSN")?,
        end_lsn: reader.u64("stream commit end LSN")?,
        commit_time: reader.i64("stream commit time")?,
    })
}

fn decode_stream_abort(reader: &mut Reader<'_>) -> Result<LogicalMessage, DecodeError> {
    let xid = reader.u32("stream abort xid")?;
    let subxid = reader.u32("stream abort subxid")?;
    // Whether the extra fields are present depends on options negotiated at
    // START_REPLICATION, not on anything in the message, so go by length.
    let (abort_lsn, abort_time) = if reader.remaining() == 0 {
        (None, None)
    } else {
        (
            Some(reader.u64("stream abort LSN")?),
            Some(reader.i64("stream abort time")?),
        )
    };
    Ok(LogicalMessage::StreamAbort {
        xid,
        subxid,
        abort_lsn,
        abort_time,
    })
}

fn decode_begin_prepare(reader: &mut Reader<'_>) -> Result<LogicalMessage, DecodeError> {
    Ok(LogicalMessage::BeginPrepare {
        prepare_lsn: reader.u64("begin prepare LSN")?,
        end_lsn: reader.u64("begin prepare end LSN")?,
        prepare_time: reader.i64("begin prepare time")?,
        xid: reader.u32("begin prepare xid")?,
        gid: reader.cstring("begin prepare gid")?,
    })
}

fn decode_prepare(reader: &mut Reader<'_>) -> Result<LogicalMessage, DecodeError> {
    Ok(LogicalMessage::Prepare {
        flags: reader.u8("prepare flags")?,
        prepare_lsn: reader.u64("prepare LSN")?,
        end_lsn: reader.u64("prepare end LSN")?,
        prepare_time: reader.i64("prepare time")?,
        xid: reader.u32("prepare xid")?,
        gid: reader.cstring("prepare gid")?,
    })
}

fn decode_commit_prepared(reader: &mut Reader<'_>) -> Result<LogicalMessage, DecodeError> {
    Ok(LogicalMessage::CommitPrepared {
        flags: reader.u8("commit prepared flags")?,
        commit_lsn: reader.u64("commit prepared LSN")?,
        end_lsn: reader.u64("commit prepared end LSN")?,
        commit_time: reader.i64("commit prepared time")?,
        xid: reader.u32("commit prepared xid")?,
        gid: reader.cstring("commit prepared gid")?,
    })
}

fn decode_rollback_prepared(reader: &mut Reader<'_>) -> Result<LogicalMessage, DecodeError> {
    Ok(LogicalMessage::RollbackPrepared {
        flags: reader.u8("rollback prepared flags")?,
        prepare_end_lsn: reader.u64("rollback prepared prepare end LSN")?,
        rollback_end_lsn: reader.u64("rollback prepared end LSN")?,
        prepare_time: reader.i64("rollback prepared prepare time")?,
        rollback_time: reader.i64("rollback prepared time")?,
        xid: reader.u32("rollback prepared xid")?,
        gid: reader.cstring("rollback prepared gid")?,
    })
}

fn decode_stream_prepare(reader: &mut Reader<'_>) -> Result<LogicalMessage, DecodeError> {
    Ok(LogicalMessage::StreamPrepare {
        flags: reader.u8("stream prepare flags")?,
        prepare_lsn: reader.u64("stream prepare LSN")?,
        end_lsn: reader.u64("stream prepare end LSN")?,
        prepare_time: reader.i64("stream prepare time")?,
        xid: reader.u32("stream prepare xid")?,
        gid: reader.cstring("stream prepare gid")?,
    })
}

#[cfg(test)]
mod tests;
