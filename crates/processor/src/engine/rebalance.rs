//! Partition assignment. Rebalances and librdkafka's statistics reach the core through the
//! consumer's context: an assignment restores the tasks of the repartition partitions it brings
//! and starts every partition at the committed offset that state matches; a revocation commits
//! first, so the next owner starts exactly where this instance stopped.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use platform::topics;
use rdkafka::{
    ClientContext, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    error::KafkaError,
};

use crate::{error::ProcessorError, routed::Stream, task::Task};

use super::{Core, InputPartition, ProcessorConsumer, consumed_topic, restore::restore};

/// The consumer's context: rebalances reach the core through it.
pub struct RebalanceContext {
    pub(super) core: Arc<Mutex<Option<Core>>>,
    pub(super) failure: Arc<Mutex<Option<ProcessorError>>>,
}

impl ClientContext for RebalanceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        metrics::counter!("kafka_client_errors_total", "service" => "processor").increment(1);
        tracing::warn!(%error, "Kafka client: {reason}");
    }

    /// librdkafka's statistics (every second) carry each assigned partition's end offset:
    /// the lag metric, and whether an input partition has been read to its end (only such a
    /// partition can be idle).
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut guard = self.core.lock().unwrap_or_else(|p| p.into_inner());
        let mut core = guard.as_mut();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || p.hi_offset < 0 {
                    continue;
                }
                let end = if p.ls_offset >= 0 {
                    p.ls_offset.min(p.hi_offset)
                } else {
                    p.hi_offset
                };
                let position = core
                    .as_ref()
                    .and_then(|c| {
                        let topic = consumed_topic(topic)?;
                        c.positions.get(&(topic, *partition)).copied()
                    })
                    .unwrap_or(p.app_offset.max(p.lo_offset));
                metrics::gauge!("processor_consumer_lag", "topic" => topic.clone(), "partition" => partition.to_string())
                    .set((end - position).max(0) as f64);
                if let (Some(core), Some(stream)) = (core.as_mut(), Stream::from_topic(topic))
                    && let Some(input) = core.inputs.get_mut(&(stream, *partition))
                {
                    input.read_to_end =
                        p.fetchq_cnt == 0 && (end <= p.lo_offset || position >= end);
                }
            }
        }
    }
}

impl ConsumerContext for RebalanceContext {
    /// Replaces rdkafka's default handling so the consumer starts each assigned partition at
    /// exactly the offset the state was restored for (fetched once, here), never at an offset
    /// looked up separately.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        list: &mut TopicPartitionList,
    ) {
        use rdkafka::types::RDKafkaRespErr;
        let fail = |error: ProcessorError| {
            tracing::error!(%error, "rebalance failed");
            *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
        };
        let mut guard = self.core.lock().unwrap_or_else(|p| p.into_inner());
        let Some(core) = guard.as_mut() else {
            // The run failed and is closing its consumer: it takes no partition, and closing
            // waits for this callback to settle the assignment.
            let _ = consumer.unassign();
            return;
        };
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                match core.assign(consumer, list) {
                    Ok(start) => {
                        if let Err(e) = consumer.assign(&start) {
                            fail(ProcessorError::kafka(&core.args.kafka_brokers, e));
                        }
                    }
                    Err(error) => fail(error),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if let Err(error) = core.commit(consumer) {
                    fail(error);
                }
                core.revoke(list);
                if let Err(e) = consumer.unassign() {
                    fail(ProcessorError::kafka(&core.args.kafka_brokers, e));
                }
            }
            other => {
                tracing::warn!(error = ?other, "rebalance error; giving up the assignment");
                core.revoke(list);
                let _ = consumer.unassign();
            }
        }
    }
}

impl Core {
    fn revoke(&mut self, list: &TopicPartitionList) {
        for element in list.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            if let Some(name) = consumed_topic(topic) {
                self.positions.remove(&(name, partition));
            }
            if topic == topics::PROCESSOR_REPARTITION.name {
                self.tasks.remove(&partition);
            } else if let Some(stream) = Stream::from_topic(topic) {
                self.inputs.remove(&(stream, partition));
            }
        }
        self.health.set(false, "rebalancing");
    }

    /// The committed offsets of `list`, asked until the group coordinator answers for every
    /// partition (it refuses while a transaction's offsets are still being committed).
    fn committed(
        &self,
        consumer: &ProcessorConsumer,
        list: &TopicPartitionList,
    ) -> Result<TopicPartitionList, ProcessorError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let committed = consumer
                .committed_offsets(list.clone(), Duration::from_secs(30))
                .map_err(|e| ProcessorError::kafka(&self.args.kafka_brokers, e))?;
            let unsettled = committed.elements().iter().find_map(|e| {
                e.error()
                    .err()
                    .map(|err| (e.topic().to_string(), e.partition(), err))
            });
            match unsettled {
                None => return Ok(committed),
                Some((topic, partition, error)) if Instant::now() < deadline => {
                    tracing::info!(topic, partition, %error, "committed offset not available yet; asking again");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Some((_, _, error)) => {
                    return Err(ProcessorError::kafka(&self.args.kafka_brokers, error));
                }
            }
        }
    }

    /// Restores the state of the assigned repartition partitions and returns the assignment
    /// with the offsets to start from: the committed ones the state matches.
    fn assign(
        &mut self,
        consumer: &ProcessorConsumer,
        list: &TopicPartitionList,
    ) -> Result<TopicPartitionList, ProcessorError> {
        let committed = self.committed(consumer, list)?;
        let mut start = TopicPartitionList::new();
        for element in committed.elements() {
            let offset = match element.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            start
                .add_partition_offset(element.topic(), element.partition(), offset)
                .map_err(|e| ProcessorError::kafka(&self.args.kafka_brokers, e))?;
        }
        let started = Instant::now();
        let mut tasks: BTreeMap<i32, (i64, Task)> = BTreeMap::new();
        for element in committed.elements() {
            if element.topic() == topics::PROCESSOR_REPARTITION.name {
                let committed_offset = match element.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                };
                let task = Task::new(
                    element.partition(),
                    self.settings.clone(),
                    self.stream_partitions.clone(),
                );
                tasks.insert(element.partition(), (committed_offset, task));
            }
        }
        let restored = restore(&self.args.kafka_brokers, &mut tasks)?;
        metrics::histogram!("processor_restore_seconds").record(started.elapsed().as_secs_f64());
        for (q, (committed_offset, mut task)) in tasks {
            task.finish_restore();
            let entries = restored.get(&q).copied().unwrap_or(0);
            tracing::info!(
                partition = q,
                committed_offset,
                restored = entries,
                "state restored"
            );
            metrics::counter!("processor_state_restored_entries_total").increment(entries as u64);
            self.tasks.insert(q, task);
        }
        let mut owned: Vec<String> = Vec::new();
        for element in list.elements() {
            if let Some(stream) = Stream::from_topic(element.topic()) {
                self.inputs.insert(
                    (stream, element.partition()),
                    InputPartition {
                        max_event_time: None,
                        last_record: Instant::now(),
                        read_to_end: false,
                        idle: false,
                        announced: None,
                    },
                );
            }
            owned.push(format!("{}[{}]", element.topic(), element.partition()));
        }
        self.health
            .set(true, format!("running; owns {} partitions", owned.len()));
        tracing::info!(partitions = %owned.join(" "), "partitions assigned");
        Ok(start)
    }
}
