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

/// Runs the processor until `stop` is set.
///
/// A transient failure while processing (a broker that stopped answering long enough to
/// time a transaction out, a rebalance whose state could not be restored) aborts the open
/// transaction and starts the pipeline again in this process, exactly as a restart would: a
/// new consumer and a new producer under the same transactional id (which fences the old
/// one), state restored from the changelog, input resumed at the last committed offsets.
/// Start-up already retries until `--startup-timeout-secs`, so a broker that stays away
/// stops the processor; so does a definite failure (a missing ACL, a bug).
pub fn run(
    mut args: Args,
    health: Health,
    stop: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
) -> Result<(), ProcessorError> {
    // A restart keeps the transactional id, so the broker fences the failed run's producer.
    args.instance_id
        .get_or_insert_with(|| uuid::Uuid::new_v4().to_string());
    supervise(
        &stop,
        &health,
        RESTART_BACKOFF_MIN,
        || Pipeline::start(&args, &health, &stop, &runtime),
        |pipeline| pipeline.process(&stop),
    )
}

const RESTART_BACKOFF_MIN: Duration = Duration::from_secs(1);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run that lasted this long was healthy: the next failure starts the backoff over.
const RESTART_BACKOFF_RESET_AFTER: Duration = Duration::from_secs(120);

/// Starts and processes until processing ends well or fails for good: a transient failure
/// while processing starts again after a growing pause; a start-up failure (already retried
/// until its deadline), a definite failure, or any failure once `stop` is set, ends it.
fn supervise<P>(
    stop: &AtomicBool,
    health: &Health,
    first_backoff: Duration,
    mut start: impl FnMut() -> Result<P, ProcessorError>,
    mut process: impl FnMut(P) -> Result<(), ProcessorError>,
) -> Result<(), ProcessorError> {
    let mut backoff = first_backoff;
    loop {
        let pipeline = start()?;
        let started = Instant::now();
        match process(pipeline) {
            Ok(()) => return Ok(()),
            Err(error) if error.is_transient() && !stop.load(Ordering::Relaxed) => {
                if started.elapsed() >= RESTART_BACKOFF_RESET_AFTER {
                    backoff = first_backoff;
                }
                metrics::counter!("processor_restarts_total").increment(1);
                health.set(false, format!("restarting after a failure: {error}"));
                tracing::error!(%error, "processing failed; starting again in {backoff:?} from the last committed transaction");
                sleep_unless_stopped(backoff, stop);
                backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
            }
            Err(error) => return Err(error),
        }
    }
}

fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) {
    let until = Instant::now() + duration;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100).min(until - Instant::now()));
    }
}

/// One run of the pipeline: the consumer in the group and the core it hands records to.
struct Pipeline {
    consumer: ProcessorConsumer,
    core_slot: Arc<Mutex<Option<Core>>>,
    /// A failure met inside a rebalance callback, picked up by the poll loop.
    failure: Arc<Mutex<Option<ProcessorError>>>,
    interval: Duration,
}

impl Pipeline {
    /// Provisions topics, registers schemas, creates the clients and subscribes, retrying
    /// transient failures until the start-up deadline.
    fn start(
        args: &Args,
        health: &Health,
        stop: &AtomicBool,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Pipeline, ProcessorError> {
        let brokers = args.kafka_brokers.clone();
        let registry = RegistryClient::new(&args.schema_registry_url);
        let deadline = Instant::now() + Duration::from_secs(args.startup_timeout_secs);
        health.set(false, "provisioning topics");
        retry_until(deadline, stop, "provisioning topics", || {
            runtime
                // Its outputs and its inputs: a consumer cannot subscribe to a missing topic.
                .block_on(platform::kafka::provision_topics(
                    &brokers,
                    topics::PROCESSOR,
                ))
                .map_err(ProcessorError::from)
        })?;
        health.set(false, "registering output schemas");
        let outputs = retry_until(deadline, stop, "registering schemas", || {
            runtime.block_on(register_outputs(&registry))
        })?;

        let core_slot: Arc<Mutex<Option<Core>>> = Arc::default();
        let failure: Arc<Mutex<Option<ProcessorError>>> = Arc::default();
        let consumer: ProcessorConsumer = consumer_config(args)
            .create_with_context(RebalanceContext {
                core: core_slot.clone(),
                failure: failure.clone(),
            })
            .map_err(|e| ProcessorError::kafka(&brokers, e))?;
        let stream_partitions = retry_until(deadline, stop, "reading topic metadata", || {
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

        let producer = producer(args)?;
        if args.processing_guarantee == Guarantee::ExactlyOnce {
            health.set(false, "initialising transactions");
            retry_until(deadline, stop, "initialising transactions", || {
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
        Ok(Pipeline {
            consumer,
            core_slot,
            failure,
            interval: args.commit_interval(),
        })
    }

    /// Polls, processes and commits until `stop` is set (then commits and leaves the group)
    /// or a failure (then aborts the open transaction).
    fn process(self, stop: &AtomicBool) -> Result<(), ProcessorError> {
        let Pipeline {
            consumer,
            core_slot,
            failure,
            interval,
        } = self;
        let mut last_commit = Instant::now();
        let result = loop {
            if stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            let polled = consumer.poll(Duration::from_millis(20));
            // A rebalance inside that poll may have failed: nothing more is processed or
            // committed after it.
            if let Some(error) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
                break Err(error);
            }
            match polled {
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
                // Counted from the end of the commit: a commit that takes as long as the
                // interval (a slow broker) must not leave no time to process between commits.
                last_commit = Instant::now();
            }
        };
        // Stopping: commit what was processed.
        let result = result.and_then(|()| {
            let mut guard = core_slot.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_mut() {
                Some(core) => {
                    core.tick();
                    core.commit(&consumer)
                }
                None => Ok(()),
            }
        });
        if let Err(error) = result {
            // The core leaves the slot before the consumer closes: the revocation that closing
            // runs must not commit offsets whose outputs were just aborted.
            let core = core_slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(mut core) = core {
                core.abort();
            }
            return Err(error);
        }
        // Leave the group so the partitions move at once.
        consumer.unsubscribe();
        // The unsubscribe's revoke runs inside poll.
        for _ in 0..5 {
            let _ = consumer.poll(Duration::from_millis(50));
        }
        Ok(())
    }
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
mod supervise_tests {
    use super::*;

    fn transient() -> ProcessorError {
        ProcessorError::Undelivered { failures: 1 }
    }

    fn definite() -> ProcessorError {
        ProcessorError::Startup("a definite failure".into())
    }

    /// Runs `supervise` over scripted outcomes; returns its result and how many runs started.
    fn scripted(
        stop_after_first: bool,
        starts: Vec<Result<(), ProcessorError>>,
        runs: Vec<Result<(), ProcessorError>>,
    ) -> (Result<(), ProcessorError>, usize) {
        let stop = AtomicBool::new(false);
        let mut starts = starts.into_iter();
        let mut runs = runs.into_iter();
        let mut started = 0;
        let result = supervise(
            &stop,
            &Health::default(),
            Duration::from_millis(1),
            || {
                started += 1;
                starts.next().expect("no more starts scripted")
            },
            |()| {
                if stop_after_first {
                    stop.store(true, Ordering::Relaxed);
                }
                runs.next().expect("no more runs scripted")
            },
        );
        (result, started)
    }

    #[test]
    fn a_transient_failure_while_processing_starts_the_pipeline_again() {
        let (result, started) = scripted(
            false,
            vec![Ok(()), Ok(()), Ok(())],
            vec![Err(transient()), Err(transient()), Ok(())],
        );
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(started, 3);
    }

    #[test]
    fn a_definite_failure_stops_without_a_restart() {
        let (result, started) = scripted(false, vec![Ok(())], vec![Err(definite())]);
        assert!(
            matches!(result, Err(ProcessorError::Startup(_))),
            "{result:?}"
        );
        assert_eq!(started, 1);
    }

    #[test]
    fn a_failed_start_up_is_final() {
        // Start-up retries transient failures itself until its deadline.
        let (result, started) = scripted(false, vec![Err(transient())], vec![]);
        assert!(result.is_err());
        assert_eq!(started, 1);
    }

    #[test]
    fn a_failure_while_stopping_is_not_restarted() {
        let (result, started) = scripted(true, vec![Ok(())], vec![Err(transient())]);
        assert!(result.is_err());
        assert_eq!(started, 1);
    }
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
