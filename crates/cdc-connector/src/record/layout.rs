//! Where each value goes in the `CDCChange` schema, read by name from the schema itself.

use std::collections::HashMap;

use apache_avro::{Schema, schema::InnerDecimalSchema, types::Value};

use super::decimal::{DecimalHandling, DecimalType};
use crate::changes::Operation;

/// Where each value goes in the `CDCChange` schema: union branch indexes and enum symbol
/// positions, looked up by name in the schema the connector registered, so the schema file stays
/// the single source of truth (a reordered or extended union cannot silently shift values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeLayout {
    pub(super) null: u32,
    pub(super) boolean: u32,
    pub(super) int: u32,
    pub(super) long: u32,
    pub(super) float: u32,
    pub(super) double: u32,
    pub(super) string: u32,
    pub(super) bytes: u32,
    pub(super) numeric: u32,
    pub(super) json: u32,
    pub(super) uuid: u32,
    pub(super) date: u32,
    pub(super) timestamp: u32,
    pub(super) timestamp_tz: u32,
    pub(super) unavailable: u32,
    pub(super) other: u32,
    pub(super) time: u32,
    pub(super) time_tz: u32,
    pub(super) interval: u32,
    pub(super) array: u32,
    pub(super) enum_value: u32,
    pub(super) money: u32,
    pub(super) hstore: u32,
    pub(super) point: u32,
    pub(super) bits: u32,
    pub(super) geometry: u32,
    pub(super) infinity: u32,
    pub(super) wide_timestamp: u32,
    pub(super) variable_decimal: u32,
    pub(super) range: u32,
    /// `Decimal_p_s` branches (precise mode) by precision and scale: position and fixed size.
    decimals: HashMap<DecimalType, (u32, usize)>,
    /// How numeric values are written; the schema must have the branches the mode needs.
    pub decimal_handling: DecimalHandling,
    /// `before_values`/`after_values`: the null and the map branch.
    pub(super) absent_columns: u32,
    pub(super) present_columns: u32,
    /// Positions of `Operation` symbols, in the order of [`Operation`]'s variants.
    pub(super) operations: [(u32, &'static str); 5],
    pub(super) unchanged_toast: u32,
    pub(super) not_in_replica_identity: u32,
}

impl ChangeLayout {
    /// Reads the layout from a parsed `CDCChange` schema; an error names what is missing.
    pub fn from_schema(schema: &Schema) -> Result<Self, String> {
        let Schema::Record(change) = schema else {
            return Err("CDCChange is not a record".into());
        };
        let field = |name: &str| {
            change
                .fields
                .iter()
                .find(|f| f.name == name)
                .map(|f| &f.schema)
                .ok_or_else(|| format!("CDCChange has no field {name}"))
        };
        check_field_order(&change.fields, &super::binary::FIELDS, "CDCChange")?;
        let Schema::Record(source) = field("source")? else {
            return Err("source is not a record".into());
        };
        check_field_order(
            &source.fields,
            &super::binary::SOURCE_FIELDS,
            "SourcePosition",
        )?;
        let Schema::Map(key) = field("primary_key")? else {
            return Err("primary_key is not a map".into());
        };
        let Schema::Union(values) = key.types.as_ref() else {
            return Err("the column value is not a union".into());
        };
        let branch = |name: &str| position(values.variants(), name, "the column-value union");
        let Schema::Union(optional) = field("before_values")? else {
            return Err("before_values is not a union".into());
        };
        let Schema::Enum(operation) = field("operation")? else {
            return Err("operation is not an enum".into());
        };
        let operation_symbol = |symbol: &'static str| {
            symbol_position(&operation.symbols, symbol).map(|index| (index, symbol))
        };
        let reasons = values
            .variants()
            .iter()
            .find_map(|variant| match variant {
                Schema::Record(record) if record.name.name() == "Unavailable" => {
                    record.fields.iter().find_map(|f| match &f.schema {
                        Schema::Enum(reason) if f.name == "reason" => Some(&reason.symbols),
                        _ => None,
                    })
                }
                _ => None,
            })
            .ok_or("the Unavailable record has no reason enum")?;
        Ok(Self {
            null: branch("null")?,
            boolean: branch("boolean")?,
            int: branch("int")?,
            long: branch("long")?,
            float: branch("float")?,
            double: branch("double")?,
            string: branch("string")?,
            bytes: branch("bytes")?,
            numeric: branch("Numeric")?,
            json: branch("Json")?,
            uuid: branch("Uuid")?,
            date: branch("Date")?,
            timestamp: branch("Timestamp")?,
            timestamp_tz: branch("TimestampTz")?,
            unavailable: branch("Unavailable")?,
            other: branch("Other")?,
            time: branch("Time")?,
            time_tz: branch("TimeTz")?,
            interval: branch("Interval")?,
            array: branch("Array")?,
            enum_value: branch("EnumValue")?,
            money: branch("Money")?,
            hstore: branch("Hstore")?,
            point: branch("Point")?,
            bits: branch("Bits")?,
            geometry: branch("Geometry")?,
            infinity: branch("Infinity")?,
            wide_timestamp: branch("WideTimestamp")?,
            variable_decimal: branch("VariableDecimal")?,
            range: branch("Range")?,
            decimals: decimal_branches(schema, values.variants())?,
            decimal_handling: DecimalHandling::default(),
            absent_columns: position(optional.variants(), "null", "before_values")?,
            present_columns: position(optional.variants(), "map", "before_values")?,
            operations: [
                operation_symbol(Operation::Insert.as_str())?,
                operation_symbol(Operation::Update.as_str())?,
                operation_symbol(Operation::Delete.as_str())?,
                operation_symbol(Operation::Truncate.as_str())?,
                operation_symbol(Operation::Read.as_str())?,
            ],
            unchanged_toast: symbol_position(reasons, "UNCHANGED_TOAST")?,
            not_in_replica_identity: symbol_position(reasons, "NOT_IN_REPLICA_IDENTITY")?,
        })
    }

    /// The layout writing numerics as `mode` says.
    pub fn with_decimal_handling(mut self, mode: DecimalHandling) -> Self {
        self.decimal_handling = mode;
        self
    }

    /// The position and fixed size of the `Decimal_p_s` branch, if the schema has it.
    pub fn decimal_branch(&self, decimal: DecimalType) -> Option<(u32, usize)> {
        self.decimals.get(&decimal).copied()
    }

    /// Whether the schema has a branch for each of `decimals`.
    pub fn has_decimals<'a>(&self, mut decimals: impl Iterator<Item = &'a DecimalType>) -> bool {
        decimals.all(|decimal| self.decimals.contains_key(decimal))
    }

    pub(super) fn operation(&self, operation: Operation) -> Value {
        let (position, symbol) = self.operation_symbol(operation);
        Value::Enum(position, symbol.into())
    }

    /// The position and name of an operation's symbol.
    pub(super) fn operation_symbol(&self, operation: Operation) -> (u32, &'static str) {
        let index = match operation {
            Operation::Insert => 0,
            Operation::Update => 1,
            Operation::Delete => 2,
            Operation::Truncate => 3,
            Operation::Read => 4,
        };
        self.operations[index]
    }
}

/// The `Decimal_p_s` branches of the column-value union: their definitions are found anywhere
/// in the schema (the union names most of them by reference).
fn decimal_branches(
    schema: &Schema,
    variants: &[Schema],
) -> Result<HashMap<DecimalType, (u32, usize)>, String> {
    let resolved = apache_avro::schema::ResolvedSchema::try_from(schema)
        .map_err(|e| format!("the schema's names do not resolve: {e}"))?;
    let mut decimals = HashMap::new();
    for (index, variant) in variants.iter().enumerate() {
        let definition = match variant {
            Schema::Ref { name } => resolved.get_names().get(name).copied(),
            other => Some(other),
        };
        if let Some(Schema::Decimal(decimal)) = definition
            && let InnerDecimalSchema::Fixed(fixed) = &decimal.inner
        {
            let precision = u16::try_from(decimal.precision).map_err(|e| e.to_string())?;
            let scale = u16::try_from(decimal.scale).map_err(|e| e.to_string())?;
            decimals.insert((precision, scale), (index as u32, fixed.size));
        }
    }
    Ok(decimals)
}

/// The binary encoder writes fields in the schema's order: a schema whose fields moved is
/// refused at start instead of being written wrongly.
fn check_field_order(
    fields: &[apache_avro::schema::RecordField],
    expected: &[&str],
    record: &str,
) -> Result<(), String> {
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    if names != expected {
        return Err(format!(
            "{record} has the fields {names:?}; the encoder writes {expected:?}"
        ));
    }
    Ok(())
}

/// The index of the union branch called `name` (a primitive's type name, a record's simple name,
/// or `map`/`array`).
fn position(variants: &[Schema], name: &str, union: &str) -> Result<u32, String> {
    variants
        .iter()
        .position(|variant| branch_name(variant) == Some(name))
        .map(|index| index as u32)
        .ok_or_else(|| format!("{union} has no {name} branch"))
}

fn branch_name(schema: &Schema) -> Option<&str> {
    Some(match schema {
        Schema::Null => "null",
        Schema::Boolean => "boolean",
        Schema::Int => "int",
        Schema::Long => "long",
        Schema::Float => "float",
        Schema::Double => "double",
        Schema::String => "string",
        Schema::Bytes => "bytes",
        Schema::Map(_) => "map",
        Schema::Array(_) => "array",
        Schema::Record(record) => record.name.name(),
        Schema::Fixed(fixed) => fixed.name.name(),
        Schema::Decimal(decimal) => match &decimal.inner {
            InnerDecimalSchema::Fixed(fixed) => fixed.name.name(),
            InnerDecimalSchema::Bytes => return None,
        },
        Schema::Ref { name } => name.name(),
        _ => return None,
    })
}

fn symbol_position(symbols: &[String], symbol: &str) -> Result<u32, String> {
    symbols
        .iter()
        .position(|s| s == symbol)
        .map(|index| index as u32)
        .ok_or_else(|| format!("the enum has no symbol {symbol}"))
}
