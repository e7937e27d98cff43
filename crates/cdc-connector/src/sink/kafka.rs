//! The record producer that talks to Kafka: librdkafka's producer, with every error classified
//! by its code (a record too large or a topic the producer may not write is definite; an
//! unreachable broker transient). Each record carries its ledger sequence number as librdkafka's
//! delivery opaque, so the delivery callback answers the ledger without any allocation.

use std::{sync::Arc, time::Duration};

use platform::kafka::{LoggingContext, ProducerBounds};
use rdkafka::{
    ClientContext,
    config::{ClientConfig, RDKafkaLogLevel},
    error::{KafkaError, RDKafkaErrorCode},
    message::DeliveryResult,
    producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer},
};

use super::{Outgoing, RecordProducer, SendError, ledger::Ledger};
use crate::error::ConnectorError;

// Sequence numbers travel as librdkafka's pointer-sized opaque: no truncation on the way.
const _: () = assert!(usize::BITS == u64::BITS);

/// librdkafka's producer as the sink's [`RecordProducer`].
#[derive(Clone)]
pub struct KafkaProducer {
    producer: Arc<ThreadedProducer<AnsweringContext>>,
    settings: Arc<ProducerSettings>,
}

/// What a producer is made from, kept to make a [`KafkaProducer::for_bulk`] sibling.
pub struct ProducerSettings {
    pub brokers: String,
    pub message_timeout: Duration,
    pub max_queued_records: u32,
    /// How long records gather into a batch while streaming (`--kafka-linger-ms`).
    pub streaming_linger: Duration,
}

/// How long librdkafka lets records gather into a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// [`ProducerSettings::streaming_linger`] (20 ms unless set): a change is readable by
    /// consumers within tens of milliseconds of its commit, in requests few enough that a busy
    /// broker keeps up. Measured at 30,000 changes/s: p99 45-124 ms with 20 ms, 96-196 ms with
    /// 5 ms, whose four times as many requests queued at the broker.
    Streaming,
    /// 25 ms, batches of up to 4 MB, LZ4-compressed, and 100,000 records in flight: a
    /// snapshot's records cost librdkafka's broker thread and the broker a fraction per record
    /// of what small batches do (measured: the snapshot's CPU per row fell ~12 %), and nobody
    /// waits on one READ record.
    Bulk,
    /// A committed streamed transaction read back from disk (one that outgrew the server's
    /// `logical_decoding_work_mem`, 64 MB unless set): streaming's bounds, so the connector's
    /// memory stays within its streaming budget, but LZ4-compressed, since its records come as
    /// fast as the producer takes them and fill every batch.
    Replay,
}

impl KafkaProducer {
    /// The connector's producer: idempotent, `acks=all` ([`platform::kafka::producer_config`]),
    /// holding at most `max_queued_records` unanswered records while streaming, 100,000 in a
    /// snapshot.
    pub async fn new(settings: ProducerSettings, batching: Batching) -> Result<Self, KafkaError> {
        let context = AnsweringContext {
            logging: LoggingContext {
                service: "cdc-connector",
            },
            ledger: Arc::default(),
        };
        let config = client_config(&settings, batching);
        let producer = Arc::new(config.create_with_context::<_, ThreadedProducer<_>>(context)?);
        // librdkafka asks for the idempotent producer's id 500 ms after it starts, or when a
        // metadata answer comes in from a broker it counts as up: ask twice now (the first
        // answer can arrive while the connection still counts as starting), so the first
        // record does not wait half a second.
        let asking = producer.clone();
        tokio::task::spawn_blocking(move || {
            for _ in 0..2 {
                asking
                    .client()
                    .fetch_metadata(None, Duration::from_secs(10))?;
            }
            Ok(())
        })
        .await
        .unwrap_or(Err(KafkaError::Canceled))?;
        Ok(Self {
            producer,
            settings: Arc::new(settings),
        })
    }

    /// A producer with the same settings but [`Batching::Bulk`], for a snapshot.
    pub async fn for_bulk(&self) -> Result<Self, KafkaError> {
        self.sibling(Batching::Bulk).await
    }

    /// A producer of its own, with the same settings, batching as `batching` says.
    async fn sibling(&self, batching: Batching) -> Result<Self, KafkaError> {
        let settings = ProducerSettings {
            brokers: self.settings.brokers.clone(),
            message_timeout: self.settings.message_timeout,
            max_queued_records: self.settings.max_queued_records,
            streaming_linger: self.settings.streaming_linger,
        };
        Self::new(settings, batching).await
    }

    /// Waits up to `timeout` for the records handed over to be answered (at shutdown).
    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }
}

/// The producer's librdkafka configuration for `batching`.
fn client_config(settings: &ProducerSettings, batching: Batching) -> ClientConfig {
    let bounds = match batching {
        // A snapshot's records wait longer to fill large batches, and 100,000 records are
        // in flight rather than 20,000: spread over the topic's partitions, 20,000 never
        // filled a batch, so every batch went out at the linger timeout half full.
        // Measured on a 1M-row snapshot, six alternating runs: connector CPU lower in every
        // pair (median 5.20 against 5.26 CPU-s, up to -16 %), peak RSS 77 MiB instead of
        // 42 (the snapshot's budget is 128).
        Batching::Bulk => ProducerBounds {
            max_queued_records: 100_000,
            linger: Duration::from_millis(25),
            ..ProducerBounds::new(settings.message_timeout)
        },
        // A streamed change waits `--kafka-linger-ms`, part of its commit-to-readable
        // latency. The queue is bounded in bytes as well as in records: 4 MiB of waiting
        // records (about 0.1 s at full speed, ~400-byte records at 100,000 a second) still
        // keeps batches full. Measured on a 1M-row transaction: peak RSS 28-29 MiB against
        // 34-37 MiB with 8 or 32 MiB, within the connector's 32 MiB, at the same rate.
        Batching::Streaming | Batching::Replay => ProducerBounds {
            message_timeout: settings.message_timeout,
            max_queued_records: settings.max_queued_records,
            max_queued_kbytes: 4096,
            linger: settings.streaming_linger,
        },
    };
    let mut config = platform::kafka::producer_config(&settings.brokers, "cdc-connector", bounds);
    // Batches of up to 4 MB for a snapshot. While streaming, at most 256 KiB rather than
    // librdkafka's 1 MB, of which the 4 MiB queue held only about four. Measured on a
    // 1M-row transaction, five alternating pairs (`bench cdc --rows 1000000
    // --small-transactions 0 --huge-rows 0 --snapshot-rows 0 --latency-rate 0 --runs 1`):
    // rate higher in every pair (median 0.82x against 0.80x pg_recvlogical), CPU lower in
    // four (median 3.71 against 3.91 CPU-s per million), peak RSS 28.6-29.3 MiB against
    // 29.1-31.2. 200,000 small transactions, two pairs: rate 116k and 73k against 79k and
    // 72k changes/s, peak RSS 24-28 against 27-29 MiB.
    config.set(
        "batch.size",
        match batching {
            Batching::Bulk => "4000000",
            Batching::Streaming | Batching::Replay => "262144",
        },
    );
    // A snapshot's and a replay's batches go out LZ4-compressed: librdkafka's request, the
    // kernel's loopback copy and the broker then handle fewer bytes, which more than pays for
    // the compression. Measured on a 1M-row snapshot, three alternating pairs: 305,301 /
    // 298,085 / 266,406 rows/s at 3.70 / 3.79 / 4.34 connector CPU-s, against 198,291 /
    // 204,359 / 185,921 at 5.38 / 4.87 / 5.80 uncompressed; peak RSS 52-56 MiB against
    // 76-77. A 1M-row transaction (a replay) gained too: through its own producer, six
    // alternating pairs, median 5.03 CPU-s per million changes against 6.46 (lower in five),
    // and a 10M-row one ran at 0.93x pg_recvlogical's rate (0.70x in the report before).
    // Streamed changes stay uncompressed: 200,000 small transactions lost (6.60-6.65 against
    // 5.57-6.15 CPU-s per million; snappy 7.32), why is not yet measured.
    if matches!(batching, Batching::Bulk | Batching::Replay) {
        config.set("compression.codec", "lz4");
    }
    // A key goes to the partition Java's producer puts it on (murmur2 of the key, positive,
    // modulo the partition count), as Debezium and Kafka Connect place it, not to librdkafka's
    // default CRC32 one: a connector taking over from Debezium keeps every key's partition,
    // and so its order. It is also the cheaper hash: CRC32 of each key was 1.6 % of the
    // connector's samples on 200,000 small transactions.
    config.set("partitioner", "murmur2_random");
    config
}

/// Logs like every other client, and reports each delivery to the ledger.
pub struct AnsweringContext {
    logging: LoggingContext,
    ledger: Arc<Ledger>,
}

impl ClientContext for AnsweringContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.logging.error(error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.logging.log(level, facility, message);
    }
}

impl ProducerContext for AnsweringContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, delivery: &DeliveryResult<'_>, sequence: usize) {
        let answer = match delivery {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(ConnectorError::kafka("Kafka refused a record", error)),
        };
        self.ledger.answered(sequence as u64, answer);
    }
}

impl RecordProducer for KafkaProducer {
    fn send(&self, record: Outgoing<'_>, sequence: u64) -> Result<(), SendError> {
        let topic = record.topic;
        let handed = BaseRecord::with_opaque_to(topic, sequence as usize)
            .key(record.key)
            .payload(record.payload)
            .timestamp(record.timestamp_unix_millis);
        match self.producer.send(handed) {
            Ok(()) => Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(SendError::QueueFull)
            }
            Err((error, _)) => Err(SendError::Failed(ConnectorError::kafka(
                format!("handing a record for {topic} to the Kafka producer"),
                &error,
            ))),
        }
    }

    fn ledger(&self) -> &Arc<Ledger> {
        &self.producer.context().ledger
    }

    async fn for_replay(&self) -> Result<Self, ConnectorError> {
        self.sibling(Batching::Replay)
            .await
            .map_err(|error| ConnectorError::kafka("creating the producer for replays", &error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ProducerSettings {
        ProducerSettings {
            brokers: "127.0.0.1:9".into(),
            message_timeout: Duration::from_secs(30),
            max_queued_records: 20_000,
            streaming_linger: Duration::from_millis(20),
        }
    }

    #[test]
    fn every_producer_places_keys_as_javas_does() {
        for batching in [Batching::Bulk, Batching::Streaming, Batching::Replay] {
            let config = client_config(&settings(), batching);
            assert_eq!(
                config.get("partitioner"),
                Some("murmur2_random"),
                "{batching:?}"
            );
        }
    }

    #[test]
    fn a_snapshots_batches_are_large_and_compressed_a_replays_compressed_and_a_streams_neither() {
        let bulk = client_config(&settings(), Batching::Bulk);
        assert_eq!(bulk.get("compression.codec"), Some("lz4"));
        assert_eq!(bulk.get("queue.buffering.max.messages"), Some("100000"));
        assert_eq!(bulk.get("batch.size"), Some("4000000"));
        assert_eq!(bulk.get("linger.ms"), Some("25"));
        let streaming = client_config(&settings(), Batching::Streaming);
        assert_eq!(streaming.get("compression.codec"), None);
        assert_eq!(streaming.get("queue.buffering.max.messages"), Some("20000"));
        assert_eq!(streaming.get("queue.buffering.max.kbytes"), Some("4096"));
        assert_eq!(streaming.get("batch.size"), Some("262144"));
        assert_eq!(streaming.get("linger.ms"), Some("20"));
        let replay = client_config(&settings(), Batching::Replay);
        assert_eq!(replay.get("compression.codec"), Some("lz4"));
        for bound in [
            "queue.buffering.max.messages",
            "queue.buffering.max.kbytes",
            "batch.size",
            "linger.ms",
        ] {
            assert_eq!(replay.get(bound), streaming.get(bound), "{bound}");
        }
    }
}
