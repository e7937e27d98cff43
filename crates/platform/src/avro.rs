//! Avro datums in the Confluent wire format: magic byte 0, the schema id (big-endian u32), the datum.

pub mod binary;

use apache_avro::{
    Schema, reader::datum::GenericDatumReader, types::Value, writer::datum::GenericDatumWriter,
};
use serde_json::{Map, Number, Value as Json};

use crate::registry::{RegistryClient, RegistryError};

const MAGIC_BYTE: u8 = 0;
const HEADER_LEN: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("cannot Avro-encode the record: {0}")]
    Encode(Box<apache_avro::Error>),
    #[error("record is not in Confluent wire format: {0}")]
    NotWireFormat(&'static str),
    #[error("cannot decode the record with schema {id}: {source}")]
    Decode {
        id: u32,
        source: Box<apache_avro::Error>,
    },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// A schema with the id the registry gave it, ready to encode records.
pub struct RegisteredSchema {
    pub id: u32,
    pub schema: Schema,
}

impl RegisteredSchema {
    pub fn encode(&self, value: Value) -> Result<Vec<u8>, AvroError> {
        let mut framed = Vec::with_capacity(256);
        framed.push(MAGIC_BYTE);
        framed.extend_from_slice(&self.id.to_be_bytes());
        GenericDatumWriter::builder(&self.schema)
            .build()
            .and_then(|writer| writer.write_value_ref(&mut framed, &value))
            .map_err(|e| AvroError::Encode(Box::new(e)))?;
        Ok(framed)
    }
}

/// Splits a Confluent-framed payload into schema id and datum.
pub fn split_wire_format(payload: &[u8]) -> Result<(u32, &[u8]), AvroError> {
    if payload.len() < HEADER_LEN {
        return Err(AvroError::NotWireFormat("shorter than the 5-byte header"));
    }
    if payload[0] != MAGIC_BYTE {
        return Err(AvroError::NotWireFormat("magic byte is not 0"));
    }
    let id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
    Ok((id, &payload[HEADER_LEN..]))
}

/// Decodes a Confluent-framed payload with its writer schema from the registry.
pub async fn decode(registry: &RegistryClient, payload: &[u8]) -> Result<Value, AvroError> {
    let (id, mut datum) = split_wire_format(payload)?;
    let schema = registry.schema_by_id(id).await?;
    read_datum(&schema, &mut datum).map_err(|source| AvroError::Decode {
        id,
        source: Box::new(source),
    })
}

fn read_datum(schema: &Schema, datum: &mut &[u8]) -> apache_avro::AvroResult<Value> {
    GenericDatumReader::builder(schema)
        .build()?
        .read_value(datum)
}

/// Plain JSON for a decoded Avro value: unions unwrap to their branch, records become objects,
/// enums their symbol, bytes a lowercase hex string.
pub fn to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Int(i) | Value::Date(i) | Value::TimeMillis(i) => Json::from(*i),
        Value::Long(i)
        | Value::TimeMicros(i)
        | Value::TimestampMillis(i)
        | Value::TimestampMicros(i)
        | Value::TimestampNanos(i)
        | Value::LocalTimestampMillis(i)
        | Value::LocalTimestampMicros(i)
        | Value::LocalTimestampNanos(i) => Json::from(*i),
        Value::Float(f) => float_json(f64::from(*f)),
        Value::Double(f) => float_json(*f),
        Value::Bytes(bytes) | Value::Fixed(_, bytes) => Json::String(hex(bytes)),
        Value::String(s) | Value::Enum(_, s) => Json::String(s.clone()),
        Value::Union(_, inner) => to_json(inner),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => {
            let mut sorted: Vec<_> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            Json::Object(
                sorted
                    .into_iter()
                    .map(|(k, v)| (k.clone(), to_json(v)))
                    .collect(),
            )
        }
        Value::Record(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Uuid(uuid) => Json::String(uuid.to_string()),
        // A fixed or bytes decimal: its unscaled two's-complement bytes, as hex.
        Value::Decimal(decimal) => match Vec::<u8>::try_from(decimal) {
            Ok(bytes) => Json::String(hex(&bytes)),
            Err(error) => Json::String(format!("undecodable decimal: {error}")),
        },
        other => Json::String(format!("{other:?}")),
    }
}

/// JSON has no NaN or infinities: those become strings, as PostgreSQL spells them.
fn float_json(f: f64) -> Json {
    Number::from_f64(f).map(Json::Number).unwrap_or_else(|| {
        Json::String(
            if f.is_nan() {
                "NaN"
            } else if f > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            }
            .to_string(),
        )
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_round_trip() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}"#,
        )
        .unwrap();
        let registered = RegisteredSchema { id: 258, schema };
        let bytes = registered
            .encode(Value::Record(vec![("a".into(), Value::Long(7))]))
            .unwrap();
        assert_eq!(&bytes[..5], &[0, 0, 0, 1, 2]);
        let (id, mut datum) = split_wire_format(&bytes).unwrap();
        assert_eq!(id, 258);
        let value = read_datum(&registered.schema, &mut datum).unwrap();
        assert_eq!(to_json(&value), serde_json::json!({"a": 7}));
    }

    #[test]
    fn rejects_payloads_that_are_not_wire_format() {
        assert!(split_wire_format(&[0, 0, 0]).is_err());
        assert!(split_wire_format(&[1, 0, 0, 0, 1, 2]).is_err());
    }

    #[test]
    fn encoding_a_value_that_does_not_fit_is_an_error() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}"#,
        )
        .unwrap();
        let registered = RegisteredSchema { id: 1, schema };
        assert!(
            registered
                .encode(Value::Record(vec![("a".into(), Value::String("x".into()))]))
                .is_err()
        );
    }

    #[test]
    fn non_finite_floats_become_strings() {
        assert_eq!(
            to_json(&Value::Double(f64::NAN)),
            Json::String("NaN".into())
        );
        assert_eq!(
            to_json(&Value::Float(f32::NEG_INFINITY)),
            Json::String("-Infinity".into())
        );
    }
}
