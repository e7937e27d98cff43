//! The retry policy: a transient error is retried with exponential backoff (reset after a long
//! healthy run), a definite one ends the attempt loop with its cause. Every failure is counted by
//! kind (`cdc_errors_total{kind}`) and shown on `/health` with its operator hint.

use std::time::Duration;

use platform::telemetry::Health;

use crate::error::ConnectorError;

/// First pause after a transient failure; doubles up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// An attempt that ran this long was healthy: the next failure starts the backoff over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Runs `attempt` until it succeeds or fails definitely.
pub async fn retry<T, F, Fut>(
    what: &str,
    max_backoff: Duration,
    health: &Health,
    mut attempt: F,
) -> Result<T, ConnectorError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ConnectorError>>,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = tokio::time::Instant::now();
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        metrics::counter!("cdc_errors_total", "kind" => error.kind().as_str()).increment(1);
        if !error.is_transient() {
            let message = error.with_hint();
            tracing::error!("{what} failed and retrying cannot help: {message}");
            health.set(false, format!("stopped: {message}"));
            return Err(error.within(what));
        }
        if started.elapsed() > HEALTHY_RUN {
            backoff = FIRST_BACKOFF;
        }
        let message = error.with_hint();
        tracing::warn!("{what} failed, retrying in {backoff:?}: {message}");
        health.set(false, format!("retrying: {message}"));
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max_backoff);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::error::ErrorKind;

    fn failure(kind: ErrorKind) -> ConnectorError {
        ConnectorError::new(kind, "attempt", "failed")
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_success() {
        let attempts = Cell::new(0);
        let health = Health::default();
        let result = retry("streaming", Duration::from_secs(1), &health, || {
            attempts.set(attempts.get() + 1);
            let n = attempts.get();
            async move {
                match n {
                    1 => Err(failure(ErrorKind::SpillFull)),
                    2 => Err(failure(ErrorKind::SourceUnavailable)),
                    _ => Ok(n),
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_definite_error_stops_at_once_and_says_so_on_health() {
        let attempts = Cell::new(0);
        let health = Health::default();
        let result: Result<(), _> = retry("streaming", Duration::from_secs(1), &health, || {
            attempts.set(attempts.get() + 1);
            async { Err(failure(ErrorKind::KafkaRejected)) }
        })
        .await;
        assert_eq!(attempts.get(), 1);
        let error = result.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::KafkaRejected);
        assert!(error.to_string().starts_with("streaming: "), "{error}");
        let report = health.report();
        let status = report.status;
        assert!(!report.ready);
        assert!(
            status.contains("stopped") && status.contains("kafka_rejected"),
            "{status}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn while_retrying_health_names_the_cause() {
        let health = Health::default();
        let attempts = Cell::new(0);
        let waiting = retry("streaming", Duration::from_secs(1), &health, || {
            attempts.set(attempts.get() + 1);
            async { Err::<(), _>(failure(ErrorKind::SpillFull)) }
        });
        // Never succeeds: look at health after a few attempts.
        let _ = tokio::time::timeout(Duration::from_secs(3), waiting).await;
        assert!(
            attempts.get() >= 3,
            "backoff retried {} times",
            attempts.get()
        );
        let status = health.report().status;
        assert!(
            status.starts_with("retrying:") && status.contains("--spill-dir"),
            "{status}"
        );
    }
}
