//! The scheduler: every pipeline at its cron times on the virtual clock, the four stages back to
//! back, retries with backoff, and a report (log, metric, returned) for every run, failed or not.

use std::{sync::Arc, time::Duration};

use tokio::task::JoinSet;

use super::{
    batch::{RunOutcome, StageError},
    config::{Pipeline, PipelineConfig},
    fetch::fetch,
    publish::publish,
    transform::transform,
    validate::validate,
};
use crate::{clock::VirtualClock, streams::sink::Sink};

#[derive(Debug, Clone)]
pub struct RunReport {
    pub pipeline: String,
    /// Virtual time the run was scheduled for.
    pub scheduled_at_ms: i64,
    pub attempts: u32,
    pub outcome: RunOutcome,
    pub record_ids: Vec<String>,
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
