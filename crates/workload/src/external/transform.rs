//! The transform/enrich stage: configured constant fields and the location added to every
//! record. Shared with the continuous external stream.

use serde_json::{Map, Value};

use super::{
    batch::{Batch, Step},
    config::PipelineConfig,
};

/// Transform/enrich: the configured constant fields and the location, on every record.
pub fn transform(config: &PipelineConfig, mut batch: Batch) -> Batch {
    for record in &mut batch.records {
        let payload = std::mem::take(&mut record.payload);
        record.payload = transform_record(config, record.location.as_deref(), payload);
    }
    batch.step = Step::Transform;
    batch
}

/// Adds the configured enrichment and the location to a fetched record.
pub(crate) fn transform_record(
    config: &PipelineConfig,
    location: Option<&str>,
    mut record: Map<String, Value>,
) -> Map<String, Value> {
    for (key, value) in &config.enrich {
        record.entry(key.clone()).or_insert_with(|| value.clone());
    }
    if let Some(location) = location {
        record
            .entry("location".to_string())
            .or_insert_with(|| Value::from(location));
    }
    record
}
