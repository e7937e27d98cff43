//! Every processor job end to end: known input records written into the real source topics
//! (through the real registry), the real processor binary on the real broker, and results
//! compared with expectations computed here, independently of the processor's code.
//! Covers out-of-order events, a late event, idle partitions, a CDC change delivered twice,
//! alerts, state topics and a dead letter.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use anyhow::Context;
use e2e::{
    processor::{self, SourceWriter},
    read_topic_until,
};
use local_stack::{Stack, StackOptions};
use platform::topics;
use serde_json::{Value, json};

const MIN: i64 = 60_000;
/// A multiple of ten minutes, so the 5- and 10-minute windows start here.
const B: i64 = 1_764_000_000_000;

fn window(t: i64, size: i64) -> i64 {
    t - t.rem_euclid(size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_matches_independently_computed_results() -> anyhow::Result<()> {
    let mut opts = StackOptions::for_tests("processor-jobs");
    opts.start_connector = false;
    let stack = Stack::start(opts).await?;
    let brokers = stack.kafka_brokers();
    let writer = SourceWriter::new(&brokers, &stack.registry_url()).await?;

    // --- app events: partitions 0-3 only (4 and 5 stay idle), out of order in each ----------
    let mut expected: BTreeMap<String, Value> = BTreeMap::new();
    let mut app: BTreeMap<(i64, String, String), (u64, BTreeSet<String>)> = BTreeMap::new();
    let mut totals: BTreeMap<i64, (u64, BTreeSet<String>)> = BTreeMap::new();
    for i in 0..120i64 {
        let event_type = ["search", "page_view", "click"][(i % 3) as usize];
        let source = ["MOBILE_APP", "WEB_APP"][((i / 4) % 2) as usize];
        let user = (i % 10 != 0).then(|| format!("u{}", i % 17));
        let t = B + (i * 7_919) % (10 * MIN);
        writer
            .write(
                topics::APP_EVENTS.name,
                (i % 4) as i32,
                &format!("s{}", i % 4),
                processor::app_event(
                    &format!("e{i}"),
                    event_type,
                    source,
                    user.as_deref(),
                    "s",
                    t,
                ),
            )
            .await?;
        let w = window(t, 5 * MIN);
        let group = app
            .entry((w, event_type.into(), source.into()))
            .or_default();
        let total = totals.entry(w).or_default();
        group.0 += 1;
        total.0 += 1;
        if let Some(u) = user {
            group.1.insert(u.clone());
            total.1.insert(u);
        }
    }
    for ((w, event_type, source), (events, users)) in &app {
        expected.insert(
            format!("app_events/APP_EVENT_COUNT/{w}/{event_type}|{source}"),
            json!({"events": events, "unique_users": users.len(), "unique_users_exact": true}),
        );
    }
    for (w, (events, users)) in &totals {
        expected.insert(
            format!("app_events/APP_EVENT_TOTALS/{w}/"),
            json!({"events": events, "unique_users": users.len()}),
        );
    }

    // --- clickstream: one 10-minute window, sessions spread over partitions ------------------
    // Per page: clicks, interactions, heat-map cells.
    type PageTotals = (u64, u64, BTreeMap<(i64, i64), u64>);
    let mut pages: BTreeMap<String, PageTotals> = BTreeMap::new();
    let mut sessions: BTreeMap<String, (u64, u64, BTreeSet<String>, i64, i64)> = BTreeMap::new();
    for i in 0..60i64 {
        let session = format!("s{}", i % 6);
        let page = ["/home", "/search", "/hotel/42"][((i / 2) % 3) as usize];
        let interaction = ["CLICK", "TAP", "SCROLL", "CLICK"][(i % 4) as usize];
        let (x, y) = ((i * 37) % 400, (i * 53) % 300);
        let t = B + (i * 10_007) % (10 * MIN);
        writer
            .write(
                topics::CLICKSTREAM.name,
                (i % 6) as i32,
                &session,
                processor::click(
                    &format!("c{i}"),
                    &session,
                    page,
                    interaction,
                    x as i32,
                    y as i32,
                    t,
                ),
            )
            .await?;
        let is_click = interaction != "SCROLL";
        let p = pages.entry(page.into()).or_default();
        p.1 += 1;
        let s = sessions
            .entry(session)
            .or_insert((0, 0, BTreeSet::new(), t, t));
        s.1 += 1;
        s.2.insert(page.into());
        s.3 = s.3.min(t);
        s.4 = s.4.max(t);
        if is_click {
            p.0 += 1;
            *p.2.entry((x / 50, y / 50)).or_default() += 1;
            s.0 += 1;
        }
    }
    for (page, (clicks, interactions, cells)) in &pages {
        expected.insert(
            format!("clickstream/PAGE_CLICKS/{B}/{page}"),
            json!({"events": clicks, "interactions": interactions}),
        );
        let cells: Vec<Value> = cells
            .iter()
            .map(|((x, y), n)| json!({"x": x, "y": y, "clicks": n}))
            .collect();
        expected.insert(
            format!("clickstream/PAGE_HEATMAP/{B}/{page}"),
            json!({"events": clicks, "heatmap": {"cell_px": 50, "cells": cells}}),
        );
    }
    for (session, (clicks, interactions, pages, first, last)) in &sessions {
        expected.insert(
            format!("clickstream/SESSION_ENGAGEMENT/{B}/{session}"),
            json!({"events": clicks, "session": {
                "interactions": interactions, "pages": pages.len(), "first_event": first,
                "last_event": last, "duration_ms": last - first, "bounce": pages.len() == 1
            }}),
        );
    }

    // --- CDC: changes of users, bookings, payments; one delivered twice ---------------------
    let users = "public.users";
    let bookings = "public.bookings";
    let payments = "public.payments";
    let cdc = [
        (
            users,
            "user_id",
            1,
            "INSERT",
            100,
            json!({"email": "a@x"}),
            None,
            B + MIN,
        ),
        (
            users,
            "user_id",
            2,
            "INSERT",
            101,
            json!({"email": "b@x"}),
            None,
            B + MIN,
        ),
        (
            users,
            "user_id",
            1,
            "UPDATE",
            102,
            json!({"email": "a2@x"}),
            None,
            B + 2 * MIN,
        ),
        // The same change again (the connector delivers at least once).
        (
            users,
            "user_id",
            1,
            "UPDATE",
            102,
            json!({"email": "a2@x"}),
            None,
            B + 2 * MIN,
        ),
        // A row never seen.
        (
            users,
            "user_id",
            3,
            "UPDATE",
            103,
            json!({"email": "c@x"}),
            None,
            B + 2 * MIN,
        ),
        (
            bookings,
            "booking_id",
            10,
            "INSERT",
            104,
            json!({"user_id": 1, "status": "pending"}),
            None,
            B + 2 * MIN,
        ),
        (
            bookings,
            "booking_id",
            10,
            "UPDATE",
            105,
            json!({"user_id": 1, "status": "completed"}),
            None,
            B + 3 * MIN,
        ),
        (
            payments,
            "payment_id",
            20,
            "INSERT",
            106,
            json!({"booking_id": 99, "status": "pending", "amount": "10.00"}),
            None,
            B + 3 * MIN,
        ),
        (
            payments,
            "payment_id",
            21,
            "INSERT",
            107,
            json!({"booking_id": 10, "status": "captured", "amount": "20000000.00"}),
            None,
            B + 3 * MIN,
        ),
        (
            payments,
            "payment_id",
            21,
            "UPDATE",
            108,
            json!({"booking_id": 10, "status": "refunded", "amount": "20000000.00"}),
            None,
            B + 4 * MIN,
        ),
        (
            users,
            "user_id",
            2,
            "DELETE",
            109,
            json!({}),
            None,
            B + 4 * MIN,
        ),
    ];
    let mut ops: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (table, column, id, op, lsn, columns, old, t) in cdc {
        writer
            .write(
                topics::CDC_CHANGES.name,
                (id % 4) as i32,
                &processor::cdc_key(table, column, id),
                processor::cdc_change(table, column, id, op, lsn, columns, old, t),
            )
            .await?;
        if seen.insert(lsn) {
            *ops.entry((table.to_string(), op.to_string())).or_default() += 1;
        }
    }
    for ((table, op), n) in &ops {
        expected.insert(
            format!("cdc/CDC_OPERATIONS/{B}/{table}|{op}"),
            json!({"events": n}),
        );
    }

    // --- logs -------------------------------------------------------------------------------
    let mut levels: BTreeMap<(String, String), u64> = BTreeMap::new();
    for i in 0..40i64 {
        let service = ["booking-api", "payment-service"][(i % 2) as usize];
        let level = match i {
            7 => "FATAL",
            _ => ["INFO", "INFO", "WARN", "ERROR", "DEBUG"][(i % 5) as usize],
        };
        let t = B + (i * 6_131) % (5 * MIN);
        writer
            .write(
                topics::APP_LOGS.name,
                (i % 4) as i32,
                service,
                processor::log_line(&format!("l{i}"), service, level, t),
            )
            .await?;
        *levels.entry((service.into(), level.into())).or_default() += 1;
    }
    let mut per_service: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for ((service, level), n) in &levels {
        expected.insert(
            format!("logs/LOG_LEVEL_COUNT/{B}/{service}|{level}"),
            json!({"events": n}),
        );
        let s = per_service.entry(service.clone()).or_default();
        s.0 += n;
        if level == "ERROR" || level == "FATAL" {
            s.1 += n;
        }
    }
    for (service, (total, errors)) in &per_service {
        expected.insert(
            format!("logs/LOG_ERROR_RATE/{B}/{service}"),
            json!({"events": total, "error_rate": *errors as f64 / *total as f64}),
        );
    }

    // --- external data (newest observation first, then an older one) and a dead letter ---
    writer
        .write(
            topics::EXTERNAL_DATA.name,
            0,
            "Da Nang",
            processor::external("x2", "Da Nang", 31.5, B + 2 * MIN),
        )
        .await?;
    writer
        .write(
            topics::EXTERNAL_DATA.name,
            0,
            "Da Nang",
            processor::external("x1", "Da Nang", 29.0, B + MIN),
        )
        .await?;
    let garbage_offset = writer
        .write_raw(topics::APP_LOGS.name, 3, b"not avro")
        .await?;

    // --- the processor; then input far ahead, so every window above is final ---------------
    let listen = processor::free_listen();
    let mut child =
        processor::processor_command(&stack, &listen, &[("--allowed-lateness-ms", "600000")])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("starting the processor")?;
    let stderr = child.stderr.take();
    let log = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_string(&mut text).await;
        }
        text
    });
    let far = B + 30 * MIN;
    for p in 0..4 {
        writer
            .write(
                topics::APP_EVENTS.name,
                p,
                "flush",
                processor::app_event(&format!("f{p}"), "flush", "WEB_APP", None, "f", far),
            )
            .await?;
        writer
            .write(
                topics::APP_LOGS.name,
                p,
                "flush",
                processor::log_line(&format!("fl{p}"), "flush", "INFO", far),
            )
            .await?;
        writer
            .write(
                topics::CDC_CHANGES.name,
                p,
                &processor::cdc_key(users, "user_id", 100 + i64::from(p)),
                processor::cdc_change(
                    users,
                    "user_id",
                    100 + i64::from(p),
                    "INSERT",
                    1000 + i64::from(p),
                    json!({}),
                    None,
                    far,
                ),
            )
            .await?;
    }
    for p in 0..6 {
        writer
            .write(
                topics::CLICKSTREAM.name,
                p,
                "flush",
                processor::click(
                    &format!("fc{p}"),
                    "flush",
                    "/flush",
                    "VIEW",
                    0,
                    0,
                    B + 40 * MIN,
                ),
            )
            .await?;
    }

    let read = processor::read_results(
        &brokers,
        &stack.registry_url(),
        expected.keys(),
        Duration::from_secs(150),
    )
    .await?;
    if !read.missing.is_empty() {
        let _ = child.start_kill();
        let _ = child.wait().await;
        let log = log.await.unwrap_or_default();
        anyhow::bail!(
            "results missing after 150 s: {:?}\nprocessor log:\n{log}",
            read.missing
        );
    }
    let got = read.by_id;
    for (id, want) in &expected {
        let have = &got[id];
        for (field, value) in want.as_object().unwrap() {
            assert_eq!(&have[field], value, "{id}: field {field} in {have}");
        }
    }
    // Nothing emitted that was not expected, but for the windows still open or the flush.
    for id in got.keys() {
        assert!(
            expected.contains_key(id) || id.contains("flush"),
            "unexpected result {id}: {}",
            got[id]
        );
    }

    // --- a late event: its window is final, so it is reported, not counted -----------------
    let late_offset = writer
        .write(
            topics::APP_EVENTS.name,
            0,
            "late",
            processor::app_event("late", "search", "WEB_APP", Some("u1"), "s", B + MIN),
        )
        .await?;
    let late = read_topic_until(
        &brokers,
        &stack.registry_url(),
        topics::PROCESSOR_LATE_EVENTS.name,
        Duration::from_secs(30),
        |r| {
            r.iter().any(|r| {
                r.value["source_offset"] == json!(late_offset)
                    && r.value["source_topic"] == json!(topics::APP_EVENTS.name)
            })
        },
    )
    .await?;
    assert!(
        late.iter().all(|r| r.value["job"] != json!("clickstream")),
        "{late:?}"
    );

    // --- alerts, dead letter, state topics ---------------------------------------------------
    let alerts = read_topic_until(
        &brokers,
        &stack.registry_url(),
        topics::PROCESSOR_ALERTS.name,
        Duration::from_secs(30),
        |r| {
            let kinds: BTreeSet<&str> = r
                .iter()
                .map(|a| a.value["kind"].as_str().unwrap_or_default())
                .collect();
            [
                "UNKNOWN_KEY",
                "INVALID_STATUS_TRANSITION",
                "MISSING_BOOKING",
                "LARGE_REFUND",
                "FATAL_LOG",
            ]
            .iter()
            .all(|k| kinds.contains(k))
        },
    )
    .await?;
    let alerts = processor::by_id(&alerts, "alert_id")?;
    let unknown: Vec<&Value> = alerts
        .values()
        .filter(|a| a["kind"] == json!("UNKNOWN_KEY"))
        .collect();
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert_eq!(
        unknown[0]["subject"],
        json!(processor::cdc_key(users, "user_id", 3))
    );

    let dead = read_topic_until(
        &brokers,
        &stack.registry_url(),
        topics::PROCESSOR_DEAD_LETTERS.name,
        Duration::from_secs(30),
        |r| !r.is_empty(),
    )
    .await?;
    assert_eq!(dead[0].value["source_offset"], json!(garbage_offset));
    assert!(
        dead[0].value["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("magic byte"),
        "{}",
        dead[0].value
    );

    let user_state = processor::read_raw_until(
        &brokers,
        topics::USER_STATE.name,
        Duration::from_secs(30),
        |r| {
            r.iter()
                .any(|(k, v)| k == &processor::cdc_key(users, "user_id", 2) && v.is_none())
                && r.iter()
                    .any(|(k, v)| k == &processor::cdc_key(users, "user_id", 1) && v.is_some())
        },
    )
    .await?;
    let latest: BTreeMap<&String, &Option<Vec<u8>>> =
        user_state.iter().map(|(k, v)| (k, v)).collect();
    assert!(latest[&processor::cdc_key(users, "user_id", 1)].is_some());
    let externals = read_topic_until(
        &brokers,
        &stack.registry_url(),
        topics::EXTERNAL_STATE.name,
        Duration::from_secs(30),
        |r| !r.is_empty(),
    )
    .await?;
    assert_eq!(
        externals.len(),
        1,
        "the older reading must not replace the newer: {externals:?}"
    );
    assert_eq!(externals[0].value["record_id"], json!("x2"));

    let metrics = reqwest::get(format!("http://{listen}/metrics"))
        .await?
        .text()
        .await?;
    for name in [
        "processor_windows_emitted_total",
        "processor_late_events_total",
        "processor_dead_letters_total",
        "processor_commit_seconds",
        "processor_duplicates_dropped_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    stack.shutdown().await
}
