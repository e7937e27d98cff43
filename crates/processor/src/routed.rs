//! Records of the internal repartition topic: what stage 1 (decode and route) hands to
//! stage 2 (the stateful aggregations).
//!
//! Why a repartition topic: the input topics are keyed for ordering (sessions, bookings, row
//! keys), not by what the jobs group by (event type, page, table, service). As in Kafka
//! Streams, each input record is re-keyed into this topic, so every group lives in exactly one
//! stage-2 task and any number of instances can share the work with no merging of partial
//! results. The records are small, binary (postcard), and internal: not Avro, not for consumers.
//!
//! Every data record names its source (input stream, partition, offset) and its lane (which
//! aggregation it feeds). Stage 2 drops a record whose offset is not above the highest it has
//! taken from the same lane and source partition: stage 1 is stateless and deterministic, so a
//! record sent again after a crash (or seen twice because a broker shows an aborted
//! transaction's records) is byte-for-byte the record already counted.
//!
//! Progress records carry each input partition's highest event time (and whether it went
//! idle) to every stage-2 partition, so a task's watermark moves even when a source partition
//! routes nothing to it.

use serde::{Deserialize, Serialize};

/// An input stream of the processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Stream {
    AppEvents,
    Clickstream,
    Cdc,
    Logs,
    External,
}

impl Stream {
    pub const ALL: [Stream; 5] = [
        Stream::AppEvents,
        Stream::Clickstream,
        Stream::Cdc,
        Stream::Logs,
        Stream::External,
    ];

    pub fn topic(self) -> &'static str {
        use platform::topics;
        match self {
            Stream::AppEvents => topics::APP_EVENTS.name,
            Stream::Clickstream => topics::CLICKSTREAM.name,
            Stream::Cdc => topics::CDC_CHANGES.name,
            Stream::Logs => topics::APP_LOGS.name,
            Stream::External => topics::EXTERNAL_DATA.name,
        }
    }

    pub fn from_topic(topic: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|s| s.topic() == topic)
    }

    /// The job name used in result ids, metrics and the README.
    pub fn job(self) -> &'static str {
        match self {
            Stream::AppEvents => "app_events",
            Stream::Clickstream => "clickstream",
            Stream::Cdc => "cdc",
            Stream::Logs => "logs",
            Stream::External => "external",
        }
    }
}

/// Which aggregation a routed record feeds. One input record may feed several lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Lane {
    AppEventGroups,
    AppEventTotals,
    PageClicks,
    Sessions,
    CdcKeys,
    CdcTables,
    BookingRefs,
    /// Derived inside stage 2 (from `BookingRefs`): failed payments re-keyed by user.
    UserPayments,
    Logs,
    External,
}

impl Lane {
    pub fn name(self) -> &'static str {
        match self {
            Lane::AppEventGroups => "app_event_groups",
            Lane::AppEventTotals => "app_event_totals",
            Lane::PageClicks => "page_clicks",
            Lane::Sessions => "sessions",
            Lane::CdcKeys => "cdc_keys",
            Lane::CdcTables => "cdc_tables",
            Lane::BookingRefs => "booking_refs",
            Lane::UserPayments => "user_payments",
            Lane::Logs => "logs",
            Lane::External => "external",
        }
    }
}

/// Where a routed record came from. For [`Lane::UserPayments`] the "partition" is the stage-2
/// partition that derived it and the offset that partition's input offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub stream: Stream,
    pub partition: i32,
    pub offset: i64,
}

/// A CDC operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
    Read,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "INSERT",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
            Op::Truncate => "TRUNCATE",
            Op::Read => "READ",
        }
    }
}

/// Position of a change in the source WAL: (commit LSN, sequence in the transaction). READ
/// rows of a snapshot sort before every streamed change of the same LSN.
pub type Position = (i64, i64);

/// The parts of a CDC change the CDC lanes need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub change_id: String,
    /// `schema.table`.
    pub table: String,
    /// The input record's key: `schema.table/{key columns}`.
    pub key: String,
    pub op: Op,
    pub position: Position,
    /// `status` after the change (bookings, payments), as text.
    pub status: Option<String>,
    /// `status` before the change, when the record carries the old row.
    pub old_status: Option<String>,
    /// `booking_id` (bookings and payments), as text.
    pub booking_id: Option<String>,
    /// `user_id` (bookings), as text.
    pub user_id: Option<String>,
    /// `amount` (payments), exact decimal text.
    pub amount: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Body {
    AppEvent {
        event_type: String,
        source: String,
        user: Option<u64>,
    },
    Click {
        page: String,
        session: String,
        /// CLICK or TAP: counted as a click and drawn on the heat map.
        is_click: bool,
        x: i32,
        y: i32,
    },
    Change(Box<Change>),
    /// The original input record (Confluent-framed CDCChange), written unchanged to a
    /// state topic by the key lane.
    ChangeWithRecord {
        change: Box<Change>,
        record: Vec<u8>,
    },
    FailedPayment {
        user_id: String,
        payment_key: String,
        change_id: String,
    },
    Log {
        service: String,
        level: String,
        log_id: String,
    },
    External {
        entity: String,
        record: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Routed {
    Data {
        lane: Lane,
        source: Source,
        event_time: i64,
        body: Body,
    },
    /// An input partition's highest event time so far, and whether it is idle; `next_offset`
    /// orders progress against data from the same partition.
    Progress {
        stream: Stream,
        partition: i32,
        next_offset: i64,
        max_event_time: Option<i64>,
        idle: bool,
    },
}

impl Routed {
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Routed, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// The repartition partition of a routing key: SipHash-1-3 (fixed keys) modulo the count, so
/// every instance routes a key to the same partition.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let hash = crate::sketch::hash_value(key);
    (hash % u64::try_from(partitions.max(1)).unwrap_or(1)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let routed = Routed::Data {
            lane: Lane::Sessions,
            source: Source {
                stream: Stream::Clickstream,
                partition: 3,
                offset: 99,
            },
            event_time: 1_700_000_000_000,
            body: Body::Click {
                page: "/search".into(),
                session: "s1".into(),
                is_click: true,
                x: 10,
                y: 20,
            },
        };
        assert_eq!(Routed::decode(&routed.encode()).unwrap(), routed);
        assert!(Routed::decode(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn partitioning_is_stable_and_in_range() {
        for key in ["a", "search|MOBILE_APP", "public.users/{\"user_id\":1}"] {
            let p = partition_for(key, 6);
            assert!((0..6).contains(&p));
            assert_eq!(p, partition_for(key, 6));
        }
    }
}
