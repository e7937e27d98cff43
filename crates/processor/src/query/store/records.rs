//! The rows of the alert, external-reading and state tables, read from the Avro records of
//! their topics, with the CDC column values typed as the table declares them.

use apache_avro::types::Value;

use super::fields::{Fields, int_of, unwrap_union};
use crate::query::table::{Cell, ColType, TableDef};

/// An alert from its `ProcessorAlert` Avro value.
pub fn alert_row(value: &Value) -> Result<(String, i64, Vec<Cell>), String> {
    let f = Fields::of(value)?;
    let id = f.text("alert_id")?;
    let event_time = f.int("event_time")?;
    let details: serde_json::Map<String, serde_json::Value> = f
        .string_map("details")?
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let row = vec![
        Cell::Text(id.clone()),
        Cell::Text(f.text("kind")?),
        Cell::Text(f.text("severity")?),
        Cell::Text(f.text("subject")?),
        Cell::Text(f.text("message")?),
        Cell::Millis(event_time),
        f.opt("window_start")?
            .map(int_of)
            .transpose()?
            .map_or(Cell::Null, Cell::Millis),
        Cell::Text(serde_json::Value::Object(details).to_string()),
    ];
    Ok((id, event_time, row))
}

/// An external reading from its `ExternalData` Avro value, with its entity (the state key's
/// part after the source type).
pub fn external_row(key: &str, value: &Value) -> Result<Vec<Cell>, String> {
    let f = Fields::of(value)?;
    let source_type = f.text("source_type")?;
    let entity = key
        .strip_prefix(&format!("{source_type}/"))
        .unwrap_or(key)
        .to_string();
    let time = |name: &str| -> Result<Cell, String> {
        Ok(f.opt(name)?
            .map(int_of)
            .transpose()?
            .map_or(Cell::Null, Cell::Millis))
    };
    let text = |name: &str| -> Result<Cell, String> {
        Ok(match f.opt(name)? {
            None => Cell::Null,
            Some(Value::String(s)) => Cell::Text(s.clone()),
            Some(other) => Cell::Text(platform::avro::to_json(other).to_string()),
        })
    };
    Ok(vec![
        Cell::Text(source_type),
        Cell::Text(entity),
        text("record_id")?,
        text("pipeline")?,
        text("location")?,
        time("observed_at")?,
        time("fetched_at")?,
        text("payload_json")?,
        text("quality_warnings")?,
        time("received_at")?,
    ])
}

/// A row of a state table from the `after_values` of its CDCChange Avro value. A column the
/// change did not carry (`Unavailable`: an unchanged TOASTed value) keeps its value from
/// `previous`.
pub fn state_row(
    table: &TableDef,
    value: &Value,
    previous: Option<&Vec<Cell>>,
) -> Result<Vec<Cell>, String> {
    let f = Fields::of(value)?;
    let after = match f.opt("after_values")? {
        Some(Value::Map(map)) => map,
        Some(other) => return Err(format!("field after_values: not a map: {other:?}")),
        None => return Err("field after_values is null (a state record is a row image)".into()),
    };
    let mut row = Vec::with_capacity(table.columns.len());
    for (index, (name, ty)) in table.columns.iter().enumerate() {
        if *name == "row_json" {
            let json: serde_json::Map<String, serde_json::Value> = after
                .iter()
                .map(|(k, v)| (k.clone(), platform::avro::to_json(v)))
                .collect();
            row.push(Cell::Text(serde_json::Value::Object(json).to_string()));
            continue;
        }
        let cell = match after.get(*name).map(unwrap_union) {
            None => Cell::Null,
            Some(v) if is_unavailable(v) => previous
                .and_then(|p| p.get(index).cloned())
                .unwrap_or(Cell::Null),
            Some(v) => column_cell(v, *ty).map_err(|e| format!("column {name}: {e}"))?,
        };
        row.push(cell);
    }
    Ok(row)
}

fn is_unavailable(value: &Value) -> bool {
    matches!(value, Value::Record(fields) if fields.iter().any(|(k, _)| k == "reason"))
}

/// One column value of a CDCChange (a branch of its value union) as a cell of `ty`.
fn column_cell(value: &Value, ty: ColType) -> Result<Cell, String> {
    let inner = |v: &Value| -> Option<Value> {
        match v {
            Value::Record(fields) if fields.len() == 1 => Some(unwrap_union(&fields[0].1).clone()),
            // Other's text, an EnumValue's label.
            Value::Record(fields) => fields
                .iter()
                .find(|(k, _)| k == "text" || k == "label")
                .map(|(_, v)| unwrap_union(v).clone()),
            _ => None,
        }
    };
    let cell = match (ty, value) {
        (_, Value::Null) => Cell::Null,
        (ColType::Int, Value::Int(i)) => Cell::Int(i64::from(*i)),
        (ColType::Int, Value::Long(i)) => Cell::Int(*i),
        (ColType::Bool, Value::Boolean(b)) => Cell::Bool(*b),
        (ColType::Float, Value::Double(d)) => Cell::Float(*d),
        (ColType::Float, Value::Float(d)) => Cell::Float(f64::from(*d)),
        (ColType::Text, Value::String(s)) => Cell::Text(s.clone()),
        (ColType::Text, Value::Int(i)) => Cell::Text(i.to_string()),
        (ColType::Text, Value::Long(i)) => Cell::Text(i.to_string()),
        (ColType::Text, Value::Boolean(b)) => Cell::Text(b.to_string()),
        (ColType::Text, v @ Value::Record(_)) => match inner(v) {
            Some(Value::String(s)) => Cell::Text(s),
            _ => return Err(format!("{v:?} has no text form")),
        },
        (ColType::TimeUs, v @ Value::Record(_)) => match inner(v) {
            Some(Value::TimestampMicros(us)) => Cell::Micros(us),
            _ => return Err(format!("{v:?} is not a timestamptz")),
        },
        (ColType::Date, v @ Value::Record(_)) => match inner(v) {
            Some(Value::Date(days)) => Cell::Days(days),
            _ => return Err(format!("{v:?} is not a date")),
        },
        (ColType::Decimal { scale, .. }, v @ Value::Record(_)) => match inner(v) {
            Some(Value::String(text)) => {
                let mut d: rust_decimal::Decimal = text
                    .parse()
                    .map_err(|e| format!("numeric {text:?} is not a finite decimal: {e}"))?;
                d.rescale(u32::try_from(scale).unwrap_or(0));
                Cell::Decimal(d.mantissa())
            }
            _ => return Err(format!("{v:?} is not a numeric")),
        },
        // The connector's --decimal-handling string.
        (ColType::Decimal { scale, .. }, Value::String(text)) => {
            let mut d: rust_decimal::Decimal = text
                .parse()
                .map_err(|e| format!("numeric {text:?} is not a finite decimal: {e}"))?;
            d.rescale(u32::try_from(scale).unwrap_or(0));
            Cell::Decimal(d.mantissa())
        }
        (ColType::Decimal { .. }, Value::Decimal(_)) => {
            return Err(
                "an Avro decimal (--decimal-handling precise) carries its scale in the writer \
                 schema only; run the connector with --decimal-handling text or string"
                    .into(),
            );
        }
        (ty, v) => return Err(format!("{v:?} does not fit a {ty:?} column")),
    };
    Ok(cell)
}
