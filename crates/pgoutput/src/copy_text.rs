//! Rows of `COPY ... TO STDOUT` in text format, as the snapshot reads tables: one CopyData
//! message per row, columns separated by a tab, `\N` for NULL, backslash escapes for the bytes
//! the format reserves. Each value becomes the type's text output, exactly what pgoutput sends
//! in a tuple, so a snapshot row decodes like a streamed one.
//!
//! Escapes, as PostgreSQL's `COPY FROM` reads them (`COPY TO` writes `\\`, `\b`, `\f`, `\n`,
//! `\r`, `\t`, `\v` and never the others): `\` followed by one to three octal digits is that
//! byte, `\x` with one or two hex digits is that byte, any other character stands for itself.

use crate::{
    error::DecodeError,
    message::{TupleData, TupleValue},
};

/// Splits one text-format COPY row (with or without its trailing newline) into `columns`
/// values. A row with another number of columns, or ending in a lone backslash, is an error
/// naming the offset.
pub fn decode_row(row: &[u8], columns: usize) -> Result<TupleData, DecodeError> {
    let mut tuple = TupleData(Vec::with_capacity(columns));
    decode_row_into(row, columns, &mut tuple)?;
    Ok(tuple)
}

/// [`decode_row`] into `tuple`, reusing the buffers of the row decoded into it before: a
/// snapshot reads millions of rows of the same shape, and an allocation per value would cost
/// more than splitting it.
pub fn decode_row_into(
    row: &[u8],
    columns: usize,
    tuple: &mut TupleData,
) -> Result<(), DecodeError> {
    let row = row.strip_suffix(b"\n").unwrap_or(row);
    let values = &mut tuple.0;
    if columns == 0 && row.is_empty() {
        // A table without columns: every row is an empty line.
        values.clear();
        return Ok(());
    }
    let mut count = 0;
    let mut start = 0;
    loop {
        let end = row[start..]
            .iter()
            .position(|&b| b == b'\t')
            .map_or(row.len(), |i| start + i);
        if count == values.len() {
            values.push(TupleValue::Null);
        }
        decode_field(&row[start..end], start, &mut values[count])?;
        count += 1;
        if end == row.len() {
            break;
        }
        start = end + 1;
    }
    values.truncate(count);
    if count != columns {
        return Err(DecodeError::InvalidField {
            what: "COPY row",
            offset: 0,
            detail: format!("{count} columns, expected {columns}"),
        });
    }
    Ok(())
}

/// Decodes one field into `slot`, reusing its text buffer.
fn decode_field(field: &[u8], offset: usize, slot: &mut TupleValue) -> Result<(), DecodeError> {
    if field == b"\\N" {
        *slot = TupleValue::Null;
        return Ok(());
    }
    let mut text = slot.take_buffer(field.len());
    unescape(field, offset, &mut text)?;
    *slot = TupleValue::Text(text);
    Ok(())
}

/// Appends `field` to `text` with its escapes resolved.
fn unescape(field: &[u8], offset: usize, text: &mut Vec<u8>) -> Result<(), DecodeError> {
    let Some(first_escape) = field.iter().position(|&b| b == b'\\') else {
        text.extend_from_slice(field);
        return Ok(());
    };
    text.extend_from_slice(&field[..first_escape]);
    let mut i = first_escape;
    while i < field.len() {
        let byte = field[i];
        if byte != b'\\' {
            text.push(byte);
            i += 1;
            continue;
        }
        let Some(&escaped) = field.get(i + 1) else {
            return Err(DecodeError::InvalidField {
                what: "COPY value",
                offset: offset + i,
                detail: "a backslash ends the value".into(),
            });
        };
        i += 2;
        match escaped {
            b'b' => text.push(0x08),
            b'f' => text.push(0x0c),
            b'n' => text.push(b'\n'),
            b'r' => text.push(b'\r'),
            b't' => text.push(b'\t'),
            b'v' => text.push(0x0b),
            b'0'..=b'7' => {
                let mut value = u32::from(escaped - b'0');
                let mut digits = 1;
                while digits < 3 {
                    match field.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                            digits += 1;
                        }
                        _ => break,
                    }
                }
                // Like PostgreSQL: three octal digits can exceed a byte; the low 8 bits count.
                text.push((value & 0xff) as u8);
            }
            b'x' if field.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u8;
                let mut digits = 0;
                while digits < 2 {
                    match field.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d as u8;
                            i += 1;
                            digits += 1;
                        }
                        None => break,
                    }
                }
                text.push(value);
            }
            other => text.push(other),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> TupleValue {
        TupleValue::Text(value.as_bytes().to_vec())
    }

    #[test]
    fn decoding_into_a_used_row_equals_decoding_afresh() {
        let rows: [&[u8]; 5] = [
            b"1\t\\N\tabc\n",
            b"22\tlonger text\t\\N\n",
            b"\\N\t\\101\tx\n",
            b"only\tthree\tcolumns\n",
            b"1\t2\n",
        ];
        let mut reused = TupleData(Vec::new());
        for row in rows {
            let fresh = decode_row(row, 3);
            let into = decode_row_into(row, 3, &mut reused);
            match fresh {
                Ok(fresh) => {
                    into.unwrap();
                    assert_eq!(reused, fresh, "{}", String::from_utf8_lossy(row));
                }
                Err(error) => {
                    assert_eq!(into.unwrap_err().to_string(), error.to_string());
                }
            }
        }
    }

    #[test]
    fn splits_columns_and_reads_null() {
        let row = decode_row(b"1\t\\N\tabc\t\n", 4).unwrap();
        assert_eq!(
            row.0,
            vec![text("1"), TupleValue::Null, text("abc"), text("")]
        );
    }

    #[test]
    fn unescapes_what_copy_to_writes() {
        let row = decode_row(b"a\\tb\\nc\\\\d\\re\\bf\\fg\\vh", 1).unwrap();
        assert_eq!(row.0, vec![text("a\tb\nc\\d\re\u{8}f\u{c}g\u{b}h")]);
        // bytea's text output starts with a backslash, which COPY doubles.
        assert_eq!(
            decode_row(b"\\\\x00ff", 1).unwrap().0,
            vec![text("\\x00ff")]
        );
        // A literal `\N` inside a text value is escaped, so it is not NULL.
        assert_eq!(decode_row(b"\\\\N", 1).unwrap().0, vec![text("\\N")]);
    }

    #[test]
    fn reads_octal_hex_and_other_escapes_like_copy_from() {
        let row = decode_row(b"\\101\\x42\\x4\\q\\0\\777", 1).unwrap();
        assert_eq!(
            row.0,
            vec![TupleValue::Text(vec![b'A', b'B', 4, b'q', 0, 0xff])]
        );
        // `\x` without a hex digit is the letter x.
        assert_eq!(decode_row(b"\\xz", 1).unwrap().0, vec![text("xz")]);
    }

    #[test]
    fn a_wrong_column_count_or_a_trailing_backslash_is_an_error() {
        let error = decode_row(b"1\t2", 3).unwrap_err().to_string();
        assert!(error.contains("2 columns, expected 3"), "{error}");
        let error = decode_row(b"1\tab\\", 2).unwrap_err().to_string();
        assert!(
            error.contains("offset 4") && error.contains("backslash"),
            "{error}"
        );
    }

    #[test]
    fn an_empty_row_is_one_empty_value() {
        assert_eq!(decode_row(b"\n", 1).unwrap().0, vec![text("")]);
        assert!(decode_row(b"", 2).is_err());
        assert_eq!(decode_row(b"\n", 0).unwrap().0, vec![]);
    }
}
