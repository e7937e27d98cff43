//! A producer for unit tests: every record waits until the test answers it, in any order.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{RecordProducer, SendError};
use crate::error::ConnectorError;

/// One record handed to the fake producer.
pub struct SentRecord {
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
    answer: Option<oneshot::Sender<Result<(), ConnectorError>>>,
}

impl SentRecord {
    pub fn acknowledge(&mut self) {
        self.answer(Ok(()));
    }

    pub fn fail(&mut self, error: ConnectorError) {
        self.answer(Err(error));
    }

    fn answer(&mut self, result: Result<(), ConnectorError>) {
        let answer = self.answer.take().expect("a record is answered once");
        let _ = answer.send(result);
    }
}

/// Records sent so far, shared between the sink and the test.
#[derive(Clone, Default)]
pub struct FakeProducer {
    pub sent: Arc<Mutex<Vec<SentRecord>>>,
    /// Sends refused with `QueueFull` before the next one is taken.
    pub queue_full_for: Arc<Mutex<usize>>,
    /// A topic whose records the fake acknowledges at once, kept apart in `answered` (so a
    /// test about change records can ignore the metadata records around them).
    pub answer_at_once: Arc<Mutex<Option<String>>>,
    pub answered: Arc<Mutex<Vec<SentRecord>>>,
}

pub struct FakeDelivery(oneshot::Receiver<Result<(), ConnectorError>>);

impl std::future::Future for FakeDelivery {
    type Output = Result<(), ConnectorError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or_else(|_| Err(super::tracker_stopped())))
    }
}

impl FakeProducer {
    pub fn count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }

    /// Applies `f` to record `index` (in send order).
    pub fn with(&self, index: usize, f: impl FnOnce(&mut SentRecord)) {
        f(&mut self.sent.lock().unwrap()[index]);
    }

    pub fn acknowledge(&self, index: usize) {
        self.with(index, SentRecord::acknowledge);
    }

    pub fn acknowledge_all(&self) {
        for record in self.sent.lock().unwrap().iter_mut() {
            if record.answer.is_some() {
                record.acknowledge();
            }
        }
    }

    pub fn keys(&self) -> Vec<(String, String)> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.topic.clone(), r.key.clone()))
            .collect()
    }
}

impl RecordProducer for FakeProducer {
    type Delivery = FakeDelivery;

    fn send(&self, topic: &str, key: &str, payload: &[u8]) -> Result<FakeDelivery, SendError> {
        {
            let mut full = self.queue_full_for.lock().unwrap();
            if *full > 0 {
                *full -= 1;
                return Err(SendError::QueueFull);
            }
        }
        let (answer, delivery) = oneshot::channel();
        let mut record = SentRecord {
            topic: topic.to_string(),
            key: key.to_string(),
            payload: payload.to_vec(),
            answer: Some(answer),
        };
        if self.answer_at_once.lock().unwrap().as_deref() == Some(topic) {
            record.acknowledge();
            self.answered.lock().unwrap().push(record);
        } else {
            self.sent.lock().unwrap().push(record);
        }
        Ok(FakeDelivery(delivery))
    }

    fn in_flight(&self) -> i32 {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.answer.is_some())
            .count() as i32
    }
}
