//! What stage 2 produces, as plain values, and their Avro form (schemas in `schemas/`).

use std::collections::BTreeMap;

use apache_avro::types::Value;

use crate::routed::Routed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    AppEventCount,
    AppEventTotals,
    PageClicks,
    PageHeatmap,
    SessionEngagement,
    CdcOperations,
    LogLevelCount,
    LogErrorRate,
}

impl ResultKind {
    const SYMBOLS: [&'static str; 8] = [
        "APP_EVENT_COUNT",
        "APP_EVENT_TOTALS",
        "PAGE_CLICKS",
        "PAGE_HEATMAP",
        "SESSION_ENGAGEMENT",
        "CDC_OPERATIONS",
        "LOG_LEVEL_COUNT",
        "LOG_ERROR_RATE",
    ];

    fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        Self::SYMBOLS[self.index()]
    }

    pub const ALL: [ResultKind; 8] = [
        ResultKind::AppEventCount,
        ResultKind::AppEventTotals,
        ResultKind::PageClicks,
        ResultKind::PageHeatmap,
        ResultKind::SessionEngagement,
        ResultKind::CdcOperations,
        ResultKind::LogLevelCount,
        ResultKind::LogErrorRate,
    ];

    /// The kind of an Avro `ResultKind` symbol.
    pub fn parse(symbol: &str) -> Option<ResultKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == symbol)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub interactions: u64,
    pub pages: u32,
    pub first_event: i64,
    pub last_event: i64,
}

/// Heat-map cells: (x, y, clicks).
pub type HeatCells = Vec<(i32, i32, u64)>;

/// One final window result.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    pub job: &'static str,
    pub kind: ResultKind,
    pub window_start: i64,
    pub window_end: i64,
    /// Grouping columns in a fixed order; their values joined by `|` end the result id.
    pub group: Vec<(&'static str, String)>,
    pub events: u64,
    pub unique_users: Option<(u64, bool)>,
    /// Cell side in pixels, and the (x, y, clicks) cells with clicks.
    pub heatmap: Option<(u32, HeatCells)>,
    pub session: Option<Session>,
    pub error_rate: Option<f64>,
    pub interactions: Option<u64>,
}

impl WindowResult {
    pub fn new(
        job: &'static str,
        kind: ResultKind,
        window_start: i64,
        window_end: i64,
        group: Vec<(&'static str, String)>,
        events: u64,
    ) -> Self {
        WindowResult {
            job,
            kind,
            window_start,
            window_end,
            group,
            events,
            unique_users: None,
            heatmap: None,
            session: None,
            error_rate: None,
            interactions: None,
        }
    }

    /// `job/KIND/window_start/v1|v2`: deterministic, the Kafka key and `result_id`.
    pub fn id(&self) -> String {
        let values: Vec<&str> = self.group.iter().map(|(_, v)| v.as_str()).collect();
        format!(
            "{}/{}/{}/{}",
            self.job,
            self.kind.as_str(),
            self.window_start,
            values.join("|")
        )
    }

    pub fn to_avro(&self) -> Value {
        let long_or_null = |v: Option<u64>| match v {
            Some(v) => Value::Union(1, Box::new(Value::Long(saturating(v)))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        let group: std::collections::HashMap<String, Value> = self
            .group
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::String(v.clone())))
            .collect();
        let heatmap = match &self.heatmap {
            None => Value::Union(0, Box::new(Value::Null)),
            Some((cell_px, cells)) => Value::Union(
                1,
                Box::new(Value::Record(vec![
                    (
                        "cell_px".into(),
                        Value::Int(i32::try_from(*cell_px).unwrap_or(i32::MAX)),
                    ),
                    (
                        "cells".into(),
                        Value::Array(
                            cells
                                .iter()
                                .map(|(x, y, clicks)| {
                                    Value::Record(vec![
                                        ("x".into(), Value::Int(*x)),
                                        ("y".into(), Value::Int(*y)),
                                        ("clicks".into(), Value::Long(saturating(*clicks))),
                                    ])
                                })
                                .collect(),
                        ),
                    ),
                ])),
            ),
        };
        let session = match &self.session {
            None => Value::Union(0, Box::new(Value::Null)),
            Some(s) => Value::Union(
                1,
                Box::new(Value::Record(vec![
                    (
                        "interactions".into(),
                        Value::Long(saturating(s.interactions)),
                    ),
                    (
                        "pages".into(),
                        Value::Int(i32::try_from(s.pages).unwrap_or(i32::MAX)),
                    ),
                    ("first_event".into(), Value::TimestampMillis(s.first_event)),
                    ("last_event".into(), Value::TimestampMillis(s.last_event)),
                    (
                        "duration_ms".into(),
                        Value::Long(s.last_event - s.first_event),
                    ),
                    ("bounce".into(), Value::Boolean(s.pages == 1)),
                ])),
            ),
        };
        Value::Record(vec![
            ("result_id".into(), Value::String(self.id())),
            ("job".into(), Value::String(self.job.into())),
            (
                "kind".into(),
                Value::Enum(self.kind.index() as u32, self.kind.as_str().into()),
            ),
            (
                "window_start".into(),
                Value::TimestampMillis(self.window_start),
            ),
            ("window_end".into(), Value::TimestampMillis(self.window_end)),
            ("group_key".into(), Value::Map(group)),
            ("events".into(), Value::Long(saturating(self.events))),
            (
                "unique_users".into(),
                long_or_null(self.unique_users.map(|u| u.0)),
            ),
            (
                "unique_users_exact".into(),
                match self.unique_users {
                    Some((_, exact)) => Value::Union(1, Box::new(Value::Boolean(exact))),
                    None => Value::Union(0, Box::new(Value::Null)),
                },
            ),
            ("heatmap".into(), heatmap),
            ("session".into(), session),
            (
                "error_rate".into(),
                match self.error_rate {
                    Some(r) => Value::Union(1, Box::new(Value::Double(r))),
                    None => Value::Union(0, Box::new(Value::Null)),
                },
            ),
            ("interactions".into(), long_or_null(self.interactions)),
        ])
    }
}

fn saturating(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    UnknownKey,
    MissingBooking,
    InvalidStatusTransition,
    DeleteBurst,
    FailedPayments,
    LargeRefund,
    FatalLog,
}

impl AlertKind {
    const SYMBOLS: [&'static str; 7] = [
        "UNKNOWN_KEY",
        "MISSING_BOOKING",
        "INVALID_STATUS_TRANSITION",
        "DELETE_BURST",
        "FAILED_PAYMENTS",
        "LARGE_REFUND",
        "FATAL_LOG",
    ];

    pub fn as_str(self) -> &'static str {
        Self::SYMBOLS[self as usize]
    }

    fn critical(self) -> bool {
        matches!(self, AlertKind::FatalLog | AlertKind::MissingBooking)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub kind: AlertKind,
    /// Deterministic: what raised it (a change id, a window), so a repeat has the same id.
    pub id_suffix: String,
    pub subject: String,
    pub message: String,
    pub event_time: i64,
    pub window_start: Option<i64>,
    pub details: BTreeMap<String, String>,
}

impl Alert {
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind.as_str(), self.id_suffix)
    }

    pub fn to_avro(&self) -> Value {
        let critical = self.kind.critical();
        Value::Record(vec![
            ("alert_id".into(), Value::String(self.id())),
            (
                "kind".into(),
                Value::Enum(self.kind as u32, self.kind.as_str().into()),
            ),
            (
                "severity".into(),
                Value::Enum(
                    u32::from(critical),
                    if critical { "CRITICAL" } else { "WARNING" }.into(),
                ),
            ),
            ("subject".into(), Value::String(self.subject.clone())),
            ("message".into(), Value::String(self.message.clone())),
            ("event_time".into(), Value::TimestampMillis(self.event_time)),
            (
                "window_start".into(),
                match self.window_start {
                    Some(w) => Value::Union(1, Box::new(Value::TimestampMillis(w))),
                    None => Value::Union(0, Box::new(Value::Null)),
                },
            ),
            (
                "details".into(),
                Value::Map(
                    self.details
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect(),
                ),
            ),
        ])
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LateEvent {
    pub job: &'static str,
    pub lane: &'static str,
    pub source_topic: &'static str,
    pub source_partition: i32,
    pub source_offset: i64,
    pub event_time: i64,
    pub window_start: i64,
    pub watermark: i64,
}

impl LateEvent {
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.lane, self.source_topic, self.source_partition, self.source_offset
        )
    }

    pub fn to_avro(&self) -> Value {
        Value::Record(vec![
            ("late_id".into(), Value::String(self.id())),
            ("job".into(), Value::String(self.job.into())),
            ("lane".into(), Value::String(self.lane.into())),
            (
                "source_topic".into(),
                Value::String(self.source_topic.into()),
            ),
            ("source_partition".into(), Value::Int(self.source_partition)),
            ("source_offset".into(), Value::Long(self.source_offset)),
            ("event_time".into(), Value::TimestampMillis(self.event_time)),
            (
                "window_start".into(),
                Value::TimestampMillis(self.window_start),
            ),
            ("watermark".into(), Value::TimestampMillis(self.watermark)),
        ])
    }
}

/// Everything stage 2 asks the engine to write (in the current transaction).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Result(WindowResult),
    Alert(Alert),
    Late(LateEvent),
    /// A state topic record: the input record that made the state (already framed), or a
    /// tombstone.
    State {
        topic: &'static str,
        key: String,
        record: Option<Vec<u8>>,
    },
    /// A record derived in stage 2 for another stage-2 lane (back into the repartition topic).
    Derived {
        key: String,
        routed: Routed,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The symbols of the enum field `field` of a schema file, in order.
    fn symbols(schema: &str, field: &str) -> Vec<String> {
        let schema: serde_json::Value = serde_json::from_str(schema).unwrap();
        let fields = schema["fields"].as_array().unwrap();
        let field = fields.iter().find(|f| f["name"] == field).unwrap();
        field["type"]["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    }

    /// The records are built with enum positions: they must be the schema's, symbol for symbol.
    #[test]
    fn enum_positions_are_the_schemas() {
        assert_eq!(
            symbols(platform::schemas::PROCESSED_RESULT, "kind"),
            ResultKind::SYMBOLS
        );
        for (index, kind) in ResultKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), index);
        }
        assert_eq!(
            symbols(platform::schemas::PROCESSOR_ALERT, "kind"),
            AlertKind::SYMBOLS
        );
        assert_eq!(
            symbols(platform::schemas::PROCESSOR_ALERT, "severity"),
            ["WARNING", "CRITICAL"],
            "severity is written as index 0 for WARNING, 1 for CRITICAL"
        );
    }
}
