//! Stage-2 logic without Kafka: windows, watermark, idleness, lateness, deduplication,
//! alerts, and that a task restored from its changelog continues exactly as one that never
//! stopped.

use std::collections::HashMap;

use super::*;
use crate::{
    output::{AlertKind, ResultKind, WindowResult},
    routed::{Body, Change, Op, Source},
    sketch::hash_value,
};

const MIN: i64 = 60_000;

fn settings() -> Settings {
    Settings {
        allowed_lateness_ms: 0,
        app_events_window_ms: 5 * MIN,
        clickstream_window_ms: 10 * MIN,
        cdc_window_ms: 5 * MIN,
        logs_window_ms: 5 * MIN,
        delete_burst_threshold: 3,
        failed_payments_threshold: 2,
        large_refund_amount: rust_decimal::Decimal::from(1000),
        ..Settings::default()
    }
}

fn task(partitions: i32) -> Task {
    let streams: HashMap<Stream, i32> = Stream::ALL.iter().map(|s| (*s, partitions)).collect();
    Task::new(0, settings(), streams)
}

fn app(partition: i32, offset: i64, t: i64, event_type: &str, user: &str) -> Routed {
    Routed::Data {
        lane: Lane::AppEventGroups,
        source: Source {
            stream: Stream::AppEvents,
            partition,
            offset,
        },
        event_time: t,
        body: Body::AppEvent {
            event_type: event_type.into(),
            source: "WEB_APP".into(),
            user: Some(hash_value(user)),
        },
    }
}

fn idle(stream: Stream, partition: i32) -> Routed {
    Routed::Progress {
        stream,
        partition,
        next_offset: 0,
        max_event_time: None,
        idle: true,
    }
}

fn results(out: &[Output]) -> Vec<&WindowResult> {
    out.iter()
        .filter_map(|o| match o {
            Output::Result(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn alerts(out: &[Output]) -> Vec<&Alert> {
    out.iter()
        .filter_map(|o| match o {
            Output::Alert(a) => Some(a),
            _ => None,
        })
        .collect()
}

#[test]
fn a_window_is_emitted_once_when_every_partition_passed_its_end() {
    let mut t = task(2);
    let mut out = Vec::new();
    t.apply(app(0, 0, MIN, "search", "u1"), &mut out);
    t.apply(app(0, 1, 2 * MIN, "search", "u2"), &mut out);
    t.apply(app(0, 2, 3 * MIN, "search", "u1"), &mut out);
    // Partition 0 is far ahead, partition 1 has said nothing: nothing closes.
    t.apply(app(0, 3, 20 * MIN, "search", "u9"), &mut out);
    assert!(results(&out).is_empty());
    // Partition 1 reaches 5 minutes: the first window is final.
    t.apply(app(1, 0, 5 * MIN, "click", "u3"), &mut out);
    let r = results(&out);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].kind, ResultKind::AppEventCount);
    assert_eq!((r[0].window_start, r[0].window_end), (0, 5 * MIN));
    assert_eq!(r[0].events, 3);
    assert_eq!(r[0].unique_users, Some((2, true)));
    assert_eq!(r[0].id(), "app_events/APP_EVENT_COUNT/0/search|WEB_APP");
    // More progress never emits it again.
    out.clear();
    t.apply(app(1, 1, 30 * MIN, "click", "u3"), &mut out);
    assert!(results(&out).iter().all(|r| r.window_start != 0));
}

#[test]
fn an_idle_partition_does_not_hold_the_watermark_back() {
    let mut t = task(2);
    let mut out = Vec::new();
    t.apply(app(0, 0, MIN, "search", "u1"), &mut out);
    t.apply(app(0, 1, 6 * MIN, "search", "u1"), &mut out);
    assert!(results(&out).is_empty());
    t.apply(idle(Stream::AppEvents, 1), &mut out);
    assert_eq!(results(&out).len(), 1);
}

#[test]
fn late_events_are_reported_not_counted() {
    let mut t = task(1);
    let mut out = Vec::new();
    t.apply(app(0, 0, MIN, "search", "u1"), &mut out);
    t.apply(app(0, 1, 6 * MIN, "search", "u1"), &mut out);
    out.clear();
    t.apply(app(0, 2, 2 * MIN, "search", "u2"), &mut out);
    assert_eq!(out.len(), 1);
    let Output::Late(late) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(
        (late.source_partition, late.source_offset, late.window_start),
        (0, 2, 0)
    );
    assert_eq!(t.stats.late, 1);
}

#[test]
fn out_of_order_events_within_lateness_are_counted() {
    let mut t = task(1);
    t.settings.allowed_lateness_ms = 2 * MIN;
    let mut out = Vec::new();
    t.apply(app(0, 0, 4 * MIN, "search", "u1"), &mut out);
    t.apply(app(0, 1, 6 * MIN, "search", "u2"), &mut out);
    t.apply(app(0, 2, 2 * MIN, "search", "u3"), &mut out);
    t.apply(app(0, 3, 7 * MIN, "search", "u4"), &mut out);
    let r = results(&out);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].events, 2);
}

#[test]
fn a_record_seen_again_is_dropped() {
    let mut t = task(1);
    let mut out = Vec::new();
    t.apply(app(0, 0, MIN, "search", "u1"), &mut out);
    t.apply(app(0, 1, MIN, "search", "u2"), &mut out);
    t.apply(app(0, 1, MIN, "search", "u2"), &mut out);
    t.apply(app(0, 0, MIN, "search", "u1"), &mut out);
    t.apply(app(0, 2, 9 * MIN, "search", "u1"), &mut out);
    assert_eq!(results(&out)[0].events, 2);
    assert_eq!(t.stats.duplicates, 2);
}

fn change(
    offset: i64,
    t: i64,
    table: &str,
    id: i64,
    op: Op,
    lsn: i64,
    extra: impl FnOnce(&mut Change),
) -> Vec<Routed> {
    let short = table.trim_start_matches("public.").trim_end_matches('s');
    let mut c = Change {
        change_id: format!("{lsn:016X}-00000000"),
        table: table.into(),
        key: format!("{table}/{{\"{short}_id\":{id}}}"),
        op,
        position: (lsn, 0),
        status: None,
        old_status: None,
        booking_id: None,
        user_id: None,
        amount: None,
    };
    extra(&mut c);
    let source = Source {
        stream: Stream::Cdc,
        partition: 0,
        offset,
    };
    let mut routed = vec![
        Routed::Data {
            lane: Lane::CdcTables,
            source,
            event_time: t,
            body: Body::Change(Box::new(c.clone())),
        },
        Routed::Data {
            lane: Lane::CdcKeys,
            source,
            event_time: t,
            body: Body::ChangeWithRecord {
                change: Box::new(c.clone()),
                record: vec![1, 2, 3],
            },
        },
    ];
    if c.booking_id.is_some() {
        routed.push(Routed::Data {
            lane: Lane::BookingRefs,
            source,
            event_time: t,
            body: Body::Change(Box::new(c)),
        });
    }
    routed
}

fn apply_all(t: &mut Task, records: Vec<Routed>, out: &mut Vec<Output>) {
    for r in records {
        t.apply(r, out);
    }
}

#[test]
fn cdc_counts_once_keeps_state_and_raises_alerts() {
    let mut t = task(1);
    let mut out = Vec::new();
    let booking = |status: &'static str| {
        move |c: &mut Change| {
            c.booking_id = Some("7".into());
            c.user_id = Some("42".into());
            c.status = Some(status.into());
        }
    };
    apply_all(
        &mut t,
        change(
            0,
            MIN,
            "public.bookings",
            7,
            Op::Insert,
            100,
            booking("pending"),
        ),
        &mut out,
    );
    // Delivered twice by the connector (same change id, later offset).
    apply_all(
        &mut t,
        change(
            1,
            MIN,
            "public.bookings",
            7,
            Op::Insert,
            100,
            booking("pending"),
        ),
        &mut out,
    );
    apply_all(
        &mut t,
        change(
            2,
            MIN,
            "public.bookings",
            7,
            Op::Update,
            200,
            booking("completed"),
        ),
        &mut out,
    );
    // An update of a row never seen.
    apply_all(
        &mut t,
        change(3, MIN, "public.users", 5, Op::Update, 300, |_| {}),
        &mut out,
    );
    // A payment for a booking that never existed, which then fails twice... and a refund.
    let payment = |status: &'static str| {
        move |c: &mut Change| {
            c.booking_id = Some("8".into());
            c.status = Some(status.into());
            c.amount = Some("5000.00".into());
        }
    };
    apply_all(
        &mut t,
        change(
            4,
            MIN,
            "public.payments",
            1,
            Op::Insert,
            400,
            payment("pending"),
        ),
        &mut out,
    );
    apply_all(
        &mut t,
        change(
            5,
            MIN,
            "public.payments",
            1,
            Op::Update,
            500,
            payment("refunded"),
        ),
        &mut out,
    );
    // Payments of booking 7 (user 42) fail twice.
    let failing = |c: &mut Change| {
        c.booking_id = Some("7".into());
        c.status = Some("failed".into());
        c.amount = Some("10.00".into());
    };
    apply_all(
        &mut t,
        change(6, MIN, "public.payments", 2, Op::Insert, 600, failing),
        &mut out,
    );
    apply_all(
        &mut t,
        change(7, MIN, "public.payments", 3, Op::Insert, 700, failing),
        &mut out,
    );
    for id in 10..13 {
        apply_all(
            &mut t,
            change(8 + id, MIN, "public.users", id, Op::Read, 50 + id, |_| {}),
            &mut out,
        );
    }
    for id in 10..13 {
        apply_all(
            &mut t,
            change(
                20 + id,
                2 * MIN,
                "public.users",
                id,
                Op::Delete,
                800 + id,
                |_| {},
            ),
            &mut out,
        );
    }
    apply_all(
        &mut t,
        change(40, 6 * MIN, "public.users", 99, Op::Insert, 2000, |_| {}),
        &mut out,
    );
    // Feed the derived failed-payment records back, as the repartition topic would.
    let derived: Vec<Routed> = out
        .iter()
        .filter_map(|o| match o {
            Output::Derived { routed, .. } => Some(routed.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(derived.len(), 2, "{out:#?}");
    apply_all(&mut t, derived, &mut out);
    apply_all(
        &mut t,
        change(41, 30 * MIN, "public.users", 98, Op::Insert, 2001, |_| {}),
        &mut out,
    );

    let kinds: Vec<AlertKind> = alerts(&out).iter().map(|a| a.kind).collect();
    for wanted in [
        AlertKind::InvalidStatusTransition,
        AlertKind::UnknownKey,
        AlertKind::MissingBooking,
        AlertKind::LargeRefund,
        AlertKind::DeleteBurst,
        AlertKind::FailedPayments,
    ] {
        assert_eq!(
            kinds.iter().filter(|k| **k == wanted).count(),
            1,
            "{wanted:?} in {kinds:?}"
        );
    }
    let bookings: Vec<_> = results(&out)
        .into_iter()
        .filter(|r| r.group.first().map(|g| g.1.as_str()) == Some("public.bookings"))
        .map(|r| (r.group[1].1.clone(), r.events))
        .collect();
    assert_eq!(
        bookings,
        vec![("INSERT".to_string(), 1), ("UPDATE".to_string(), 1)]
    );
    let states: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::State { topic, key, record } => Some((*topic, key.clone(), record.is_some())),
            _ => None,
        })
        .filter(|(_, key, _)| key.contains("\"user_id\":10"))
        .collect();
    let key = "public.users/{\"user_id\":10}".to_string();
    assert_eq!(
        states,
        vec![
            ("topic_user_state", key.clone(), true),
            ("topic_user_state", key, false)
        ]
    );
}

#[test]
fn a_restored_task_continues_like_one_that_never_stopped() {
    let records: Vec<Routed> = (0..400)
        .map(|i| {
            app(
                i % 2,
                i64::from(i / 2),
                i64::from(i) * 7_000,
                ["a", "b", "c"][(i % 3) as usize],
                &format!("u{}", i % 37),
            )
        })
        .collect();
    let mut whole = task(2);
    let mut expected = Vec::new();
    for r in records.iter().cloned() {
        whole.apply(r, &mut expected);
    }
    for cut in [1usize, 57, 200, 399] {
        let mut first = task(2);
        let mut out = Vec::new();
        let mut changelog = Vec::new();
        for (i, r) in records.iter().cloned().enumerate() {
            if i == cut {
                break;
            }
            first.apply(r, &mut out);
            if i % 13 == 0 {
                changelog.extend(first.take_dirty());
            }
        }
        changelog.extend(first.take_dirty());
        let mut restored = task(2);
        for (key, value) in changelog {
            restored.restore(key, value);
        }
        restored.finish_restore();
        for r in records.iter().skip(cut).cloned() {
            restored.apply(r, &mut out);
        }
        let ids = |o: &[Output]| {
            results(o)
                .iter()
                .map(|r| (r.id(), r.events, r.unique_users))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&out), ids(&expected), "cut at {cut}");
    }
}
