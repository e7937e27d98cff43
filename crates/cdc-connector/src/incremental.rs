//! Ad-hoc re-snapshot of tables while streaming, with DBLog's watermarks: for each chunk of a
//! table (in primary-key order) the connector writes a low watermark, selects the chunk, and
//! writes a high watermark, all as logical messages. Changes the stream shows between the two
//! watermarks are newer than or as new as the chunk's rows, so those keys are dropped from the
//! chunk; the rest is published as READ at the high watermark. Each key's records therefore
//! stay in commit order, and the stream never stops.
//!
//! Requested with `SELECT pg_logical_emit_message(true, 'cdc_connector.signal',
//! '{"type": "execute-snapshot", "tables": ["public.bookings"]}')`.

use std::collections::{HashSet, VecDeque};

use pgoutput::{copy::parse_lsn, row::TypeNames};
use serde::Deserialize;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::{
    changes::{ChangeEvent, Position},
    error::{ConnectorError, ErrorKind},
    record,
    snapshot::SnapshotTable,
    source::setup::{quote_ident, quote_literal},
};

pub const SIGNAL_PREFIX: &str = "cdc_connector.signal";
pub const WATERMARK_PREFIX: &str = "cdc_connector.watermark";

#[derive(Debug, Deserialize)]
struct Signal {
    #[serde(rename = "type")]
    kind: String,
    tables: Vec<String>,
}

/// The tables an `execute-snapshot` signal asks for.
pub fn parse_signal(content: &[u8]) -> Result<Vec<String>, String> {
    let signal: Signal = serde_json::from_slice(content)
        .map_err(|e| format!("a signal must be {{\"type\": \"execute-snapshot\", \"tables\": [\"schema.table\", ...]}}: {e}"))?;
    if signal.kind != "execute-snapshot" {
        return Err(format!(
            "unknown signal type {:?} (supported: execute-snapshot)",
            signal.kind
        ));
    }
    Ok(signal.tables)
}

struct Window {
    id: u64,
    low_seen: bool,
    rows: Vec<(String, ChangeEvent)>,
    changed: HashSet<String>,
    /// The snapshot the chunk was read in.
    snapshot: TransactionSnapshot,
}

/// `pg_current_snapshot()`: which transactions a chunk's rows reflect. A transaction's commit
/// record can precede the low watermark in the WAL while it is not yet visible to the chunk's
/// query; its changes are then newer than the chunk even though the stream shows them before
/// the window, so visibility, not only position, decides.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TransactionSnapshot {
    xmin: u64,
    xmax: u64,
    in_progress: HashSet<u64>,
}

impl TransactionSnapshot {
    /// Parses `xmin:xmax:xip,xip,...`.
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, ':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let in_progress = parts
            .next()?
            .split(',')
            .filter(|x| !x.is_empty())
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        Some(Self {
            xmin,
            xmax,
            in_progress,
        })
    }

    /// Whether the 32-bit xid pgoutput reports is visible. It is placed in the epoch of the
    /// snapshot's 64-bit ids: just above xmax it is a newer transaction, far above it one of the
    /// previous epoch.
    fn sees(&self, xid: u32) -> bool {
        let epoch = self.xmax & !0xFFFF_FFFF;
        let mut full = epoch | u64::from(xid);
        if full > self.xmax && full - self.xmax >= 1 << 31 && epoch > 0 {
            full -= 1 << 32;
        }
        full < self.xmin || (full < self.xmax && !self.in_progress.contains(&full))
    }
}

pub struct IncrementalSnapshot {
    tables: VecDeque<SnapshotTable>,
    types: TypeNames,
    /// The key (text values) of the last row read of the current table.
    cursor: Option<Vec<String>>,
    window: Option<Window>,
    next_window: u64,
    chunk_rows: usize,
}

impl IncrementalSnapshot {
    pub fn new(tables: Vec<SnapshotTable>, types: TypeNames, chunk_rows: usize) -> Self {
        Self {
            tables: tables.into(),
            types,
            cursor: None,
            window: None,
            next_window: 0,
            chunk_rows: chunk_rows.max(1),
        }
    }

    pub fn add_tables(&mut self, tables: Vec<SnapshotTable>) {
        self.tables.extend(tables);
    }

    /// A change seen in the stream while a window is open: it supersedes the chunk's row of its
    /// key when it comes after the low watermark, or when the chunk's snapshot does not see it.
    pub fn note_change(&mut self, change: &ChangeEvent) {
        if let Some(window) = &mut self.window
            && (window.low_seen || !window.snapshot.sees(change.position.xid))
        {
            window.changed.insert(record::kafka_key(change));
        }
    }

    /// A watermark seen in the stream. At the current window's high watermark, returns the
    /// chunk's rows still to publish (READ); the caller then opens the next window.
    pub fn on_watermark(&mut self, content: &[u8]) -> Option<Vec<ChangeEvent>> {
        let text = std::str::from_utf8(content).ok()?;
        let (kind, id) = text.split_once(':')?;
        let id: u64 = id.parse().ok()?;
        let window = self.window.as_mut().filter(|w| w.id == id)?;
        match kind {
            "low" => {
                window.low_seen = true;
                None
            }
            "high" => {
                let window = self.window.take()?;
                Some(
                    window
                        .rows
                        .into_iter()
                        .filter(|(key, _)| !window.changed.contains(key))
                        .map(|(_, row)| row)
                        .collect(),
                )
            }
            _ => None,
        }
    }

    /// Writes the low watermark, reads the next chunk and writes the high watermark. Returns
    /// false when every table is done.
    pub async fn open_window(&mut self, client: &Client) -> Result<bool, ConnectorError> {
        // A failed query is classified like every PostgreSQL error (a lost connection is
        // transient: the window is read again by the next session).
        let query_failed =
            |e: tokio_postgres::Error| ConnectorError::postgres("re-snapshot query", &e);
        while let Some(table) = self.tables.front() {
            let key_columns: Vec<usize> = table
                .relation
                .columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_key)
                .map(|(i, _)| i)
                .collect();
            if key_columns.is_empty() {
                tracing::warn!(table = %table.qualified_name, "cannot re-snapshot a table without primary key; skipped");
                self.tables.pop_front();
                continue;
            }
            let id = self.next_window;
            self.next_window += 1;
            let low_lsn: String = client
                .query_one(
                    "SELECT pg_logical_emit_message(false, $1, $2)::text",
                    &[&WATERMARK_PREFIX, &format!("low:{id}")],
                )
                .await
                .map_err(query_failed)?
                .get(0);
            let names = key_columns
                .iter()
                .map(|&i| quote_ident(&table.relation.columns[i].name))
                .collect::<Vec<_>>()
                .join(", ");
            let after = match &self.cursor {
                Some(values) => {
                    let literals = values
                        .iter()
                        .zip(&key_columns)
                        .map(|(value, &i)| {
                            format!("{}::{}", quote_literal(value), table.column_types[i])
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!(" WHERE ({names}) > ({literals})")
                }
                None => String::new(),
            };
            let sql = format!(
                "SELECT {} FROM {}{after} ORDER BY {names} LIMIT {}",
                table.select_list(),
                table.sql_name(),
                self.chunk_rows
            );
            let position = Position {
                commit_lsn: parse_lsn(&low_lsn).unwrap_or_default(),
                event_lsn: parse_lsn(&low_lsn).unwrap_or_default(),
                xid: 0,
                sequence: 0,
                commit_time_unix_micros: crate::unix_micros_now(),
            };
            let mut rows = Vec::new();
            let mut last_key = None;
            let mut snapshot_text = String::new();
            let sql = format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_current_snapshot()::text; {sql}; COMMIT"
            );
            // Statements complete in order: BEGIN, the snapshot, the chunk, COMMIT.
            let mut completed_statements = 0;
            for message in client.simple_query(&sql).await.map_err(query_failed)? {
                let row = match message {
                    SimpleQueryMessage::CommandComplete(_) => {
                        completed_statements += 1;
                        continue;
                    }
                    SimpleQueryMessage::Row(row) => row,
                    _ => continue,
                };
                if completed_statements == 1 {
                    snapshot_text = row.get(0).unwrap_or_default().to_string();
                    continue;
                }
                last_key = Some(
                    key_columns
                        .iter()
                        .map(|&i| row.get(i).unwrap_or_default().to_string())
                        .collect(),
                );
                // A row that cannot be decoded stops the re-snapshot: never a row skipped.
                let change = table
                    .read_change(&row, &self.types, position)
                    .map_err(|error| {
                        let key = key_columns
                            .iter()
                            .map(|&i| {
                                format!(
                                    "{}={}",
                                    table.relation.columns[i].name,
                                    row.get(i).unwrap_or("NULL")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", ");
                        ConnectorError::new(
                            ErrorKind::Undecodable,
                            format!("re-snapshot of {}", table.qualified_name),
                            format!("the row with key {key} cannot be decoded: {error}"),
                        )
                    })?;
                rows.push((record::kafka_key(&change), change));
            }
            if rows.len() < self.chunk_rows {
                tracing::info!(table = %table.qualified_name, "re-snapshot of the table read to its end");
                self.tables.pop_front();
                self.cursor = None;
            } else {
                self.cursor = last_key;
            }
            if rows.is_empty() {
                continue;
            }
            client
                .query_one(
                    "SELECT pg_logical_emit_message(false, $1, $2)::text",
                    &[&WATERMARK_PREFIX, &format!("high:{id}")],
                )
                .await
                .map_err(query_failed)?;
            // Without a readable snapshot every change in the window counts as unseen: safe, at
            // worst fewer rows re-read.
            let snapshot =
                TransactionSnapshot::parse(&snapshot_text).unwrap_or(TransactionSnapshot {
                    xmin: 0,
                    xmax: 0,
                    in_progress: HashSet::new(),
                });
            self.window = Some(Window {
                id,
                low_seen: false,
                rows,
                changed: HashSet::new(),
                snapshot,
            });
            return Ok(true);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use pgoutput::row::{ColumnValue, TypedValue};

    use super::*;
    use crate::changes::Operation;

    fn row(id: i64, operation: Operation) -> ChangeEvent {
        ChangeEvent {
            table: Arc::from("public.users"),
            operation,
            primary_key: vec![("user_id".into(), ColumnValue::Value(TypedValue::Long(id)))],
            before: None,
            after: None,
            position: Position {
                commit_lsn: 1,
                event_lsn: 1,
                xid: 0,
                sequence: 0,
                commit_time_unix_micros: 0,
            },
            table_schema: None,
        }
    }

    fn with_window(rows: Vec<ChangeEvent>) -> IncrementalSnapshot {
        let mut snapshot = IncrementalSnapshot::new(Vec::new(), TypeNames::new(), 10);
        snapshot.window = Some(Window {
            id: 3,
            low_seen: false,
            rows: rows
                .into_iter()
                .map(|r| (record::kafka_key(&r), r))
                .collect(),
            changed: HashSet::new(),
            snapshot: TransactionSnapshot::parse("100:110:105").unwrap(),
        });
        snapshot
    }

    #[test]
    fn keys_changed_between_the_watermarks_are_dropped_from_the_chunk() {
        let mut snapshot = with_window(vec![
            row(1, Operation::Read),
            row(2, Operation::Read),
            row(3, Operation::Read),
        ]);
        snapshot.note_change(&row(1, Operation::Update)); // before the low watermark: kept
        assert_eq!(snapshot.on_watermark(b"low:3"), None);
        snapshot.note_change(&row(2, Operation::Update)); // inside the window: superseded
        let published = snapshot
            .on_watermark(b"high:3")
            .expect("rows at the high watermark");
        let ids: Vec<&ColumnValue> = published.iter().map(|r| &r.primary_key[0].1).collect();
        assert_eq!(
            ids,
            vec![
                &ColumnValue::Value(TypedValue::Long(1)),
                &ColumnValue::Value(TypedValue::Long(3))
            ]
        );
    }

    #[test]
    fn a_change_the_chunk_did_not_see_supersedes_it_even_before_the_low_watermark() {
        let mut snapshot = with_window(vec![row(1, Operation::Read), row(2, Operation::Read)]);
        let mut unseen = row(1, Operation::Update);
        unseen.position.xid = 105; // in progress for the chunk's query, committed before the low mark
        snapshot.note_change(&unseen);
        let mut seen = row(2, Operation::Update);
        seen.position.xid = 99;
        snapshot.note_change(&seen);
        snapshot.on_watermark(b"low:3");
        let published = snapshot.on_watermark(b"high:3").unwrap();
        assert_eq!(published.len(), 1);
        assert_eq!(
            published[0].primary_key[0].1,
            ColumnValue::Value(TypedValue::Long(2))
        );
    }

    #[test]
    fn snapshot_visibility() {
        let snapshot = TransactionSnapshot::parse("100:110:103,107").unwrap();
        assert!(snapshot.sees(99));
        assert!(snapshot.sees(104));
        assert!(!snapshot.sees(103));
        assert!(!snapshot.sees(110));
        assert!(!snapshot.sees(200));
        let next_epoch = TransactionSnapshot::parse("4294967396:4294967406:").unwrap();
        assert!(next_epoch.sees(50), "a low xid of the snapshot's epoch");
        assert!(
            next_epoch.sees(u32::MAX - 5),
            "a transaction of the previous epoch"
        );
        assert!(!next_epoch.sees(120), "a newer transaction");
        assert!(TransactionSnapshot::parse("5:9:").is_some_and(|s| s.in_progress.is_empty()));
        assert!(TransactionSnapshot::parse("garbage").is_none());
    }

    #[test]
    fn other_windows_and_garbage_are_ignored() {
        let mut snapshot = with_window(vec![row(1, Operation::Read)]);
        assert_eq!(snapshot.on_watermark(b"high:2"), None);
        assert_eq!(snapshot.on_watermark(b"nonsense"), None);
        assert_eq!(snapshot.on_watermark(&[0xff]), None);
        assert_eq!(
            snapshot.on_watermark(b"high:3").map(|rows| rows.len()),
            Some(1)
        );
    }

    #[test]
    fn signals_are_validated() {
        assert_eq!(
            parse_signal(br#"{"type": "execute-snapshot", "tables": ["public.bookings"]}"#)
                .unwrap(),
            vec!["public.bookings"]
        );
        assert!(parse_signal(br#"{"type": "stop"}"#).is_err());
        assert!(
            parse_signal(b"not json")
                .unwrap_err()
                .contains("execute-snapshot")
        );
    }
}
