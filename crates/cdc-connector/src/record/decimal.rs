//! `--decimal-handling`: how numeric values are written, and the schema branches the `precise`
//! mode needs.
//!
//! Avro's `decimal` logical type fixes precision and scale in the schema, while every column
//! value of `CDCChange` is one union. So in `precise` mode each declared `numeric(p,s)` gets its
//! own named branch, a `fixed` `Decimal_p_s` with the `decimal` logical type, appended to the
//! union when a table with such a column is first seen (the registry accepts the new version
//! under BACKWARD compatibility: older records stay readable). A numeric without a declared
//! scale becomes `VariableDecimal` (scale and unscaled bytes); NaN and ±Infinity stay the exact
//! `Numeric` text in every mode but `double`, where they are doubles.

use std::collections::BTreeSet;

use serde_json::{Value as Json, json};

/// How numeric values are written (Debezium's `decimal.handling.mode`, plus the exact text).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[value(rename_all = "snake_case")]
pub enum DecimalHandling {
    /// The `Numeric` record with the exact decimal text (the default; NaN and ±Infinity as text).
    #[default]
    Text,
    /// An Avro `decimal`: `Decimal_p_s` (fixed, the column's declared precision and scale) or
    /// `VariableDecimal` when the column declares no scale; NaN and ±Infinity as `Numeric` text.
    Precise,
    /// A plain `string` with the exact decimal text (`NaN`, `Infinity`, `-Infinity` included).
    String,
    /// A `double`: approximate, NaN and ±Infinity as themselves.
    Double,
}

/// The precision and scale of a `Decimal_p_s` branch.
pub type DecimalType = (u16, u16);

/// How one numeric value is written: decided here once, rendered by the binary encoder and by
/// the apache-avro oracle alike.
#[derive(Debug, PartialEq)]
pub enum NumericForm<'a> {
    /// The `Numeric` record with the exact text.
    Text(&'a str),
    /// A plain `string` with the exact text.
    String(&'a str),
    Double(f64),
    /// The `Decimal_p_s` branch at `branch`: the unscaled value in the fixed's size.
    Fixed {
        branch: u32,
        unscaled: Vec<u8>,
    },
    /// `VariableDecimal`.
    Variable {
        scale: u16,
        unscaled: Vec<u8>,
    },
}

/// The form of a numeric's `text` under the layout's mode; `declared` is the column's precision
/// and scale. An error says why it cannot be written (a schema without the `Decimal_p_s`
/// branch, a text that does not fit its declaration).
pub fn numeric_form<'a>(
    layout: &super::ChangeLayout,
    text: &'a str,
    declared: Option<DecimalType>,
) -> Result<NumericForm<'a>, String> {
    let special = matches!(text, "NaN" | "Infinity" | "-Infinity");
    Ok(match layout.decimal_handling {
        DecimalHandling::Text => NumericForm::Text(text),
        DecimalHandling::String => NumericForm::String(text),
        DecimalHandling::Double => NumericForm::Double(to_double(text)),
        DecimalHandling::Precise if special => NumericForm::Text(text),
        DecimalHandling::Precise => match declared {
            Some(declared) => {
                let (branch, size) = layout.decimal_branch(declared).ok_or_else(|| {
                    format!(
                        "the registered schema has no {} branch",
                        branch_name(declared)
                    )
                })?;
                let unscaled = unscaled_bytes(text, declared.1, Some(size))
                    .ok_or_else(|| format!("{text} does not fit numeric{declared:?}"))?;
                NumericForm::Fixed { branch, unscaled }
            }
            None => {
                let scale = text_scale(text);
                let unscaled = unscaled_bytes(text, scale, None)
                    .ok_or_else(|| format!("{text} is not a decimal"))?;
                NumericForm::Variable { scale, unscaled }
            }
        },
    })
}

/// The name of a declared decimal's branch.
pub fn branch_name((precision, scale): DecimalType) -> String {
    format!("Decimal_{precision}_{scale}")
}

/// Bytes of the smallest `fixed` holding every unscaled value of `precision` digits in two's
/// complement: the least n with 2^(8n-1) > 10^precision - 1 (as the Avro specification computes).
pub fn fixed_size(precision: u16) -> usize {
    let bits = f64::from(precision) * std::f64::consts::LOG2_10 + 1.0;
    (bits / 8.0).ceil() as usize
}

/// The `CDCChange` schema text with a `Decimal_p_s` branch for each of `decimals`, appended to
/// every column-value union in the same order. Each is defined in the union that ends first in
/// the text (the array elements' union, nested inside the first map's), and named in the others,
/// so every reader meets the definition before a reference.
pub fn schema_with_decimals(
    base: &str,
    decimals: &BTreeSet<DecimalType>,
) -> Result<String, String> {
    let mut schema: Json =
        serde_json::from_str(base).map_err(|e| format!("CDCChange is not JSON: {e}"))?;
    let mut defined = false;
    append_to_value_unions(&mut schema, decimals, &mut defined);
    if !defined {
        return Err("CDCChange has no column-value union".into());
    }
    serde_json::to_string(&schema).map_err(|e| e.to_string())
}

/// A union is a column-value union when it has the `Array` branch (by definition or name):
/// the array elements', the range bounds' and the three maps' unions, all in the same order.
fn append_to_value_unions(node: &mut Json, decimals: &BTreeSet<DecimalType>, defined: &mut bool) {
    match node {
        Json::Array(items) => {
            for item in items.iter_mut() {
                append_to_value_unions(item, decimals, defined);
            }
            let is_value_union = items.iter().any(|branch| {
                branch.as_str() == Some("com.travel.cdc.Array")
                    || branch.get("name").and_then(Json::as_str) == Some("Array")
            });
            if !is_value_union {
                return;
            }
            for &decimal in decimals {
                items.push(if *defined {
                    json!(format!("com.travel.cdc.{}", branch_name(decimal)))
                } else {
                    json!({
                        "type": "fixed",
                        "name": branch_name(decimal),
                        "namespace": "com.travel.cdc",
                        "size": fixed_size(decimal.0),
                        "logicalType": "decimal",
                        "precision": decimal.0,
                        "scale": decimal.1,
                    })
                });
            }
            *defined = true;
        }
        Json::Object(fields) => {
            for value in fields.values_mut() {
                append_to_value_unions(value, decimals, defined);
            }
        }
        _ => {}
    }
}

/// The unscaled value of a decimal text (`-12.50` at scale 2 is -1250) as big-endian two's
/// complement in exactly `size` bytes, or the fewest bytes when `size` is None; None when the
/// text has more fraction digits than `scale` (a value never fits a column it came from
/// otherwise) or the value does not fit `size` bytes.
pub fn unscaled_bytes(text: &str, scale: u16, size: Option<usize>) -> Option<Vec<u8>> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (integer, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if fraction.len() > usize::from(scale) {
        return None;
    }
    let padding = usize::from(scale) - fraction.len();
    // Magnitude in base 256, little-endian, built digit by digit.
    let mut magnitude: Vec<u8> = Vec::new();
    let all_digits = integer
        .bytes()
        .chain(fraction.bytes())
        .chain(std::iter::repeat_n(b'0', padding));
    for digit in all_digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        let mut carry = u32::from(digit - b'0');
        for byte in magnitude.iter_mut() {
            let product = u32::from(*byte) * 10 + carry;
            *byte = product as u8;
            carry = product >> 8;
        }
        while carry > 0 {
            magnitude.push(carry as u8);
            carry >>= 8;
        }
    }
    // Two's complement, little-endian, with room for the sign bit.
    let mut bytes = magnitude;
    bytes.push(0);
    if negative {
        let mut carry = 1u16;
        for byte in bytes.iter_mut() {
            let sum = u16::from(!*byte) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
    }
    let sign_byte = if negative { 0xff } else { 0x00 };
    // Drop redundant sign bytes, keeping the one that carries the sign bit.
    while bytes.len() > 1 {
        let top = bytes[bytes.len() - 1];
        let next = bytes[bytes.len() - 2];
        if top == sign_byte && (next & 0x80) == (sign_byte & 0x80) {
            bytes.pop();
        } else {
            break;
        }
    }
    if let Some(size) = size {
        if bytes.len() > size {
            return None;
        }
        bytes.resize(size, sign_byte);
    }
    bytes.reverse();
    Some(bytes)
}

/// A numeric's text as the nearest double (NaN and ±Infinity as themselves).
pub fn to_double(text: &str) -> f64 {
    match text {
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        // numeric_out's digits always parse; a value beyond the double range is ±infinity.
        _ => text.parse().unwrap_or(f64::NAN),
    }
}

/// The scale of a decimal text: its number of fraction digits.
pub fn text_scale(text: &str) -> u16 {
    text.split_once('.')
        .map_or(0, |(_, fraction)| fraction.len() as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unscaled_values_in_twos_complement() {
        assert_eq!(unscaled_bytes("0", 0, None), Some(vec![0]));
        assert_eq!(unscaled_bytes("-12.50", 2, None), Some(vec![0xfb, 0x1e]));
        assert_eq!(unscaled_bytes("12.5", 2, None), Some(vec![0x04, 0xe2]));
        assert_eq!(unscaled_bytes("127", 0, None), Some(vec![0x7f]));
        assert_eq!(unscaled_bytes("128", 0, None), Some(vec![0x00, 0x80]));
        assert_eq!(unscaled_bytes("-128", 0, None), Some(vec![0x80]));
        assert_eq!(unscaled_bytes("-129", 0, None), Some(vec![0xff, 0x7f]));
        assert_eq!(
            unscaled_bytes("-1", 0, Some(3)),
            Some(vec![0xff, 0xff, 0xff])
        );
        assert_eq!(unscaled_bytes("1.5", 0, None), None);
        assert_eq!(unscaled_bytes("70000", 0, Some(2)), None);
    }

    #[test]
    fn big_values_match_big_integer_arithmetic() {
        // 10^40 - 1 = 0x1D6329F1C35CA4BFABB9F560FFFFFFFFFF (checked with Python's int.to_bytes).
        let text = "9".repeat(40);
        let bytes = unscaled_bytes(&text, 0, None).unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "1d6329f1c35ca4bfabb9f560ffffffffff");
        assert_eq!(bytes.len(), fixed_size(40));
    }

    #[test]
    fn fixed_sizes_follow_the_avro_specification() {
        for (precision, size) in [
            (1, 1),
            (2, 1),
            (3, 2),
            (9, 4),
            (10, 5),
            (18, 8),
            (19, 9),
            (38, 16),
        ] {
            assert_eq!(fixed_size(precision), size, "precision {precision}");
        }
    }

    #[test]
    fn decimal_branches_are_defined_once_before_any_reference() {
        let decimals = BTreeSet::from([(10, 2), (5, 0)]);
        let text = schema_with_decimals(platform::schemas::CDC_CHANGE, &decimals).unwrap();
        assert_eq!(text.matches("\"type\":\"fixed\"").count(), 2);
        let definition = text.find("\"name\":\"Decimal_10_2\"").unwrap();
        let first_reference = text.find("\"com.travel.cdc.Decimal_10_2\"").unwrap();
        assert!(definition < first_reference);
        // Named in the other range bound, the array elements, primary_key, before_values and
        // after_values.
        assert_eq!(text.matches("com.travel.cdc.Decimal_10_2").count(), 5);
        let schema = platform::schemas::parse(&text).expect("a valid schema");
        let layout = super::super::ChangeLayout::from_schema(&schema).unwrap();
        assert_eq!(
            layout.decimal_branch((10, 2)).map(|(_, size)| size),
            Some(5)
        );
        assert_eq!(layout.decimal_branch((5, 0)).map(|(_, size)| size), Some(3));
        assert_eq!(layout.decimal_branch((4, 1)), None);
    }
}
