//! The materialized view behind the SQL tables and the page: closed windows (from
//! `topic_processed_events`), open windows (from the changelog's copy of each task's window
//! state), alerts and the latest rows of the state topics. Pure: records in, rows out; the
//! reader does the I/O.
//!
//! Bounds: closed windows and alerts older than the retention are dropped, and each table keeps
//! at most `max_rows` rows (the oldest windows go first), so memory stays bounded whatever
//! the topics hold. A record that cannot be read makes its table answer with an error that
//! names the record, until a later record with the same key replaces it: nothing is skipped
//! silently.
//!
//! This file holds the view itself and which table each result kind belongs to; window
//! results are in `result_row`, the rows of the alert and state tables are read from their
//! Avro records in `records`, with the named field access of `fields`.

mod fields;
mod records;
mod result_row;

use std::collections::{BTreeMap, HashMap};

use super::table::{Cell, TableId, def};
use crate::output::ResultKind;

pub use self::records::{alert_row, external_row, state_row};
pub use self::result_row::{HeatMapRow, ResultRow, SessionRow};

/// The table a result kind's rows live in.
pub fn table_of(kind: ResultKind) -> TableId {
    match kind {
        ResultKind::AppEventCount => TableId::AppEventCounts,
        ResultKind::AppEventTotals => TableId::AppEventTotals,
        ResultKind::PageClicks => TableId::PageClicks,
        ResultKind::PageHeatmap => TableId::HeatmapCells,
        ResultKind::SessionEngagement => TableId::SessionEngagement,
        ResultKind::CdcOperations => TableId::CdcOperations,
        ResultKind::LogLevelCount => TableId::LogLevels,
        ResultKind::LogErrorRate => TableId::LogErrorRates,
    }
}

/// Bounds of the view.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Closed windows ending, and alerts raised, longer ago than this are dropped (ms).
    pub retention_ms: i64,
    /// Rows kept per table at most; beyond it the oldest windows (alerts) go first.
    pub max_rows: usize,
}

#[derive(Default)]
pub struct Store {
    /// Closed results by table, then id.
    closed: HashMap<TableId, HashMap<String, ResultRow>>,
    /// Open results by the changelog entry they come from (task partition, entry key).
    open: HashMap<(i32, Vec<u8>), Vec<ResultRow>>,
    /// Alerts by id: (event time, row).
    alerts: HashMap<String, (i64, Vec<Cell>)>,
    /// State tables: row key to row.
    state: HashMap<TableId, BTreeMap<String, Vec<Cell>>>,
    /// Records that could not be read, by table and Kafka key, and why.
    broken: HashMap<TableId, BTreeMap<String, String>>,
}

impl Store {
    /// Forgets that the record with Kafka key `key` could not be read: a later record with
    /// that key replaced it.
    fn mend(&mut self, key: &str) {
        if self.broken.is_empty() {
            return;
        }
        for keys in self.broken.values_mut() {
            keys.remove(key);
        }
        self.broken.retain(|_, keys| !keys.is_empty());
    }

    pub fn put_closed(&mut self, row: ResultRow) {
        let table = table_of(row.kind);
        self.mend(&row.result_id.clone());
        self.closed
            .entry(table)
            .or_default()
            .insert(row.result_id.clone(), row);
    }

    /// The open windows of one changelog entry (none once the entry is removed).
    /// `broken_key` is the entry's key as [`Store::break_table`] was given it.
    pub fn put_open(
        &mut self,
        partition: i32,
        key: Vec<u8>,
        broken_key: &str,
        rows: Vec<ResultRow>,
    ) {
        self.mend(broken_key);
        if rows.is_empty() {
            self.open.remove(&(partition, key));
        } else {
            self.open.insert((partition, key), rows);
        }
    }

    pub fn put_alert(&mut self, id: String, event_time: i64, row: Vec<Cell>) {
        self.mend(&id);
        self.alerts.insert(id, (event_time, row));
    }

    pub fn state_row(&self, table: TableId, key: &str) -> Option<&Vec<Cell>> {
        self.state.get(&table).and_then(|rows| rows.get(key))
    }

    /// The latest row of `key` in a state table; None removes it (a tombstone).
    pub fn put_state(&mut self, table: TableId, key: String, row: Option<Vec<Cell>>) {
        self.mend(&key);
        let rows = self.state.entry(table).or_default();
        match row {
            Some(row) => {
                rows.insert(key, row);
            }
            None => {
                rows.remove(&key);
            }
        }
    }

    /// Records that the record with Kafka key `key` of `table` could not be read: the table's
    /// queries fail with `why` until a later record with that key is read.
    pub fn break_table(&mut self, table: TableId, key: String, why: String) {
        self.broken.entry(table).or_default().insert(key, why);
    }

    /// Drops what is older than the retention, then the oldest beyond `max_rows`.
    pub fn evict(&mut self, now_ms: i64, limits: Limits) {
        let horizon = now_ms.saturating_sub(limits.retention_ms);
        for rows in self.closed.values_mut() {
            rows.retain(|_, r| r.window_end >= horizon);
            if rows.len() > limits.max_rows {
                let mut ends: Vec<i64> = rows.values().map(|r| r.window_end).collect();
                ends.sort_unstable();
                let cut = ends[rows.len() - limits.max_rows];
                rows.retain(|_, r| r.window_end >= cut);
            }
        }
        self.alerts.retain(|_, (t, _)| *t >= horizon);
        if self.alerts.len() > limits.max_rows {
            let mut times: Vec<i64> = self.alerts.values().map(|(t, _)| *t).collect();
            times.sort_unstable();
            let cut = times[self.alerts.len() - limits.max_rows];
            self.alerts.retain(|_, (t, _)| *t >= cut);
        }
    }

    /// The rows of `table` now, or why it cannot answer.
    pub fn rows(&self, table: TableId) -> Result<Vec<Vec<Cell>>, String> {
        if let Some((_, why)) = self.broken.get(&table).and_then(|keys| keys.iter().next()) {
            return Err(format!("table {} cannot be read: {why}", def(table).name));
        }
        let mut out = Vec::new();
        match table {
            TableId::Alerts => {
                let mut alerts: Vec<&(i64, Vec<Cell>)> = self.alerts.values().collect();
                alerts.sort_by_key(|(t, _)| *t);
                out.extend(alerts.into_iter().map(|(_, row)| row.clone()));
            }
            TableId::Users | TableId::Bookings | TableId::Payments | TableId::ExternalReadings => {
                if let Some(rows) = self.state.get(&table) {
                    out.extend(rows.values().cloned());
                }
            }
            _ => {
                let closed = self.closed.get(&table);
                for row in closed.into_iter().flat_map(|c| c.values()) {
                    row.rows(table, &mut out);
                }
                for row in self.open.values().flatten() {
                    if table_of(row.kind) == table
                        && !closed.is_some_and(|c| c.contains_key(&row.result_id))
                    {
                        row.rows(table, &mut out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every window result (closed and open) of the given kinds, newest window first.
    pub fn results(&self, kinds: &[ResultKind]) -> Vec<&ResultRow> {
        let mut out: Vec<&ResultRow> = Vec::new();
        for kind in kinds {
            let table = table_of(*kind);
            let closed = self.closed.get(&table);
            out.extend(
                closed
                    .into_iter()
                    .flat_map(|c| c.values())
                    .filter(|r| r.kind == *kind),
            );
            out.extend(self.open.values().flatten().filter(|r| {
                r.kind == *kind && !closed.is_some_and(|c| c.contains_key(&r.result_id))
            }));
        }
        out.sort_by(|a, b| {
            b.window_start
                .cmp(&a.window_start)
                .then_with(|| a.result_id.cmp(&b.result_id))
        });
        out
    }

    /// Alerts, newest first, at most `limit`.
    pub fn recent_alerts(&self, limit: usize) -> Vec<&Vec<Cell>> {
        let mut alerts: Vec<&(i64, Vec<Cell>)> = self.alerts.values().collect();
        alerts.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
        alerts.into_iter().take(limit).map(|(_, row)| row).collect()
    }
}

#[cfg(test)]
mod tests;
