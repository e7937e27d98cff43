//! The Kafka key of a change: `schema.table/{"pk_column":value,...}`, so all changes of one row
//! share a key and Kafka keeps them in order on one partition.
//!
//! Written out here rather than through a JSON library's map type, whose key order depends on a
//! crate feature any dependency may switch on: columns are sorted by name, integers and booleans
//! are JSON numbers and booleans, every other value is its canonical text
//! (`TypedValue::canonical_text`, documented in the README) as a JSON string, a value not sent is
//! `null`. A property test holds it to serde_json's own serialisation of the same object.

use pgoutput::row::{ColumnValue, TypedValue};

use crate::changes::ChangeEvent;

pub fn kafka_key(event: &ChangeEvent) -> String {
    let mut key = String::with_capacity(event.table.len() + 32);
    write_kafka_key(event, &mut key);
    key
}

/// [`kafka_key`] appended to `key`: a caller that keys millions of records writes them into
/// a buffer it reuses.
pub fn write_kafka_key(event: &ChangeEvent, key: &mut String) {
    key.push_str(&event.table);
    key.push_str("/{");
    // Column names of a relation are unique, so sorting by name is a total order. Most keys
    // are one column, or already in name order: sorted only when they are not.
    if event.primary_key.is_sorted_by(|a, b| a.0 < b.0) {
        write_columns(key, event.primary_key.iter());
    } else {
        let mut columns: Vec<_> = event.primary_key.iter().collect();
        columns.sort_by(|a, b| a.0.cmp(&b.0));
        write_columns(key, columns.into_iter());
    }
    key.push('}');
}

fn write_columns<'a>(
    key: &mut String,
    columns: impl Iterator<Item = &'a (std::sync::Arc<str>, ColumnValue)>,
) {
    for (index, (name, value)) in columns.enumerate() {
        if index > 0 {
            key.push(',');
        }
        json_string(key, name);
        key.push(':');
        match value {
            ColumnValue::Value(TypedValue::Int(i)) => key.push_str(itoa::Buffer::new().format(*i)),
            ColumnValue::Value(TypedValue::Long(i)) => key.push_str(itoa::Buffer::new().format(*i)),
            ColumnValue::Value(TypedValue::Bool(b)) => {
                key.push_str(if *b { "true" } else { "false" })
            }
            ColumnValue::Value(typed) => json_string(key, &typed.canonical_text()),
            ColumnValue::Null | ColumnValue::UnchangedToast | ColumnValue::NotInReplicaIdentity => {
                key.push_str("null")
            }
        }
    }
}

/// A JSON string literal, escaped as serde_json does: `"` and `\`, the short escapes for
/// backspace, tab, newline, form feed and carriage return, `\u00XX` for other control
/// characters, everything else verbatim.
fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{0c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use proptest::{collection, prelude::*};

    use super::*;
    use crate::changes::{Operation, Position};

    /// The same object serialised by serde_json, keys sorted.
    fn oracle(event: &ChangeEvent) -> String {
        let object: BTreeMap<&str, serde_json::Value> = event
            .primary_key
            .iter()
            .map(|(name, value)| {
                let json = match value {
                    ColumnValue::Value(TypedValue::Int(i)) => (*i).into(),
                    ColumnValue::Value(TypedValue::Long(i)) => (*i).into(),
                    ColumnValue::Value(TypedValue::Bool(b)) => (*b).into(),
                    ColumnValue::Value(typed) => typed.canonical_text().into(),
                    _ => serde_json::Value::Null,
                };
                (&**name, json)
            })
            .collect();
        format!(
            "{}/{}",
            event.table,
            serde_json::to_string(&object).unwrap()
        )
    }

    fn event(primary_key: Vec<(Arc<str>, ColumnValue)>) -> ChangeEvent {
        ChangeEvent {
            table: Arc::from("public.t"),
            operation: Operation::Insert,
            primary_key,
            before: None,
            after: None,
            position: Position {
                commit_lsn: 0,
                event_lsn: 0,
                xid: 0,
                sequence: 0,
                commit_time_unix_micros: 0,
            },
            table_schema: None,
        }
    }

    #[test]
    fn columns_are_sorted_by_name_and_values_typed() {
        let key = kafka_key(&event(vec![
            (
                "zone".into(),
                ColumnValue::Value(TypedValue::Text("a\"b\n".into())),
            ),
            ("id".into(), ColumnValue::Value(TypedValue::Long(-42))),
            ("day".into(), ColumnValue::Value(TypedValue::Date(19_000))),
            ("on".into(), ColumnValue::Value(TypedValue::Bool(true))),
        ]));
        assert_eq!(
            key,
            r#"public.t/{"day":"19000","id":-42,"on":true,"zone":"a\"b\n"}"#
        );
    }

    fn value() -> impl Strategy<Value = ColumnValue> {
        prop_oneof![
            Just(ColumnValue::Null),
            any::<i32>().prop_map(|i| ColumnValue::Value(TypedValue::Int(i))),
            any::<i64>().prop_map(|i| ColumnValue::Value(TypedValue::Long(i))),
            any::<bool>().prop_map(|b| ColumnValue::Value(TypedValue::Bool(b))),
            any::<String>().prop_map(|s| ColumnValue::Value(TypedValue::Text(s))),
            any::<f64>().prop_map(|f| ColumnValue::Value(TypedValue::Double(f))),
            any::<i32>().prop_map(|d| ColumnValue::Value(TypedValue::Date(d))),
        ]
    }

    proptest! {
        #[test]
        fn the_key_is_what_serde_json_writes_for_the_same_object(
            columns in collection::btree_map(any::<String>(), value(), 0..4)
        ) {
            let event = event(columns.into_iter().map(|(name, value)| (name.into(), value)).collect());
            prop_assert_eq!(kafka_key(&event), oracle(&event));
        }
    }
}
