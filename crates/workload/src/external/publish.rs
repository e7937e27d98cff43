//! The publish stage: a validated batch as `topic_external_data` records, sent to the sink in
//! order.

use serde_json::Value;

use super::{
    batch::{Batch, RunOutcome, StageError},
    config::PipelineConfig,
};
use crate::streams::{
    event::{Event, ExternalRecord, ExternalSource},
    sink::Sink,
};

/// The records a validated batch publishes to `topic_external_data`.
pub fn external_records(config: &PipelineConfig, batch: &Batch) -> Vec<ExternalRecord> {
    batch
        .records
        .iter()
        .map(|record| ExternalRecord {
            record_id: record.record_id.clone(),
            // Checked by `parse_pipelines`; OTHER as the schema's catch-all.
            source_type: ExternalSource::from_symbol(&config.source_type)
                .unwrap_or(ExternalSource::Other),
            pipeline: config.name.clone(),
            location: record.location.clone(),
            observed_at_ms: batch.scheduled_at_ms,
            fetched_at_ms: batch.fetched_at_ms,
            payload_json: Value::Object(record.payload.clone()).to_string(),
            quality_warnings: record.quality_warnings.clone(),
        })
        .collect()
}

/// Publish: every validated record to the sink, in order.
pub async fn publish(
    config: &PipelineConfig,
    batch: &Batch,
    sink: &Sink,
) -> Result<(RunOutcome, Vec<String>), StageError> {
    let records = external_records(config, batch);
    let warnings = records.iter().map(|r| r.quality_warnings.len()).sum();
    let mut ids = Vec::with_capacity(records.len());
    for record in records {
        ids.push(record.record_id.clone());
        sink.send(&Event::External(record))
            .await
            .map_err(|e| StageError::Publish(e.to_string()))?;
    }
    sink.flush().await;
    Ok((
        RunOutcome::Published {
            records: ids.len(),
            rejected: batch.rejected.len(),
            warnings,
        },
        ids,
    ))
}
