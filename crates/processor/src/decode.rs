//! Stage 1: an input record in, its routed records out. Pure: the writer schema is passed in,
//! and a record that cannot be used is an [`Unusable`] naming why (it goes to the dead-letter
//! topic), never a panic and never silently skipped.

use apache_avro::{Schema, types::Value};

use crate::{
    routed::{Body, Change, Lane, Op, Routed, Source, Stream},
    sketch,
};

/// Why an input record could not be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);

fn unusable(what: impl Into<String>) -> Unusable {
    Unusable(what.into())
}

/// A routed record with its routing key (which picks the repartition partition).
#[derive(Debug, Clone, PartialEq)]
pub struct Out {
    pub key: String,
    pub routed: Routed,
    /// Sent to every repartition partition instead of the key's (a TRUNCATE concerns the
    /// rows of every task).
    pub broadcast: bool,
}

fn reader_for(schema: &Schema) -> Result<DatumReader<'_>, Unusable> {
    apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()
        .map(DatumReader)
        .map_err(|e| unusable(format!("the writer schema cannot be used: {e}")))
}

/// A reader for one writer schema (Confluent framing already removed from the datum), built
/// once: resolving the schema's names for every record took 7 % of the processor's time.
pub struct DatumReader<'s>(apache_avro::reader::datum::GenericDatumReader<'s>);

impl DatumReader<'static> {
    /// A reader that lives as long as the process. The schema is leaked on purpose: there is
    /// one per schema id the processor meets, a handful in a deployment's life.
    pub fn leaked(schema: Schema) -> Result<DatumReader<'static>, Unusable> {
        let schema: &'static Schema = Box::leak(Box::new(schema));
        reader_for(schema)
    }
}

impl DatumReader<'_> {
    pub fn read(&self, mut datum: &[u8]) -> Result<Value, Unusable> {
        self.0
            .read_value(&mut datum)
            .map_err(|e| unusable(format!("Avro decoding failed: {e}")))
    }
}

/// Stage 1 for one decoded input record. `record` is the whole Confluent-framed value, kept
/// for the lanes that republish it unchanged.
pub fn route(
    stream: Stream,
    source: Source,
    value: &Value,
    record: &[u8],
) -> Result<(i64, Vec<Out>), Unusable> {
    let fields = Fields::of(value)?;
    match stream {
        Stream::AppEvents => app_event(&fields, source),
        Stream::Clickstream => click(&fields, source),
        Stream::Cdc => change(&fields, source, record),
        Stream::Logs => log(&fields, source),
        Stream::External => external(&fields, source, record),
    }
}

fn data(lane: Lane, source: Source, event_time: i64, key: String, body: Body) -> Out {
    Out {
        key,
        routed: Routed::Data {
            lane,
            source,
            event_time,
            body,
        },
        broadcast: false,
    }
}

fn app_event(f: &Fields<'_>, source: Source) -> Result<(i64, Vec<Out>), Unusable> {
    let time = f.time("timestamp")?;
    let event_type = f.string("event_type")?.to_string();
    let origin = f.string("source")?.to_string();
    let user = f.opt_string("user_id")?.map(sketch::hash_value);
    let group_key = format!("{event_type}|{origin}");
    let body = Body::AppEvent {
        event_type,
        source: origin,
        user,
    };
    Ok((
        time,
        vec![
            data(Lane::AppEventGroups, source, time, group_key, body.clone()),
            // All events of the job also meet in one place for the per-window totals.
            data(
                Lane::AppEventTotals,
                source,
                time,
                "app_event_totals".into(),
                body,
            ),
        ],
    ))
}

fn click(f: &Fields<'_>, source: Source) -> Result<(i64, Vec<Out>), Unusable> {
    let time = f.time("timestamp")?;
    let page = f.string("page_url")?.to_string();
    let session = f.string("session_id")?.to_string();
    let interaction = f.string("interaction")?;
    let is_click = matches!(interaction, "CLICK" | "TAP");
    let x = f.int("x")?;
    let y = f.int("y")?;
    let body = Body::Click {
        page: page.clone(),
        session: session.clone(),
        is_click,
        x,
        y,
    };
    Ok((
        time,
        vec![
            data(Lane::PageClicks, source, time, page, body.clone()),
            data(Lane::Sessions, source, time, session, body),
        ],
    ))
}

fn change(f: &Fields<'_>, source: Source, record: &[u8]) -> Result<(i64, Vec<Out>), Unusable> {
    let src = f.record("source")?;
    let commit_micros = src.long("commit_timestamp")?;
    let time = commit_micros.div_euclid(1000);
    let op = match f.string("operation")? {
        "INSERT" => Op::Insert,
        "UPDATE" => Op::Update,
        "DELETE" => Op::Delete,
        "TRUNCATE" => Op::Truncate,
        "READ" => Op::Read,
        other => {
            return Err(unusable(format!(
                "field operation: unknown operation {other}"
            )));
        }
    };
    let table = f.string("table_name")?.to_string();
    let key = key_of(&table, f.map("primary_key")?)?;
    let after = f.opt_map("after_values")?;
    let before = f.opt_map("before_values")?;
    let column =
        |map: Option<MapView<'_>>, name: &str| map.and_then(|m| m.get(name)).and_then(column_text);
    // A DELETE's row is its old row (key columns at least).
    let row = if op == Op::Delete { before } else { after };
    let sequence = if op == Op::Read {
        -1
    } else {
        i64::from(src.int("sequence")?)
    };
    let change = Change {
        change_id: f.string("change_id")?.to_string(),
        table: table.clone(),
        key: key.clone(),
        op,
        position: (src.long("commit_lsn")?, sequence),
        status: column(after, "status"),
        old_status: column(before, "status"),
        booking_id: column(row, "booking_id"),
        user_id: column(row, "user_id"),
        amount: column(row, "amount"),
    };
    let mut out = vec![data(
        Lane::CdcTables,
        source,
        time,
        table.clone(),
        Body::Change(Box::new(change.clone())),
    )];
    if matches!(table.as_str(), "public.bookings" | "public.payments")
        && let Some(booking) = change.booking_id.clone()
    {
        out.push(data(
            Lane::BookingRefs,
            source,
            time,
            format!("booking/{booking}"),
            Body::Change(Box::new(change.clone())),
        ));
    }
    let truncate = op == Op::Truncate;
    let mut keyed = data(
        Lane::CdcKeys,
        source,
        time,
        key,
        Body::ChangeWithRecord {
            change: Box::new(change),
            record: if truncate {
                Vec::new()
            } else {
                record.to_vec()
            },
        },
    );
    keyed.broadcast = truncate;
    out.push(keyed);
    Ok((time, out))
}

fn log(f: &Fields<'_>, source: Source) -> Result<(i64, Vec<Out>), Unusable> {
    let time = f.time("timestamp")?;
    let service = f.string("service")?.to_string();
    let body = Body::Log {
        service: service.clone(),
        level: f.string("level")?.to_string(),
        log_id: f.string("log_id")?.to_string(),
    };
    Ok((time, vec![data(Lane::Logs, source, time, service, body)]))
}

fn external(f: &Fields<'_>, source: Source, record: &[u8]) -> Result<(i64, Vec<Out>), Unusable> {
    let time = f.time("observed_at")?;
    let source_type = f.string("source_type")?;
    let entity = external_entity(f)?;
    let key = format!("{source_type}/{entity}");
    Ok((
        time,
        vec![data(
            Lane::External,
            source,
            time,
            key.clone(),
            Body::External {
                entity: key,
                record: record.to_vec(),
            },
        )],
    ))
}

/// What an external reading is about: its location (city) when it has one, else the
/// `symbol`, `feed`, `entity`, `id` or `name` of its payload, else its pipeline.
fn external_entity(f: &Fields<'_>) -> Result<String, Unusable> {
    if let Some(location) = f.opt_string("location")? {
        return Ok(location.to_string());
    }
    let payload = f.string("payload_json")?;
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(payload) {
        for name in ["symbol", "feed", "entity", "id", "name"] {
            match map.get(name) {
                Some(serde_json::Value::String(s)) => return Ok(s.clone()),
                Some(serde_json::Value::Number(n)) => return Ok(n.to_string()),
                _ => {}
            }
        }
    }
    Ok(f.string("pipeline")?.to_string())
}

/// `schema.table/{"col":value,...}` with the key columns in name order, the same text as the
/// connector's record key, so a row's state key is its Kafka key.
fn key_of(table: &str, columns: MapView<'_>) -> Result<String, Unusable> {
    let mut object = serde_json::Map::new();
    for (name, value) in columns.sorted() {
        let json = match unwrap_union(value) {
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Long(i) => serde_json::Value::from(*i),
            Value::Boolean(b) => serde_json::Value::from(*b),
            Value::Null => serde_json::Value::Null,
            other => match column_text(other) {
                Some(text) => serde_json::Value::String(text),
                None => {
                    return Err(unusable(format!(
                        "field primary_key.{name}: a key column whose value has no text form"
                    )));
                }
            },
        };
        object.insert(name.clone(), json);
    }
    Ok(format!("{table}/{}", serde_json::Value::Object(object)))
}

fn unwrap_union(value: &Value) -> &Value {
    match value {
        Value::Union(_, inner) => unwrap_union(inner),
        other => other,
    }
}

/// A column value of a CDCChange as text: numbers, strings, and the records with a text
/// (Numeric, Uuid, Json `value`, Other's `text`, an EnumValue's `label`). None for NULL and
/// the unavailable markers.
fn column_text(value: &Value) -> Option<String> {
    match unwrap_union(value) {
        Value::String(s) | Value::Enum(_, s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Long(i) => Some(i.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        // A numeric under the connector's --decimal-handling double.
        Value::Double(d) => Some(d.to_string()),
        Value::Record(fields) => fields
            .iter()
            .find(|(k, _)| k == "value" || k == "text" || k == "label")
            .and_then(|(_, v)| column_text(v)),
        _ => None,
    }
}

/// Named access to a decoded Avro record, with errors that name the field.
struct Fields<'a> {
    fields: &'a [(String, Value)],
    prefix: &'a str,
}

impl<'a> Fields<'a> {
    fn of(value: &'a Value) -> Result<Fields<'a>, Unusable> {
        match value {
            Value::Record(fields) => Ok(Fields { fields, prefix: "" }),
            _ => Err(unusable("the value is not an Avro record")),
        }
    }

    fn get(&self, name: &str) -> Result<&'a Value, Unusable> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| unwrap_union(v))
            .ok_or_else(|| unusable(format!("field {}{name} is missing", self.prefix)))
    }

    fn wrong(&self, name: &str, wanted: &str, got: &Value) -> Unusable {
        unusable(format!(
            "field {}{name}: expected {wanted}, found {got:?}",
            self.prefix
        ))
    }

    fn string(&self, name: &str) -> Result<&'a str, Unusable> {
        match self.get(name)? {
            Value::String(s) | Value::Enum(_, s) => Ok(s),
            other => Err(self.wrong(name, "a string", other)),
        }
    }

    fn opt_string(&self, name: &str) -> Result<Option<&'a str>, Unusable> {
        match self.get(name) {
            Ok(Value::Null) | Err(_) => Ok(None),
            Ok(Value::String(s)) => Ok(Some(s)),
            Ok(other) => Err(self.wrong(name, "a string or null", other)),
        }
    }

    fn long(&self, name: &str) -> Result<i64, Unusable> {
        match self.get(name)? {
            Value::Long(i)
            | Value::TimestampMillis(i)
            | Value::TimestampMicros(i)
            | Value::LocalTimestampMillis(i)
            | Value::LocalTimestampMicros(i) => Ok(*i),
            Value::Int(i) => Ok(i64::from(*i)),
            other => Err(self.wrong(name, "a long", other)),
        }
    }

    fn int(&self, name: &str) -> Result<i32, Unusable> {
        match self.get(name)? {
            Value::Int(i) => Ok(*i),
            other => Err(self.wrong(name, "an int", other)),
        }
    }

    /// A timestamp-millis field; negative times are refused (windows start at the epoch).
    fn time(&self, name: &str) -> Result<i64, Unusable> {
        let t = self.long(name)?;
        if t < 0 {
            return Err(unusable(format!(
                "field {}{name}: event time {t} is before 1970",
                self.prefix
            )));
        }
        Ok(t)
    }

    fn record(&self, name: &'a str) -> Result<Fields<'a>, Unusable> {
        match self.get(name)? {
            Value::Record(fields) => Ok(Fields {
                fields,
                prefix: if name == "source" { "source." } else { "" },
            }),
            other => Err(self.wrong(name, "a record", other)),
        }
    }

    fn map(&self, name: &str) -> Result<MapView<'a>, Unusable> {
        self.opt_map(name)?
            .ok_or_else(|| unusable(format!("field {}{name} is null", self.prefix)))
    }

    fn opt_map(&self, name: &str) -> Result<Option<MapView<'a>>, Unusable> {
        match self.get(name)? {
            Value::Null => Ok(None),
            Value::Map(map) => Ok(Some(MapView(map))),
            other => Err(self.wrong(name, "a map", other)),
        }
    }
}

/// A map-typed field: apache-avro decodes Avro maps into a HashMap.
#[derive(Clone, Copy)]
struct MapView<'a>(&'a std::collections::HashMap<String, Value>);

impl<'a> MapView<'a> {
    fn get(self, name: &str) -> Option<&'a Value> {
        self.0.get(name)
    }

    /// Entries in name order (deterministic).
    fn sorted(self) -> Vec<(&'a String, &'a Value)> {
        let mut entries: Vec<_> = self.0.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(schema: &str, json: serde_json::Value) -> (Schema, Value) {
        let schema = Schema::parse_str(schema).unwrap();
        let value = Value::try_from(json).unwrap().resolve(&schema).unwrap();
        (schema, value)
    }

    fn source() -> Source {
        Source {
            stream: Stream::Cdc,
            partition: 2,
            offset: 40,
        }
    }

    fn cdc(operation: &str, after: serde_json::Value) -> serde_json::Value {
        json!({
            "change_id": "0000000000000064-00000000", "table_name": "public.payments",
            "operation": operation, "primary_key": {"payment_id": 7},
            "before_values": null, "after_values": after, "timestamp": 1,
            "source_database": "travel",
            "source": {"commit_lsn": 100, "event_lsn": 100, "transaction_id": 5, "sequence": 3,
                       "commit_timestamp": 1_764_000_000_123_456i64, "slot_name": "s"}
        })
    }

    #[test]
    fn a_payment_change_feeds_the_table_booking_and_key_lanes() {
        let (_, v) = value(
            platform::schemas::CDC_CHANGE,
            cdc(
                "UPDATE",
                json!({"payment_id": 7, "booking_id": 9, "status": "failed", "amount": "12.50"}),
            ),
        );
        let (time, outs) = route(Stream::Cdc, source(), &v, b"raw").unwrap();
        assert_eq!(time, 1_764_000_000_123, "commit time in milliseconds");
        let keys: Vec<&str> = outs.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "public.payments",
                "booking/9",
                "public.payments/{\"payment_id\":7}"
            ]
        );
        let Routed::Data {
            body: Body::ChangeWithRecord { change, record },
            ..
        } = &outs[2].routed
        else {
            panic!("{outs:?}")
        };
        assert_eq!(record, b"raw");
        assert_eq!(change.position, (100, 3));
        assert_eq!(change.status.as_deref(), Some("failed"));
        assert_eq!(change.amount.as_deref(), Some("12.50"));
    }

    #[test]
    fn a_truncate_reaches_every_task() {
        let (_, v) = value(platform::schemas::CDC_CHANGE, cdc("TRUNCATE", json!(null)));
        let (_, outs) = route(Stream::Cdc, source(), &v, b"raw").unwrap();
        assert!(outs.iter().any(|o| o.broadcast));
    }

    #[test]
    fn an_unusable_record_names_the_field() {
        let (_, v) = value(
            platform::schemas::CLICKSTREAM,
            json!({"event_id": "e", "session_id": "s", "user_id": null, "interaction": "CLICK",
                   "page_url": "/", "element_id": null, "x": 1, "y": 2, "viewport_width": null,
                   "viewport_height": null, "device_type": "desktop", "referrer": null,
                   "timestamp": -5, "received_at": 0}),
        );
        let err = route(Stream::Clickstream, source(), &v, b"").unwrap_err();
        assert!(
            err.0.contains("timestamp") && err.0.contains("before 1970"),
            "{err}"
        );
        // A record of another schema: the missing field is named.
        let (_, log) = value(
            platform::schemas::EXTERNAL_DATA,
            json!({"record_id": "r", "source_type": "WEATHER", "pipeline": "p", "location": null,
                   "observed_at": 1, "fetched_at": 1, "payload_json": "{}", "quality_warnings": [],
                   "received_at": 1}),
        );
        let err = route(Stream::AppEvents, source(), &log, b"").unwrap_err();
        assert!(err.0.contains("field timestamp is missing"), "{err}");
    }

    #[test]
    fn external_readings_are_keyed_by_source_and_entity() {
        let (_, v) = value(
            platform::schemas::EXTERNAL_DATA,
            json!({"record_id": "r", "source_type": "MARKET_DATA", "pipeline": "p", "location": null,
                   "observed_at": 1, "fetched_at": 1, "payload_json": "{\"symbol\":\"VND/USD\"}",
                   "quality_warnings": [], "received_at": 1}),
        );
        let (_, outs) = route(Stream::External, source(), &v, b"").unwrap();
        assert_eq!(outs[0].key, "MARKET_DATA/VND/USD");
    }

    #[test]
    fn garbage_never_panics() {
        let schema = Schema::parse_str(platform::schemas::APP_EVENT).unwrap();
        let reader = DatumReader::leaked(schema).unwrap();
        for bytes in [&b""[..], b"\x00", b"\xff\xff\xff\xff\xff", b"\x02a\x02b"] {
            assert!(reader.read(bytes).is_err(), "{bytes:?}");
        }
    }
}
