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
    partitions: 4,
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

/// The column metadata of each version of each published table (`CDCTableSchema`), keyed
/// `schema.table/version` and compacted: every version stays, for the changes that name it.
pub const CDC_TABLE_SCHEMAS: TopicSpec = TopicSpec {
    name: "topic_cdc_table_schemas",
    partitions: 1,
    replication_factor: 3,
    retention_ms: -1,
    cleanup_policy: "compact",
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
    retention_ms: DAY_MS,
    cleanup_policy: "delete",
};

pub const CLICKSTREAM: TopicSpec = TopicSpec {
    name: "topic_clickstream",
    partitions: 8,
    replication_factor: 3,
    retention_ms: 3 * DAY_MS,
    cleanup_policy: "delete",
};

pub const APP_LOGS: TopicSpec = TopicSpec {
    name: "topic_app_logs",
    partitions: 4,
    replication_factor: 2,
    retention_ms: 2 * DAY_MS,
    cleanup_policy: "delete",
};

pub const EXTERNAL_DATA: TopicSpec = TopicSpec {
    name: "topic_external_data",
    partitions: 3,
    replication_factor: 2,
    retention_ms: 30 * DAY_MS,
    cleanup_policy: "delete",
};

/// Final window results of the processor (upsert by key = result id).
pub const PROCESSED_EVENTS: TopicSpec = TopicSpec {
    name: "topic_processed_events",
    partitions: 6,
    replication_factor: 3,
    retention_ms: 7 * DAY_MS,
    cleanup_policy: "delete",
};

/// Latest row per key of `users` (CDCChange of its last change; a DELETE is a tombstone).
pub const USER_STATE: TopicSpec = TopicSpec {
    name: "topic_user_state",
    partitions: 6,
    replication_factor: 3,
    retention_ms: -1,
    cleanup_policy: "compact",
};

/// Latest row per key of `bookings`.
pub const BOOKING_STATE: TopicSpec = TopicSpec {
    name: "topic_booking_state",
    partitions: 6,
    replication_factor: 3,
    retention_ms: -1,
    cleanup_policy: "compact",
};

/// Latest row per key of `payments`.
pub const CDC_STATE: TopicSpec = TopicSpec {
    name: "topic_cdc_state",
    partitions: 6,
    replication_factor: 3,
    retention_ms: -1,
    cleanup_policy: "compact",
};

/// Latest external reading per source and entity (ExternalData of the newest observation).
pub const EXTERNAL_STATE: TopicSpec = TopicSpec {
    name: "topic_external_state",
    partitions: 3,
    replication_factor: 2,
    retention_ms: -1,
    cleanup_policy: "compact",
};

/// Consistency checks and suspicious patterns found by the processor.
pub const PROCESSOR_ALERTS: TopicSpec = TopicSpec {
    name: "topic_processor_alerts",
    partitions: 3,
    replication_factor: 3,
    retention_ms: 30 * DAY_MS,
    cleanup_policy: "delete",
};

/// Input records that arrived after their window was final.
pub const PROCESSOR_LATE_EVENTS: TopicSpec = TopicSpec {
    name: "topic_processor_late_events",
    partitions: 3,
    replication_factor: 3,
    retention_ms: 7 * DAY_MS,
    cleanup_policy: "delete",
};

/// Input records the processor could not decode, with the reason.
pub const PROCESSOR_DEAD_LETTERS: TopicSpec = TopicSpec {
    name: "topic_processor_dead_letters",
    partitions: 1,
    replication_factor: 3,
    retention_ms: 30 * DAY_MS,
    cleanup_policy: "delete",
};

/// The processor's internal repartition topic: input records re-keyed by what they are
/// aggregated by (binary, not Avro; see the processor's `routed` module).
pub const PROCESSOR_REPARTITION: TopicSpec = TopicSpec {
    name: "topic_processor_repartition",
    partitions: 6,
    replication_factor: 3,
    retention_ms: DAY_MS,
    cleanup_policy: "delete",
};

/// The processor's state changelog: partition q holds the state of repartition partition q.
pub const PROCESSOR_CHANGELOG: TopicSpec = TopicSpec {
    name: "topic_processor_changelog",
    partitions: 6,
    replication_factor: 3,
    retention_ms: -1,
    cleanup_policy: "compact",
};

/// Every topic the platform writes, in provisioning order.
pub const ALL: &[TopicSpec] = &[
    CDC_CHANGES,
    CDC_TRANSACTIONS,
    CDC_MESSAGES,
    CDC_TABLE_SCHEMAS,
    CONNECTOR_STATE,
    APP_EVENTS,
    CLICKSTREAM,
    APP_LOGS,
    EXTERNAL_DATA,
    PROCESSED_EVENTS,
    USER_STATE,
    BOOKING_STATE,
    CDC_STATE,
    EXTERNAL_STATE,
    PROCESSOR_ALERTS,
    PROCESSOR_LATE_EVENTS,
    PROCESSOR_DEAD_LETTERS,
    PROCESSOR_REPARTITION,
    PROCESSOR_CHANGELOG,
];

// Each service provisions only its own topics: the ones it writes, and the ones it reads (the
// broker does not create topics on demand and a consumer cannot subscribe to a missing one).
// The gateway and the workload both write the four application-event topics: the workload's
// Kafka sink publishes what the gateway would.

/// The topics the CDC connector writes: changes, transaction boundaries, logical decoding
/// messages, table metadata and its own state (snapshot progress).
pub const CONNECTOR: &[TopicSpec] = &[
    CDC_CHANGES,
    CDC_TRANSACTIONS,
    CDC_MESSAGES,
    CDC_TABLE_SCHEMAS,
    CONNECTOR_STATE,
];

/// The topics the gateway writes (it has no dead-letter topic: an event that does not fit is
/// answered with an error, never stored).
pub const GATEWAY: &[TopicSpec] = &[APP_EVENTS, CLICKSTREAM, APP_LOGS, EXTERNAL_DATA];

/// The topics the workload's Kafka sink writes: the gateway's, since it publishes what the gateway
/// would.
pub const WORKLOAD: &[TopicSpec] = GATEWAY;

/// The topics the processor consumes that other services write.
pub const PROCESSOR_INPUTS: &[TopicSpec] = &[
    APP_EVENTS,
    CLICKSTREAM,
    CDC_CHANGES,
    APP_LOGS,
    EXTERNAL_DATA,
];

/// The topics the processor writes (it reads its repartition topic, changelog and outputs too).
pub const PROCESSOR_OUTPUTS: &[TopicSpec] = &[
    PROCESSED_EVENTS,
    USER_STATE,
    BOOKING_STATE,
    CDC_STATE,
    EXTERNAL_STATE,
    PROCESSOR_ALERTS,
    PROCESSOR_LATE_EVENTS,
    PROCESSOR_DEAD_LETTERS,
    PROCESSOR_REPARTITION,
    PROCESSOR_CHANGELOG,
];

/// What the processor provisions: [`PROCESSOR_OUTPUTS`] and [`PROCESSOR_INPUTS`].
pub const PROCESSOR: &[TopicSpec] = &[
    PROCESSED_EVENTS,
    USER_STATE,
    BOOKING_STATE,
    CDC_STATE,
    EXTERNAL_STATE,
    PROCESSOR_ALERTS,
    PROCESSOR_LATE_EVENTS,
    PROCESSOR_DEAD_LETTERS,
    PROCESSOR_REPARTITION,
    PROCESSOR_CHANGELOG,
    APP_EVENTS,
    CLICKSTREAM,
    CDC_CHANGES,
    APP_LOGS,
    EXTERNAL_DATA,
];

/// Settings a deployment may change for one topic; absent fields keep the platform's value.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicOverride {
    pub partitions: Option<i32>,
    pub replication_factor: Option<i32>,
    pub retention_ms: Option<i64>,
    pub cleanup_policy: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TopicConfigError {
    #[error("cannot read topic settings file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("topic settings file {path} is not valid: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("topic settings: `{topic}` is not a topic of the platform (known: {known})")]
    UnknownTopic { topic: String, known: String },
    #[error("topic settings for {topic}: {problem}")]
    Invalid { topic: String, problem: String },
}

/// The environment variable naming a TOML file of per-topic overrides, read by every service
/// that provisions topics, so all of them create the same layout:
///
/// ```toml
/// [topic_app_events]
/// partitions = 12
/// retention_ms = 172800000
/// ```
pub const OVERRIDES_ENV: &str = "TOPICS_CONFIG";

/// Parses a per-topic overrides document (tables named after topics).
pub fn parse_overrides(
    path: &str,
    text: &str,
) -> Result<std::collections::BTreeMap<String, TopicOverride>, TopicConfigError> {
    toml::from_str(text).map_err(|source| TopicConfigError::Parse {
        path: path.to_string(),
        source,
    })
}

/// `specs` with the overrides applied; an override for an unknown topic or an impossible
/// value is an error naming it, never silently ignored.
pub fn with_overrides(
    specs: &[TopicSpec],
    overrides: &std::collections::BTreeMap<String, TopicOverride>,
) -> Result<Vec<TopicSpec>, TopicConfigError> {
    for topic in overrides.keys() {
        if !ALL.iter().any(|spec| spec.name == topic) {
            return Err(TopicConfigError::UnknownTopic {
                topic: topic.clone(),
                known: ALL.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
            });
        }
    }
    specs
        .iter()
        .map(|spec| {
            let Some(o) = overrides.get(spec.name) else {
                return Ok(spec.clone());
            };
            let invalid = |problem: &str| TopicConfigError::Invalid {
                topic: spec.name.to_string(),
                problem: problem.to_string(),
            };
            let mut out = spec.clone();
            if let Some(p) = o.partitions {
                if p < 1 {
                    return Err(invalid("partitions must be at least 1"));
                }
                out.partitions = p;
            }
            if let Some(r) = o.replication_factor {
                if r < 1 {
                    return Err(invalid("replication_factor must be at least 1"));
                }
                out.replication_factor = r;
            }
            if let Some(ms) = o.retention_ms {
                if ms < -1 || ms == 0 {
                    return Err(invalid("retention_ms must be positive, or -1 for forever"));
                }
                out.retention_ms = ms;
            }
            if let Some(policy) = &o.cleanup_policy {
                out.cleanup_policy = match policy.as_str() {
                    "delete" => "delete",
                    "compact" => "compact",
                    "compact,delete" | "delete,compact" => "compact,delete",
                    _ => {
                        return Err(invalid(
                            "cleanup_policy must be delete, compact or compact,delete",
                        ));
                    }
                };
            }
            Ok(out)
        })
        .collect()
}

/// `specs` with the overrides of the file named by [`OVERRIDES_ENV`], if that is set.
pub fn with_env_overrides(specs: &[TopicSpec]) -> Result<Vec<TopicSpec>, TopicConfigError> {
    let Some(path) = std::env::var_os(OVERRIDES_ENV) else {
        return Ok(specs.to_vec());
    };
    let path = path.to_string_lossy().into_owned();
    let text = std::fs::read_to_string(&path).map_err(|source| TopicConfigError::Read {
        path: path.clone(),
        source,
    })?;
    with_overrides(specs, &parse_overrides(&path, &text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_table_is_provisioned_as_specified() {
        let expect = [
            ("topic_app_events", 6, 3, DAY_MS, "delete"),
            ("topic_cdc_changes", 4, 3, 7 * DAY_MS, "delete"),
            ("topic_clickstream", 8, 3, 3 * DAY_MS, "delete"),
            ("topic_app_logs", 4, 2, 2 * DAY_MS, "delete"),
            ("topic_external_data", 3, 2, 30 * DAY_MS, "delete"),
            ("topic_processed_events", 6, 3, 7 * DAY_MS, "delete"),
            ("topic_user_state", 6, 3, -1, "compact"),
            ("topic_booking_state", 6, 3, -1, "compact"),
        ];
        for (name, partitions, replication, retention, cleanup) in expect {
            let spec = ALL.iter().find(|s| s.name == name).unwrap();
            assert_eq!(
                (
                    spec.partitions,
                    spec.replication_factor,
                    spec.retention_ms,
                    spec.cleanup_policy
                ),
                (partitions, replication, retention, cleanup),
                "{name}"
            );
        }
    }

    fn names(specs: &[TopicSpec]) -> std::collections::BTreeSet<&'static str> {
        specs.iter().map(|s| s.name).collect()
    }

    /// A service: its name, what it provisions, what it writes, what it reads that others write.
    type Service = (
        &'static str,
        &'static [TopicSpec],
        &'static [TopicSpec],
        &'static [TopicSpec],
    );

    const SERVICES: [Service; 4] = [
        ("connector", CONNECTOR, CONNECTOR, &[]),
        ("gateway", GATEWAY, GATEWAY, &[]),
        ("workload", WORKLOAD, WORKLOAD, &[]),
        ("processor", PROCESSOR, PROCESSOR_OUTPUTS, PROCESSOR_INPUTS),
    ];

    #[test]
    fn the_services_sets_together_cover_every_topic() {
        let mut covered = std::collections::BTreeSet::new();
        for (service, set, writes, reads) in SERVICES {
            assert_eq!(set.len(), names(set).len(), "{service} lists a topic twice");
            let mut own = names(writes);
            own.extend(names(reads));
            assert_eq!(
                names(set),
                own,
                "{service} provisions what it writes and reads"
            );
            covered.extend(names(set));
        }
        assert_eq!(covered, names(ALL));
        assert_eq!(ALL.len(), names(ALL).len());
        for spec in [CONNECTOR, GATEWAY, WORKLOAD, PROCESSOR].concat() {
            let canonical = ALL.iter().find(|s| s.name == spec.name).unwrap();
            assert_eq!(&spec, canonical, "one layout per topic");
        }
    }

    #[test]
    fn no_service_creates_a_topic_another_writes_unless_it_reads_or_writes_it() {
        for (service, set, writes, reads) in SERVICES {
            for topic in set {
                let writers: Vec<&str> = SERVICES
                    .iter()
                    .filter(|(other, _, w, _)| *other != service && names(w).contains(topic.name))
                    .map(|(other, ..)| *other)
                    .collect();
                let own = names(writes).contains(topic.name) || names(reads).contains(topic.name);
                assert!(
                    own,
                    "{service} provisions {} (written by {writers:?}) but neither writes nor reads it",
                    topic.name
                );
            }
            // What a service reads, another writes.
            for topic in reads {
                assert!(
                    SERVICES
                        .iter()
                        .any(|(other, _, w, _)| *other != service && names(w).contains(topic.name)),
                    "{service} reads {} that no other service writes",
                    topic.name
                );
            }
        }
        // Only the gateway and the workload share topics they write.
        for (a, _, writes_a, _) in SERVICES {
            for (b, _, writes_b, _) in SERVICES {
                if a < b && !matches!((a, b), ("gateway", "workload")) {
                    let shared: Vec<_> = names(writes_a)
                        .intersection(&names(writes_b))
                        .copied()
                        .collect();
                    assert!(shared.is_empty(), "{a} and {b} both write {shared:?}");
                }
            }
        }
    }

    #[test]
    fn overrides_change_only_what_they_name() {
        let overrides = parse_overrides(
            "t.toml",
            "[topic_app_events]\npartitions = 12\ncleanup_policy = \"delete,compact\"\n",
        )
        .unwrap();
        let specs = with_overrides(ALL, &overrides).unwrap();
        let app = specs.iter().find(|s| s.name == APP_EVENTS.name).unwrap();
        assert_eq!(app.partitions, 12);
        assert_eq!(app.cleanup_policy, "compact,delete");
        assert_eq!(app.retention_ms, APP_EVENTS.retention_ms);
        let cdc = specs.iter().find(|s| s.name == CDC_CHANGES.name).unwrap();
        assert_eq!(cdc, &CDC_CHANGES);
    }

    #[test]
    fn bad_overrides_are_errors_that_name_the_problem() {
        let unknown = parse_overrides("t.toml", "[topic_nope]\npartitions = 1\n").unwrap();
        let err = with_overrides(ALL, &unknown).unwrap_err().to_string();
        assert!(err.contains("topic_nope"), "{err}");
        let zero = parse_overrides("t.toml", "[topic_app_events]\npartitions = 0\n").unwrap();
        let err = with_overrides(ALL, &zero).unwrap_err().to_string();
        assert!(
            err.contains("topic_app_events") && err.contains("partitions"),
            "{err}"
        );
        let typo = parse_overrides("t.toml", "[topic_app_events]\npartition = 3\n");
        assert!(typo.is_err());
    }
}
