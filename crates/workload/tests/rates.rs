//! Every simulator together (the streams `workload all` runs, the external simulator included)
//! for 10 minutes of virtual time: each source within the seed's per-minute ranges.

use std::collections::BTreeMap;

use workload::streams::{
    event::{Event, EventSource},
    generate::{EXTERNAL_BATCH, StreamKind, Traffic},
};

const START: i64 = 1_780_000_000_000;
const MINUTES: i64 = 10;

fn source(event: &Event) -> &'static str {
    match event {
        Event::App(a) => match a.source {
            EventSource::MobileApp => "mobile",
            EventSource::WebApp => "web",
            _ => "booking",
        },
        Event::Click(_) => "clickstream",
        Event::Log(_) => "logs",
        Event::External(_) => "external",
    }
}

/// Events per source and minute of a 10-minute virtual run at the default rates.
fn per_minute(seed: u64) -> BTreeMap<&'static str, Vec<u32>> {
    let rates: Vec<_> = StreamKind::ALL
        .iter()
        .map(|k| (*k, k.default_rate()))
        .collect();
    let mut traffic = Traffic::new(seed, &rates, START);
    let mut counts: BTreeMap<&'static str, Vec<u32>> = BTreeMap::new();
    for name in [
        "mobile",
        "web",
        "booking",
        "clickstream",
        "logs",
        "external",
    ] {
        counts.insert(name, vec![0; MINUTES as usize]);
    }
    while let Some(at) = traffic.next_at().filter(|t| *t < START + MINUTES * 60_000) {
        let event = traffic.next_event().expect("endless");
        let minute = ((at - START) / 60_000) as usize;
        counts.get_mut(source(&event)).unwrap()[minute] += 1;
    }
    counts
}

fn mean(counts: &[u32]) -> f64 {
    f64::from(counts.iter().sum::<u32>()) / counts.len() as f64
}

#[test]
fn workload_every_simulator_for_ten_virtual_minutes_stays_in_the_seed_ranges() {
    for seed in [1, 2, 3, 42, 1234] {
        let counts = per_minute(seed);
        let totals: Vec<u32> = (0..MINUTES as usize)
            .map(|m| counts.values().map(|c| c[m]).sum())
            .collect();
        eprintln!("seed {seed}: per-minute counts {counts:?}, total {totals:?}");
        // The seed's table gives rates: the 10-minute average of each source is in its range.
        for (name, low, high) in [
            ("mobile", 50.0, 100.0),
            ("web", 30.0, 60.0),
            // "60": within 10 % over ten minutes (arrivals are random).
            ("clickstream", 54.0, 66.0),
            ("external", 20.0, 40.0),
        ] {
            let rate = mean(&counts[name]);
            assert!(
                (low..=high).contains(&rate),
                "seed {seed}: {name} {rate}/min outside {low}..={high}"
            );
        }
        let total = mean(&totals);
        assert!(
            (280.0..=350.0).contains(&total),
            "seed {seed}: total {total}/min"
        );
        // The external simulator is paced evenly: every single minute carries 20–40 readings.
        for (minute, n) in counts["external"].iter().enumerate() {
            assert!((20..=40).contains(n), "seed {seed}: minute {minute}: {n}");
        }
    }
}

#[test]
fn workload_external_simulator_covers_every_source_in_batches() {
    let mut traffic = Traffic::new(9, &[(StreamKind::External, 30.0)], START);
    let mut sources = std::collections::BTreeSet::new();
    let mut batch_sizes: BTreeMap<String, usize> = BTreeMap::new();
    let mut runs: Vec<(String, usize)> = Vec::new();
    for _ in 0..2_000 {
        let Some(Event::External(record)) = traffic.next_event() else {
            panic!("the external simulator emits external records")
        };
        sources.insert(format!("{:?}", record.source_type));
        *batch_sizes.entry(record.pipeline.clone()).or_default() += 1;
        let payload: serde_json::Value = serde_json::from_str(&record.payload_json).unwrap();
        assert!(payload.is_object(), "{payload}");
        match runs.last_mut() {
            Some((pipeline, n)) if *pipeline == record.pipeline => *n += 1,
            _ => runs.push((record.pipeline.clone(), 1)),
        }
    }
    assert_eq!(sources.len(), 6, "every external source: {sources:?}");
    // Every complete batch (not the last one, cut off by the sample) holds 50–100 readings.
    for (pipeline, n) in &runs[..runs.len() - 1] {
        assert!(EXTERNAL_BATCH.contains(n), "{pipeline}: batch of {n}");
    }
    assert_eq!(
        traffic.external_batches(),
        Some(runs.len() as u64),
        "{batch_sizes:?}"
    );
}
