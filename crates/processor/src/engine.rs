//! The consume → process → produce → commit loop over Kafka, in the Kafka Streams model.
//!
//! One consumer per instance, in the shared group, reads the five input topics (stage 1) and
//! the repartition topic (stage 2); one transactional producer writes everything. Every
//! commit interval one transaction carries the routed records, the results, alerts, late
//! events, state-topic records, the changed state entries (changelog) and the consumed
//! offsets (`send_offsets_to_transaction`), so they become visible together or not at all.
//!
//! State: the task of repartition partition q is restored, when q is assigned, from partition
//! q of the changelog. Each changelog entry is stamped with the offset of q its state reflects
//! (the offset committed in the same transaction); a restore keeps, per key, the last entry
//! whose stamp is at most q's committed offset. On Apache Kafka a `read_committed` reader
//! never sees aborted entries anyway; on a broker that shows aborted records (tansu) the
//! stamp rule still discards entries of transactions that did not commit, since their stamps
//! lie beyond what was committed, and a redo always appends after them.
//!
//! Revocation (a rebalance) commits the open transaction first, so the next owner starts
//! exactly where this instance stopped.
//!
//! This file starts the processor and runs the poll loop. The rest, by concern:
//! `stages` handles one consumed record (stage 1 or 2), `progress` tracks the input
//! partitions' progress and idleness for the watermarks, `outputs` registers the output
//! schemas and turns outputs into records, `producer` sends every record through the one
//! producer, `commit` commits the transaction with the consumed offsets, `rebalance` takes
//! partitions on and gives them up, and `restore` rebuilds tasks from the changelog.

mod commit;
mod outputs;
mod producer;
mod progress;
mod rebalance;
mod restore;
mod stages;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    config::{Args, Guarantee, Settings},
    decode::DatumReader,
    error::ProcessorError,
    output::Output,
    routed::Stream,
    task::Task,
};
use platform::{registry::RegistryClient, telemetry::Health, topics};
use rdkafka::{
    ClientConfig,
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    producer::{Producer, ThreadedProducer},
};

use self::outputs::{OutputSchemas, register_outputs};
pub use self::producer::DeliveryContext;
use self::producer::producer;
use self::progress::InputPartition;
pub use self::rebalance::RebalanceContext;

pub struct Core {
    args: Args,
    settings: Settings,
    producer: ThreadedProducer<DeliveryContext>,
    runtime: tokio::runtime::Handle,
    registry: RegistryClient,
    /// Readers by writer schema id (ids never change meaning, so the cache never goes stale).
    readers: HashMap<u32, Arc<DatumReader<'static>>>,
    outputs: OutputSchemas,
    stream_partitions: HashMap<Stream, i32>,
    repartition_partitions: i32,
    tasks: BTreeMap<i32, Task>,
    inputs: HashMap<(Stream, i32), InputPartition>,
    /// Next offset to consume per assigned partition (what a commit records).
    /// Keyed by the topic's static name (see [`consumed_topic`]): no allocation per record.
    positions: HashMap<(&'static str, i32), i64>,
    dirty_positions: bool,
    in_transaction: bool,
    health: Health,
    buffer: Vec<Output>,
}

pub type ProcessorConsumer = BaseConsumer<RebalanceContext>;

/// The static name of a topic the processor consumes (an input stream or the repartition
/// topic), None for any other.
fn consumed_topic(topic: &str) -> Option<&'static str> {
    if topic == topics::PROCESSOR_REPARTITION.name {
        Some(topics::PROCESSOR_REPARTITION.name)
    } else {
        Stream::from_topic(topic).map(Stream::topic)
    }
}

fn consumer_config(args: &Args) -> ClientConfig {
    let mut config = platform::kafka::client_config(&args.kafka_brokers);
    config
        .set("group.id", &args.group)
        .set("client.id", "processor")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        // A result needs two hops through the broker (input, then the repartition topic);
        // a short fetch wait keeps each hop's latency low, and brokers that answer a fetch
        // only at the end of the wait (tansu does) still deliver a trickle promptly.
        .set("fetch.wait.max.ms", "10")
        // Statistics tell which partitions are read to their end (see `InputPartition`).
        .set("statistics.interval.ms", "1000")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("max.poll.interval.ms", "30000");
    config
}

/// Starts everything and runs until `stop` is set; returns the error that stopped it.
pub fn run(
    args: Args,
    health: Health,
    stop: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
) -> Result<(), ProcessorError> {
    let brokers = args.kafka_brokers.clone();
    let registry = RegistryClient::new(&args.schema_registry_url);
    let deadline = Instant::now() + Duration::from_secs(args.startup_timeout_secs);
    health.set(false, "provisioning topics");
    retry_until(deadline, &stop, "provisioning topics", || {
        runtime
            // Its outputs and its inputs: a consumer cannot subscribe to a missing topic.
            .block_on(platform::kafka::provision_topics(
                &brokers,
                topics::PROCESSOR,
            ))
            .map_err(ProcessorError::from)
    })?;
    health.set(false, "registering output schemas");
    let outputs = retry_until(deadline, &stop, "registering schemas", || {
        runtime.block_on(register_outputs(&registry))
    })?;

    let core_slot: Arc<Mutex<Option<Core>>> = Arc::default();
    let failure: Arc<Mutex<Option<ProcessorError>>> = Arc::default();
    let consumer: ProcessorConsumer = consumer_config(&args)
        .create_with_context(RebalanceContext {
            core: core_slot.clone(),
            failure: failure.clone(),
        })
        .map_err(|e| ProcessorError::kafka(&brokers, e))?;
    let stream_partitions = retry_until(deadline, &stop, "reading topic metadata", || {
        let mut counts = HashMap::new();
        for stream in Stream::ALL {
            counts.insert(
                stream,
                partition_count(&consumer, &brokers, stream.topic())?,
            );
        }
        Ok(counts)
    })?;
    let repartition_partitions =
        partition_count(&consumer, &brokers, topics::PROCESSOR_REPARTITION.name)?;
    let changelog_partitions =
        partition_count(&consumer, &brokers, topics::PROCESSOR_CHANGELOG.name)?;
    if changelog_partitions < repartition_partitions {
        return Err(ProcessorError::Startup(format!(
            "{} has {changelog_partitions} partitions but {} has {repartition_partitions}: the changelog needs one partition per repartition partition",
            topics::PROCESSOR_CHANGELOG.name,
            topics::PROCESSOR_REPARTITION.name
        )));
    }

    let producer = producer(&args)?;
    if args.processing_guarantee == Guarantee::ExactlyOnce {
        health.set(false, "initialising transactions");
        retry_until(deadline, &stop, "initialising transactions", || {
            producer
                .init_transactions(Duration::from_secs(30))
                .map_err(|e| ProcessorError::kafka(&brokers, e))
        })?;
    }
    *core_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Core {
        settings: args.settings(),
        args: args.clone(),
        producer,
        runtime: runtime.clone(),
        registry,
        readers: HashMap::new(),
        outputs,
        stream_partitions,
        repartition_partitions,
        tasks: BTreeMap::new(),
        inputs: HashMap::new(),
        positions: HashMap::new(),
        dirty_positions: false,
        in_transaction: false,
        health: health.clone(),
        buffer: Vec::new(),
    });

    let mut subscription: Vec<&str> = Stream::ALL.iter().map(|s| s.topic()).collect();
    subscription.push(topics::PROCESSOR_REPARTITION.name);
    consumer
        .subscribe(&subscription)
        .map_err(|e| ProcessorError::kafka(&brokers, e))?;
    health.set(false, "joining the consumer group");
    tracing::info!(group = %args.group, guarantee = ?args.processing_guarantee, "processor running");

    let interval = args.commit_interval();
    let mut last_commit = Instant::now();
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        if let Some(error) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
            break Err(error);
        }
        match consumer.poll(Duration::from_millis(20)) {
            None => {}
            Some(Ok(message)) => {
                let mut guard = core_slot.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(core) = guard.as_mut()
                    && let Err(error) = core.handle(&message)
                {
                    break Err(error);
                }
            }
            Some(Err(error)) => {
                metrics::counter!("processor_consumer_errors_total").increment(1);
                tracing::warn!(%error, "consumer error (retrying)");
            }
        }
        if last_commit.elapsed() >= interval {
            let mut guard = core_slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(core) = guard.as_mut() {
                core.tick();
                if let Err(error) = core.commit(&consumer) {
                    break Err(error);
                }
            }
            // Counted from the end of the commit: a commit that takes as long as the interval
            // (a slow broker) must not leave no time to process between commits.
            last_commit = Instant::now();
        }
    };
    // Leave cleanly: commit what was processed (a failed run aborts instead), then leave the
    // group so the partitions move at once.
    {
        let mut guard = core_slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(core) = guard.as_mut() {
            if result.is_ok() {
                core.tick();
                core.commit(&consumer)?;
            } else {
                core.abort();
            }
        }
    }
    if result.is_ok() {
        consumer.unsubscribe();
        // The unsubscribe's revoke runs inside poll.
        for _ in 0..5 {
            let _ = consumer.poll(Duration::from_millis(50));
        }
    }
    result
}

fn retry_until<T>(
    deadline: Instant,
    stop: &AtomicBool,
    what: &str,
    mut attempt: impl FnMut() -> Result<T, ProcessorError>,
) -> Result<T, ProcessorError> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(error)
                if error.is_transient()
                    && Instant::now() < deadline
                    && !stop.load(Ordering::Relaxed) =>
            {
                tracing::warn!(%error, "{what}: retrying in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(error),
        }
    }
}

/// The partitions of `topic`; a missing topic is an error naming it.
pub(crate) fn partition_count<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    brokers: &str,
    topic: &str,
) -> Result<i32, ProcessorError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| ProcessorError::kafka(brokers, e))?;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if count == 0 {
        return Err(ProcessorError::MissingTopic {
            topic: topic.to_string(),
        });
    }
    Ok(i32::try_from(count).unwrap_or(i32::MAX))
}

#[cfg(test)]
mod topic_tests {
    use super::*;

    /// The broker does not create topics on demand: what the processor subscribes to and
    /// restores from must be in the set it provisions.
    #[test]
    fn the_processor_provisions_every_topic_it_consumes() {
        let provisioned: Vec<&str> = topics::PROCESSOR.iter().map(|t| t.name).collect();
        let mut consumed: Vec<&str> = Stream::ALL.iter().map(|s| s.topic()).collect();
        consumed.push(topics::PROCESSOR_REPARTITION.name);
        consumed.push(topics::PROCESSOR_CHANGELOG.name);
        for topic in consumed {
            assert!(provisioned.contains(&topic), "{topic} is not provisioned");
        }
    }
}
