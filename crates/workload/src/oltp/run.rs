//! Runs the plan: one worker per lane, each user's operations on one lane in plan order.
//!
//! Commit order in the journal: with a journal, a worker takes the journal lock *before* it
//! commits and appends while still holding it. Commits therefore happen one at a time, each
//! fully acknowledged before the next starts, so journal order is exactly WAL commit order
//! (the order CDC records carry in `source.commit_lsn`). The statements themselves still run
//! concurrently; only the commit round trip is serialized. Reading the commit LSN after the
//! fact cannot work: `pg_current_wal_lsn()` after COMMIT may already include other
//! transactions' commits.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use sqlx::postgres::PgPoolOptions;
use tokio::{sync::mpsc, time::Instant};

use super::{
    db::{self, Executed, Keys},
    journal::JournalWriter,
    model::IllegalOperation,
    plan::{Mix, PlannedOp, Planner},
};
use crate::pace::{LatencyWindow, Pacer};

#[derive(Debug, Clone)]
pub struct OltpSettings {
    pub pg_url: String,
    pub seed: u64,
    pub mix: Mix,
    /// Operations per second; 0 = as fast as possible.
    pub rate: f64,
    pub concurrency: usize,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub journal: Option<PathBuf>,
    pub progress_every: Duration,
    /// Appended to generated e-mail addresses (unique per database).
    pub email_tag: String,
}

#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub planned: u64,
    pub committed: u64,
    pub skipped: u64,
    pub failed: u64,
    pub elapsed: Duration,
    pub journal_entries: u64,
}

impl RunSummary {
    pub fn rate(&self) -> f64 {
        self.committed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(sqlx::Error),
    #[error("cannot write the journal: {0}")]
    Journal(#[from] std::io::Error),
    #[error("the planner produced an illegal operation (a bug): {0}")]
    Plan(#[from] IllegalOperation),
    #[error("a worker stopped unexpectedly: {0}")]
    Worker(String),
}

#[derive(Default)]
struct Stats {
    committed: u64,
    skipped: u64,
    failed: u64,
    journal_entries: u64,
    latencies: LatencyWindow,
}

/// How many planned operations may wait per lane.
const LANE_QUEUE: usize = 32;

pub async fn run(
    settings: &OltpSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<RunSummary, RunError> {
    let concurrency = settings.concurrency.max(1);
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(concurrency).unwrap_or(u32::MAX))
        .acquire_timeout(Duration::from_secs(30))
        .connect(&settings.pg_url)
        .await
        .map_err(RunError::Connect)?;
    let journal = settings
        .journal
        .as_deref()
        .map(JournalWriter::create)
        .transpose()?
        .map(|writer| Arc::new(tokio::sync::Mutex::new(writer)));
    let stats = Arc::new(Mutex::new(Stats::default()));

    let mut workers = tokio::task::JoinSet::new();
    let mut lanes = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (tx, rx) = mpsc::channel::<PlannedOp>(LANE_QUEUE);
        lanes.push(tx);
        workers.spawn(worker(pool.clone(), rx, journal.clone(), stats.clone()));
    }

    let started = Instant::now();
    let progress = tokio::spawn(report_progress(
        stats.clone(),
        settings.progress_every,
        settings.rate,
    ));
    let mut planner = Planner::new(settings.seed, settings.mix, &settings.email_tag);
    let mut pacer = Pacer::new(settings.rate);
    let mut planned = 0u64;
    tokio::pin!(shutdown);
    let plan_result: Result<(), RunError> = async {
        loop {
            if settings.count.is_some_and(|count| planned >= count)
                || settings.duration.is_some_and(|d| started.elapsed() >= d)
            {
                return Ok(());
            }
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = pacer.wait() => {}
            }
            let op = planner.next_op()?;
            let lane = &lanes[op.owner as usize % concurrency];
            if lane.send(op).await.is_err() {
                return Err(RunError::Worker("a lane closed early".into()));
            }
            planned += 1;
        }
    }
    .await;
    drop(lanes);
    while let Some(joined) = workers.join_next().await {
        joined.map_err(|e| RunError::Worker(e.to_string()))??;
    }
    progress.abort();
    plan_result?;
    if let Some(journal) = &journal {
        journal.lock().await.flush()?;
    }
    let stats = stats.lock().unwrap_or_else(|p| p.into_inner());
    Ok(RunSummary {
        planned,
        committed: stats.committed,
        skipped: stats.skipped,
        failed: stats.failed,
        elapsed: started.elapsed(),
        journal_entries: stats.journal_entries,
    })
}

async fn worker(
    pool: sqlx::PgPool,
    mut ops: mpsc::Receiver<PlannedOp>,
    journal: Option<Arc<tokio::sync::Mutex<JournalWriter>>>,
    stats: Arc<Mutex<Stats>>,
) -> Result<(), RunError> {
    let mut keys = Keys::default();
    while let Some(planned) = ops.recv().await {
        let kind = planned.op.kind();
        let started = Instant::now();
        let outcome = run_one(&pool, &mut keys, &planned, journal.as_deref()).await;
        let latency = started.elapsed();
        let mut stats = stats.lock().unwrap_or_else(|p| p.into_inner());
        let label = match outcome {
            Ok(Some(entries)) => {
                stats.committed += 1;
                stats.journal_entries += entries;
                stats.latencies.record(latency);
                metrics::histogram!("workload_oltp_operation_seconds", "kind" => kind)
                    .record(latency.as_secs_f64());
                "committed"
            }
            Ok(None) => {
                stats.skipped += 1;
                "skipped"
            }
            Err(OpError::Journal(e)) => return Err(RunError::Journal(e)),
            Err(OpError::Exec(error)) => {
                stats.failed += 1;
                tracing::warn!(seq = planned.seq, kind, %error, "operation failed");
                "failed"
            }
        };
        metrics::counter!("workload_oltp_operations_total", "kind" => kind, "outcome" => label)
            .increment(1);
    }
    Ok(())
}

enum OpError {
    Exec(db::ExecError),
    Journal(std::io::Error),
}

impl From<db::ExecError> for OpError {
    fn from(e: db::ExecError) -> Self {
        Self::Exec(e)
    }
}

impl From<sqlx::Error> for OpError {
    fn from(e: sqlx::Error) -> Self {
        Self::Exec(e.into())
    }
}

/// One operation in one transaction; `None` when it was skipped, else how many rows it journaled.
async fn run_one(
    pool: &sqlx::PgPool,
    keys: &mut Keys,
    planned: &PlannedOp,
    journal: Option<&tokio::sync::Mutex<JournalWriter>>,
) -> Result<Option<u64>, OpError> {
    let mut tx = pool.begin().await?;
    let changes = match db::execute(&mut tx, keys, &planned.op).await? {
        Executed::Changed(changes) => changes,
        Executed::Skipped => {
            tx.rollback().await?;
            return Ok(None);
        }
    };
    let entries = changes.len() as u64;
    match journal {
        Some(journal) => {
            let mut writer = journal.lock().await;
            tx.commit().await?;
            keys.remember(&planned.op, &changes);
            writer
                .append(planned.seq, changes)
                .map_err(OpError::Journal)?;
        }
        None => {
            tx.commit().await?;
            keys.remember(&planned.op, &changes);
        }
    }
    Ok(Some(entries))
}

async fn report_progress(stats: Arc<Mutex<Stats>>, every: Duration, target: f64) {
    let every = every.max(Duration::from_millis(100));
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    let mut last = (Instant::now(), 0u64);
    loop {
        ticker.tick().await;
        let (committed, failed, skipped, percentiles) = {
            let mut stats = stats.lock().unwrap_or_else(|p| p.into_inner());
            (
                stats.committed,
                stats.failed,
                stats.skipped,
                stats.latencies.take_percentiles(),
            )
        };
        let now = Instant::now();
        let rate = (committed - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        last = (now, committed);
        let (p50, p99, max) = percentiles.unwrap_or_default();
        let target = if target > 0.0 {
            format!("{target}/s")
        } else {
            "max".into()
        };
        tracing::info!(
            "oltp: {committed} committed, {rate:.1} ops/s (target {target}), latency p50 {p50:.2} ms p99 {p99:.2} ms max {max:.2} ms, {failed} failed, {skipped} skipped"
        );
    }
}
