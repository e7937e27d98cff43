//! The continuous external-data stream: readings of every external source sent evenly between
//! the scheduled pipeline runs, made by the pipelines' own fetch, transform and validate code so
//! the two paths cannot drift apart.

use rand::{Rng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;

use super::common::uuid;
use crate::streams::event::{Event, ExternalRecord, ExternalSource};

/// Readings in a batch of the external simulator.
pub const EXTERNAL_BATCH: std::ops::RangeInclusive<usize> = 50..=100;

/// The continuous external-data simulator: takes each external source in turn, fetches a batch
/// of 50–100 readings through the pipelines' own synthetic fetch, transform and validate code
/// (the shipped pipelines file), and sends them one by one, evenly spaced (gaps of 0.75–1.25 of
/// the mean), so every minute carries readings.
pub(super) struct ExternalStream {
    rng: ChaCha8Rng,
    pub(super) next_at_ms: i64,
    mean_gap_ms: f64,
    sources: Vec<crate::external::PipelineConfig>,
    next_source: usize,
    batch: std::collections::VecDeque<ExternalRecord>,
    pub(super) batches: u64,
}

impl ExternalStream {
    pub(super) fn new(rng: ChaCha8Rng, first_at_ms: i64, mean_gap_ms: f64) -> Self {
        let sources = crate::external::parse_pipelines(crate::external::DEFAULT_PIPELINES)
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.config)
            .filter(|c| matches!(c.fetch, crate::external::FetchConfig::Synthetic { .. }))
            .collect();
        Self {
            rng,
            next_at_ms: first_at_ms,
            mean_gap_ms,
            sources,
            next_source: 0,
            batch: std::collections::VecDeque::new(),
            batches: 0,
        }
    }

    fn fetch_batch(&mut self, now: i64) {
        if self.sources.is_empty() {
            return;
        }
        let config = &self.sources[self.next_source % self.sources.len()];
        self.next_source += 1;
        self.batches += 1;
        let crate::external::FetchConfig::Synthetic { fields } = &config.fetch else {
            return;
        };
        let size = self.rng.random_range(EXTERNAL_BATCH);
        let source_type =
            ExternalSource::from_symbol(&config.source_type).unwrap_or(ExternalSource::Other);
        for _ in 0..size {
            let location = config.locations.choose(&mut self.rng).cloned();
            let raw = crate::external::synthesize_fields(fields, &mut self.rng);
            let payload = crate::external::transform_record(config, location.as_deref(), raw);
            let Ok(quality_warnings) = crate::external::validate_record(&config.validate, &payload)
            else {
                continue;
            };
            self.batch.push_back(ExternalRecord {
                record_id: uuid(&mut self.rng),
                source_type,
                pipeline: format!("{}-stream", config.name),
                location,
                observed_at_ms: now,
                fetched_at_ms: now,
                payload_json: serde_json::Value::Object(payload).to_string(),
                quality_warnings,
            });
        }
    }

    pub(super) fn emit(&mut self) -> Option<Event> {
        let now = self.next_at_ms;
        if self.batch.is_empty() {
            self.fetch_batch(now);
        }
        let gap = self.mean_gap_ms * self.rng.random_range(0.75..1.25);
        self.next_at_ms += (gap.round() as i64).max(1);
        let mut record = self.batch.pop_front()?;
        record.observed_at_ms = now;
        Some(Event::External(record))
    }
}
