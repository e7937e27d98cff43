//! One stage at a time, as `workload external-step` runs it for an orchestrator: each step reads
//! the previous step's file in the run's work directory and writes its own, so a failed step
//! can be retried alone.

use chrono::{DateTime, Utc};

use super::{
    batch::{Batch, StageError, Step},
    config::Pipeline,
    fetch::fetch,
    publish::publish,
    transform::transform,
    validate::validate,
};
use crate::streams::sink::Sink;

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
