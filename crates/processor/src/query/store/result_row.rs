//! One window result as the view holds it, from either source (an open window's
//! [`WindowResult`], or a closed one's Avro record), and the rows it shows in its table.

use std::collections::BTreeMap;

use apache_avro::types::Value;

use super::fields::{Fields, int_of};
use crate::output::{ResultKind, WindowResult};
use crate::query::table::{Cell, TableId};

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
    pub(super) fn rows(&self, table: TableId, out: &mut Vec<Vec<Cell>>) {
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
