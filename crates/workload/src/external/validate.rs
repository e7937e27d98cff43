//! The validate stage: records lacking a required field are rejected and reported, implausible
//! values are kept with a quality warning. Shared with the continuous external stream.

use serde_json::{Map, Value};

use super::{
    batch::{Batch, Rejection, Step},
    config::{PipelineConfig, ValidateConfig},
};

/// Validate: a record lacking a required field is rejected (logged and counted); a value out
/// of its plausible range stays, with a quality warning.
pub fn validate(config: &PipelineConfig, mut batch: Batch) -> Batch {
    let mut kept = Vec::with_capacity(batch.records.len());
    for mut record in std::mem::take(&mut batch.records) {
        match validate_record(&config.validate, &record.payload) {
            Err(reason) => {
                metrics::counter!("workload_pipeline_rejected_total", "pipeline" => config.name.clone()).increment(1);
                tracing::warn!(
                    pipeline = config.name,
                    location = record.location,
                    reason,
                    "record rejected by validation"
                );
                batch.rejected.push(Rejection {
                    record_id: record.record_id,
                    location: record.location,
                    reason,
                });
            }
            Ok(warnings) => {
                record.quality_warnings = warnings;
                kept.push(record);
            }
        }
    }
    batch.records = kept;
    batch.step = Step::Validate;
    batch
}

/// `Err` rejects the record; `Ok` carries its quality warnings.
pub(crate) fn validate_record(
    rules: &ValidateConfig,
    record: &Map<String, Value>,
) -> Result<Vec<String>, String> {
    if let Some(missing) = rules
        .required
        .iter()
        .find(|field| record.get(*field).is_none_or(Value::is_null))
    {
        return Err(format!("required field `{missing}` is missing"));
    }
    Ok(rules
        .ranges
        .iter()
        .filter_map(|(field, [low, high])| {
            let value = record.get(field)?;
            match value.as_f64() {
                Some(number) if number < *low || number > *high => {
                    Some(format!("{field}={number} outside [{low}, {high}]"))
                }
                Some(_) => None,
                None => Some(format!("{field} is not a number: {value}")),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn validation_rejects_missing_fields_and_warns_on_implausible_values() {
        let rules = ValidateConfig {
            required: vec!["temp".into()],
            ranges: BTreeMap::from([("temp".into(), [-10.0, 50.0])]),
        };
        let record = |v: Value| Map::from_iter([("temp".to_string(), v)]);
        assert!(validate_record(&rules, &Map::new()).is_err());
        assert_eq!(
            validate_record(&rules, &record(Value::from(30))).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            validate_record(&rules, &record(Value::from(80)))
                .unwrap()
                .len(),
            1
        );
    }
}
