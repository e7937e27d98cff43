//! Feeds arbitrary bytes to every decoding entry point; any panic is a bug, and so is a streamed
//! message classified other than its decoding says, or a message decoded into the tuples of
//! earlier inputs other than into new ones.
//! Run with `cargo +nightly fuzz run decode` from this directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgoutput::copy::{ReplicationMessage, decode_copy_data};
use std::cell::RefCell;

use pgoutput::message::{
    LogicalMessage, OldTuple, TuplePool, classify_streamed, decode_message, decode_message_reusing,
};
use pgoutput::row::{TypeNames, typed_value};

/// OIDs with a dedicated conversion, plus one unknown OID for the fallback.
const TYPED_OIDS: &[u32] = &[
    16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 600, 700, 701, 790, 1042, 1043, 1082, 1114, 1184,
    1560, 1562, 1700, 2950, 3802, 3904, 3906, 3908, 3910, 3912, 3926, 70_000,
];

thread_local! {
    /// The tuples of earlier inputs' changes, given back as the connector gives them back.
    static POOL: RefCell<TuplePool> = RefCell::new(TuplePool::default());
}

fn give_back(pool: &mut TuplePool, message: LogicalMessage) {
    let old_tuple = |old| match old {
        OldTuple::Key(tuple) | OldTuple::Full(tuple) => tuple,
    };
    match message {
        LogicalMessage::Insert { new, .. } => pool.give(new),
        LogicalMessage::Update { old, new, .. } => {
            pool.give(new);
            if let Some(old) = old {
                pool.give(old_tuple(old));
            }
        }
        LogicalMessage::Delete { old, .. } => pool.give(old_tuple(old)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    POOL.with_borrow_mut(|pool| {
        let reused = decode_message_reusing(data, false, pool);
        assert_eq!(reused, decode_message(data, false));
        if let Ok(message) = reused {
            give_back(pool, message);
        }
    });
    if let Ok(ReplicationMessage::XLogData { data: payload, .. }) = decode_copy_data(data) {
        let _ = decode_message(payload, false);
        let _ = decode_message(payload, true);
    }
    // A streamed message is staged or applied by its tag alone: that must agree with decoding it.
    match decode_message(data, true) {
        Ok(message) => assert_eq!(classify_streamed(data), Ok(message.streamed())),
        Err(_) => {
            let _ = classify_streamed(data);
        }
    }
    let _ = pgoutput::copy_text::decode_row(data, 3);

    // The first byte picks the type so one input exercises one conversion.
    if let Some((&selector, text)) = data.split_first() {
        let oid = TYPED_OIDS[usize::from(selector) % TYPED_OIDS.len()];
        // A declared numeric(10,2) modifier for every type: only numeric reads it.
        let _ = typed_value(oid, -1, text, &TypeNames::new());
        let _ = typed_value(oid, (10 << 16 | 2) + 4, text, &TypeNames::new());
    }
});
