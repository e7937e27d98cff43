//! Avro's binary encoding, written straight into a buffer: the primitives every direct encoder
//! (the connector's `CDCChange`, the application events) shares, so that the zig-zag and the
//! framing exist once.

/// Avro `long` (and `int`, `enum`, union index, block counts): zig-zag, then a LEB128 varint.
///
/// Written for every field of every record, so inlined into its callers (in other crates too),
/// with one byte (a union branch, an enum symbol, a short length) pushed at once and a longer
/// varint gathered on the stack and appended with one capacity check.
#[inline]
pub fn long(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    if zigzag < 0x80 {
        out.push(zigzag as u8);
        return;
    }
    let mut varint = [0u8; 10];
    let mut len = 0;
    while zigzag >= 0x80 {
        varint[len] = (zigzag as u8) | 0x80;
        zigzag >>= 7;
        len += 1;
    }
    varint[len] = zigzag as u8;
    out.extend_from_slice(&varint[..=len]);
}

/// Avro `bytes`: the length as a `long`, then the bytes.
#[inline]
pub fn bytes(out: &mut Vec<u8>, value: &[u8]) {
    long(out, value.len() as i64);
    out.extend_from_slice(value);
}

/// Avro `string`: its UTF-8 as `bytes`.
#[inline]
pub fn string(out: &mut Vec<u8>, value: &str) {
    bytes(out, value.as_bytes());
}

/// The Confluent wire-format header: magic byte 0, then the schema id (big-endian).
pub fn frame(out: &mut Vec<u8>, schema_id: u32) {
    out.push(super::MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use apache_avro::{Schema, types::Value, writer::datum::GenericDatumWriter};

    use super::*;

    fn oracle(schema: &Schema, value: Value) -> Vec<u8> {
        let mut out = Vec::new();
        GenericDatumWriter::builder(schema)
            .build()
            .unwrap()
            .write_value_ref(&mut out, &value)
            .unwrap();
        out
    }

    #[test]
    fn longs_ints_and_strings_are_byte_identical_to_apache_avro() {
        for value in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            -65,
            8191,
            1 << 40,
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            long(&mut out, value);
            assert_eq!(out, oracle(&Schema::Long, Value::Long(value)), "{value}");
        }
        for value in [0, -1, i32::MIN, i32::MAX] {
            let mut out = Vec::new();
            long(&mut out, i64::from(value));
            assert_eq!(out, oracle(&Schema::Int, Value::Int(value)), "{value}");
        }
        for text in ["", "a", "Đà Nẵng", &"x".repeat(300)] {
            let mut out = Vec::new();
            string(&mut out, text);
            assert_eq!(out, oracle(&Schema::String, Value::String(text.into())));
        }
        let mut out = Vec::new();
        frame(&mut out, 258);
        assert_eq!(out, [0, 0, 0, 1, 2]);
    }
}
