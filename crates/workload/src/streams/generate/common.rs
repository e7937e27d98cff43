//! Small helpers every stream draws on (ids, arrival gaps, event properties, destinations),
//! kept apart so each stream's file holds only its own behaviour.

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub(super) fn uuid(rng: &mut ChaCha8Rng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

pub(super) fn hex(rng: &mut ChaCha8Rng, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// A gap with the given mean: exponential, as between independent arrivals.
pub(super) fn exp_gap_ms(rng: &mut ChaCha8Rng, mean_ms: f64) -> i64 {
    let u: f64 = rng.random_range(0.0..1.0);
    (-(1.0 - u).ln() * mean_ms).round().max(1.0) as i64
}

pub(super) const DESTINATIONS: &[&str] = &[
    "Ha Noi",
    "Ho Chi Minh",
    "Da Nang",
    "Hoi An",
    "Nha Trang",
    "Phu Quoc",
    "Da Lat",
    "Ha Long",
    "Can Tho",
    "Hai Phong",
];

pub(super) fn props(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}
