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
    pub transaction: TransactionSchema,
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
            transaction: TransactionSchema::from_registered(&transaction)?,
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

/// The registered `CDCTransaction` schema, checked at start to be the one
/// [`TransactionTally::write_record`] writes: boundary records are written straight into Avro
/// bytes (one per source transaction, as many as the changes when transactions are small).
pub struct TransactionSchema {
    pub id: u32,
}

/// How a `CDCTransaction` field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BoundaryField {
    Long,
    TimestampMicros,
    MapOfLongs,
    String,
}

/// `CDCTransaction`'s fields in the order [`TransactionTally::write_record`] writes them.
const BOUNDARY_FIELDS: [(&str, BoundaryField); 8] = [
    ("transaction_id", BoundaryField::Long),
    ("commit_lsn", BoundaryField::Long),
    ("end_lsn", BoundaryField::Long),
    ("commit_timestamp", BoundaryField::TimestampMicros),
    ("event_count", BoundaryField::Long),
    ("events_by_table", BoundaryField::MapOfLongs),
    ("source_database", BoundaryField::String),
    ("slot_name", BoundaryField::String),
];

impl TransactionSchema {
    /// An error names the first field whose name or type differs from what is written.
    pub fn from_registered(
        registered: &platform::avro::RegisteredSchema,
    ) -> Result<Self, ConnectorError> {
        let mismatch = |detail: String| {
            ConnectorError::new(
                ErrorKind::Unpublishable,
                "the CDCTransaction schema",
                detail,
            )
        };
        let apache_avro::Schema::Record(record) = &registered.schema else {
            return Err(mismatch("it is not a record".into()));
        };
        if record.fields.len() != BOUNDARY_FIELDS.len() {
            return Err(mismatch(format!(
                "it has {} fields; the encoder writes {}",
                record.fields.len(),
                BOUNDARY_FIELDS.len()
            )));
        }
        for (index, (field, (name, kind))) in record.fields.iter().zip(BOUNDARY_FIELDS).enumerate()
        {
            let written_as = match &field.schema {
                apache_avro::Schema::Long => Some(BoundaryField::Long),
                apache_avro::Schema::TimestampMicros => Some(BoundaryField::TimestampMicros),
                apache_avro::Schema::String => Some(BoundaryField::String),
                apache_avro::Schema::Map(map) if *map.types == apache_avro::Schema::Long => {
                    Some(BoundaryField::MapOfLongs)
                }
                _ => None,
            };
            if field.name != name || written_as != Some(kind) {
                return Err(mismatch(format!(
                    "field {} is {:?} {:?}; the encoder writes {name} as {kind:?}",
                    index, field.name, field.schema
                )));
            }
        }
        Ok(Self { id: registered.id })
    }
}

/// Counts what one transaction published, for its boundary record.
#[derive(Default)]
pub struct TransactionTally {
    /// Per table; foldhash rather than SipHash: it is looked up for every change.
    by_table: HashMap<Arc<str>, i64, foldhash::fast::RandomState>,
    messages: i64,
}

impl TransactionTally {
    pub fn count_change(&mut self, table: &Arc<str>) {
        match self.by_table.get_mut(&**table) {
            Some(count) => *count += 1,
            None => {
                self.by_table.insert(table.clone(), 1);
            }
        }
    }

    pub fn count_message(&mut self) {
        self.messages += 1;
    }

    pub fn event_count(&self) -> i64 {
        self.by_table.values().sum::<i64>() + self.messages
    }

    /// Appends the boundary record, framed for `schema`, to `out`; the tally starts over for
    /// the next transaction.
    pub fn write_record(
        &mut self,
        schema: &TransactionSchema,
        end: &TransactionEnd,
        source_database: &str,
        slot_name: &str,
        out: &mut Vec<u8>,
    ) {
        use platform::avro::binary::{frame, long, string};
        frame(out, schema.id);
        long(out, i64::from(end.xid));
        long(out, lsn_long(end.commit_lsn));
        long(out, lsn_long(end.end_lsn));
        long(out, end.commit_time_unix_micros);
        long(out, self.event_count());
        // A map as one block: its count, the entries, then the empty block that ends it.
        if !self.by_table.is_empty() {
            long(out, self.by_table.len() as i64);
            for (table, count) in self.by_table.drain() {
                string(out, &table);
                long(out, count);
            }
        }
        long(out, 0);
        string(out, source_database);
        string(out, slot_name);
        self.messages = 0;
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

    /// What the connector wrote, decoded by apache-avro with the registered schema.
    fn decoded_boundary(registered: &platform::avro::RegisteredSchema, bytes: &[u8]) -> Value {
        assert_eq!(bytes[0], 0, "magic byte");
        assert_eq!(bytes[1..5], registered.id.to_be_bytes());
        let mut datum = &bytes[5..];
        let value = apache_avro::reader::datum::GenericDatumReader::builder(&registered.schema)
            .build()
            .and_then(|reader| reader.read_value(&mut datum))
            .expect("decodes");
        assert!(datum.is_empty(), "bytes left after the record");
        value
    }

    #[test]
    fn boundary_records_count_per_table_and_decode_with_apache_avro() {
        let registered = schema(platform::schemas::CDC_TRANSACTION);
        let written = TransactionSchema::from_registered(&registered).unwrap();
        let mut tally = TransactionTally::default();
        let bookings: Arc<str> = Arc::from("public.bookings");
        tally.count_change(&bookings);
        tally.count_change(&Arc::from("public.bookings"));
        tally.count_change(&Arc::from("public.payments"));
        tally.count_message();
        let end = TransactionEnd {
            xid: 9,
            commit_lsn: 100,
            end_lsn: 120,
            commit_time_unix_micros: -5,
        };
        let mut bytes = Vec::new();
        tally.write_record(&written, &end, "travel", "slot", &mut bytes);
        let expected = Value::Record(vec![
            ("transaction_id".into(), Value::Long(9)),
            ("commit_lsn".into(), Value::Long(100)),
            ("end_lsn".into(), Value::Long(120)),
            ("commit_timestamp".into(), Value::TimestampMicros(-5)),
            ("event_count".into(), Value::Long(4)),
            (
                "events_by_table".into(),
                Value::Map(
                    [("public.bookings", 2), ("public.payments", 1)]
                        .into_iter()
                        .map(|(table, count)| (table.to_string(), Value::Long(count)))
                        .collect(),
                ),
            ),
            ("source_database".into(), Value::String("travel".into())),
            ("slot_name".into(), Value::String("slot".into())),
        ]);
        assert_eq!(decoded_boundary(&registered, &bytes), expected);
        assert_eq!(tally.event_count(), 0, "the tally starts over");

        // A transaction of messages only: an empty map.
        tally.count_message();
        bytes.clear();
        tally.write_record(&written, &end, "travel", "slot", &mut bytes);
        let Value::Record(fields) = decoded_boundary(&registered, &bytes) else {
            panic!("not a record")
        };
        assert_eq!(fields[4].1, Value::Long(1));
        assert_eq!(fields[5].1, Value::Map(Default::default()));
    }

    #[test]
    fn a_boundary_schema_other_than_the_written_one_is_refused_naming_the_field() {
        let retyped = platform::schemas::CDC_TRANSACTION.replacen(
            r#""name": "end_lsn",
      "type": "long""#,
            r#""name": "end_lsn",
      "type": "int""#,
            1,
        );
        assert_ne!(retyped, platform::schemas::CDC_TRANSACTION);
        let renamed = platform::schemas::CDC_TRANSACTION.replacen("\"slot_name\"", "\"slot\"", 1);
        for (text, field) in [(retyped, "end_lsn"), (renamed, "slot_name")] {
            let error = TransactionSchema::from_registered(&schema(&text))
                .err()
                .expect("refused")
                .to_string();
            assert!(error.contains(field), "{error}");
        }
        let change = schema(platform::schemas::CDC_CHANGE);
        assert!(TransactionSchema::from_registered(&change).is_err());
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
