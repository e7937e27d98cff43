//! The pipelines file: its TOML shape, the checks a pipeline passes before it is scheduled
//! (unique name, known source type, valid cron) and when a pipeline's runs fall. A new source is
//! a new table in the file, not a change here.

use std::{collections::BTreeMap, str::FromStr};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::streams::event::{EXTERNAL_SOURCES, ExternalSource};

/// The pipelines shipped with the crate, used when no file is given.
pub const DEFAULT_PIPELINES: &str = include_str!("../../config/external-pipelines.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelinesFile {
    #[serde(rename = "pipeline", default)]
    pub pipelines: Vec<PipelineConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub name: String,
    /// One of WEATHER, MAPS, SOCIAL_MEDIA, MARKET_DATA, NEWS, TRAVEL_TRENDS, OTHER.
    pub source_type: String,
    /// Cron with seconds: `sec min hour day-of-month month day-of-week [year]`, in UTC.
    pub schedule: String,
    #[serde(default)]
    pub locations: Vec<String>,
    #[serde(default = "one")]
    pub records_per_location: u32,
    pub fetch: FetchConfig,
    /// Constant fields added to every record (enrichment).
    #[serde(default)]
    pub enrich: Map<String, Value>,
    #[serde(default)]
    pub validate: ValidateConfig,
    #[serde(default = "three")]
    pub max_attempts: u32,
    #[serde(default = "half_second")]
    pub retry_backoff_ms: u64,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}
fn half_second() -> u64 {
    500
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FetchConfig {
    /// Plausible values generated from field specs, for offline demos and tests.
    Synthetic { fields: BTreeMap<String, FieldSpec> },
    /// GET a JSON document; `{location}` in the URL is replaced. `records` is a JSON pointer to
    /// an array of records (default: the document is one record).
    Http {
        url: String,
        #[serde(default)]
        records: Option<String>,
        #[serde(default = "ten_seconds")]
        timeout_ms: u64,
    },
}

fn ten_seconds() -> u64 {
    10_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum FieldSpec {
    Range {
        range: [f64; 2],
        #[serde(default)]
        decimals: u32,
    },
    Choice {
        choice: Vec<Value>,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateConfig {
    /// Fields a record must have (else it is rejected, and the rejection reported).
    #[serde(default)]
    pub required: Vec<String>,
    /// Plausible ranges: a value outside becomes a quality warning on the record.
    #[serde(default)]
    pub ranges: BTreeMap<String, [f64; 2]>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("pipelines file is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("pipeline {name}: bad cron schedule `{schedule}`: {message}")]
    Schedule {
        name: String,
        schedule: String,
        message: String,
    },
    #[error("pipeline {name}: source_type `{source_type}` is not one of {EXTERNAL_SOURCES:?}")]
    SourceType { name: String, source_type: String },
    #[error("pipeline name `{0}` is used twice")]
    Duplicate(String),
}

/// A validated pipeline ready to schedule.
pub struct Pipeline {
    pub config: PipelineConfig,
    schedule: cron::Schedule,
}

pub fn parse_pipelines(text: &str) -> Result<Vec<Pipeline>, ConfigError> {
    let file: PipelinesFile = toml::from_str(text)?;
    let mut pipelines: Vec<Pipeline> = Vec::new();
    for config in file.pipelines.into_iter().filter(|p| p.enabled) {
        if pipelines.iter().any(|p| p.config.name == config.name) {
            return Err(ConfigError::Duplicate(config.name));
        }
        if ExternalSource::from_symbol(&config.source_type).is_none() {
            return Err(ConfigError::SourceType {
                name: config.name,
                source_type: config.source_type,
            });
        }
        let schedule =
            cron::Schedule::from_str(&config.schedule).map_err(|e| ConfigError::Schedule {
                name: config.name.clone(),
                schedule: config.schedule.clone(),
                message: e.to_string(),
            })?;
        pipelines.push(Pipeline { config, schedule });
    }
    Ok(pipelines)
}

impl Pipeline {
    /// The first scheduled run strictly after `after_ms`.
    pub fn next_run_after(&self, after_ms: i64) -> Option<i64> {
        let after = DateTime::<Utc>::from_timestamp_millis(after_ms)?;
        self.schedule
            .after(&after)
            .next()
            .map(|t| t.timestamp_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_pipelines_parse_and_cover_the_required_sources() {
        let pipelines = parse_pipelines(DEFAULT_PIPELINES).unwrap();
        let weather = pipelines
            .iter()
            .find(|p| p.config.source_type == "WEATHER")
            .unwrap();
        assert_eq!(
            weather.config.locations,
            ["Ha Noi", "Ho Chi Minh", "Da Nang", "Can Tho", "Hai Phong"]
        );
        for source in [
            "WEATHER",
            "MAPS",
            "SOCIAL_MEDIA",
            "MARKET_DATA",
            "NEWS",
            "TRAVEL_TRENDS",
        ] {
            assert!(
                pipelines.iter().any(|p| p.config.source_type == source),
                "{source}"
            );
        }
    }

    #[test]
    fn schedules_fire_at_their_cron_times() {
        let pipelines = parse_pipelines(DEFAULT_PIPELINES).unwrap();
        let day_start = DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
            .unwrap()
            .timestamp_millis();
        let fires = |name: &str| {
            let pipeline = pipelines.iter().find(|p| p.config.name == name).unwrap();
            let mut at = day_start - 1;
            let mut count = 0;
            while let Some(next) = pipeline
                .next_run_after(at)
                .filter(|t| *t < day_start + 86_400_000)
            {
                count += 1;
                at = next;
            }
            count
        };
        assert_eq!(fires("weather"), 4, "every 6 hours");
        assert_eq!(fires("maps"), 1, "daily");
        assert_eq!(fires("news"), 24, "hourly");
        assert_eq!(fires("social-media"), 24, "hourly");
        assert_eq!(fires("market-data"), 24, "hourly");
    }

    #[test]
    fn bad_config_is_refused_with_the_pipeline_named() {
        let bad_cron = "[[pipeline]]\nname = \"x\"\nsource_type = \"NEWS\"\nschedule = \"every hour\"\nfetch = { kind = \"synthetic\", fields = {} }\n";
        assert!(
            matches!(parse_pipelines(bad_cron), Err(ConfigError::Schedule { name, .. }) if name == "x")
        );
        let bad_source = bad_cron
            .replace("every hour", "0 0 * * * *")
            .replace("NEWS", "RUMOURS");
        assert!(matches!(
            parse_pipelines(&bad_source),
            Err(ConfigError::SourceType { .. })
        ));
        let unknown_key = bad_cron.replace("every hour", "0 0 * * * *") + "colour = \"red\"\n";
        assert!(parse_pipelines(&unknown_key).is_err());
    }
}
