//! The ordering rules of the assembler: transaction framing, streamed chunks, staging,
//! aborts, relation cache, REPLICA IDENTITY FULL keys.

use pgoutput::row::{ColumnValue, TypedValue};

use super::*;
use crate::test_wire::*;

/// Feeds messages and replays committed streamed transactions, like the session does.
fn run(assembler: &mut ChangeAssembler, messages: Vec<Vec<u8>>) -> Vec<Output> {
    run_recycling(assembler, messages, false)
}

/// [`run`], giving each change back to the assembler once emitted when `recycle` (keeping a
/// copy), as the session does once it is published.
fn run_recycling(
    assembler: &mut ChangeAssembler,
    messages: Vec<Vec<u8>>,
    recycle: bool,
) -> Vec<Output> {
    let mut all = Vec::new();
    let mut keep = |assembler: &mut ChangeAssembler, output| match output {
        Output::Change(change) if recycle => {
            all.push(Output::Change(change.clone()));
            assembler.recycle(change);
        }
        other => all.push(other),
    };
    for (index, data) in messages.into_iter().enumerate() {
        let mut out = Vec::new();
        assembler
            .apply(&data, 1000 + index as u64, &mut out)
            .unwrap();
        for output in out {
            match output {
                Output::Replay(mut staged) => {
                    let mut replayed = Vec::new();
                    loop {
                        let more = assembler.replay_next(&mut staged, &mut replayed).unwrap();
                        for output in replayed.drain(..) {
                            keep(assembler, output);
                        }
                        if !more {
                            break;
                        }
                    }
                }
                other => keep(assembler, other),
            }
        }
    }
    all
}

fn changes(outputs: &[Output]) -> Vec<&ChangeEvent> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Change(change) => Some(change),
            _ => None,
        })
        .collect()
}

#[test]
fn a_transaction_gives_sequenced_changes_then_its_end() {
    let out = run(
        &mut ChangeAssembler::default(),
        vec![
            relation(None),
            begin(500, 7),
            insert(None, "1"),
            update("1", "confirmed"),
            delete_by_key("1"),
            commit(500, 520),
        ],
    );
    let seen = changes(&out);
    assert_eq!(
        seen.iter()
            .map(|c| (
                c.operation,
                c.position.sequence,
                c.position.commit_lsn,
                c.position.xid
            ))
            .collect::<Vec<_>>(),
        vec![
            (Operation::Insert, 0, 500, 7),
            (Operation::Update, 1, 500, 7),
            (Operation::Delete, 2, 500, 7)
        ]
    );
    assert!(matches!(
        out.last(),
        Some(Output::TransactionEnd(TransactionEnd { xid: 7, commit_lsn: 500, end_lsn: 520, commit_time_unix_micros }))
            if *commit_time_unix_micros == pgoutput::copy::PG_EPOCH_OFFSET_MICROS
    ));
    assert_eq!(&*seen[0].table, "public.bookings");
    assert_eq!(
        seen[0].primary_key,
        vec![("booking_id".into(), ColumnValue::Value(TypedValue::Long(1)))]
    );
    let deleted = seen[2].before.as_ref().unwrap();
    assert_eq!(
        deleted[1],
        ("status".into(), ColumnValue::NotInReplicaIdentity)
    );
    assert!(seen[2].after.is_none());
}

#[test]
fn streamed_transactions_are_staged_until_commit_and_aborts_are_dropped() {
    let mut assembler = ChangeAssembler::default();
    let before_commit = run(
        &mut assembler,
        vec![
            relation(None),
            stream_start(9),
            insert(Some(9), "1"),
            insert(Some(10), "2"), // a subtransaction that aborts
            message(Some(9), true, 1, "app"),
            stream_stop(),
            stream_start(11),
            insert(Some(11), "3"), // a whole transaction that aborts
            stream_stop(),
        ],
    );
    assert!(
        before_commit.is_empty(),
        "nothing may be published before commit: {before_commit:?}"
    );
    assert_eq!(assembler.staged_messages(), 4);
    let out = run(
        &mut assembler,
        vec![
            stream_abort(9, 10),
            stream_abort(11, 11),
            stream_commit(9, 900, 950),
        ],
    );
    let seen = changes(&out);
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].primary_key[0].1,
        ColumnValue::Value(TypedValue::Long(1))
    );
    assert_eq!(
        (
            seen[0].position.commit_lsn,
            seen[0].position.xid,
            seen[0].position.sequence
        ),
        (900, 9, 0)
    );
    assert!(matches!(
        &out[1],
        Output::Message(MessageEvent {
            position: Some(Position { sequence: 1, .. }),
            ..
        })
    ));
    assert!(matches!(
        out.last(),
        Some(Output::TransactionEnd(TransactionEnd {
            xid: 9,
            end_lsn: 950,
            ..
        }))
    ));
    assert_eq!(assembler.staged_messages(), 0);
}

#[test]
fn a_relation_inside_a_stream_applies_from_its_commit_on() {
    let mut assembler = ChangeAssembler::default();
    // The streamed transaction describes the table itself; nothing outside it knew it.
    let out = run(
        &mut assembler,
        vec![
            stream_start(5),
            relation(Some(5)),
            insert(Some(5), "8"),
            stream_stop(),
            stream_commit(5, 70, 80),
        ],
    );
    assert_eq!(changes(&out).len(), 1);
    // From then on the relation is known to later transactions.
    let out = run(
        &mut assembler,
        vec![begin(90, 6), insert(None, "9"), commit(90, 95)],
    );
    assert_eq!(changes(&out).len(), 1);
}

#[test]
fn many_streamed_changes_replay_one_by_one() {
    let mut assembler = ChangeAssembler::default();
    let mut messages = vec![relation(None), stream_start(3)];
    messages.extend((0..5000).map(|i| insert(Some(3), &i.to_string())));
    messages.push(stream_stop());
    run(&mut assembler, messages);
    let mut out = Vec::new();
    assembler
        .apply(&stream_commit(3, 10, 20), 1, &mut out)
        .unwrap();
    let Some(Output::Replay(mut staged)) = out.pop() else {
        panic!("a replay")
    };
    let mut replayed = Vec::new();
    let mut steps = 0;
    while assembler.replay_next(&mut staged, &mut replayed).unwrap() {
        steps += 1;
        assert_eq!(replayed.len(), steps, "one change per step");
    }
    assert_eq!(steps, 5000);
    let sequences: Vec<u32> = changes(&replayed)
        .iter()
        .map(|c| c.position.sequence)
        .collect();
    assert_eq!(sequences, (0..5000).collect::<Vec<_>>());
}

#[test]
fn full_identity_tables_are_keyed_by_their_primary_key() {
    let full_relation = {
        let mut bytes = relation(None);
        let identity = bytes.iter().position(|b| *b == b'd').unwrap();
        bytes[identity] = b'f';
        bytes
    };
    let mut assembler = ChangeAssembler::default();
    let out = run(
        &mut assembler,
        vec![
            full_relation.clone(),
            begin(1, 1),
            insert(None, "4"),
            commit(1, 2),
        ],
    );
    assert!(
        changes(&out)[0].primary_key.is_empty(),
        "without a known primary key, no key columns"
    );
    assembler.set_primary_key(BOOKINGS, vec!["booking_id".into()]);
    let out = run(
        &mut assembler,
        vec![begin(3, 2), insert(None, "5"), commit(3, 4)],
    );
    assert_eq!(
        changes(&out)[0].primary_key,
        vec![("booking_id".into(), ColumnValue::Value(TypedValue::Long(5)))]
    );
}

#[test]
fn keepalives_are_confirmable_only_between_transactions() {
    let mut assembler = ChangeAssembler::default();
    let mut out = Vec::new();
    assert!(assembler.between_transactions());
    assembler.apply(&begin(1, 1), 1, &mut out).unwrap();
    assert!(!assembler.between_transactions());
    assembler.apply(&commit(1, 2), 2, &mut out).unwrap();
    assembler.apply(&stream_start(3), 3, &mut out).unwrap();
    assert!(!assembler.between_transactions());
    assembler.apply(&stream_stop(), 4, &mut out).unwrap();
    assert!(assembler.between_transactions());
}

#[test]
fn truncate_gives_one_change_per_table() {
    let out = run(
        &mut ChangeAssembler::default(),
        vec![relation(None), begin(5, 1), truncate(), commit(5, 6)],
    );
    let seen = changes(&out);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].operation, Operation::Truncate);
    assert!(seen[0].primary_key.is_empty());
}

#[test]
fn protocol_violations_are_errors_not_panics() {
    let mut assembler = ChangeAssembler::default();
    let mut out = Vec::new();
    assembler.apply(&begin(1, 1), 1, &mut out).unwrap();
    assert!(matches!(
        assembler.apply(&insert(None, "1"), 2, &mut out),
        Err(AssembleError::UnknownRelation(BOOKINGS))
    ));
    let mut fresh = ChangeAssembler::default();
    fresh.apply(&relation(None), 1, &mut out).unwrap();
    assert!(
        fresh.apply(&insert(None, "1"), 2, &mut out).is_err(),
        "a change outside a transaction"
    );
    assert!(fresh.apply(&commit(1, 2), 3, &mut out).is_err());
    assert!(matches!(
        fresh.apply(b"Z", 4, &mut out),
        Err(AssembleError::Decode(_))
    ));
}

#[test]
fn a_non_transactional_message_is_emitted_and_checkpoints() {
    let out = run(
        &mut ChangeAssembler::default(),
        vec![message(None, false, 77, "cdc_connector.heartbeat")],
    );
    assert!(matches!(
        &out[0],
        Output::Message(MessageEvent {
            position: None,
            message_lsn: 77,
            ..
        })
    ));
    assert!(matches!(out[1], Output::Checkpoint { lsn: 77 }));
}

#[test]
fn a_streamed_change_is_decoded_at_its_replay_and_never_if_its_transaction_aborts() {
    let mut cut = insert(Some(9), "1");
    cut.truncate(cut.len() - 1);
    let mut assembler = ChangeAssembler::default();
    let mut out = Vec::new();
    for data in [
        relation(None),
        stream_start(9),
        cut.clone(),
        stream_stop(),
        stream_start(11),
        cut.clone(),
        stream_stop(),
        stream_abort(11, 11),
    ] {
        assembler.apply(&data, 1, &mut out).unwrap();
    }
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(assembler.staged_messages(), 1, "the aborted one is dropped");
    assembler
        .apply(&stream_commit(9, 900, 950), 2, &mut out)
        .unwrap();
    let Some(Output::Replay(mut staged)) = out.pop() else {
        panic!("a replay")
    };
    let error = assembler
        .replay_next(&mut staged, &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(error, AssembleError::Decode(_)),
        "the committed change is refused when it is decoded: {error}"
    );
}

#[test]
fn changes_decoded_into_the_buffers_of_published_ones_are_the_same() {
    const TRIPS: u32 = 16_401;
    let trips = Wire::new(b'R', None)
        .u32(TRIPS)
        .cstr("public")
        .cstr("trips")
        .u8(b'f')
        .u16(1)
        .u8(1)
        .cstr("trip_code")
        .u32(TEXT)
        .u32(u32::MAX)
        .0;
    let trip = |tag: u8, code: &str| {
        let wire = Wire::new(tag, None).u32(TRIPS).u8(b'N').u16(1).u8(b't');
        [wire.u32(code.len() as u32).0, code.as_bytes().to_vec()].concat()
    };
    let full_update = |id: &str, old: &str, new: &str| {
        [
            Wire::new(b'U', None)
                .u32(BOOKINGS)
                .u8(b'O')
                .tuple(id, Some(old))
                .0,
            Wire::new(b'N', None).tuple(id, Some(new)).0,
        ]
        .concat()
    };
    let mut messages = vec![relation(None), trips, begin(500, 7)];
    for i in 0..4 {
        let id = i.to_string();
        messages.extend([
            insert(None, &id),
            trip(b'I', &format!("trip-{i}-with-a-longer-code")),
            update(&id, "confirmed"),
            full_update(&id, "confirmed", "a status longer than the buffer held"),
            trip(b'I', "t"),
            delete_by_key(&id),
        ]);
    }
    messages.extend([truncate(), commit(500, 520)]);
    // A new description of the table mid-stream, then a streamed transaction replayed.
    messages.extend([relation(None), stream_start(9)]);
    messages.extend((0..3).map(|i| insert(Some(9), &i.to_string())));
    messages.extend([stream_stop(), stream_commit(9, 600, 620)]);
    let run = |recycle| {
        let mut assembler = ChangeAssembler::default();
        assembler.set_primary_key(TRIPS, vec!["trip_code".into()]);
        run_recycling(&mut assembler, messages.clone(), recycle)
    };
    let (fresh, recycled) = (run(false), run(true));
    assert_eq!(changes(&recycled).len(), 4 * 6 + 1 + 3);
    assert_eq!(changes(&recycled), changes(&fresh));
}
