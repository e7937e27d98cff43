//! The canonical text of a typed value: one stable, documented string per value, used wherever a
//! value must become text (Kafka keys, hashed columns). It never depends on Rust's `Debug`
//! output, so renaming a variant or a field cannot silently change keys or hashes.
//!
//! | type | canonical text |
//! |---|---|
//! | text, varchar, numeric, json, uuid, other types | PostgreSQL's text output, verbatim |
//! | boolean | `true` / `false` |
//! | int2, int4, int8 | decimal |
//! | float4, float8 | shortest round-trip decimal; `NaN`, `Infinity`, `-Infinity` |
//! | bytea | `\x` and lower-case hex (PostgreSQL's `bytea_output = hex`) |
//! | date | days since 1970-01-01 (as the record carries it) |
//! | timestamp, timestamptz, time | microseconds since 1970-01-01 00:00 (UTC for timestamptz), or since midnight |
//! | timetz | microseconds since midnight, then the UTC offset in seconds with its sign: `45296000000+19800` |
//! | interval | `months:days:microseconds`, as stored: `14:3:4000005` |
//! | arrays | PostgreSQL's array syntax with every element quoted: `{"1","2",NULL}`, nested levels unquoted, `[0:1]=` before it when the lower bound is not 1 |
//! | numeric with declared scale, enums | PostgreSQL's text output (the label for an enum) |
//! | money | the count of minor units: `123456` for `$1,234.56` |
//! | bit, varbit | the bits as `0` and `1` |
//! | point | `(x,y)`, coordinates as float8 |
//! | ranges | `empty`, or the bounds' canonical texts quoted between `[`/`(` and `]`/`)`, an unbounded end empty: `["1","10")`, `(,"5"]` |
//! | hstore | `"key"=>"value"` pairs joined by `, `, a NULL value unquoted |
//! | geometry, geography | `SRID=n;` (when set), then the WKB in lower-case hex |
//! | ±infinity (date, timestamp, timestamptz) | `infinity`, `-infinity` |
//! | timestamps after year 294247 | microseconds since 1970, like the others |

use std::borrow::Cow;

use crate::row::TypedValue;

impl TypedValue {
    /// The canonical text of the value (see the module documentation).
    pub fn canonical_text(&self) -> Cow<'_, str> {
        match self {
            Self::Text(text)
            | Self::Numeric(text)
            | Self::Json(text)
            | Self::Uuid(text)
            | Self::Decimal { text, .. }
            | Self::Enum { label: text, .. } => Cow::Borrowed(text),
            Self::Money(minor_units) => Cow::Owned(minor_units.to_string()),
            Self::Bits { length, bytes } => Cow::Owned(
                (0..*length as usize)
                    .map(|i| {
                        if bytes[i / 8] & (0x80 >> (i % 8)) != 0 {
                            '1'
                        } else {
                            '0'
                        }
                    })
                    .collect(),
            ),
            Self::Point { x, y } => Cow::Owned(format!(
                "({},{})",
                float_text(*x, || x.to_string()),
                float_text(*y, || y.to_string())
            )),
            Self::Range { bounds, .. } => match bounds {
                None => Cow::Borrowed("empty"),
                Some(bounds) => {
                    let mut text = String::new();
                    let lower = bounds.lower.as_ref();
                    let upper = bounds.upper.as_ref();
                    text.push(if lower.is_some_and(|b| b.inclusive) {
                        '['
                    } else {
                        '('
                    });
                    if let Some(bound) = lower {
                        push_quoted(&mut text, &bound.value.canonical_text());
                    }
                    text.push(',');
                    if let Some(bound) = upper {
                        push_quoted(&mut text, &bound.value.canonical_text());
                    }
                    text.push(if upper.is_some_and(|b| b.inclusive) {
                        ']'
                    } else {
                        ')'
                    });
                    Cow::Owned(text)
                }
            },
            Self::Hstore(pairs) => {
                let mut text = String::new();
                for (index, (key, value)) in pairs.iter().enumerate() {
                    if index > 0 {
                        text.push_str(", ");
                    }
                    push_quoted(&mut text, key);
                    text.push_str("=>");
                    match value {
                        Some(value) => push_quoted(&mut text, value),
                        None => text.push_str("NULL"),
                    }
                }
                Cow::Owned(text)
            }
            Self::Geometry { wkb, srid, .. } => {
                let mut text = match srid {
                    Some(srid) => format!("SRID={srid};"),
                    None => String::new(),
                };
                push_hex(&mut text, wkb);
                Cow::Owned(text)
            }
            Self::Infinity { negative, .. } => {
                Cow::Borrowed(if *negative { "-infinity" } else { "infinity" })
            }
            Self::WideTimestamp {
                epoch_seconds,
                micros_of_second,
                ..
            } => Cow::Owned(
                (i128::from(*epoch_seconds) * 1_000_000 + i128::from(*micros_of_second))
                    .to_string(),
            ),
            Self::Other { text, .. } => Cow::Borrowed(text),
            Self::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Self::Int(i) | Self::Date(i) => Cow::Owned(i.to_string()),
            Self::Long(i) | Self::Timestamp(i) | Self::TimestampTz(i) | Self::Time(i) => {
                Cow::Owned(i.to_string())
            }
            Self::Float(f) => float_text(f64::from(*f), || f.to_string()),
            Self::Double(f) => float_text(*f, || f.to_string()),
            Self::Bytes(bytes) => {
                let mut text = String::with_capacity(2 + 2 * bytes.len());
                text.push_str("\\x");
                push_hex(&mut text, bytes);
                Cow::Owned(text)
            }
            Self::TimeTz {
                micros,
                offset_seconds,
            } => Cow::Owned(format!("{micros}{offset_seconds:+}")),
            Self::Interval {
                months,
                days,
                micros,
            } => Cow::Owned(format!("{months}:{days}:{micros}")),
            Self::Array {
                lower_bound,
                elements,
                ..
            } => {
                let mut text = String::new();
                if *lower_bound != 1 {
                    let upper = i64::from(*lower_bound) + elements.len() as i64 - 1;
                    text.push_str(&format!("[{lower_bound}:{upper}]="));
                }
                write_array(&mut text, elements);
                Cow::Owned(text)
            }
        }
    }
}

fn write_array(text: &mut String, elements: &[Option<TypedValue>]) {
    text.push('{');
    for (index, element) in elements.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        match element {
            None => text.push_str("NULL"),
            Some(TypedValue::Array { elements, .. }) => write_array(text, elements),
            Some(value) => push_quoted(text, &value.canonical_text()),
        }
    }
    text.push('}');
}

/// `value` in double quotes, `"` and `\` escaped with a backslash.
fn push_quoted(text: &mut String, value: &str) {
    text.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            text.push('\\');
        }
        text.push(c);
    }
    text.push('"');
}

fn push_hex(text: &mut String, bytes: &[u8]) {
    for byte in bytes {
        text.push(hex_digit(byte >> 4));
        text.push(hex_digit(byte & 0xf));
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

/// PostgreSQL's spelling of the special float values; Rust's shortest round-trip form otherwise.
fn float_text(value: f64, display: impl FnOnce() -> String) -> Cow<'static, str> {
    if value.is_nan() {
        Cow::Borrowed("NaN")
    } else if value == f64::INFINITY {
        Cow::Borrowed("Infinity")
    } else if value == f64::NEG_INFINITY {
        Cow::Borrowed("-Infinity")
    } else {
        Cow::Owned(display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: TypedValue) -> String {
        value.canonical_text().into_owned()
    }

    #[test]
    fn every_kind_has_its_documented_text() {
        assert_eq!(text(TypedValue::Bool(true)), "true");
        assert_eq!(text(TypedValue::Int(-7)), "-7");
        assert_eq!(text(TypedValue::Long(1 << 40)), "1099511627776");
        assert_eq!(text(TypedValue::Float(1.5)), "1.5");
        assert_eq!(text(TypedValue::Double(f64::NEG_INFINITY)), "-Infinity");
        assert_eq!(text(TypedValue::Double(f64::NAN)), "NaN");
        assert_eq!(text(TypedValue::Bytes(vec![0xde, 0xad, 0x01])), "\\xdead01");
        assert_eq!(text(TypedValue::Numeric("12.50".into())), "12.50");
        assert_eq!(text(TypedValue::Date(19_000)), "19000");
        assert_eq!(text(TypedValue::TimestampTz(-1)), "-1");
        assert_eq!(
            text(TypedValue::TimeTz {
                micros: 45_296_000_000,
                offset_seconds: 19_800
            }),
            "45296000000+19800"
        );
        assert_eq!(
            text(TypedValue::TimeTz {
                micros: 0,
                offset_seconds: -3_600
            }),
            "0-3600"
        );
        assert_eq!(
            text(TypedValue::Interval {
                months: 14,
                days: 3,
                micros: 4_000_005
            }),
            "14:3:4000005"
        );
        assert_eq!(
            text(TypedValue::Other {
                type_name: "public.mood".into(),
                text: "happy".into()
            }),
            "happy"
        );
    }

    #[test]
    fn structured_types_have_their_documented_text() {
        use crate::row::{RangeBound, RangeBounds};
        assert_eq!(text(TypedValue::Money(-123_456)), "-123456");
        assert_eq!(
            text(TypedValue::Bits {
                length: 9,
                bytes: vec![0b1010_1000, 0x80]
            }),
            "101010001"
        );
        assert_eq!(
            text(TypedValue::Point {
                x: 1.5,
                y: f64::NAN
            }),
            "(1.5,NaN)"
        );
        let bound = |value, inclusive| {
            Some(RangeBound {
                value: TypedValue::Int(value),
                inclusive,
            })
        };
        let range = |lower, upper| TypedValue::Range {
            type_name: "int4range".into(),
            bounds: Some(Box::new(RangeBounds { lower, upper })),
        };
        assert_eq!(
            text(range(bound(1, true), bound(10, false))),
            r#"["1","10")"#
        );
        assert_eq!(text(range(None, bound(5, true))), r#"(,"5"]"#);
        assert_eq!(
            text(TypedValue::Range {
                type_name: "int4range".into(),
                bounds: None
            }),
            "empty"
        );
        assert_eq!(
            text(TypedValue::Hstore(vec![
                ("a\"b".into(), Some("1".into())),
                ("c".into(), None)
            ])),
            r#""a\"b"=>"1", "c"=>NULL"#
        );
        assert_eq!(
            text(TypedValue::Geometry {
                type_name: "geometry".into(),
                wkb: vec![1, 0xab],
                srid: Some(4326)
            }),
            "SRID=4326;01ab"
        );
        assert_eq!(
            text(TypedValue::Infinity {
                type_name: "date",
                negative: true
            }),
            "-infinity"
        );
        assert_eq!(
            text(TypedValue::WideTimestamp {
                type_name: "timestamp",
                epoch_seconds: 9_224_318_015_999,
                micros_of_second: 999_999
            }),
            "9224318015999999999"
        );
    }

    #[test]
    fn arrays_quote_elements_and_show_unusual_bounds() {
        let array = |lower_bound, elements| TypedValue::Array {
            type_name: "text".into(),
            lower_bound,
            elements,
        };
        let value = array(
            1,
            vec![
                Some(TypedValue::Text("a\"b\\c".into())),
                None,
                Some(TypedValue::Text("x,y".into())),
            ],
        );
        assert_eq!(text(value), r#"{"a\"b\\c",NULL,"x,y"}"#);
        let nested = array(
            0,
            vec![
                Some(array(1, vec![Some(TypedValue::Int(1))])),
                Some(array(1, vec![Some(TypedValue::Int(2))])),
            ],
        );
        assert_eq!(text(nested), r#"[0:1]={{"1"},{"2"}}"#);
    }
}
