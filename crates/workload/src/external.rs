//! External data as scheduled, configuration-driven pipelines: fetch → transform/enrich →
//! validate → publish. Each pipeline is a `[[pipeline]]` table in a TOML file with a cron
//! schedule; a new source is a new table, no code. A failed run is retried and, when it still
//! fails, reported (log, metric and the returned report), never dropped silently.

use std::{
    collections::BTreeMap,
    hash::{Hash, Hasher},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::task::JoinSet;

use crate::{
    clock::VirtualClock,
    streams::{
        event::{EXTERNAL_SOURCES, Event, ExternalRecord, ExternalSource},
        sink::Sink,
    },
};

/// The pipelines shipped with the crate, used when no file is given.
pub const DEFAULT_PIPELINES: &str = include_str!("../config/external-pipelines.toml");

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

#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    Published {
        records: usize,
        rejected: usize,
        warnings: usize,
    },
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub pipeline: String,
    /// Virtual time the run was scheduled for.
    pub scheduled_at_ms: i64,
    pub attempts: u32,
    pub outcome: RunOutcome,
    pub record_ids: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("fetch failed: {0}")]
    Fetch(String),
    #[error("publish failed: {0}")]
    Publish(String),
}

/// The four steps of a run. The scheduler runs them back to back; `workload external-step`
/// runs one at a time (an orchestrator's task each), handing over through files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Fetch,
    Transform,
    Validate,
    Publish,
}

impl Step {
    pub const ALL: [Step; 4] = [Self::Fetch, Self::Transform, Self::Validate, Self::Publish];

    pub fn name(self) -> &'static str {
        match self {
            Self::Fetch => "fetch",
            Self::Transform => "transform",
            Self::Validate => "validate",
            Self::Publish => "publish",
        }
    }

    /// The file this step writes in the run's directory.
    pub fn output_file(self) -> &'static str {
        match self {
            Self::Fetch => "fetched.json",
            Self::Transform => "transformed.json",
            Self::Validate => "validated.json",
            Self::Publish => "published.json",
        }
    }

    /// The step whose output this one reads.
    pub fn input(self) -> Option<Step> {
        match self {
            Self::Fetch => None,
            Self::Transform => Some(Self::Fetch),
            Self::Validate => Some(Self::Transform),
            Self::Publish => Some(Self::Validate),
        }
    }
}

/// One record on its way through a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagedRecord {
    /// Derived from the seed, pipeline, schedule slot and position, so a retry republishes the
    /// same ids and consumers can deduplicate.
    pub record_id: String,
    pub location: Option<String>,
    pub payload: Map<String, Value>,
    #[serde(default)]
    pub quality_warnings: Vec<String>,
}

/// A record the validate step refused, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub record_id: String,
    pub location: Option<String>,
    pub reason: String,
}

/// What one step hands to the next: the run it belongs to and its records so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub pipeline: String,
    /// The last step applied.
    pub step: Step,
    pub seed: u64,
    /// The run's schedule slot (virtual time); the records' `observed_at`.
    pub scheduled_at_ms: i64,
    pub fetched_at_ms: i64,
    pub records: Vec<StagedRecord>,
    #[serde(default)]
    pub rejected: Vec<Rejection>,
}

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

/// Transform/enrich: the configured constant fields and the location, on every record.
pub fn transform(config: &PipelineConfig, mut batch: Batch) -> Batch {
    for record in &mut batch.records {
        let payload = std::mem::take(&mut record.payload);
        record.payload = transform_record(config, record.location.as_deref(), payload);
    }
    batch.step = Step::Transform;
    batch
}

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

pub struct Scheduler {
    pub pipelines: Vec<Pipeline>,
    pub seed: u64,
    pub http: reqwest::Client,
}

impl Scheduler {
    pub fn new(pipelines: Vec<Pipeline>, seed: u64) -> Self {
        Self {
            pipelines,
            seed,
            http: reqwest::Client::new(),
        }
    }

    /// Runs every pipeline at its scheduled virtual times from the clock's start until
    /// `until_ms` (exclusive; `None` = forever) or `shutdown`. `run_now` also runs each
    /// pipeline once at the start. Returns a report per run.
    pub async fn run(
        self: Arc<Self>,
        clock: VirtualClock,
        sink: Arc<Sink>,
        until_ms: Option<i64>,
        run_now: bool,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Vec<RunReport> {
        let start = clock.start_ms();
        let mut next: Vec<Option<i64>> = self
            .pipelines
            .iter()
            .map(|p| {
                if run_now {
                    Some(start)
                } else {
                    p.next_run_after(start)
                }
            })
            .collect();
        let mut runs = JoinSet::new();
        tokio::pin!(shutdown);
        while let Some((index, at)) = next
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i, t)))
            .min_by_key(|(_, t)| *t)
        {
            if until_ms.is_some_and(|until| at >= until) {
                break;
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = clock.sleep_until(at) => {}
            }
            next[index] = self.pipelines[index].next_run_after(at);
            let scheduler = self.clone();
            let sink = sink.clone();
            runs.spawn(async move { scheduler.run_with_retries(index, at, clock, &sink).await });
        }
        let mut reports = Vec::new();
        while let Some(report) = runs.join_next().await {
            if let Ok(report) = report {
                reports.push(report);
            }
        }
        reports.sort_by(|a, b| {
            (a.scheduled_at_ms, &a.pipeline).cmp(&(b.scheduled_at_ms, &b.pipeline))
        });
        reports
    }

    async fn run_with_retries(
        &self,
        index: usize,
        scheduled_at_ms: i64,
        clock: VirtualClock,
        sink: &Sink,
    ) -> RunReport {
        let config = &self.pipelines[index].config;
        let mut attempts = 0;
        let mut backoff = Duration::from_millis(config.retry_backoff_ms);
        loop {
            attempts += 1;
            match self
                .run_once(config, scheduled_at_ms, clock.now_ms(), sink)
                .await
            {
                Ok((outcome, record_ids)) => {
                    metrics::counter!("workload_pipeline_runs_total", "pipeline" => config.name.clone(), "outcome" => "ok").increment(1);
                    tracing::info!(
                        pipeline = config.name,
                        attempts,
                        ?outcome,
                        "pipeline run done"
                    );
                    return RunReport {
                        pipeline: config.name.clone(),
                        scheduled_at_ms,
                        attempts,
                        outcome,
                        record_ids,
                    };
                }
                Err(error) if attempts < config.max_attempts.max(1) => {
                    metrics::counter!("workload_pipeline_retries_total", "pipeline" => config.name.clone()).increment(1);
                    tracing::warn!(pipeline = config.name, attempts, %error, "pipeline run failed, retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(error) => {
                    metrics::counter!("workload_pipeline_runs_total", "pipeline" => config.name.clone(), "outcome" => "failed").increment(1);
                    tracing::error!(pipeline = config.name, attempts, %error, "pipeline run failed for good");
                    return RunReport {
                        pipeline: config.name.clone(),
                        scheduled_at_ms,
                        attempts,
                        outcome: RunOutcome::Failed {
                            error: error.to_string(),
                        },
                        record_ids: Vec::new(),
                    };
                }
            }
        }
    }

    /// One attempt: the four steps back to back, the same functions `external-step` runs one
    /// at a time.
    async fn run_once(
        &self,
        config: &PipelineConfig,
        scheduled_at_ms: i64,
        fetched_at_ms: i64,
        sink: &Sink,
    ) -> Result<(RunOutcome, Vec<String>), StageError> {
        let fetched = fetch(
            &self.http,
            config,
            self.seed,
            scheduled_at_ms,
            fetched_at_ms,
        )
        .await?;
        let validated = validate(config, transform(config, fetched));
        publish(config, &validated, sink).await
    }
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
                .map_err(|e| StageError::Fetch(format!("{url}: {}", error_chain(&e))))?;
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

/// An error and its causes on one line ("error sending request: ... Connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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

/// One step of one run, as `workload external-step` is asked for it.
#[derive(Debug, Clone)]
pub struct StepRequest {
    pub step: Step,
    pub pipeline: String,
    /// Names the run's directory under `work_dir/<pipeline>/` (an orchestrator's run id).
    pub run_id: String,
    pub work_dir: std::path::PathBuf,
    /// The run's virtual time: its schedule slot is the pipeline's first cron time at or after it
    /// (an hourly orchestrator run at 10:00 is the 10:05 slot of a pipeline scheduled at :05).
    pub logical_date_ms: i64,
    /// The fetch step's seed (the other steps read it from the fetch output).
    pub seed: u64,
    /// When the fetch happens (`fetched_at` of the records); the real time unless given.
    pub fetched_at_ms: i64,
}

/// What a step did: the file it wrote and a one-line summary.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub output: std::path::PathBuf,
    pub summary: String,
    pub batch: Batch,
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("no pipeline `{0}` in the pipelines file (enabled: {1:?})")]
    UnknownPipeline(String, Vec<String>),
    #[error("pipeline {0}: no scheduled run at or after {1}")]
    NoSlot(String, i64),
    #[error(
        "{step} needs the output of {input} at {path}, which is missing: run `{input}` for this run first ({source})"
    )]
    MissingInput {
        step: &'static str,
        input: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    BadInput { path: String, message: String },
    #[error("{path} is from pipeline {found}, not {expected}")]
    WrongPipeline {
        path: String,
        found: String,
        expected: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Stage(#[from] StageError),
}

/// The directory of one run's step files: `work_dir/<pipeline>/<run id>` (characters other than
/// letters, digits, `-`, `_` and `.` in the run id become `_`).
pub fn run_dir(work_dir: &std::path::Path, pipeline: &str, run_id: &str) -> std::path::PathBuf {
    let safe: String = run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    work_dir.join(pipeline).join(safe)
}

/// The schedule slot an orchestrator run at `logical_date_ms` stands for.
pub fn slot_at_or_after(pipeline: &Pipeline, logical_date_ms: i64) -> Option<i64> {
    pipeline.next_run_after(logical_date_ms - 1)
}

/// Runs one step of one run: reads the previous step's file from the run directory, applies
/// the step (the same functions the scheduler runs back to back) and writes its own file.
/// `sink` is only called for `publish`. Running a step again redoes it from its input, so a
/// failed step can be retried alone.
pub async fn run_step<F, Fut>(
    pipelines: &[Pipeline],
    request: &StepRequest,
    sink: F,
) -> Result<StepOutcome, StepError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Sink, StageError>>,
{
    let pipeline = pipelines
        .iter()
        .find(|p| p.config.name == request.pipeline)
        .ok_or_else(|| {
            StepError::UnknownPipeline(
                request.pipeline.clone(),
                pipelines.iter().map(|p| p.config.name.clone()).collect(),
            )
        })?;
    let config = &pipeline.config;
    let dir = run_dir(&request.work_dir, &config.name, &request.run_id);
    let input = match request.step.input() {
        None => None,
        Some(input) => Some(read_batch(
            &dir.join(input.output_file()),
            request.step,
            input,
            &config.name,
        )?),
    };
    let (batch, summary) = match (request.step, input) {
        (Step::Fetch, _) => {
            let slot = slot_at_or_after(pipeline, request.logical_date_ms)
                .ok_or_else(|| StepError::NoSlot(config.name.clone(), request.logical_date_ms))?;
            let batch = fetch(
                &reqwest::Client::new(),
                config,
                request.seed,
                slot,
                request.fetched_at_ms,
            )
            .await?;
            let summary = format!(
                "fetched {} records for slot {} (seed {})",
                batch.records.len(),
                ms_to_rfc3339(slot),
                request.seed
            );
            (batch, summary)
        }
        (Step::Transform, Some(batch)) => {
            let batch = transform(config, batch);
            let summary = format!("transformed and enriched {} records", batch.records.len());
            (batch, summary)
        }
        (Step::Validate, Some(batch)) => {
            let batch = validate(config, batch);
            let warnings: usize = batch.records.iter().map(|r| r.quality_warnings.len()).sum();
            let summary = format!(
                "validated: {} records kept ({warnings} quality warnings), {} rejected",
                batch.records.len(),
                batch.rejected.len()
            );
            (batch, summary)
        }
        (Step::Publish, Some(batch)) => {
            let sink = sink().await?;
            let (outcome, ids) = publish(config, &batch, &sink).await?;
            let mut batch = batch;
            batch.step = Step::Publish;
            (
                batch,
                format!("published {} records: {outcome:?}", ids.len()),
            )
        }
        (_, None) => unreachable!("every step but fetch has an input"),
    };
    let output = dir.join(request.step.output_file());
    write_batch(&output, &batch)?;
    Ok(StepOutcome {
        output,
        summary,
        batch,
    })
}

fn ms_to_rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_rfc3339())
}

fn read_batch(
    path: &std::path::Path,
    step: Step,
    input: Step,
    pipeline: &str,
) -> Result<Batch, StepError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| StepError::MissingInput {
        step: step.name(),
        input: input.name(),
        path: display.clone(),
        source,
    })?;
    let batch: Batch = serde_json::from_str(&text).map_err(|e| StepError::BadInput {
        path: display.clone(),
        message: e.to_string(),
    })?;
    if batch.pipeline != pipeline {
        return Err(StepError::WrongPipeline {
            path: display,
            found: batch.pipeline,
            expected: pipeline.to_string(),
        });
    }
    if batch.step != input {
        return Err(StepError::BadInput {
            path: display,
            message: format!(
                "holds the output of {}, not {}",
                batch.step.name(),
                input.name()
            ),
        });
    }
    Ok(batch)
}

/// Written to a temporary file and renamed, so a step killed midway leaves no half file.
fn write_batch(path: &std::path::Path, batch: &Batch) -> Result<(), StepError> {
    let fail = |source| StepError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let text = serde_json::to_string_pretty(batch).map_err(|e| StepError::Write {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, text).map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)
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
