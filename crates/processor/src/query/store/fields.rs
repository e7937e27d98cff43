//! Named, typed access to the fields of a decoded Avro record, with errors that name the
//! field: every reader of the view's records goes through it.

use std::collections::BTreeMap;

use apache_avro::types::Value;

pub(super) fn unwrap_union(value: &Value) -> &Value {
    match value {
        Value::Union(_, inner) => unwrap_union(inner),
        other => other,
    }
}

pub(super) fn int_of(value: &Value) -> Result<i64, String> {
    match unwrap_union(value) {
        Value::Int(i) | Value::Date(i) => Ok(i64::from(*i)),
        Value::Long(i)
        | Value::TimestampMillis(i)
        | Value::TimestampMicros(i)
        | Value::TimeMicros(i) => Ok(*i),
        other => Err(format!("not an integer: {other:?}")),
    }
}

/// Named access to a decoded Avro record, with errors naming the field.
pub(super) struct Fields<'a>(&'a [(String, Value)]);

impl<'a> Fields<'a> {
    pub(super) fn of(value: &'a Value) -> Result<Fields<'a>, String> {
        match unwrap_union(value) {
            Value::Record(fields) => Ok(Fields(fields)),
            other => Err(format!("not an Avro record: {other:?}")),
        }
    }

    pub(super) fn get(&self, name: &str) -> Result<&'a Value, String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| unwrap_union(v))
            .ok_or_else(|| format!("field {name} is missing"))
    }

    pub(super) fn opt(&self, name: &str) -> Result<Option<&'a Value>, String> {
        Ok(match self.0.iter().find(|(k, _)| k == name) {
            None => None,
            Some((_, v)) => match unwrap_union(v) {
                Value::Null => None,
                v => Some(v),
            },
        })
    }

    pub(super) fn text(&self, name: &str) -> Result<String, String> {
        match self.get(name)? {
            Value::String(s) | Value::Enum(_, s) => Ok(s.clone()),
            other => Err(format!("field {name}: not a string: {other:?}")),
        }
    }

    pub(super) fn int(&self, name: &str) -> Result<i64, String> {
        int_of(self.get(name)?).map_err(|e| format!("field {name}: {e}"))
    }

    pub(super) fn string_map(&self, name: &str) -> Result<BTreeMap<String, String>, String> {
        match self.get(name)? {
            Value::Map(map) => map
                .iter()
                .map(|(k, v)| match unwrap_union(v) {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Err(format!("field {name}.{k}: not a string: {other:?}")),
                })
                .collect(),
            other => Err(format!("field {name}: not a map: {other:?}")),
        }
    }
}
