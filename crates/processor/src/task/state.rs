//! The types of a task's state, each a changelog key or value: what survives a restart is
//! exactly what these say, so they are kept together, apart from the code that changes them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{
    routed::{Lane, Op, Position, Stream},
    sketch::Distinct,
};

/// Progress of one input partition as this task knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceProgress {
    pub next_offset: i64,
    pub max_event_time: Option<i64>,
    pub idle: bool,
}

/// The aggregate of one group in one window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Agg {
    Counted {
        labels: Vec<String>,
        events: u64,
        users: Distinct,
    },
    Page {
        clicks: u64,
        interactions: u64,
        cells: BTreeMap<(i32, i32), u64>,
    },
    Session {
        clicks: u64,
        interactions: u64,
        pages: BTreeSet<String>,
        first: i64,
        last: i64,
    },
    Table {
        ops: BTreeMap<Op, u64>,
        /// Hashes of the change ids counted: a change delivered twice is counted once.
        seen: BTreeSet<u64>,
    },
    UserPayments {
        failed: u64,
    },
    Logs {
        levels: BTreeMap<String, u64>,
    },
}

/// What the key lane remembers of a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyState {
    pub position: Position,
    pub live: bool,
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRef {
    pub position: Position,
    pub status: Option<String>,
    pub event_time: i64,
    pub change_id: String,
    /// The booking-exists check still waits for the watermark.
    pub check_pending: bool,
    /// Failed-payment changes waiting for the watermark before being counted for the
    /// booking's user: (change id, event time).
    pub failed_pending: Vec<(String, i64)>,
}

/// What the booking-reference lane knows of a booking and the payments that name it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BookingRef {
    pub position: Option<Position>,
    pub known: bool,
    pub deleted_at: Option<i64>,
    pub user_id: Option<String>,
    pub payments: BTreeMap<String, PaymentRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExternalLatest {
    pub observed_at: i64,
    pub offset: i64,
    pub partition: i32,
}

/// Changelog key of one state entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StateKey {
    Source(Stream, i32),
    Dedup(Lane, Stream, i32),
    Watermark(Stream),
    Window(Lane, i64, String),
    Key(String),
    Booking(String),
    External(String),
    DerivedSeq,
}

/// Changelog value of one state entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StateValue {
    Source(SourceProgress),
    Offset(i64),
    Time(i64),
    Window(Agg),
    Key(KeyState),
    Booking(BookingRef),
    External(ExternalLatest),
}
