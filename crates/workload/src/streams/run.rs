//! The loop between generators and a sink: each event leaves when the (virtual) clock reaches
//! its timestamp; sends overlap so one slow request does not hold the schedule back.

use std::{sync::Arc, time::Duration};

use tokio::{sync::Semaphore, task::JoinSet, time::Instant};

use super::{generate::Traffic, sink::Sink};
use crate::clock::VirtualClock;

#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub max_in_flight: usize,
    pub progress_every: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct StreamSummary {
    pub sent: u64,
    pub failed: u64,
    pub elapsed: Duration,
}

impl StreamSummary {
    pub fn per_minute(&self) -> f64 {
        self.sent as f64 * 60.0 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub async fn run(
    mut traffic: Traffic,
    clock: VirtualClock,
    sink: Arc<Sink>,
    settings: &StreamSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> StreamSummary {
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(settings.max_in_flight.max(1)));
    let mut sends = JoinSet::new();
    let mut emitted = 0u64;
    let mut summary = StreamSummary::default();
    let mut last_progress = (Instant::now(), 0u64);
    tokio::pin!(shutdown);
    loop {
        if settings.count.is_some_and(|count| emitted >= count)
            || settings.duration.is_some_and(|d| started.elapsed() >= d)
        {
            break;
        }
        let Some(at) = traffic.next_at() else { break };
        tokio::select! {
            () = &mut shutdown => break,
            () = clock.sleep_until(at) => {}
        }
        let Some(event) = traffic.next_event() else {
            break;
        };
        emitted += 1;
        // Printing is instant and its order is the output: no need (and no room) to overlap.
        if matches!(*sink, Sink::Stdout) {
            tally(&mut summary, Ok(sink.send(&event).await.is_ok()));
        } else {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let sink = sink.clone();
            sends.spawn(async move {
                let result = sink.send(&event).await;
                drop(permit);
                if let Err(error) = &result {
                    tracing::warn!(event_id = event.id(), topic = event.topic(), %error, "event not delivered");
                }
                result.is_ok()
            });
        }
        while let Some(done) = sends.try_join_next() {
            tally(&mut summary, done);
        }
        if last_progress.0.elapsed() >= settings.progress_every {
            let rate = (summary.sent - last_progress.1) as f64 * 60.0
                / last_progress.0.elapsed().as_secs_f64();
            tracing::info!(
                "streams: {} sent, {rate:.0} events/min, {} failed",
                summary.sent,
                summary.failed
            );
            last_progress = (Instant::now(), summary.sent);
        }
    }
    while let Some(done) = sends.join_next().await {
        tally(&mut summary, done);
    }
    sink.flush().await;
    summary.elapsed = started.elapsed();
    summary
}

fn tally(summary: &mut StreamSummary, done: Result<bool, tokio::task::JoinError>) {
    match done {
        Ok(true) => summary.sent += 1,
        _ => summary.failed += 1,
    }
}
