//! The SQL tables: their names, columns and documentation, and how rows of [`Cell`]s become
//! Arrow record batches. One definition serves the SQL catalog, the README and the page.

use std::sync::Arc;

use datafusion::arrow::{
    array::{
        ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder,
        StringBuilder, TimestampMicrosecondBuilder, TimestampMillisecondBuilder,
    },
    datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit},
    error::ArrowError,
    record_batch::RecordBatch,
};

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    Bool(bool),
    Float(f64),
    /// Milliseconds since the epoch (UTC).
    Millis(i64),
    /// Microseconds since the epoch (UTC).
    Micros(i64),
    /// Days since 1970-01-01.
    Days(i32),
    /// A decimal's unscaled value at its column's scale.
    Decimal(i128),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Text,
    Int,
    Bool,
    Float,
    /// `timestamptz` with millisecond precision.
    TimeMs,
    /// `timestamptz` with microsecond precision.
    TimeUs,
    Date,
    Decimal {
        precision: u8,
        scale: i8,
    },
}

impl ColType {
    fn data_type(self) -> DataType {
        let utc = || Some(Arc::from("UTC"));
        match self {
            ColType::Text => DataType::Utf8,
            ColType::Int => DataType::Int64,
            ColType::Bool => DataType::Boolean,
            ColType::Float => DataType::Float64,
            ColType::TimeMs => DataType::Timestamp(TimeUnit::Millisecond, utc()),
            ColType::TimeUs => DataType::Timestamp(TimeUnit::Microsecond, utc()),
            ColType::Date => DataType::Date32,
            ColType::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
        }
    }
}

/// The tables the SQL port and the page serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableId {
    AppEventCounts,
    AppEventTotals,
    PageClicks,
    HeatmapCells,
    SessionEngagement,
    CdcOperations,
    LogLevels,
    LogErrorRates,
    Alerts,
    Users,
    Bookings,
    Payments,
    ExternalReadings,
}

pub struct TableDef {
    pub id: TableId,
    pub name: &'static str,
    pub doc: &'static str,
    pub columns: &'static [(&'static str, ColType)],
}

use ColType::*;

const WINDOW: [(&str, ColType); 2] = [("window_start", TimeMs), ("window_end", TimeMs)];
const DECIMAL_12_2: ColType = Decimal {
    precision: 12,
    scale: 2,
};

macro_rules! windowed {
    ($($col:expr),* $(,)?) => {
        &[WINDOW[0], WINDOW[1], $($col,)* ("is_final", Bool)]
    };
}

pub const TABLES: &[TableDef] = &[
    TableDef {
        id: TableId::AppEventCounts,
        name: "app_event_counts",
        doc: "App events per window, event type and source (app events job).",
        columns: windowed![
            ("event_type", Text),
            ("source", Text),
            ("events", Int),
            ("unique_users", Int),
            ("unique_users_exact", Bool),
        ],
    },
    TableDef {
        id: TableId::AppEventTotals,
        name: "app_event_totals",
        doc: "All app events per window.",
        columns: windowed![
            ("events", Int),
            ("unique_users", Int),
            ("unique_users_exact", Bool)
        ],
    },
    TableDef {
        id: TableId::PageClicks,
        name: "page_clicks",
        doc: "Clicks and all interactions per page and window (clickstream job).",
        columns: windowed![("page_url", Text), ("clicks", Int), ("interactions", Int)],
    },
    TableDef {
        id: TableId::HeatmapCells,
        name: "heatmap_cells",
        doc: "Clicks per heat-map cell: cell (x, y) covers pixels [x*cell_px, (x+1)*cell_px) across and likewise down.",
        columns: windowed![
            ("page_url", Text),
            ("cell_px", Int),
            ("x", Int),
            ("y", Int),
            ("clicks", Int),
        ],
    },
    TableDef {
        id: TableId::SessionEngagement,
        name: "session_engagement",
        doc: "Engagement per session and window; bounce = one page.",
        columns: windowed![
            ("session_id", Text),
            ("clicks", Int),
            ("interactions", Int),
            ("pages", Int),
            ("first_event", TimeMs),
            ("last_event", TimeMs),
            ("duration_ms", Int),
            ("bounce", Bool),
        ],
    },
    TableDef {
        id: TableId::CdcOperations,
        name: "cdc_operations",
        doc: "Row changes per table, operation and window (CDC job).",
        columns: windowed![("table_name", Text), ("operation", Text), ("changes", Int)],
    },
    TableDef {
        id: TableId::LogLevels,
        name: "log_levels",
        doc: "Log lines per service, level and window (logs job).",
        columns: windowed![("service", Text), ("level", Text), ("lines", Int)],
    },
    TableDef {
        id: TableId::LogErrorRates,
        name: "log_error_rates",
        doc: "Share of ERROR and FATAL lines per service and window.",
        columns: windowed![("service", Text), ("lines", Int), ("error_rate", Float)],
    },
    TableDef {
        id: TableId::Alerts,
        name: "alerts",
        doc: "Consistency checks that failed and suspicious patterns.",
        columns: &[
            ("alert_id", Text),
            ("kind", Text),
            ("severity", Text),
            ("subject", Text),
            ("message", Text),
            ("event_time", TimeMs),
            ("window_start", TimeMs),
            ("details", Text),
        ],
    },
    TableDef {
        id: TableId::Users,
        name: "users",
        doc: "Latest row of every user (from topic_user_state).",
        columns: &[
            ("user_id", Int),
            ("external_id", Text),
            ("email", Text),
            ("full_name", Text),
            ("phone", Text),
            ("country_code", Text),
            ("loyalty_tier", Text),
            ("is_active", Bool),
            ("preferences", Text),
            ("created_at", TimeUs),
            ("updated_at", TimeUs),
            ("row_json", Text),
        ],
    },
    TableDef {
        id: TableId::Bookings,
        name: "bookings",
        doc: "Latest row of every booking (from topic_booking_state).",
        columns: &[
            ("booking_id", Int),
            ("booking_ref", Text),
            ("user_id", Int),
            ("destination", Text),
            ("hotel_name", Text),
            ("check_in_date", Date),
            ("check_out_date", Date),
            ("guests", Int),
            ("total_amount", DECIMAL_12_2),
            ("currency", Text),
            ("status", Text),
            ("details", Text),
            ("created_at", TimeUs),
            ("updated_at", TimeUs),
            ("row_json", Text),
        ],
    },
    TableDef {
        id: TableId::Payments,
        name: "payments",
        doc: "Latest row of every payment (from topic_cdc_state).",
        columns: &[
            ("payment_id", Int),
            ("booking_id", Int),
            ("amount", DECIMAL_12_2),
            ("currency", Text),
            ("method", Text),
            ("card_last4", Text),
            ("status", Text),
            ("provider_ref", Text),
            ("metadata", Text),
            ("created_at", TimeUs),
            ("updated_at", TimeUs),
            ("row_json", Text),
        ],
    },
    TableDef {
        id: TableId::ExternalReadings,
        name: "external_readings",
        doc: "Latest reading per external source and entity (from topic_external_state).",
        columns: &[
            ("source_type", Text),
            ("entity", Text),
            ("record_id", Text),
            ("pipeline", Text),
            ("location", Text),
            ("observed_at", TimeMs),
            ("fetched_at", TimeMs),
            ("payload_json", Text),
            ("quality_warnings", Text),
            ("received_at", TimeMs),
        ],
    },
];

pub fn def(id: TableId) -> &'static TableDef {
    TABLES
        .iter()
        .find(|t| t.id == id)
        .expect("every TableId has a definition")
}

pub fn schema(def: &TableDef) -> SchemaRef {
    Arc::new(Schema::new(
        def.columns
            .iter()
            .map(|(name, ty)| Field::new(*name, ty.data_type(), true))
            .collect::<Vec<_>>(),
    ))
}

/// The rows as one record batch. A cell of the wrong kind for its column is an error naming
/// the table and column (the row builders make that impossible; the check keeps it so).
pub fn batch(def: &TableDef, rows: &[Vec<Cell>]) -> Result<RecordBatch, ArrowError> {
    let wrong = |column: &str, cell: &Cell| {
        ArrowError::InvalidArgumentError(format!(
            "table {} column {column}: value {cell:?} does not fit the column",
            def.name
        ))
    };
    // One column: a builder filled from the cells of one `Cell` variant (or NULL).
    macro_rules! column {
        ($builder:expr, $cells:expr, $name:expr, $variant:ident) => {{
            let mut b = $builder;
            for cell in $cells {
                match cell {
                    Cell::Null => b.append_null(),
                    Cell::$variant(v) => b.append_value(v.clone()),
                    other => return Err(wrong($name, other)),
                }
            }
            b.finish()
        }};
    }
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(def.columns.len());
    for (index, (name, ty)) in def.columns.iter().enumerate() {
        let cells = rows.iter().map(|row| row.get(index).unwrap_or(&Cell::Null));
        let array: ArrayRef = match ty {
            Text => Arc::new(column!(StringBuilder::new(), cells, name, Text)),
            Int => Arc::new(column!(Int64Builder::new(), cells, name, Int)),
            Bool => Arc::new(column!(BooleanBuilder::new(), cells, name, Bool)),
            Float => Arc::new(column!(Float64Builder::new(), cells, name, Float)),
            TimeMs => Arc::new(column!(
                TimestampMillisecondBuilder::new().with_timezone("UTC"),
                cells,
                name,
                Millis
            )),
            TimeUs => Arc::new(column!(
                TimestampMicrosecondBuilder::new().with_timezone("UTC"),
                cells,
                name,
                Micros
            )),
            Date => Arc::new(column!(Date32Builder::new(), cells, name, Days)),
            Decimal { precision, scale } => Arc::new(
                column!(Decimal128Builder::new(), cells, name, Decimal)
                    .with_precision_and_scale(*precision, *scale)?,
            ),
        };
        arrays.push(array);
    }
    RecordBatch::try_new(schema(def), arrays)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_id_has_one_definition_with_unique_names() {
        let mut names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), TABLES.len());
        for t in TABLES {
            assert_eq!(def(t.id).name, t.name);
            let mut columns: Vec<&str> = t.columns.iter().map(|c| c.0).collect();
            columns.sort();
            columns.dedup();
            assert_eq!(
                columns.len(),
                t.columns.len(),
                "duplicate column in {}",
                t.name
            );
        }
    }

    #[test]
    fn rows_become_typed_columns_and_a_misfit_is_an_error_naming_the_column() {
        let def = def(TableId::CdcOperations);
        let row = vec![
            Cell::Millis(0),
            Cell::Millis(300_000),
            Cell::Text("public.users".into()),
            Cell::Text("INSERT".into()),
            Cell::Int(3),
            Cell::Bool(true),
        ];
        let batch = batch(def, std::slice::from_ref(&row)).unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.num_columns(), def.columns.len());
        let mut bad = row;
        bad[4] = Cell::Text("three".into());
        let error = super::batch(def, &[bad]).unwrap_err().to_string();
        assert!(error.contains("cdc_operations column changes"), "{error}");
    }
}
