//! Events posted to the gateway through a fault of the broker: one log event every 100 ms, each
//! answer recorded. Afterwards every event the gateway accepted (201) must be in its topic, and
//! while the broker could not store anything the gateway must have said so (503).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Result;
use local_stack::Stack;
use serde_json::json;
use tokio::task::JoinHandle;

use super::Check;
use crate::records::read_topic_all;

#[derive(Debug, Default)]
struct Answers {
    accepted: Vec<String>,
    refused: usize,
    other: Vec<String>,
}

pub struct GatewayTraffic {
    answers: Arc<Mutex<Answers>>,
    poster: JoinHandle<()>,
}

impl GatewayTraffic {
    pub fn start(stack: &Stack) -> Self {
        let url = format!("{}/events/logs", stack.gateway_url());
        let answers = Arc::new(Mutex::new(Answers::default()));
        let record = answers.clone();
        let poster = tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client");
            for n in 0u64.. {
                let id = format!("fault-log-{n}");
                let event = json!({"log_id": id, "service": "fault-suite", "level": "info",
                                   "message": "under a broker fault", "timestamp": 1_768_000_000_000i64});
                let answer = client.post(&url).json(&event).send().await;
                {
                    let mut answers = record.lock().expect("answers");
                    match answer.map(|r| r.status().as_u16()) {
                        Ok(201) => answers.accepted.push(id),
                        Ok(503) => answers.refused += 1,
                        Ok(status) => answers.other.push(format!("{id}: {status}")),
                        Err(error) => answers.other.push(format!("{id}: {error}")),
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { answers, poster }
    }

    /// Stops posting, reads the log topic and checks the answers against it.
    pub async fn stop_and_check(self, stack: &Stack) -> Result<Vec<Check>> {
        self.poster.abort();
        let _ = self.poster.await;
        let answers = std::mem::take(&mut *self.answers.lock().expect("answers"));
        let stored: std::collections::HashSet<String> = read_topic_all(
            &stack.kafka_brokers(),
            &stack.registry_url(),
            platform::topics::APP_LOGS.name,
            Duration::from_secs(10),
        )
        .await?
        .iter()
        .filter_map(|r| r.value["log_id"].as_str().map(String::from))
        .collect();
        let lost: Vec<&String> = answers
            .accepted
            .iter()
            .filter(|id| !stored.contains(*id))
            .collect();
        Ok(vec![
            Check::new(
                "every event the gateway accepted is stored",
                lost.is_empty(),
                format!(
                    "{} accepted, {} of them missing from {}{}",
                    answers.accepted.len(),
                    lost.len(),
                    platform::topics::APP_LOGS.name,
                    if lost.is_empty() {
                        String::new()
                    } else {
                        format!(": {lost:?}")
                    }
                ),
            ),
            Check::new(
                "the gateway answers 503 while the broker cannot store",
                answers.refused > 0 && answers.other.is_empty(),
                format!(
                    "{} refused with 503, other answers: {:?}",
                    answers.refused, answers.other
                ),
            ),
        ])
    }
}
