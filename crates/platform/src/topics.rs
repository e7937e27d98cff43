//! Every topic of the platform, defined once: name, partitions, retention and cleanup policy.

/// How a topic is laid out on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: &'static str,
    pub partitions: i32,
    /// Wanted replication factor; provisioning caps it at the cluster's broker count.
    pub replication_factor: i32,
    /// `retention.ms`; -1 keeps records forever.
    pub retention_ms: i64,
    /// `delete` or `compact`.
    pub cleanup_policy: &'static str,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

pub const CDC_CHANGES: TopicSpec = TopicSpec {
    name: "topic_cdc_changes",
    partitions: 6,
    replication_factor: 3,
    retention_ms: 7 * DAY_MS,
    cleanup_policy: "delete",
};

/// One record per committed source transaction that published changes (its boundary).
pub const CDC_TRANSACTIONS: TopicSpec = TopicSpec {
    name: "topic_cdc_transactions",
    partitions: 1,
    replication_factor: 3,
    retention_ms: 7 * DAY_MS,
    cleanup_policy: "delete",
};

/// Logical decoding messages (`pg_logical_emit_message`) selected by prefix.
pub const CDC_MESSAGES: TopicSpec = TopicSpec {
    name: "topic_cdc_messages",
    partitions: 1,
    replication_factor: 3,
    retention_ms: 7 * DAY_MS,
    cleanup_policy: "delete",
};

/// Services' own durable state (the connector's snapshot progress), keyed, compacted.
pub const CONNECTOR_STATE: TopicSpec = TopicSpec {
    name: "topic_connector_state",
    partitions: 1,
    replication_factor: 3,
    retention_ms: -1,
    cleanup_policy: "compact",
};

pub const APP_EVENTS: TopicSpec = TopicSpec {
    name: "topic_app_events",
    partitions: 6,
    replication_factor: 3,
    retention_ms: 7 * DAY_MS,
    cleanup_policy: "delete",
};

pub const CLICKSTREAM: TopicSpec = TopicSpec {
    name: "topic_clickstream",
    partitions: 6,
    replication_factor: 3,
    retention_ms: 3 * DAY_MS,
    cleanup_policy: "delete",
};

pub const APP_LOGS: TopicSpec = TopicSpec {
    name: "topic_app_logs",
    partitions: 3,
    replication_factor: 3,
    retention_ms: 3 * DAY_MS,
    cleanup_policy: "delete",
};

pub const EXTERNAL_DATA: TopicSpec = TopicSpec {
    name: "topic_external_data",
    partitions: 3,
    replication_factor: 3,
    retention_ms: 30 * DAY_MS,
    cleanup_policy: "delete",
};

/// Every topic the platform writes, in provisioning order.
pub const ALL: &[TopicSpec] = &[
    CDC_CHANGES,
    CDC_TRANSACTIONS,
    CDC_MESSAGES,
    CONNECTOR_STATE,
    APP_EVENTS,
    CLICKSTREAM,
    APP_LOGS,
    EXTERNAL_DATA,
];
