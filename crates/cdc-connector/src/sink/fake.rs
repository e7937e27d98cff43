//! A producer for unit tests: every record waits until the test answers it, in any order.

use std::sync::{Arc, Mutex};

use super::{Outgoing, RecordProducer, SendError, ledger::Ledger};
use crate::error::ConnectorError;

/// One record handed to the fake producer.
pub struct SentRecord {
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
    pub timestamp_unix_millis: i64,
    /// Whether it went to the producer [`RecordProducer::for_replay`] made.
    pub by_replay_producer: bool,
    sequence: u64,
    ledger: Arc<Ledger>,
    answered: bool,
}

impl SentRecord {
    pub fn acknowledge(&mut self) {
        self.answer(Ok(()));
    }

    pub fn fail(&mut self, error: ConnectorError) {
        self.answer(Err(error));
    }

    fn answer(&mut self, result: Result<(), ConnectorError>) {
        assert!(!self.answered, "a record is answered once");
        self.answered = true;
        self.ledger.answered(self.sequence, result);
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
    pub ledger: Arc<Ledger>,
    /// Made by [`RecordProducer::for_replay`]: its own ledger, the same `sent` records.
    pub for_replays: bool,
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
            if !record.answered {
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
    fn send(&self, record: Outgoing<'_>, sequence: u64) -> Result<(), SendError> {
        let Outgoing {
            topic,
            key,
            payload,
            timestamp_unix_millis,
        } = record;
        {
            let mut full = self.queue_full_for.lock().unwrap();
            if *full > 0 {
                *full -= 1;
                return Err(SendError::QueueFull);
            }
        }
        let mut record = SentRecord {
            topic: topic.to_string(),
            key: key.to_string(),
            payload: payload.to_vec(),
            timestamp_unix_millis,
            by_replay_producer: self.for_replays,
            sequence,
            ledger: self.ledger.clone(),
            answered: false,
        };
        if self.answer_at_once.lock().unwrap().as_deref() == Some(topic) {
            record.acknowledge();
            self.answered.lock().unwrap().push(record);
        } else {
            self.sent.lock().unwrap().push(record);
        }
        Ok(())
    }

    fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    async fn for_replay(&self) -> Result<Self, ConnectorError> {
        Ok(Self {
            ledger: Arc::default(),
            for_replays: true,
            ..self.clone()
        })
    }
}
