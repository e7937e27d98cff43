//! The fetch stage: synthetic records from field specs, or JSON over HTTP, with record ids and
//! synthetic values seeded per run so a retried run fetches and republishes the same records.

use std::{
    collections::BTreeMap,
    hash::{Hash, Hasher},
    time::Duration,
};

use rand::{Rng, SeedableRng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use super::{
    batch::{Batch, StageError, StagedRecord, Step},
    config::{FetchConfig, FieldSpec, PipelineConfig},
};

/// Fetch: the source's raw records for every location of the run. Synthetic values and record
/// ids come from an RNG seeded by (seed, pipeline, slot): the same run fetches the same records.
pub async fn fetch(
    http: &reqwest::Client,
    config: &PipelineConfig,
    seed: u64,
    scheduled_at_ms: i64,
    fetched_at_ms: i64,
) -> Result<Batch, StageError> {
    let locations: Vec<Option<&str>> = if config.locations.is_empty() {
        vec![None]
    } else {
        config.locations.iter().map(|l| Some(l.as_str())).collect()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(run_seed(seed, &config.name, scheduled_at_ms));
    let mut records = Vec::new();
    for location in locations {
        for payload in fetch_location(http, config, location, &mut rng).await? {
            records.push(StagedRecord {
                record_id: uuid::Builder::from_random_bytes(rng.random())
                    .into_uuid()
                    .to_string(),
                location: location.map(str::to_string),
                payload,
                quality_warnings: Vec::new(),
            });
        }
    }
    Ok(Batch {
        pipeline: config.name.clone(),
        step: Step::Fetch,
        seed,
        scheduled_at_ms,
        fetched_at_ms,
        records,
        rejected: Vec::new(),
    })
}

async fn fetch_location(
    http: &reqwest::Client,
    config: &PipelineConfig,
    location: Option<&str>,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Map<String, Value>>, StageError> {
    match &config.fetch {
        FetchConfig::Synthetic { fields } => Ok((0..config.records_per_location.max(1))
            .map(|_| synthesize_fields(fields, rng))
            .collect()),
        FetchConfig::Http {
            url,
            records,
            timeout_ms,
        } => {
            let url = url.replace(
                "{location}",
                &location.unwrap_or_default().replace(' ', "%20"),
            );
            let response = http
                .get(&url)
                .timeout(Duration::from_millis(*timeout_ms))
                .send()
                .await
                .map_err(|e| {
                    StageError::Fetch(format!("{url}: {}", platform::errors::chain(&e)))
                })?;
            let status = response.status();
            if !status.is_success() {
                return Err(StageError::Fetch(format!("{url}: HTTP {status}")));
            }
            let document: Value = response
                .json()
                .await
                .map_err(|e| StageError::Fetch(format!("{url}: {e}")))?;
            let selected = match records {
                Some(pointer) => document.pointer(pointer).cloned().ok_or_else(|| {
                    StageError::Fetch(format!("{url}: no {pointer} in the response"))
                })?,
                None => document,
            };
            let items = match selected {
                Value::Array(items) => items,
                other => vec![other],
            };
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(map) => Ok(map),
                    other => Err(StageError::Fetch(format!(
                        "{url}: a record is not an object: {other}"
                    ))),
                })
                .collect()
        }
    }
}

/// One synthetic record from field specs.
pub(crate) fn synthesize_fields(
    fields: &BTreeMap<String, FieldSpec>,
    rng: &mut ChaCha8Rng,
) -> Map<String, Value> {
    fields
        .iter()
        .map(|(name, spec)| (name.clone(), synthesize(spec, rng)))
        .collect()
}

fn run_seed(seed: u64, pipeline: &str, scheduled_at_ms: i64) -> u64 {
    // FNV-1a: stable across builds, unlike the std hasher's seed-dependent SipHash keys.
    let mut hash = FnvHasher(0xcbf2_9ce4_8422_2325);
    pipeline.hash(&mut hash);
    scheduled_at_ms.hash(&mut hash);
    seed ^ hash.finish()
}

struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn synthesize(spec: &FieldSpec, rng: &mut ChaCha8Rng) -> Value {
    match spec {
        FieldSpec::Range {
            range: [low, high],
            decimals,
        } => {
            let value = if high > low {
                rng.random_range(*low..*high)
            } else {
                *low
            };
            let factor = 10f64.powi(i32::try_from(*decimals).unwrap_or(0));
            let rounded = (value * factor).round() / factor;
            if *decimals == 0 {
                Value::from(rounded as i64)
            } else {
                serde_json::Number::from_f64(rounded).map_or(Value::Null, Value::Number)
            }
        }
        FieldSpec::Choice { choice } => choice.choose(rng).cloned().unwrap_or(Value::Null),
    }
}
