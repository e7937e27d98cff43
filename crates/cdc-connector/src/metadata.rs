//! Transaction boundaries (`CDCTransaction`) and logical decoding messages (`CDCMessage`) as
//! Avro records, beside the row changes.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, RwLock},
};

use apache_avro::types::Value;
use pgoutput::{copy::Lsn, message::Relation, row::TypeNames};

use platform::{
    registry::{RegistryClient, register_topic_schema},
    topics,
};

use crate::{
    changes::{MessageEvent, TransactionEnd},
    error::{ConnectorError, ErrorKind},
    record::{
        ChangeLayout,
        decimal::{DecimalHandling, DecimalType},
    },
};

/// The registered `CDCChange` schema as the encoder uses it: its id and where values go.
pub struct ChangeSchema {
    pub id: u32,
    pub layout: ChangeLayout,
    /// The `Decimal_p_s` branches it has (precise mode).
    decimals: BTreeSet<DecimalType>,
}

/// The registered schemas of the topics the connector writes. The change schema grows in
/// `--decimal-handling precise`: a `Decimal_p_s` branch is added (and the new version
/// registered) the first time a column declares that precision and scale.
pub struct Schemas {
    change: RwLock<Arc<ChangeSchema>>,
    /// Where to register a grown change schema; None where nothing may grow (unit tests).
    registry: Option<RegistryClient>,
    pub transaction: platform::avro::RegisteredSchema,
    pub message: platform::avro::RegisteredSchema,
    pub table_schema: platform::avro::RegisteredSchema,
}

impl Schemas {
    pub fn new(
        change: platform::avro::RegisteredSchema,
        decimal_handling: DecimalHandling,
        transaction: platform::avro::RegisteredSchema,
        message: platform::avro::RegisteredSchema,
        table_schema: platform::avro::RegisteredSchema,
        registry: Option<RegistryClient>,
    ) -> Result<Self, ConnectorError> {
        Ok(Self {
            change: RwLock::new(Arc::new(change_schema(
                &change,
                decimal_handling,
                BTreeSet::new(),
            )?)),
            registry,
            transaction,
            message,
            table_schema,
        })
    }

    /// A table's metadata record (`CDCTableSchema`), as of WAL position `source_lsn`.
    pub fn encode_table_schema(
        &self,
        schema: &crate::table_schema::TableSchema,
        source_lsn: Lsn,
    ) -> Result<Vec<u8>, ConnectorError> {
        self.table_schema
            .encode(schema.to_avro(source_lsn, crate::unix_micros_now() / 1000))
            .map_err(|e| {
                ConnectorError::new(
                    ErrorKind::Unpublishable,
                    format!("encoding the metadata of {}", schema.table),
                    e.to_string(),
                )
            })
    }

    /// The change schema as it is now; a session keeps it until it needs a new branch.
    pub fn change(&self) -> Arc<ChangeSchema> {
        self.change
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// In precise mode, the change schema with a `Decimal_p_s` branch for each declared decimal
    /// of `relations` (registering the grown schema if one is missing); otherwise as it is.
    pub async fn for_relations<'r>(
        &self,
        relations: impl IntoIterator<Item = &'r Relation>,
        types: &TypeNames,
    ) -> Result<Arc<ChangeSchema>, ConnectorError> {
        let current = self.change();
        if current.layout.decimal_handling != DecimalHandling::Precise {
            return Ok(current);
        }
        let needed: BTreeSet<DecimalType> = relations
            .into_iter()
            .flat_map(|relation| &relation.columns)
            .filter_map(|column| {
                pgoutput::row::declared_decimal(&types.name(column.type_id), column.type_modifier)
            })
            .collect();
        if current.layout.has_decimals(needed.iter()) {
            return Ok(current);
        }
        let registry = self.registry.as_ref().ok_or_else(|| {
            ConnectorError::new(
                ErrorKind::Unpublishable,
                "growing the CDCChange schema",
                "no schema registry to register it with",
            )
        })?;
        let decimals: BTreeSet<DecimalType> = current.decimals.union(&needed).copied().collect();
        let text =
            crate::record::decimal::schema_with_decimals(platform::schemas::CDC_CHANGE, &decimals)
                .map_err(|e| {
                    ConnectorError::new(ErrorKind::Unpublishable, "the CDCChange schema", e)
                })?;
        let registered = register_topic_schema(registry, &topics::CDC_CHANGES, &text)
            .await
            .map_err(|e| {
                ConnectorError::registry(
                    format!("registering CDCChange with the branches {decimals:?}"),
                    &e,
                )
            })?;
        tracing::info!(
            id = registered.id,
            ?decimals,
            "registered CDCChange with decimal branches"
        );
        let grown = Arc::new(change_schema(
            &registered,
            current.layout.decimal_handling,
            decimals,
        )?);
        *self
            .change
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = grown.clone();
        Ok(grown)
    }
}

fn change_schema(
    registered: &platform::avro::RegisteredSchema,
    decimal_handling: DecimalHandling,
    decimals: BTreeSet<DecimalType>,
) -> Result<ChangeSchema, ConnectorError> {
    let layout = ChangeLayout::from_schema(&registered.schema)
        .map_err(|e| ConnectorError::new(ErrorKind::Unpublishable, "the CDCChange schema", e))?
        .with_decimal_handling(decimal_handling);
    Ok(ChangeSchema {
        id: registered.id,
        layout,
        decimals,
    })
}

/// Registers the schemas of the connector's topics under their value subjects.
pub async fn register_schemas(
    registry_url: &str,
    decimal_handling: DecimalHandling,
) -> Result<Schemas, ConnectorError> {
    let registry = RegistryClient::new(registry_url);
    let register = async |topic: &topics::TopicSpec, text: &str| {
        let registered = register_topic_schema(&registry, topic, text)
            .await
            .map_err(|e| {
                ConnectorError::registry(format!("registering the schema of {}", topic.name), &e)
            })?;
        tracing::info!(topic = topic.name, id = registered.id, "registered schema");
        Ok::<_, ConnectorError>(registered)
    };
    let change = register(&topics::CDC_CHANGES, platform::schemas::CDC_CHANGE).await?;
    let transaction = register(
        &topics::CDC_TRANSACTIONS,
        platform::schemas::CDC_TRANSACTION,
    )
    .await?;
    let message = register(&topics::CDC_MESSAGES, platform::schemas::CDC_MESSAGE).await?;
    let table_schema = register(
        &topics::CDC_TABLE_SCHEMAS,
        platform::schemas::CDC_TABLE_SCHEMA,
    )
    .await?;
    Schemas::new(
        change,
        decimal_handling,
        transaction,
        message,
        table_schema,
        Some(registry),
    )
}

/// Counts what one transaction published, for its boundary record.
#[derive(Default)]
pub struct TransactionTally {
    by_table: HashMap<Arc<str>, i64>,
    messages: i64,
}

impl TransactionTally {
    pub fn count_change(&mut self, table: &Arc<str>) {
        *self.by_table.entry(table.clone()).or_default() += 1;
    }

    pub fn count_message(&mut self) {
        self.messages += 1;
    }

    pub fn event_count(&self) -> i64 {
        self.by_table.values().sum::<i64>() + self.messages
    }

    /// The boundary record; the tally starts over for the next transaction.
    pub fn take_record(
        &mut self,
        end: &TransactionEnd,
        source_database: &str,
        slot_name: &str,
    ) -> Value {
        let event_count = self.event_count();
        let by_table = std::mem::take(&mut self.by_table);
        self.messages = 0;
        Value::Record(vec![
            ("transaction_id".into(), Value::Long(i64::from(end.xid))),
            ("commit_lsn".into(), Value::Long(lsn_long(end.commit_lsn))),
            ("end_lsn".into(), Value::Long(lsn_long(end.end_lsn))),
            (
                "commit_timestamp".into(),
                Value::TimestampMicros(end.commit_time_unix_micros),
            ),
            ("event_count".into(), Value::Long(event_count)),
            (
                "events_by_table".into(),
                Value::Map(
                    by_table
                        .into_iter()
                        .map(|(table, count)| (table.to_string(), Value::Long(count)))
                        .collect(),
                ),
            ),
            (
                "source_database".into(),
                Value::String(source_database.into()),
            ),
            ("slot_name".into(), Value::String(slot_name.into())),
        ])
    }
}

/// Transactional messages share their transaction's id scheme; others are identified by their
/// own LSN.
pub fn message_id(message: &MessageEvent) -> String {
    match &message.position {
        Some(position) => format!("{:016X}-{:08}", position.commit_lsn, position.sequence),
        None => format!("{:016X}-M", message.message_lsn),
    }
}

pub fn message_to_avro(
    message: &MessageEvent,
    source_database: &str,
    now_unix_millis: i64,
) -> Value {
    let optional = |value: Option<Value>| match value {
        Some(value) => Value::Union(1, Box::new(value)),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    let position = message.position.as_ref();
    Value::Record(vec![
        ("change_id".into(), Value::String(message_id(message))),
        ("prefix".into(), Value::String(message.prefix.clone())),
        ("content".into(), Value::Bytes(message.content.clone())),
        ("transactional".into(), Value::Boolean(position.is_some())),
        (
            "message_lsn".into(),
            Value::Long(lsn_long(message.message_lsn)),
        ),
        (
            "transaction_id".into(),
            optional(position.map(|p| Value::Long(i64::from(p.xid)))),
        ),
        (
            "commit_lsn".into(),
            optional(position.map(|p| Value::Long(lsn_long(p.commit_lsn)))),
        ),
        (
            "sequence".into(),
            optional(position.map(|p| Value::Int(i32::try_from(p.sequence).unwrap_or(i32::MAX)))),
        ),
        ("timestamp".into(), Value::TimestampMillis(now_unix_millis)),
        (
            "source_database".into(),
            Value::String(source_database.into()),
        ),
    ])
}

/// LSNs are unsigned 64-bit; Avro longs are signed. Real LSNs stay far below 2^63.
pub fn lsn_long(lsn: Lsn) -> i64 {
    i64::try_from(lsn).unwrap_or(i64::MAX)
}

/// Whether a message prefix is selected: `*` selects all, `name*` a family, others exactly.
pub fn prefix_selected(patterns: &[String], prefix: &str) -> bool {
    patterns
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(start) => prefix.starts_with(start),
            None => pattern == prefix,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::Position;

    fn schema(text: &str) -> platform::avro::RegisteredSchema {
        platform::avro::RegisteredSchema {
            id: 1,
            schema: platform::schemas::parse(text).unwrap(),
        }
    }

    #[test]
    fn boundary_records_count_per_table_and_encode() {
        let mut tally = TransactionTally::default();
        let bookings: Arc<str> = Arc::from("public.bookings");
        tally.count_change(&bookings);
        tally.count_change(&bookings);
        tally.count_change(&Arc::from("public.payments"));
        tally.count_message();
        let end = TransactionEnd {
            xid: 9,
            commit_lsn: 100,
            end_lsn: 120,
            commit_time_unix_micros: 5,
        };
        let record = tally.take_record(&end, "travel", "slot");
        let bytes = schema(platform::schemas::CDC_TRANSACTION)
            .encode(record.clone())
            .unwrap();
        assert!(bytes.len() > 5);
        let json = platform::avro::to_json(&record);
        assert_eq!(json["event_count"], 4);
        assert_eq!(json["events_by_table"]["public.bookings"], 2);
        assert_eq!(tally.event_count(), 0, "the tally starts over");
    }

    #[test]
    fn messages_encode_with_and_without_a_transaction() {
        let plain = MessageEvent {
            prefix: "audit".into(),
            content: b"x".to_vec(),
            message_lsn: 0x10,
            position: None,
        };
        let transactional = MessageEvent {
            position: Some(Position {
                commit_lsn: 0x20,
                event_lsn: 0x18,
                xid: 4,
                sequence: 2,
                commit_time_unix_micros: 0,
            }),
            ..plain.clone()
        };
        let registered = schema(platform::schemas::CDC_MESSAGE);
        for message in [&plain, &transactional] {
            registered
                .encode(message_to_avro(message, "travel", 1))
                .unwrap();
        }
        assert_eq!(message_id(&plain), "0000000000000010-M");
        assert_eq!(message_id(&transactional), "0000000000000020-00000002");
    }

    #[test]
    fn prefixes_are_selected_exactly_or_by_family() {
        let patterns = vec!["audit".to_string(), "app.*".to_string()];
        assert!(prefix_selected(&patterns, "audit"));
        assert!(prefix_selected(&patterns, "app.outbox"));
        assert!(!prefix_selected(&patterns, "auditing"));
        assert!(!prefix_selected(&[], "audit"));
        assert!(prefix_selected(&["*".to_string()], "anything"));
    }
}
