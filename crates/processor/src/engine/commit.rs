//! The commit: the changed state goes to the changelog, stamped with the offset it reflects,
//! then the consumed offsets commit with the transaction (exactly once) or after a flush that
//! every record survived (at least once); a failed run aborts instead.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use platform::topics;
use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{CommitMode, Consumer},
    producer::Producer,
};

use crate::{changelog::Stamped, error::ProcessorError, routed::Stream};

use super::{Core, ProcessorConsumer};

impl Core {
    /// Writes the changed state, then commits the transaction with the consumed offsets.
    pub(super) fn commit(&mut self, consumer: &ProcessorConsumer) -> Result<(), ProcessorError> {
        let started = Instant::now();
        let mut changelog: Vec<(i32, Vec<u8>, Vec<u8>)> = Vec::new();
        let mut entries = 0usize;
        for (&q, task) in self.tasks.iter_mut() {
            let stamp = self
                .positions
                .get(&(topics::PROCESSOR_REPARTITION.name, q))
                .copied()
                .unwrap_or(0);
            for (key, value) in task.take_dirty() {
                let key = postcard::to_stdvec(&key).unwrap_or_default();
                let value = postcard::to_stdvec(&Stamped { stamp, value }).unwrap_or_default();
                changelog.push((q, key, value));
            }
            entries += task.state_entries();
            let stats = std::mem::take(&mut task.stats);
            for (lane, n) in stats.records {
                metrics::counter!("processor_lane_records_total", "lane" => lane).increment(n);
            }
            metrics::counter!("processor_duplicates_dropped_total").increment(stats.duplicates);
            if let Some(w) = task.watermark(Stream::AppEvents) {
                metrics::gauge!("processor_watermark_ms", "job" => "app_events", "partition" => q.to_string()).set(w as f64);
            }
        }
        metrics::gauge!("processor_state_entries").set(entries as f64);
        for (q, key, value) in changelog {
            self.send(
                topics::PROCESSOR_CHANGELOG.name,
                Some(q),
                &key,
                Some(&value),
            )?;
        }
        if !self.dirty_positions && !self.in_transaction {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &self.positions {
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(|e| ProcessorError::kafka(&self.args.kafka_brokers, e))?;
        }
        if self.exactly_once() {
            self.ensure_transaction()?;
            let metadata = consumer.group_metadata().ok_or_else(|| {
                ProcessorError::Startup("the consumer has no group metadata".into())
            })?;
            let timeout = Duration::from_secs(30);
            let outcome = self
                .producer
                .send_offsets_to_transaction(&offsets, &metadata, timeout)
                .and_then(|()| self.producer.commit_transaction(timeout));
            self.in_transaction = false;
            if let Err(error) = outcome {
                let _ = self.producer.abort_transaction(timeout);
                return Err(ProcessorError::transaction(error));
            }
        } else {
            self.producer
                .flush(Duration::from_secs(30))
                .map_err(|e| ProcessorError::kafka(&self.args.kafka_brokers, e))?;
            let failures = self.producer.context().failures.swap(0, Ordering::Relaxed);
            if failures > 0 {
                return Err(ProcessorError::Undelivered { failures });
            }
            if offsets.count() > 0 {
                consumer
                    .commit(&offsets, CommitMode::Sync)
                    .map_err(|e| ProcessorError::kafka(&self.args.kafka_brokers, e))?;
            }
        }
        self.dirty_positions = false;
        let took = started.elapsed();
        metrics::histogram!("processor_commit_seconds").record(took.as_secs_f64());
        if took > Duration::from_secs(1) {
            tracing::warn!(?took, "slow commit");
        } else {
            tracing::debug!(?took, "commit");
        }
        Ok(())
    }

    pub(super) fn abort(&mut self) {
        if self.in_transaction {
            let _ = self.producer.abort_transaction(Duration::from_secs(10));
            self.in_transaction = false;
        }
    }
}
