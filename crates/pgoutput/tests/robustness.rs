//! Property tests: arbitrary input must produce a value or an error, never a
//! panic, and the client-side encoder must round-trip.

use pgoutput::copy::{
    ReplicationMessage, decode_copy_data, decode_standby_status_update,
    encode_standby_status_update, format_lsn, parse_lsn,
};
use pgoutput::message::decode_message;
use pgoutput::row::{TypeNames, TypedValue, typed_value};
use proptest::prelude::*;

const MESSAGE_TAGS: &[u8] = b"BCORYIUDTMSEcAbPKrp";
const TYPED_OIDS: &[u32] = &[
    16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 600, 700, 701, 790, 1001, 1007, 1009, 1016, 1020,
    1042, 1043, 1082, 1083, 1114, 1184, 1185, 1186, 1187, 1231, 1266, 1560, 1562, 1700, 2950, 3802,
    3904, 3906, 3908, 3910, 3912, 3926, 70_000,
];
/// Array types: int4, text, timestamptz, interval, box elements.
const ARRAY_OIDS: &[u32] = &[1007, 1009, 1185, 1187, 1020];
const TEXT_ARRAY: u32 = 1009;

/// Random bodies behind a valid tag reach far deeper than fully random bytes.
fn tagged_message() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(MESSAGE_TAGS),
        proptest::collection::vec(any::<u8>(), 0..256),
    )
        .prop_map(|(tag, body)| {
            let mut buf = vec![tag];
            buf.extend(body);
            buf
        })
}

/// Text shaped like date/time/number output, with mutations.
fn value_like_text() -> impl Strategy<Value = String> {
    "[-+0-9 :.BCADinfityNa\\\\xe]{0,40}"
}

/// Text shaped like array output (braces, quotes, escapes, bounds), with mutations.
fn array_like_text() -> impl Strategy<Value = String> {
    "(\\[-?[0-9]{1,3}:-?[0-9]{1,3}\\]){0,2}=?[{},\"\\\\NUL;a0-9 PTSé-]{0,40}"
}

/// An element as `array_out` prints it: NULL bare, and quoted when empty,
/// spelled NULL, or holding a brace, quote, backslash, comma or space.
fn array_out_element(element: &Option<String>) -> String {
    match element {
        None => "NULL".to_owned(),
        Some(text)
            if text.is_empty()
                || text.eq_ignore_ascii_case("null")
                || text.contains(['{', '}', '"', '\\', ',', ' ']) =>
        {
            let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{escaped}\"")
        }
        Some(text) => text.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn decode_message_never_panics_on_random_bytes(buf in proptest::collection::vec(any::<u8>(), 0..512), in_stream: bool) {
        let _ = decode_message(&buf, in_stream);
    }

    #[test]
    fn decode_message_never_panics_on_tagged_bytes(buf in tagged_message(), in_stream: bool) {
        let _ = decode_message(&buf, in_stream);
    }

    #[test]
    fn decode_copy_data_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(ReplicationMessage::XLogData { data, .. }) = decode_copy_data(&buf) {
            let _ = decode_message(data, false);
        }
    }

    #[test]
    fn typed_value_never_panics_on_random_bytes(
        oid in proptest::sample::select(TYPED_OIDS),
        text in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = typed_value(oid, -1, &text, &TypeNames::new());
    }

    #[test]
    fn typed_value_never_panics_on_value_like_text(
        oid in proptest::sample::select(TYPED_OIDS),
        text in value_like_text(),
    ) {
        let _ = typed_value(oid, -1, text.as_bytes(), &TypeNames::new());
        let _ = typed_value(oid, (10 << 16 | 2) + 4, text.as_bytes(), &TypeNames::new());
    }

    #[test]
    fn structured_types_never_panic_on_their_kind_of_text(
        oid in proptest::sample::select(vec![600u32, 790, 1560, 1562, 3904, 3906, 3908, 3910, 3912, 3926, 70_100, 70_101, 70_102]),
        text in "[\\[\\]()\",=>a-fA-F0-9 .:+$NULempty\\\\-]{0,48}",
    ) {
        let mut types = TypeNames::new();
        types.learn(70_100, "public", "hstore");
        types.learn(70_101, "public", "geometry");
        types.learn(70_102, "public", "floatrange");
        types.learn_range("public.floatrange", "float8");
        let _ = typed_value(oid, -1, text.as_bytes(), &types);
    }

    #[test]
    fn array_parsing_never_panics_on_array_like_text(
        oid in proptest::sample::select(ARRAY_OIDS),
        text in array_like_text(),
    ) {
        let _ = typed_value(oid, -1, text.as_bytes(), &TypeNames::new());
    }

    #[test]
    fn text_arrays_round_trip_through_array_out(
        elements in proptest::collection::vec(proptest::option::of("[a-z{}\",\\\\ é]{0,6}"), 0..8),
    ) {
        let text = format!("{{{}}}", elements.iter().map(array_out_element).collect::<Vec<_>>().join(","));
        let parsed = typed_value(TEXT_ARRAY, -1, text.as_bytes(), &TypeNames::new());
        let expected = TypedValue::Array {
            type_name: "_text".into(),
            lower_bound: 1,
            elements: elements.into_iter().map(|element| element.map(TypedValue::Text)).collect(),
        };
        prop_assert_eq!(parsed, Ok(expected), "{}", text);
    }

    #[test]
    fn interval_like_text_never_panics(text in "-?P(-?[0-9]{1,20}[YMDW]){0,4}(T(-?[0-9]{1,20}(\\.[0-9]{0,8})?[HMS]){0,4})?") {
        let _ = typed_value(1186, -1, text.as_bytes(), &TypeNames::new());
    }

    #[test]
    fn timestamp_like_text_never_panics(
        year in 0u32..10_000_000,
        month in 0u32..14,
        day in 0u32..33,
        hour in 0u32..26,
        minute in 0u32..62,
        second in 0u32..62,
        fraction in "[0-9]{0,8}",
        offset in "[-+][0-9]{2}(:[0-9]{2}){0,3}",
        bc: bool,
    ) {
        let era = if bc { " BC" } else { "" };
        let text = format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}.{fraction}{offset}{era}");
        let _ = typed_value(1184, -1, text.as_bytes(), &TypeNames::new());
        let date = format!("{year:04}-{month:02}-{day:02}{era}");
        let _ = typed_value(1082, -1, date.as_bytes(), &TypeNames::new());
    }

    #[test]
    fn standby_status_update_round_trips(
        write: u64, flush: u64, apply: u64, client_time: i64, reply_requested: bool,
    ) {
        let encoded = encode_standby_status_update(write, flush, apply, client_time, reply_requested);
        let decoded = decode_standby_status_update(&encoded).unwrap();
        prop_assert_eq!(decoded.write, write);
        prop_assert_eq!(decoded.flush, flush);
        prop_assert_eq!(decoded.apply, apply);
        prop_assert_eq!(decoded.client_time_pg_micros, client_time);
        prop_assert_eq!(decoded.reply_requested, reply_requested);
    }

    #[test]
    fn lsn_text_round_trips(lsn: u64) {
        prop_assert_eq!(parse_lsn(&format_lsn(lsn)).unwrap(), lsn);
    }

    #[test]
    fn parse_lsn_never_panics(text in "\\PC{0,24}") {
        let _ = parse_lsn(&text);
    }
}
