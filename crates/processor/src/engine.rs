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

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    changelog::{self, Stamped},
    config::{Args, Guarantee, Settings},
    decode::{self, DatumReader, Out, Unusable},
    error::ProcessorError,
    output::Output,
    routed::{Routed, Source, Stream, partition_for},
    task::{StateValue, Task},
};
use apache_avro::Schema;
use platform::{
    avro::RegisteredSchema, registry::RegistryClient, schemas, telemetry::Health, topics,
};
use rdkafka::{
    ClientConfig, ClientContext, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext},
    error::{KafkaError, RDKafkaErrorCode},
    message::{BorrowedMessage, DeliveryResult},
    producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer},
};

/// Counts delivery failures, so the at-least-once commit can refuse to commit offsets past
/// a record the broker did not take (transactions fail by themselves).
#[derive(Default)]
pub struct DeliveryContext {
    failures: AtomicU64,
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        metrics::counter!("kafka_client_errors_total", "service" => "processor").increment(1);
        tracing::warn!(%error, "Kafka client: {reason}");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, "a record was not delivered");
        }
    }
}

/// Per owned input partition: what stage 1 has told stage 2 about it. A partition is idle
/// when it has been read to its end (librdkafka's statistics say so after its last record)
/// and no record came for the idle timeout: a partition with a backlog not yet fetched is
/// never idle, or a restart with a backlog would close windows before their data is read.
struct InputPartition {
    max_event_time: Option<i64>,
    last_record: Instant,
    read_to_end: bool,
    idle: bool,
    announced: Option<(Option<i64>, bool)>,
}

/// Output schemas, registered once.
struct OutputSchemas {
    result: RegisteredSchema,
    alert: RegisteredSchema,
    late: RegisteredSchema,
    dead_letter: RegisteredSchema,
}

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

/// The consumer's context: rebalances reach the core through it.
pub struct RebalanceContext {
    core: Arc<Mutex<Option<Core>>>,
    failure: Arc<Mutex<Option<ProcessorError>>>,
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
        let Some(core) = guard.as_mut() else { return };
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
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.kafka_brokers)
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
            .block_on(platform::kafka::provision_topics(&brokers, topics::ALL))
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

async fn register_outputs(registry: &RegistryClient) -> Result<OutputSchemas, ProcessorError> {
    let register = |topic: &'static str, text: &'static str| async move {
        let id = registry
            .register(&platform::registry::value_subject(topic), text)
            .await?;
        let schema = schemas::parse(text).map_err(|e| {
            ProcessorError::Startup(format!("schema for {topic} does not parse: {e}"))
        })?;
        Ok::<_, ProcessorError>(RegisteredSchema { id, schema })
    };
    // State topics carry their input's records unchanged; registering their subjects lets
    // registry-aware tools find the schema by topic.
    for (topic, text) in [
        (topics::USER_STATE.name, schemas::CDC_CHANGE),
        (topics::BOOKING_STATE.name, schemas::CDC_CHANGE),
        (topics::CDC_STATE.name, schemas::CDC_CHANGE),
        (topics::EXTERNAL_STATE.name, schemas::EXTERNAL_DATA),
    ] {
        register(topic, text).await?;
    }
    Ok(OutputSchemas {
        result: register(topics::PROCESSED_EVENTS.name, schemas::PROCESSED_RESULT).await?,
        alert: register(topics::PROCESSOR_ALERTS.name, schemas::PROCESSOR_ALERT).await?,
        late: register(topics::PROCESSOR_LATE_EVENTS.name, schemas::LATE_EVENT).await?,
        dead_letter: register(topics::PROCESSOR_DEAD_LETTERS.name, schemas::DEAD_LETTER).await?,
    })
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

fn producer(args: &Args) -> Result<ThreadedProducer<DeliveryContext>, ProcessorError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.kafka_brokers)
        .set("client.id", "processor")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .set("queue.buffering.max.kbytes", "65536")
        .set("compression.type", "none");
    if args.processing_guarantee == Guarantee::ExactlyOnce {
        let instance = args
            .instance_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        config
            .set("transactional.id", format!("{}-{instance}", args.group))
            .set("transaction.timeout.ms", "60000");
    }
    config
        .create_with_context(DeliveryContext::default())
        .map_err(|e| ProcessorError::kafka(&args.kafka_brokers, e))
}

impl Core {
    fn exactly_once(&self) -> bool {
        self.args.processing_guarantee == Guarantee::ExactlyOnce
    }

    fn ensure_transaction(&mut self) -> Result<(), ProcessorError> {
        if self.exactly_once() && !self.in_transaction {
            self.producer
                .begin_transaction()
                .map_err(ProcessorError::transaction)?;
            self.in_transaction = true;
        }
        Ok(())
    }

    fn send(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        payload: Option<&[u8]>,
    ) -> Result<(), ProcessorError> {
        self.ensure_transaction()?;
        let mut record = BaseRecord::to(topic).key(key);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((error, _)) => {
                    return Err(ProcessorError::kafka(&self.args.kafka_brokers, error));
                }
            }
        }
    }

    fn send_routed(&mut self, out: &Out) -> Result<(), ProcessorError> {
        let bytes = out.routed.encode();
        if out.broadcast {
            for q in 0..self.repartition_partitions {
                self.send(
                    topics::PROCESSOR_REPARTITION.name,
                    Some(q),
                    out.key.as_bytes(),
                    Some(&bytes),
                )?;
            }
            Ok(())
        } else {
            let q = partition_for(&out.key, self.repartition_partitions);
            self.send(
                topics::PROCESSOR_REPARTITION.name,
                Some(q),
                out.key.as_bytes(),
                Some(&bytes),
            )
        }
    }

    fn reader(
        &mut self,
        id: u32,
    ) -> Result<Result<Arc<DatumReader<'static>>, Unusable>, ProcessorError> {
        if let Some(reader) = self.readers.get(&id) {
            return Ok(Ok(reader.clone()));
        }
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.runtime.block_on(self.registry.schema_by_id(id)) {
                Ok(schema) => {
                    return Ok(DatumReader::leaked(Schema::clone(&schema)).map(|reader| {
                        let reader = Arc::new(reader);
                        self.readers.insert(id, reader.clone());
                        reader
                    }));
                }
                Err(error) if error.is_retryable() => {
                    // The registry being away is not the record's fault: wait, never
                    // dead-letter it.
                    self.health
                        .set(false, format!("schema registry unavailable: {error}"));
                    tracing::warn!(%error, "schema registry unavailable; retrying in {backoff:?}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(error) => return Ok(Err(Unusable(format!("writer schema {id}: {error}")))),
            }
        }
    }

    /// One consumed record.
    fn handle(&mut self, message: &BorrowedMessage<'_>) -> Result<(), ProcessorError> {
        let topic = if message.topic() == topics::PROCESSOR_REPARTITION.name {
            self.stage_two(message)?;
            topics::PROCESSOR_REPARTITION.name
        } else if let Some(stream) = Stream::from_topic(message.topic()) {
            self.stage_one(stream, message)?;
            stream.topic()
        } else {
            return Ok(());
        };
        self.positions
            .insert((topic, message.partition()), message.offset() + 1);
        self.dirty_positions = true;
        Ok(())
    }

    fn stage_one(
        &mut self,
        stream: Stream,
        message: &BorrowedMessage<'_>,
    ) -> Result<(), ProcessorError> {
        let source = Source {
            stream,
            partition: message.partition(),
            offset: message.offset(),
        };
        metrics::counter!("processor_input_records_total", "job" => stream.job()).increment(1);
        let routed = match message.payload() {
            None => Err(Unusable("record without a value".into())),
            Some(payload) => match platform::avro::split_wire_format(payload) {
                Err(e) => Err(Unusable(e.to_string())),
                Ok((id, datum)) => match self.reader(id)? {
                    Err(e) => Err(e),
                    Ok(reader) => reader
                        .read(datum)
                        .and_then(|value| decode::route(stream, source, &value, payload)),
                },
            },
        };
        match routed {
            Ok((event_time, outs)) => {
                let was_idle = self.note_input(stream, source.partition, event_time);
                if was_idle {
                    // Every task learns at once that the partition is active again.
                    self.announce(stream, source.partition, source.offset)?;
                }
                for out in &outs {
                    self.send_routed(out)?;
                }
            }
            Err(reason) => self.dead_letter(message, &reason)?,
        }
        Ok(())
    }

    /// Records activity on an input partition; true if it was idle.
    fn note_input(&mut self, stream: Stream, partition: i32, event_time: i64) -> bool {
        let now = Instant::now();
        let entry = self
            .inputs
            .entry((stream, partition))
            .or_insert(InputPartition {
                max_event_time: None,
                last_record: now,
                read_to_end: false,
                idle: false,
                announced: None,
            });
        entry.last_record = now;
        entry.read_to_end = false;
        entry.max_event_time = Some(
            entry
                .max_event_time
                .map_or(event_time, |m| m.max(event_time)),
        );
        std::mem::replace(&mut entry.idle, false)
    }

    /// Sends the partition's progress to every repartition partition.
    fn announce(
        &mut self,
        stream: Stream,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), ProcessorError> {
        let Some(entry) = self.inputs.get_mut(&(stream, partition)) else {
            return Ok(());
        };
        let state = (entry.max_event_time, entry.idle);
        entry.announced = Some(state);
        let routed = Routed::Progress {
            stream,
            partition,
            next_offset,
            max_event_time: state.0,
            idle: state.1,
        };
        let bytes = routed.encode();
        for q in 0..self.repartition_partitions {
            self.send(
                topics::PROCESSOR_REPARTITION.name,
                Some(q),
                b"progress",
                Some(&bytes),
            )?;
        }
        Ok(())
    }

    fn dead_letter(
        &mut self,
        message: &BorrowedMessage<'_>,
        reason: &Unusable,
    ) -> Result<(), ProcessorError> {
        metrics::counter!("processor_dead_letters_total", "topic" => message.topic().to_string())
            .increment(1);
        tracing::warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), %reason, "record dead-lettered");
        let optional_bytes = |b: Option<&[u8]>| match b {
            Some(b) => apache_avro::types::Value::Union(
                1,
                Box::new(apache_avro::types::Value::Bytes(b.to_vec())),
            ),
            None => apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)),
        };
        use apache_avro::types::Value;
        let value = Value::Record(vec![
            ("source_topic".into(), Value::String(message.topic().into())),
            ("source_partition".into(), Value::Int(message.partition())),
            ("source_offset".into(), Value::Long(message.offset())),
            ("reason".into(), Value::String(reason.0.clone())),
            ("key".into(), optional_bytes(message.key())),
            ("payload".into(), optional_bytes(message.payload())),
        ]);
        let key = format!(
            "{}/{}/{}",
            message.topic(),
            message.partition(),
            message.offset()
        );
        self.send_avro(
            |o| &o.dead_letter,
            topics::PROCESSOR_DEAD_LETTERS.name,
            &key,
            value,
        )
    }

    fn stage_two(&mut self, message: &BorrowedMessage<'_>) -> Result<(), ProcessorError> {
        let q = message.partition();
        let routed = match message.payload().map(Routed::decode) {
            Some(Ok(routed)) => routed,
            other => {
                let reason = match other {
                    Some(Err(e)) => format!("internal record does not decode: {e}"),
                    _ => "internal record without a value".to_string(),
                };
                return self.dead_letter(message, &Unusable(reason));
            }
        };
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        match self.tasks.get_mut(&q) {
            Some(task) => task.apply(routed, &mut buffer),
            None => {
                return Err(ProcessorError::Restore {
                    partition: q,
                    reason: "a record arrived for a partition whose state was not restored".into(),
                });
            }
        }
        let result = self.emit(&mut buffer);
        self.buffer = buffer;
        result
    }

    /// Encodes `value` with one of the registered output schemas and sends it keyed by `key`.
    fn send_avro(
        &mut self,
        schema: fn(&OutputSchemas) -> &RegisteredSchema,
        topic: &str,
        key: &str,
        value: apache_avro::types::Value,
    ) -> Result<(), ProcessorError> {
        let bytes = schema(&self.outputs)
            .encode(value)
            .map_err(|e| ProcessorError::Encode {
                topic: topic.to_string(),
                reason: e.to_string(),
            })?;
        self.send(topic, None, key.as_bytes(), Some(&bytes))
    }

    fn emit(&mut self, outputs: &mut Vec<Output>) -> Result<(), ProcessorError> {
        for output in outputs.drain(..) {
            match output {
                Output::Result(result) => {
                    tracing::debug!(id = %result.id(), "window result");
                    self.send_avro(
                        |o| &o.result,
                        topics::PROCESSED_EVENTS.name,
                        &result.id(),
                        result.to_avro(),
                    )?;
                    metrics::counter!("processor_windows_emitted_total", "job" => result.job, "kind" => result.kind.as_str()).increment(1);
                }
                Output::Alert(alert) => {
                    self.send_avro(
                        |o| &o.alert,
                        topics::PROCESSOR_ALERTS.name,
                        &alert.id(),
                        alert.to_avro(),
                    )?;
                    metrics::counter!("processor_alerts_total", "kind" => alert.kind.as_str())
                        .increment(1);
                }
                Output::Late(late) => {
                    self.send_avro(
                        |o| &o.late,
                        topics::PROCESSOR_LATE_EVENTS.name,
                        &late.id(),
                        late.to_avro(),
                    )?;
                    metrics::counter!("processor_late_events_total", "job" => late.job)
                        .increment(1);
                }
                Output::State { topic, key, record } => {
                    self.send(topic, None, key.as_bytes(), record.as_deref())?;
                }
                Output::Derived { key, routed } => {
                    self.send_routed(&Out {
                        key,
                        routed,
                        broadcast: false,
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Idle detection and progress announcements (once per commit interval).
    fn tick(&mut self) {
        let idle_after = self.settings.idle_timeout;
        let mut to_announce = Vec::new();
        for (&(stream, partition), entry) in self.inputs.iter_mut() {
            if !entry.idle && entry.read_to_end && entry.last_record.elapsed() >= idle_after {
                entry.idle = true;
            }
            if entry.announced != Some((entry.max_event_time, entry.idle)) {
                to_announce.push((stream, partition));
            }
        }
        for (stream, partition) in to_announce {
            let next = self
                .positions
                .get(&(stream.topic(), partition))
                .copied()
                .unwrap_or(0);
            if let Err(error) = self.announce(stream, partition, next) {
                tracing::warn!(%error, "announcing progress failed; the commit will fail and say why");
            }
        }
    }

    /// Writes the changed state, then commits the transaction with the consumed offsets.
    fn commit(&mut self, consumer: &ProcessorConsumer) -> Result<(), ProcessorError> {
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

    fn abort(&mut self) {
        if self.in_transaction {
            let _ = self.producer.abort_transaction(Duration::from_secs(10));
            self.in_transaction = false;
        }
    }

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

/// Reads the changelog partitions of `tasks` (partition q holds task q's state) to their end,
/// with one consumer, and gives each task, per key, the last entry whose stamp is at most its
/// committed offset. A task with nothing committed has no state to restore and costs no I/O.
/// Returns the entries applied per partition.
fn restore(
    brokers: &str,
    tasks: &mut BTreeMap<i32, (i64, Task)>,
) -> Result<BTreeMap<i32, usize>, ProcessorError> {
    let failed = |partition: i32, reason: String| ProcessorError::Restore { partition, reason };
    let wanted: Vec<(i32, i64)> = tasks
        .iter()
        .filter(|(_, (committed, _))| *committed > 0)
        .map(|(q, (committed, _))| (*q, *committed))
        .collect();
    let Some(&(first, _)) = wanted.first() else {
        return Ok(BTreeMap::new());
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("processor-restore-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // The end: the last offsets of a transactional partition are commit markers, which
        // are never delivered, so "offset high - 1 was read" cannot be the test.
        .set("enable.partition.eof", "true")
        .create()
        .map_err(|e| failed(first, e.to_string()))?;
    let topic = topics::PROCESSOR_CHANGELOG.name;
    let mut assignment = TopicPartitionList::new();
    for (q, _) in &wanted {
        assignment
            .add_partition_offset(topic, *q, Offset::Beginning)
            .map_err(|e| failed(*q, e.to_string()))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| failed(first, e.to_string()))?;
    let committed: BTreeMap<i32, i64> = wanted.iter().copied().collect();
    let mut reading: std::collections::BTreeSet<i32> = committed.keys().copied().collect();
    let mut latest: BTreeMap<i32, BTreeMap<Vec<u8>, Option<StateValue>>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !reading.is_empty() {
        if Instant::now() > deadline {
            let q = reading.first().copied().unwrap_or(first);
            return Err(failed(q, "its end was not reached within 120 s".into()));
        }
        let message = match consumer.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(q))) => {
                reading.remove(&q);
                continue;
            }
            Some(message) => message.map_err(|e| failed(first, e.to_string()))?,
        };
        let q = message.partition();
        let (Some(key), Some(payload)) = (message.key(), message.payload()) else {
            continue;
        };
        let stamped = changelog::decode_value(payload).map_err(|e| {
            failed(
                q,
                format!("entry at offset {} does not decode: {e}", message.offset()),
            )
        })?;
        if committed.get(&q).is_some_and(|c| stamped.stamp <= *c) {
            latest
                .entry(q)
                .or_default()
                .insert(key.to_vec(), stamped.value);
        }
    }
    let mut counts = BTreeMap::new();
    for (q, entries) in latest {
        counts.insert(q, entries.len());
        let Some((_, task)) = tasks.get_mut(&q) else {
            continue;
        };
        for (key, value) in entries {
            let key = changelog::decode_key(&key)
                .map_err(|e| failed(q, format!("a key does not decode: {e}")))?;
            task.restore(key, value);
        }
    }
    Ok(counts)
}
