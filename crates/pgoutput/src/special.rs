//! Parsers for the types that get a structured value instead of PostgreSQL's text: `money`,
//! `bit`/`varbit`, `point`, ranges, `hstore` and PostGIS `geometry`/`geography`, plus the
//! `numeric` type modifier. Each takes PostgreSQL's text output (under the connector's session
//! settings) and returns a short reason on malformed input; the caller adds type and text.

use crate::temporal::Reason;

/// A `numeric(precision, scale)` column's declared precision and scale, from its type modifier
/// (`((precision << 16) | scale) + 4`; -1 for a plain `numeric`). PostgreSQL 15 allows a scale
/// below zero or above the precision; those are returned too and left to the caller.
pub fn numeric_modifier(type_modifier: i32) -> Option<(u16, i16)> {
    const VARHDRSZ: i32 = 4;
    if type_modifier < VARHDRSZ {
        return None;
    }
    let packed = type_modifier - VARHDRSZ;
    let precision = ((packed >> 16) & 0xffff) as u16;
    // The scale is an 11-bit two's-complement field (PostgreSQL 15's negative scales).
    let scale = (((packed & 0x7ff) ^ 1024) - 1024) as i16;
    Some((precision, scale))
}

/// `money` output to the stored 64-bit count of minor units (cents for a two-digit currency).
/// `cash_out` prints that integer with the locale's decimal point inserted, so the digits in
/// order are the integer whatever `lc_monetary` says about symbols, separators and the number
/// of fraction digits: `$1,234.56` and `-$1,234.56` (the C locale the connector sets) are
/// 123456 and -123456, and `(1.234,56 €)`-style output reads the same.
pub(crate) fn parse_money(text: &str) -> Result<i64, Reason> {
    let negative = text.contains('-') || (text.starts_with('(') && text.ends_with(')'));
    let mut magnitude: u64 = 0;
    let mut digits = 0;
    for byte in text.bytes() {
        if byte.is_ascii_digit() {
            magnitude = magnitude
                .checked_mul(10)
                .and_then(|m| m.checked_add(u64::from(byte - b'0')))
                .ok_or("more than 64 bits of minor units")?;
            digits += 1;
        }
    }
    if digits == 0 {
        return Err("no digits in the money value");
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
            .ok_or("more than 64 bits of minor units")
    } else {
        i64::try_from(magnitude).map_err(|_| "more than 64 bits of minor units")
    }
}

/// `bit`/`varbit` output (`10101`) to its length in bits and the bits packed into bytes, first
/// bit in the highest position of the first byte, the last byte padded with zeros.
pub(crate) fn parse_bits(text: &str) -> Result<(u32, Vec<u8>), Reason> {
    let length = u32::try_from(text.len()).map_err(|_| "too many bits")?;
    let mut bytes = vec![0u8; text.len().div_ceil(8)];
    for (index, byte) in text.bytes().enumerate() {
        match byte {
            b'0' => {}
            b'1' => bytes[index / 8] |= 0x80 >> (index % 8),
            _ => return Err("bit strings hold only 0 and 1"),
        }
    }
    Ok((length, bytes))
}

/// `point` output `(x,y)` to its coordinates.
pub(crate) fn parse_point(text: &str) -> Result<(f64, f64), Reason> {
    let inner = text
        .strip_prefix('(')
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or("expected (x,y)")?;
    let (x, y) = inner.split_once(',').ok_or("expected (x,y)")?;
    let coordinate = |text: &str| match text {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        _ if text
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            text.parse().map_err(|_| "a coordinate is not a float8")
        }
        _ => Err("a coordinate is not a float8"),
    };
    Ok((coordinate(x)?, coordinate(y)?))
}

/// One end of a range as printed: absent (unbounded), or the bound's text and whether the
/// bound is inclusive.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BoundText {
    pub(crate) text: Option<String>,
    pub(crate) inclusive: bool,
}

/// `range_out` output: `empty`, or `[`/`(` lower `,` upper `]`/`)` where a missing bound is
/// unbounded and a quoted one may escape `"` and `\` by doubling or with a backslash.
/// `None` is the empty range.
pub(crate) fn parse_range(text: &str) -> Result<Option<(BoundText, BoundText)>, Reason> {
    if text == "empty" {
        return Ok(None);
    }
    let bytes = text.as_bytes();
    let lower_inclusive = match bytes.first() {
        Some(b'[') => true,
        Some(b'(') => false,
        _ => return Err("expected empty or a range starting with [ or ("),
    };
    let mut position = 1;
    let lower = range_bound(text, &mut position, b',')?;
    position += 1;
    let upper = range_bound(text, &mut position, b')')?;
    let upper_inclusive = match bytes.get(position) {
        Some(b']') => true,
        Some(b')') => false,
        _ => return Err("expected ] or ) at the end of the range"),
    };
    if position + 1 != text.len() {
        return Err("unexpected characters after the range");
    }
    Ok(Some((
        BoundText {
            inclusive: lower_inclusive && lower.is_some(),
            text: lower,
        },
        BoundText {
            inclusive: upper_inclusive && upper.is_some(),
            text: upper,
        },
    )))
}

/// Reads a bound up to (not including) the delimiter at its level: `,` after the lower bound,
/// `]` or `)` after the upper one (`end` stands for either).
fn range_bound(text: &str, position: &mut usize, end: u8) -> Result<Option<String>, Reason> {
    let bytes = text.as_bytes();
    let at_end = |byte: u8| {
        if end == b',' {
            byte == b','
        } else {
            byte == b')' || byte == b']'
        }
    };
    let mut value = Vec::new();
    let mut quoted_any = false;
    loop {
        let Some(&byte) = bytes.get(*position) else {
            return Err("the range ends inside a bound");
        };
        match byte {
            b'"' => {
                quoted_any = true;
                *position += 1;
                loop {
                    match bytes.get(*position) {
                        None => return Err("an unterminated quoted range bound"),
                        Some(b'\\') => {
                            let escaped = bytes
                                .get(*position + 1)
                                .ok_or("a backslash at the end of a range bound")?;
                            value.push(*escaped);
                            *position += 2;
                        }
                        Some(b'"') if bytes.get(*position + 1) == Some(&b'"') => {
                            value.push(b'"');
                            *position += 2;
                        }
                        Some(b'"') => {
                            *position += 1;
                            break;
                        }
                        Some(&other) => {
                            value.push(other);
                            *position += 1;
                        }
                    }
                }
            }
            b'\\' => {
                let escaped = bytes
                    .get(*position + 1)
                    .ok_or("a backslash at the end of a range bound")?;
                value.push(*escaped);
                *position += 2;
            }
            _ if at_end(byte) => break,
            b'(' | b')' | b'[' | b']' | b',' => return Err("an unquoted bracket in a range bound"),
            other => {
                value.push(other);
                *position += 1;
            }
        }
    }
    if value.is_empty() && !quoted_any {
        return Ok(None);
    }
    String::from_utf8(value)
        .map(Some)
        .map_err(|_| "a range bound is not UTF-8")
}

/// The subtype of a built-in range type; user-defined ranges learn theirs from the catalog.
pub(crate) fn builtin_range_subtype(type_name: &str) -> Option<&'static str> {
    Some(match type_name {
        "int4range" => "int4",
        "int8range" => "int8",
        "numrange" => "numeric",
        "tsrange" => "timestamp",
        "tstzrange" => "timestamptz",
        "daterange" => "date",
        _ => return None,
    })
}

/// `hstore` output (`"a"=>"1", "b"=>NULL`, empty for an empty hstore) to its pairs in the
/// order printed (hstore sorts them). Keys and values are double-quoted with `"` and `\`
/// escaped by a backslash; an unquoted `NULL` value is null.
pub(crate) fn parse_hstore(text: &str) -> Result<Vec<(String, Option<String>)>, Reason> {
    let mut pairs = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (key, after_key) = quoted(rest).ok_or("expected a quoted hstore key")?;
        let after_arrow = after_key
            .trim_start()
            .strip_prefix("=>")
            .ok_or("expected => after an hstore key")?
            .trim_start();
        let (value, after_value) = match after_arrow.strip_prefix("NULL") {
            Some(after) => (None, after),
            None => {
                let (value, after) = quoted(after_arrow).ok_or("expected a quoted hstore value")?;
                (Some(value), after)
            }
        };
        pairs.push((key, value));
        rest = after_value.trim_start();
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma.trim_start();
            if rest.is_empty() {
                return Err("a trailing comma in hstore output");
            }
        } else if !rest.is_empty() {
            return Err("expected , between hstore pairs");
        }
    }
    Ok(pairs)
}

/// A double-quoted string with backslash escapes, and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut chars = text.strip_prefix('"')?.char_indices();
    let mut value = String::new();
    while let Some((index, c)) = chars.next() {
        match c {
            '\\' => value.push(chars.next()?.1),
            '"' => return Some((value, &text[1 + index + 1..])),
            other => value.push(other),
        }
    }
    None
}

/// PostGIS output (hex EWKB, as `geometry_out` and `geography_out` print it) to the geometry's
/// WKB without the SRID and its SRID (None for 0, "unknown"). Only the outer header carries
/// the SRID flag; the rest (Z/M flags, nested geometries) is kept byte for byte, so the bytes
/// equal `ST_AsEWKB(ST_SetSRID(g, 0))`.
pub(crate) fn parse_ewkb_hex(text: &str) -> Result<(Vec<u8>, Option<i32>), Reason> {
    const SRID_FLAG: u32 = 0x2000_0000;
    let bytes = parse_hex(text).ok_or("expected hex EWKB")?;
    let (&order, rest) = bytes.split_first().ok_or("empty EWKB")?;
    let little_endian = match order {
        0 => false,
        1 => true,
        _ => return Err("EWKB starts with a byte order of 0 or 1"),
    };
    let word = |slice: &[u8]| -> Result<u32, Reason> {
        let array: [u8; 4] = slice
            .get(..4)
            .and_then(|s| s.try_into().ok())
            .ok_or("EWKB too short")?;
        Ok(if little_endian {
            u32::from_le_bytes(array)
        } else {
            u32::from_be_bytes(array)
        })
    };
    let kind = word(rest)?;
    if kind & SRID_FLAG == 0 {
        return Ok((bytes, None));
    }
    let srid = word(&rest[4..])? as i32;
    let plain = kind & !SRID_FLAG;
    let mut wkb = Vec::with_capacity(bytes.len() - 4);
    wkb.push(order);
    wkb.extend_from_slice(&if little_endian {
        plain.to_le_bytes()
    } else {
        plain.to_be_bytes()
    });
    wkb.extend_from_slice(&rest[8..]);
    Ok((wkb, (srid != 0).then_some(srid)))
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let hex = text.as_bytes();
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks_exact(2)
        .map(|pair| {
            let digit = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
            Some(digit(pair[0])? << 4 | digit(pair[1])?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_modifiers_decode_precision_and_signed_scale() {
        assert_eq!(numeric_modifier(-1), None);
        assert_eq!(numeric_modifier((10 << 16 | 2) + 4), Some((10, 2)));
        assert_eq!(numeric_modifier((38 << 16) + 4), Some((38, 0)));
        // numeric(3,-2): the scale is an 11-bit two's-complement field.
        assert_eq!(
            numeric_modifier((3 << 16 | (0x7ff & -2i32)) + 4),
            Some((3, -2))
        );
    }

    #[test]
    fn money_is_its_minor_units_whatever_the_format() {
        assert_eq!(parse_money("$1,234.56"), Ok(123_456));
        assert_eq!(parse_money("-$1,234.56"), Ok(-123_456));
        assert_eq!(parse_money("$0.00"), Ok(0));
        assert_eq!(parse_money("$0.01"), Ok(1));
        assert_eq!(parse_money("($5.00)"), Ok(-500));
        assert_eq!(parse_money("1.234,56 €"), Ok(123_456));
        assert_eq!(parse_money("$92,233,720,368,547,758.07"), Ok(i64::MAX));
        assert_eq!(parse_money("-$92,233,720,368,547,758.08"), Ok(i64::MIN));
        assert!(parse_money("$92,233,720,368,547,758.08").is_err());
        assert!(parse_money("$").is_err());
    }

    #[test]
    fn bits_keep_their_length() {
        assert_eq!(parse_bits("10101"), Ok((5, vec![0b1010_1000])));
        assert_eq!(parse_bits(""), Ok((0, vec![])));
        assert_eq!(parse_bits("111111111"), Ok((9, vec![0xff, 0x80])));
        assert!(parse_bits("102").is_err());
    }

    #[test]
    fn points_and_special_coordinates() {
        assert_eq!(parse_point("(1.5,-2)"), Ok((1.5, -2.0)));
        let (x, y) = parse_point("(NaN,-Infinity)").unwrap();
        assert!(x.is_nan() && y == f64::NEG_INFINITY);
        assert!(parse_point("(1,2").is_err());
        assert!(parse_point("(inf,2)").is_err());
    }

    fn bound(text: Option<&str>, inclusive: bool) -> BoundText {
        BoundText {
            text: text.map(str::to_owned),
            inclusive,
        }
    }

    #[test]
    fn ranges_with_quoted_unbounded_and_empty_bounds() {
        assert_eq!(parse_range("empty"), Ok(None));
        assert_eq!(
            parse_range("[1,10)"),
            Ok(Some((bound(Some("1"), true), bound(Some("10"), false))))
        );
        assert_eq!(
            parse_range("(,5]"),
            Ok(Some((bound(None, false), bound(Some("5"), true))))
        );
        assert_eq!(
            parse_range("[\"2020-01-01 00:00:00\",)"),
            Ok(Some((
                bound(Some("2020-01-01 00:00:00"), true),
                bound(None, false)
            )))
        );
        assert_eq!(
            parse_range(r#"["a""b","c\\d"]"#),
            Ok(Some((bound(Some("a\"b"), true), bound(Some("c\\d"), true))))
        );
        assert_eq!(
            parse_range("(\"\",x)"),
            Ok(Some((bound(Some(""), false), bound(Some("x"), false))))
        );
        for bad in ["", "[1,2", "[1,2)x", "{1,2}", "[1,(2)", "[\"1,2)"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hstore_pairs_with_nulls_and_escapes() {
        assert_eq!(parse_hstore(""), Ok(vec![]));
        assert_eq!(
            parse_hstore(r#""a"=>"1", "b"=>NULL, "c d"=>"x\"y\\z", ""=>"""#),
            Ok(vec![
                ("a".into(), Some("1".into())),
                ("b".into(), None),
                ("c d".into(), Some("x\"y\\z".into())),
                ("".into(), Some("".into())),
            ])
        );
        for bad in [
            r#""a"=>"1","#,
            r#""a"=>1"#,
            r#"a=>"1""#,
            r#""a""1""#,
            r#""a"=>"1" "b"=>"2""#,
        ] {
            assert!(parse_hstore(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ewkb_loses_only_its_srid() {
        // SRID=4326;POINT(1 2), little-endian.
        let ewkb = "0101000020E6100000000000000000F03F0000000000000040";
        let (wkb, srid) = parse_ewkb_hex(ewkb).unwrap();
        assert_eq!(srid, Some(4326));
        assert_eq!(
            wkb,
            parse_hex("0101000000000000000000F03F0000000000000040").unwrap()
        );
        // No SRID: unchanged.
        let plain = "0101000000000000000000F03F0000000000000040";
        assert_eq!(
            parse_ewkb_hex(plain).unwrap(),
            (parse_hex(plain).unwrap(), None)
        );
        for bad in ["", "02", "0101", "zz"] {
            assert!(parse_ewkb_hex(bad).is_err(), "{bad}");
        }
    }
}
