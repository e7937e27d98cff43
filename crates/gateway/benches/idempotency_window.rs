//! The idempotency window as the publisher uses it for every stored event: a new id claimed,
//! then acknowledged, in a window full to the gateway's default capacity (each acknowledgement
//! then also forgets the oldest id). Ids are random UUID texts, as clients send them.
//!
//! `cargo bench -p gateway --bench idempotency_window`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::dedup::{Claim, Dedup};

/// `--dedup-capacity`'s default.
const CAPACITY: usize = 200_000;

fn claim_and_acknowledge(c: &mut Criterion) {
    // Five times the capacity: an id comes round again only long after it was forgotten.
    let ids: Vec<String> = (0..5 * CAPACITY)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let dedup = Dedup::<u64>::new(Duration::from_secs(3600), CAPACITY);
    let mut next = 0usize;
    let mut store_next = || {
        let id = &ids[next % ids.len()];
        next += 1;
        match dedup.claim(id) {
            Claim::Mine(attempt) => attempt.acknowledged(next as u64),
            _ => panic!("id {id} is new to the window"),
        }
    };
    for _ in 0..CAPACITY {
        store_next();
    }
    c.bench_function("dedup/new_id_at_capacity", |b| b.iter(&mut store_next));
}

criterion_group!(benches, claim_and_acknowledge);
criterion_main!(benches);
