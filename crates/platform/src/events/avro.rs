//! The Avro record of an event, written straight into Confluent wire-format bytes.
//!
//! No `apache_avro::types::Value` tree per event (a `String` per field name, a `HashMap` per
//! map, a schema walk to place union branches, a name resolution per record): the topic's
//! registered schema is read once into an [`EventSchema`] (per field its name, its type, the
//! position of each union branch, the enum's symbols), and the writer checks every field it
//! writes against it, by name and by type. The schema stays the single source of truth: a
//! schema that reorders symbols or union branches still encodes correctly, and one that renames,
//! drops, adds or retypes a field, or lacks a symbol, is an error that names the field. The
//! tests decode what this writes with apache-avro and compare it with the value built
//! independently from the schema, for every kind and every symbol.

use std::collections::BTreeMap;

use apache_avro::{Schema, schema::SchemaKind};

use super::{Device, Event};
use crate::avro::{
    RegisteredSchema,
    binary::{frame, long, string},
};

/// An event that cannot be encoded with the schema it was given.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A symbol the schema's enum lacks, a field it does not have or has in another place or
    /// of another type: the code and the schema disagree.
    #[error("event does not fit the schema of {topic}: {problem}")]
    Shape {
        topic: &'static str,
        problem: String,
    },
}

/// A topic's registered schema, read for writing events: its id and the layout of its record.
#[derive(Debug, Clone)]
pub struct EventSchema {
    id: u32,
    record: Slot,
}

impl EventSchema {
    pub fn new(registered: &RegisteredSchema) -> Self {
        Self {
            id: registered.id,
            record: Slot::of(&registered.schema, &registered.schema, 0),
        }
    }
}

/// How one value is written, read from the schema.
#[derive(Debug, Clone)]
enum Slot {
    String,
    Int,
    TimestampMillis,
    /// The schema's symbols, in order: a symbol is written as its position.
    Enum(Vec<String>),
    /// A union of `null` and one other type, in either order.
    Optional {
        null: u32,
        value: u32,
        inner: Box<Slot>,
    },
    StringMap,
    StringArray,
    Record(Vec<Field>),
    /// A type no event has (its kind, for the error once something is written to it).
    Unsupported(String),
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    slot: Slot,
}

impl Slot {
    /// The slot of `schema` at nesting `depth`; `root` is the whole schema, where named
    /// references are looked up. A recursive schema ends in an unsupported slot, not a loop.
    fn of(schema: &Schema, root: &Schema, depth: usize) -> Self {
        const DEEPEST: usize = 16;
        let unsupported = || Self::Unsupported(format!("{:?}", SchemaKind::from(schema)));
        if depth > DEEPEST {
            return Self::Unsupported(format!("a type nested deeper than {DEEPEST} levels"));
        }
        match schema {
            Schema::Ref { name } => match find_named(root, &name.fullname(None)) {
                Some(named) => Self::of(named, root, depth + 1),
                None => Self::Unsupported(format!("undefined {}", name.fullname(None))),
            },
            Schema::String => Self::String,
            Schema::Int => Self::Int,
            Schema::TimestampMillis => Self::TimestampMillis,
            Schema::Enum(e) => Self::Enum(e.symbols.clone()),
            Schema::Union(union) => {
                let variants = union.variants();
                let null = variants.iter().position(|v| *v == Schema::Null);
                match (variants.len(), null) {
                    (2, Some(null)) => Self::Optional {
                        null: null as u32,
                        value: 1 - null as u32,
                        inner: Box::new(Self::of(&variants[1 - null], root, depth + 1)),
                    },
                    _ => unsupported(),
                }
            }
            Schema::Map(map) if *map.types == Schema::String => Self::StringMap,
            Schema::Array(array) if *array.items == Schema::String => Self::StringArray,
            Schema::Record(record) => Self::Record(
                record
                    .fields
                    .iter()
                    .map(|f| Field {
                        name: f.name.clone(),
                        slot: Self::of(&f.schema, root, depth + 1),
                    })
                    .collect(),
            ),
            _ => unsupported(),
        }
    }

    /// What the slot holds, for errors.
    fn describe(&self) -> String {
        match self {
            Self::String => "string".into(),
            Self::Int => "int".into(),
            Self::TimestampMillis => "timestamp-millis".into(),
            Self::Enum(_) => "an enum".into(),
            Self::Optional { inner, .. } => format!("an optional {}", inner.describe()),
            Self::StringMap => "a map of strings".into(),
            Self::StringArray => "an array of strings".into(),
            Self::Record(_) => "a record".into(),
            Self::Unsupported(kind) => kind.clone(),
        }
    }
}

type Written = Result<(), String>;

fn mismatch(slot: &Slot, wanted: &str) -> String {
    format!(
        "the schema has {} where the event has {wanted}",
        slot.describe()
    )
}

/// Writes the fields of one record in the schema's order, checking each against its slot.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    fields: std::slice::Iter<'a, Field>,
}

impl<'a> Writer<'a> {
    fn field(&mut self, name: &str) -> Result<&'a Slot, String> {
        match self.fields.next() {
            Some(field) if field.name == name => Ok(&field.slot),
            Some(field) => Err(format!(
                "{name}: the schema has {} in its place",
                field.name
            )),
            None => Err(format!("{name}: the schema has no such field")),
        }
    }

    /// The field `name`, written by `write`.
    fn put<V>(
        &mut self,
        name: &str,
        value: V,
        write: fn(&mut Vec<u8>, &Slot, V) -> Written,
    ) -> Written {
        let slot = self.field(name)?;
        write(self.out, slot, value).map_err(|e| format!("{name}: {e}"))
    }

    /// The optional field `name`: its null branch, or its value's branch and `write`.
    fn optional<V>(
        &mut self,
        name: &str,
        value: Option<V>,
        write: fn(&mut Vec<u8>, &Slot, V) -> Written,
    ) -> Written {
        let slot = self.field(name)?;
        let Slot::Optional {
            null,
            value: branch,
            inner,
        } = slot
        else {
            return Err(format!("{name}: {}", mismatch(slot, "an optional value")));
        };
        match value {
            None => long(self.out, i64::from(*null)),
            Some(value) => {
                long(self.out, i64::from(*branch));
                write(self.out, inner, value).map_err(|e| format!("{name}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Every field of the schema's record was written.
    fn finish(mut self) -> Written {
        match self.fields.next() {
            None => Ok(()),
            Some(field) => Err(format!(
                "{}: the schema has this field, the event does not",
                field.name
            )),
        }
    }
}

fn put_string(out: &mut Vec<u8>, slot: &Slot, value: &str) -> Written {
    match slot {
        Slot::String => {
            string(out, value);
            Ok(())
        }
        _ => Err(mismatch(slot, "a string")),
    }
}

fn put_int(out: &mut Vec<u8>, slot: &Slot, value: i32) -> Written {
    match slot {
        Slot::Int => {
            long(out, i64::from(value));
            Ok(())
        }
        _ => Err(mismatch(slot, "an int")),
    }
}

fn put_millis(out: &mut Vec<u8>, slot: &Slot, value: i64) -> Written {
    match slot {
        Slot::TimestampMillis => {
            long(out, value);
            Ok(())
        }
        _ => Err(mismatch(slot, "a timestamp-millis")),
    }
}

fn put_symbol(out: &mut Vec<u8>, slot: &Slot, symbol: &str) -> Written {
    let Slot::Enum(symbols) = slot else {
        return Err(mismatch(slot, "an enum symbol"));
    };
    let position = symbols
        .iter()
        .position(|s| s == symbol)
        .ok_or_else(|| format!("{symbol} is not a symbol of the schema's enum"))?;
    long(out, position as i64);
    Ok(())
}

/// A map as one block: its count, the entries, then the empty block that ends it.
fn put_string_map(out: &mut Vec<u8>, slot: &Slot, map: &BTreeMap<String, String>) -> Written {
    let Slot::StringMap = slot else {
        return Err(mismatch(slot, "a map of strings"));
    };
    if !map.is_empty() {
        long(out, map.len() as i64);
        for (key, value) in map {
            string(out, key);
            string(out, value);
        }
    }
    long(out, 0);
    Ok(())
}

/// An array as one block, like a map.
fn put_string_array(out: &mut Vec<u8>, slot: &Slot, items: &[String]) -> Written {
    let Slot::StringArray = slot else {
        return Err(mismatch(slot, "an array of strings"));
    };
    if !items.is_empty() {
        long(out, items.len() as i64);
        for item in items {
            string(out, item);
        }
    }
    long(out, 0);
    Ok(())
}

/// The fields of a record, written by `write`.
fn put_record(
    out: &mut Vec<u8>,
    slot: &Slot,
    write: impl FnOnce(&mut Writer<'_>) -> Written,
) -> Written {
    let Slot::Record(fields) = slot else {
        return Err(mismatch(slot, "a record"));
    };
    let mut writer = Writer {
        out,
        fields: fields.iter(),
    };
    write(&mut writer)?;
    writer.finish()
}

fn put_device(out: &mut Vec<u8>, slot: &Slot, device: &Device) -> Written {
    put_record(out, slot, |w| {
        w.put("device_type", device.device_type.symbol(), put_symbol)?;
        w.optional("os_version", device.os_version.as_deref(), put_string)?;
        w.optional("app_version", device.app_version.as_deref(), put_string)?;
        w.optional("user_agent", device.user_agent.as_deref(), put_string)
    })
}

impl Event {
    /// The event in the Confluent wire format of `schema` (its topic's registered schema, see
    /// [`Event::schema_text`]), as published at `received_at_ms`.
    pub fn encode(
        &self,
        schema: &EventSchema,
        received_at_ms: i64,
    ) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(256);
        frame(&mut out, schema.id);
        self.write(&mut out, &schema.record, received_at_ms)
            .map_err(|problem| EncodeError::Shape {
                topic: self.topic(),
                problem,
            })?;
        Ok(out)
    }

    fn write(&self, out: &mut Vec<u8>, record: &Slot, received_at_ms: i64) -> Written {
        put_record(out, record, |w| match self {
            Self::App(e) => {
                w.put("event_id", e.event_id.as_str(), put_string)?;
                w.put("event_type", e.event_type.as_str(), put_string)?;
                w.put("source", e.source.symbol(), put_symbol)?;
                w.optional("user_id", e.user_id.as_deref(), put_string)?;
                w.optional("session_id", e.session_id.as_deref(), put_string)?;
                w.optional("booking_id", e.booking_id.as_deref(), put_string)?;
                w.optional("device", e.device.as_ref(), put_device)?;
                w.put("timestamp", e.timestamp_ms, put_millis)?;
                w.put("received_at", received_at_ms, put_millis)?;
                w.put("properties", &e.properties, put_string_map)
            }
            Self::Click(e) => {
                w.put("event_id", e.event_id.as_str(), put_string)?;
                w.put("session_id", e.session_id.as_str(), put_string)?;
                w.optional("user_id", e.user_id.as_deref(), put_string)?;
                w.put("interaction", e.interaction.symbol(), put_symbol)?;
                w.put("page_url", e.page_url.as_str(), put_string)?;
                w.optional("element_id", e.element_id.as_deref(), put_string)?;
                w.put("x", e.x, put_int)?;
                w.put("y", e.y, put_int)?;
                w.optional("viewport_width", e.viewport_width, put_int)?;
                w.optional("viewport_height", e.viewport_height, put_int)?;
                w.put("device_type", e.device_type.as_str(), put_string)?;
                w.optional("referrer", e.referrer.as_deref(), put_string)?;
                w.put("timestamp", e.timestamp_ms, put_millis)?;
                w.put("received_at", received_at_ms, put_millis)
            }
            Self::Log(e) => {
                w.put("log_id", e.log_id.as_str(), put_string)?;
                w.put("service", e.service.as_str(), put_string)?;
                w.put("level", e.level.symbol(), put_symbol)?;
                w.put("message", e.message.as_str(), put_string)?;
                w.optional("logger", e.logger.as_deref(), put_string)?;
                w.optional("host", e.host.as_deref(), put_string)?;
                w.optional("trace_id", e.trace_id.as_deref(), put_string)?;
                w.optional("request_id", e.request_id.as_deref(), put_string)?;
                w.optional("user_id", e.user_id.as_deref(), put_string)?;
                w.optional("session_id", e.session_id.as_deref(), put_string)?;
                w.optional("booking_id", e.booking_id.as_deref(), put_string)?;
                w.put("attributes", &e.attributes, put_string_map)?;
                w.put("timestamp", e.timestamp_ms, put_millis)?;
                w.put("received_at", received_at_ms, put_millis)
            }
            Self::External(e) => {
                w.put("record_id", e.record_id.as_str(), put_string)?;
                w.put("source_type", e.source_type.symbol(), put_symbol)?;
                w.put("pipeline", e.pipeline.as_str(), put_string)?;
                w.optional("location", e.location.as_deref(), put_string)?;
                w.put("observed_at", e.observed_at_ms, put_millis)?;
                w.put("fetched_at", e.fetched_at_ms, put_millis)?;
                w.put("payload_json", e.payload_json.as_str(), put_string)?;
                w.put(
                    "quality_warnings",
                    e.quality_warnings.as_slice(),
                    put_string_array,
                )?;
                w.put("received_at", received_at_ms, put_millis)
            }
        })
    }
}

/// The named type (record, enum, fixed) called `fullname` defined anywhere in `schema`.
pub(super) fn find_named<'a>(schema: &'a Schema, fullname: &str) -> Option<&'a Schema> {
    match schema {
        Schema::Record(record) => {
            if record.name.fullname(None) == fullname {
                return Some(schema);
            }
            record
                .fields
                .iter()
                .find_map(|f| find_named(&f.schema, fullname))
        }
        Schema::Enum(e) if e.name.fullname(None) == fullname => Some(schema),
        Schema::Fixed(f) if f.name.fullname(None) == fullname => Some(schema),
        Schema::Union(union) => union
            .variants()
            .iter()
            .find_map(|v| find_named(v, fullname)),
        Schema::Map(map) => find_named(&map.types, fullname),
        Schema::Array(array) => find_named(&array.items, fullname),
        _ => None,
    }
}
