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

use std::collections::{BTreeMap, HashMap};

use apache_avro::types::Value;

use super::table::{Cell, ColType, TableDef, TableId, def};
use crate::output::{ResultKind, WindowResult};

/// A window result, closed (read from the results topic) or open (computed from the
/// changelog's window state).
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub result_id: String,
    pub kind: ResultKind,
    pub window_start: i64,
    pub window_end: i64,
    pub group: BTreeMap<String, String>,
    pub events: i64,
    pub unique_users: Option<i64>,
    pub unique_users_exact: Option<bool>,
    pub heatmap: Option<HeatMapRow>,
    pub session: Option<SessionRow>,
    pub error_rate: Option<f64>,
    pub interactions: Option<i64>,
    pub is_final: bool,
}

/// Cell side in pixels and the (x, y, clicks) cells.
pub type HeatMapRow = (i64, Vec<(i64, i64, i64)>);

#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub interactions: i64,
    pub pages: i64,
    pub first_event: i64,
    pub last_event: i64,
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl ResultRow {
    /// An open window's result, as the task would emit it if the window closed now.
    pub fn open(result: WindowResult) -> ResultRow {
        ResultRow {
            result_id: result.id(),
            kind: result.kind,
            window_start: result.window_start,
            window_end: result.window_end,
            group: result
                .group
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            events: signed(result.events),
            unique_users: result.unique_users.map(|(n, _)| signed(n)),
            unique_users_exact: result.unique_users.map(|(_, exact)| exact),
            heatmap: result.heatmap.map(|(px, cells)| {
                (
                    i64::from(px),
                    cells
                        .into_iter()
                        .map(|(x, y, n)| (i64::from(x), i64::from(y), signed(n)))
                        .collect(),
                )
            }),
            session: result.session.map(|s| SessionRow {
                interactions: signed(s.interactions),
                pages: i64::from(s.pages),
                first_event: s.first_event,
                last_event: s.last_event,
            }),
            error_rate: result.error_rate,
            interactions: result.interactions.map(signed),
            is_final: false,
        }
    }

    /// A closed window's result from its `ProcessedResult` Avro value.
    pub fn closed(value: &Value) -> Result<ResultRow, String> {
        let f = Fields::of(value)?;
        let kind_name = f.text("kind")?;
        let kind = ResultKind::parse(&kind_name)
            .ok_or_else(|| format!("field kind: unknown result kind {kind_name}"))?;
        let heatmap = match f.opt("heatmap")? {
            None => None,
            Some(h) => {
                let h = Fields::of(h)?;
                let cells = match h.get("cells")? {
                    Value::Array(items) => items
                        .iter()
                        .map(|c| {
                            let c = Fields::of(c)?;
                            Ok((c.int("x")?, c.int("y")?, c.int("clicks")?))
                        })
                        .collect::<Result<Vec<_>, String>>()?,
                    other => return Err(format!("field heatmap.cells: not an array: {other:?}")),
                };
                Some((h.int("cell_px")?, cells))
            }
        };
        let session = match f.opt("session")? {
            None => None,
            Some(s) => {
                let s = Fields::of(s)?;
                Some(SessionRow {
                    interactions: s.int("interactions")?,
                    pages: s.int("pages")?,
                    first_event: s.int("first_event")?,
                    last_event: s.int("last_event")?,
                })
            }
        };
        Ok(ResultRow {
            result_id: f.text("result_id")?,
            kind,
            window_start: f.int("window_start")?,
            window_end: f.int("window_end")?,
            group: f.string_map("group_key")?,
            events: f.int("events")?,
            unique_users: f.opt("unique_users")?.map(int_of).transpose()?,
            unique_users_exact: f
                .opt("unique_users_exact")?
                .map(|v| match v {
                    Value::Boolean(b) => Ok(*b),
                    other => Err(format!("field unique_users_exact: {other:?}")),
                })
                .transpose()?,
            heatmap,
            session,
            error_rate: f
                .opt("error_rate")?
                .map(|v| match v {
                    Value::Double(d) => Ok(*d),
                    other => Err(format!("field error_rate: {other:?}")),
                })
                .transpose()?,
            interactions: f.opt("interactions")?.map(int_of).transpose()?,
            is_final: true,
        })
    }

    fn group(&self, name: &str) -> Cell {
        self.group
            .get(name)
            .map_or(Cell::Null, |v| Cell::Text(v.clone()))
    }

    /// Its rows in `table` (a heat map has one per cell).
    fn rows(&self, table: TableId, out: &mut Vec<Vec<Cell>>) {
        let int = |v: Option<i64>| v.map_or(Cell::Null, Cell::Int);
        let mut row = vec![
            Cell::Millis(self.window_start),
            Cell::Millis(self.window_end),
        ];
        let columns: Vec<Cell> = match table {
            TableId::AppEventCounts => vec![
                self.group("event_type"),
                self.group("source"),
                Cell::Int(self.events),
                int(self.unique_users),
                self.unique_users_exact.map_or(Cell::Null, Cell::Bool),
            ],
            TableId::AppEventTotals => vec![
                Cell::Int(self.events),
                int(self.unique_users),
                self.unique_users_exact.map_or(Cell::Null, Cell::Bool),
            ],
            TableId::PageClicks => vec![
                self.group("page_url"),
                Cell::Int(self.events),
                int(self.interactions),
            ],
            TableId::HeatmapCells => {
                let Some((px, cells)) = &self.heatmap else {
                    return;
                };
                for (x, y, clicks) in cells {
                    let mut cell_row = row.clone();
                    cell_row.extend([
                        self.group("page_url"),
                        Cell::Int(*px),
                        Cell::Int(*x),
                        Cell::Int(*y),
                        Cell::Int(*clicks),
                        Cell::Bool(self.is_final),
                    ]);
                    out.push(cell_row);
                }
                return;
            }
            TableId::SessionEngagement => {
                let s = self.session.as_ref();
                vec![
                    self.group("session_id"),
                    Cell::Int(self.events),
                    int(s.map(|s| s.interactions)),
                    int(s.map(|s| s.pages)),
                    s.map_or(Cell::Null, |s| Cell::Millis(s.first_event)),
                    s.map_or(Cell::Null, |s| Cell::Millis(s.last_event)),
                    int(s.map(|s| s.last_event - s.first_event)),
                    s.map_or(Cell::Null, |s| Cell::Bool(s.pages == 1)),
                ]
            }
            TableId::CdcOperations => vec![
                self.group("table"),
                self.group("operation"),
                Cell::Int(self.events),
            ],
            TableId::LogLevels => vec![
                self.group("service"),
                self.group("level"),
                Cell::Int(self.events),
            ],
            TableId::LogErrorRates => vec![
                self.group("service"),
                Cell::Int(self.events),
                self.error_rate.map_or(Cell::Null, Cell::Float),
            ],
            _ => return,
        };
        row.extend(columns);
        row.push(Cell::Bool(self.is_final));
        out.push(row);
    }
}

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

/// An alert from its `ProcessorAlert` Avro value.
pub fn alert_row(value: &Value) -> Result<(String, i64, Vec<Cell>), String> {
    let f = Fields::of(value)?;
    let id = f.text("alert_id")?;
    let event_time = f.int("event_time")?;
    let details: serde_json::Map<String, serde_json::Value> = f
        .string_map("details")?
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let row = vec![
        Cell::Text(id.clone()),
        Cell::Text(f.text("kind")?),
        Cell::Text(f.text("severity")?),
        Cell::Text(f.text("subject")?),
        Cell::Text(f.text("message")?),
        Cell::Millis(event_time),
        f.opt("window_start")?
            .map(int_of)
            .transpose()?
            .map_or(Cell::Null, Cell::Millis),
        Cell::Text(serde_json::Value::Object(details).to_string()),
    ];
    Ok((id, event_time, row))
}

/// An external reading from its `ExternalData` Avro value, with its entity (the state key's
/// part after the source type).
pub fn external_row(key: &str, value: &Value) -> Result<Vec<Cell>, String> {
    let f = Fields::of(value)?;
    let source_type = f.text("source_type")?;
    let entity = key
        .strip_prefix(&format!("{source_type}/"))
        .unwrap_or(key)
        .to_string();
    let time = |name: &str| -> Result<Cell, String> {
        Ok(f.opt(name)?
            .map(int_of)
            .transpose()?
            .map_or(Cell::Null, Cell::Millis))
    };
    let text = |name: &str| -> Result<Cell, String> {
        Ok(match f.opt(name)? {
            None => Cell::Null,
            Some(Value::String(s)) => Cell::Text(s.clone()),
            Some(other) => Cell::Text(platform::avro::to_json(other).to_string()),
        })
    };
    Ok(vec![
        Cell::Text(source_type),
        Cell::Text(entity),
        text("record_id")?,
        text("pipeline")?,
        text("location")?,
        time("observed_at")?,
        time("fetched_at")?,
        text("payload_json")?,
        text("quality_warnings")?,
        time("received_at")?,
    ])
}

/// A row of a state table from the `after_values` of its CDCChange Avro value. A column the
/// change did not carry (`Unavailable`: an unchanged TOASTed value) keeps its value from
/// `previous`.
pub fn state_row(
    table: &TableDef,
    value: &Value,
    previous: Option<&Vec<Cell>>,
) -> Result<Vec<Cell>, String> {
    let f = Fields::of(value)?;
    let after = match f.opt("after_values")? {
        Some(Value::Map(map)) => map,
        Some(other) => return Err(format!("field after_values: not a map: {other:?}")),
        None => return Err("field after_values is null (a state record is a row image)".into()),
    };
    let mut row = Vec::with_capacity(table.columns.len());
    for (index, (name, ty)) in table.columns.iter().enumerate() {
        if *name == "row_json" {
            let json: serde_json::Map<String, serde_json::Value> = after
                .iter()
                .map(|(k, v)| (k.clone(), platform::avro::to_json(v)))
                .collect();
            row.push(Cell::Text(serde_json::Value::Object(json).to_string()));
            continue;
        }
        let cell = match after.get(*name).map(unwrap_union) {
            None => Cell::Null,
            Some(v) if is_unavailable(v) => previous
                .and_then(|p| p.get(index).cloned())
                .unwrap_or(Cell::Null),
            Some(v) => column_cell(v, *ty).map_err(|e| format!("column {name}: {e}"))?,
        };
        row.push(cell);
    }
    Ok(row)
}

fn is_unavailable(value: &Value) -> bool {
    matches!(value, Value::Record(fields) if fields.iter().any(|(k, _)| k == "reason"))
}

/// One column value of a CDCChange (a branch of its value union) as a cell of `ty`.
fn column_cell(value: &Value, ty: ColType) -> Result<Cell, String> {
    let inner = |v: &Value| -> Option<Value> {
        match v {
            Value::Record(fields) if fields.len() == 1 => Some(unwrap_union(&fields[0].1).clone()),
            Value::Record(fields) => fields
                .iter()
                .find(|(k, _)| k == "text")
                .map(|(_, v)| unwrap_union(v).clone()),
            _ => None,
        }
    };
    let cell = match (ty, value) {
        (_, Value::Null) => Cell::Null,
        (ColType::Int, Value::Int(i)) => Cell::Int(i64::from(*i)),
        (ColType::Int, Value::Long(i)) => Cell::Int(*i),
        (ColType::Bool, Value::Boolean(b)) => Cell::Bool(*b),
        (ColType::Float, Value::Double(d)) => Cell::Float(*d),
        (ColType::Float, Value::Float(d)) => Cell::Float(f64::from(*d)),
        (ColType::Text, Value::String(s)) => Cell::Text(s.clone()),
        (ColType::Text, Value::Int(i)) => Cell::Text(i.to_string()),
        (ColType::Text, Value::Long(i)) => Cell::Text(i.to_string()),
        (ColType::Text, Value::Boolean(b)) => Cell::Text(b.to_string()),
        (ColType::Text, v @ Value::Record(_)) => match inner(v) {
            Some(Value::String(s)) => Cell::Text(s),
            _ => return Err(format!("{v:?} has no text form")),
        },
        (ColType::TimeUs, v @ Value::Record(_)) => match inner(v) {
            Some(Value::TimestampMicros(us)) => Cell::Micros(us),
            _ => return Err(format!("{v:?} is not a timestamptz")),
        },
        (ColType::Date, v @ Value::Record(_)) => match inner(v) {
            Some(Value::Date(days)) => Cell::Days(days),
            _ => return Err(format!("{v:?} is not a date")),
        },
        (ColType::Decimal { scale, .. }, v @ Value::Record(_)) => match inner(v) {
            Some(Value::String(text)) => {
                let mut d: rust_decimal::Decimal = text
                    .parse()
                    .map_err(|e| format!("numeric {text:?} is not a finite decimal: {e}"))?;
                d.rescale(u32::try_from(scale).unwrap_or(0));
                Cell::Decimal(d.mantissa())
            }
            _ => return Err(format!("{v:?} is not a numeric")),
        },
        (ty, v) => return Err(format!("{v:?} does not fit a {ty:?} column")),
    };
    Ok(cell)
}

fn unwrap_union(value: &Value) -> &Value {
    match value {
        Value::Union(_, inner) => unwrap_union(inner),
        other => other,
    }
}

fn int_of(value: &Value) -> Result<i64, String> {
    match unwrap_union(value) {
        Value::Int(i) | Value::Date(i) => Ok(i64::from(*i)),
        Value::Long(i)
        | Value::TimestampMillis(i)
        | Value::TimestampMicros(i)
        | Value::TimeMicros(i) => Ok(*i),
        other => Err(format!("not an integer: {other:?}")),
    }
}

/// Named access to a decoded Avro record, with errors naming the field.
struct Fields<'a>(&'a [(String, Value)]);

impl<'a> Fields<'a> {
    fn of(value: &'a Value) -> Result<Fields<'a>, String> {
        match unwrap_union(value) {
            Value::Record(fields) => Ok(Fields(fields)),
            other => Err(format!("not an Avro record: {other:?}")),
        }
    }

    fn get(&self, name: &str) -> Result<&'a Value, String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| unwrap_union(v))
            .ok_or_else(|| format!("field {name} is missing"))
    }

    fn opt(&self, name: &str) -> Result<Option<&'a Value>, String> {
        Ok(match self.0.iter().find(|(k, _)| k == name) {
            None => None,
            Some((_, v)) => match unwrap_union(v) {
                Value::Null => None,
                v => Some(v),
            },
        })
    }

    fn text(&self, name: &str) -> Result<String, String> {
        match self.get(name)? {
            Value::String(s) | Value::Enum(_, s) => Ok(s.clone()),
            other => Err(format!("field {name}: not a string: {other:?}")),
        }
    }

    fn int(&self, name: &str) -> Result<i64, String> {
        int_of(self.get(name)?).map_err(|e| format!("field {name}: {e}"))
    }

    fn string_map(&self, name: &str) -> Result<BTreeMap<String, String>, String> {
        match self.get(name)? {
            Value::Map(map) => map
                .iter()
                .map(|(k, v)| match unwrap_union(v) {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Err(format!("field {name}.{k}: not a string: {other:?}")),
                })
                .collect(),
            other => Err(format!("field {name}: not a map: {other:?}")),
        }
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
