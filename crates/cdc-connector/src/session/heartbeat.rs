//! Heartbeats keep the slot advancing while the captured tables are idle but the server writes
//! WAL elsewhere (other databases, unpublished tables), so an idle source never pins WAL.

use tokio::time::MissedTickBehavior;

use super::SessionConfig;
use crate::source::emit_heartbeat;

pub fn spawn(config: &SessionConfig) -> Option<tokio::task::JoinHandle<()>> {
    let target = config.target.clone();
    let prefix = config.heartbeat_prefix.clone();
    let period = config.heartbeat_interval?;
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut client = None;
        loop {
            ticker.tick().await;
            if client.is_none() {
                client = crate::source::connect(&target).await.ok();
            }
            let Some(sql) = &client else {
                metrics::counter!("cdc_heartbeats_total", "outcome" => "failed").increment(1);
                continue;
            };
            let written = target.within("writing a heartbeat", async {
                emit_heartbeat(sql, &prefix)
                    .await
                    .map_err(|e| crate::error::ConnectorError::postgres("writing a heartbeat", &e))
            });
            match written.await {
                Ok(()) => {
                    metrics::counter!("cdc_heartbeats_total", "outcome" => "written").increment(1);
                }
                Err(error) => {
                    metrics::counter!("cdc_heartbeats_total", "outcome" => "failed").increment(1);
                    tracing::warn!(%error, "heartbeat failed");
                    client = None;
                }
            }
        }
    }))
}
