//! Feeds the [`Store`] from Kafka: every partition of the results, alerts, state and changelog
//! topics, from the beginning, `read_committed`, without a consumer group. That is why any
//! instance answers for all partitions, not only those its tasks own: it reads what every
//! instance committed. A record shows up here once its transaction commits, so answers lag the
//! processor by about one commit interval plus a fetch.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock, RwLockWriteGuard},
    time::{Duration, Instant},
};

use apache_avro::{Schema, types::Value};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
    message::BorrowedMessage,
};

use super::{
    store::{self, Limits, ResultRow, Store},
    table::{TableId, def},
};
use crate::{
    changelog,
    config::Settings,
    decode::DatumReader,
    engine::partition_count,
    task::{StateKey, StateValue, window_ms, window_results},
};
use platform::{avro::split_wire_format, kafka::LoggingContext, registry::RegistryClient, topics};

const TOPICS: [(&str, Source); 7] = [
    (topics::PROCESSED_EVENTS.name, Source::Results),
    (topics::PROCESSOR_ALERTS.name, Source::Alerts),
    (topics::PROCESSOR_CHANGELOG.name, Source::Changelog),
    (topics::USER_STATE.name, Source::State(TableId::Users)),
    (topics::BOOKING_STATE.name, Source::State(TableId::Bookings)),
    (topics::CDC_STATE.name, Source::State(TableId::Payments)),
    (
        topics::EXTERNAL_STATE.name,
        Source::State(TableId::ExternalReadings),
    ),
];

#[derive(Debug, Clone, Copy)]
enum Source {
    Results,
    Alerts,
    Changelog,
    State(TableId),
}

/// The tables fed by window results (a changelog entry that cannot be read concerns them all).
const WINDOW_TABLES: [TableId; 8] = [
    TableId::AppEventCounts,
    TableId::AppEventTotals,
    TableId::PageClicks,
    TableId::HeatmapCells,
    TableId::SessionEngagement,
    TableId::CdcOperations,
    TableId::LogLevels,
    TableId::LogErrorRates,
];

pub struct Reader {
    brokers: String,
    registry: RegistryClient,
    settings: Settings,
    limits: Limits,
    store: Arc<RwLock<Store>>,
    /// One reader per writer schema, built once (as the engine does for its inputs).
    readers: HashMap<u32, DatumReader<'static>>,
}

impl Reader {
    pub fn new(
        brokers: String,
        registry: RegistryClient,
        settings: Settings,
        limits: Limits,
        store: Arc<RwLock<Store>>,
    ) -> Reader {
        Reader {
            brokers,
            registry,
            settings,
            limits,
            store,
            readers: HashMap::new(),
        }
    }

    fn store(&self) -> RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads until the process ends. Waits for the topics to exist (the engine creates them);
    /// Kafka errors are retried, as librdkafka reconnects by itself.
    pub async fn run(mut self) {
        let consumer = loop {
            match self.assign_everything() {
                Ok(consumer) => break consumer,
                Err(why) => {
                    tracing::warn!(%why, "query layer: waiting for the result and state topics");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        tracing::info!("query layer: reading results, alerts, state and the changelog");
        let mut last_eviction = Instant::now();
        loop {
            match consumer.recv().await {
                Ok(message) => self.apply(&message).await,
                Err(error) => {
                    metrics::counter!("processor_query_read_errors_total").increment(1);
                    tracing::warn!(%error, "query layer: Kafka read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            if last_eviction.elapsed() >= Duration::from_secs(5) {
                last_eviction = Instant::now();
                self.store().evict(platform_now_ms(), self.limits);
            }
        }
    }

    fn assign_everything(&self) -> Result<StreamConsumer<LoggingContext>, String> {
        let consumer: StreamConsumer<LoggingContext> =
            platform::kafka::client_config(&self.brokers)
                .set("group.id", "processor-query-view")
                .set("client.id", "processor-query")
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed")
                .set("fetch.wait.max.ms", "50")
                .create_with_context(LoggingContext {
                    service: "processor",
                })
                .map_err(|e| format!("creating the consumer: {e}"))?;
        let mut assignment = TopicPartitionList::new();
        for (topic, _) in TOPICS {
            let partitions =
                partition_count(&consumer, &self.brokers, topic).map_err(|e| e.to_string())?;
            for p in 0..partitions {
                assignment
                    .add_partition_offset(topic, p, Offset::Beginning)
                    .map_err(|e| format!("assigning {topic}: {e}"))?;
            }
        }
        consumer
            .assign(&assignment)
            .map_err(|e| format!("assigning partitions: {e}"))?;
        Ok(consumer)
    }

    async fn apply(&mut self, message: &BorrowedMessage<'_>) {
        let topic = message.topic();
        let Some(source) = TOPICS.iter().find(|(t, _)| *t == topic).map(|(_, s)| *s) else {
            return;
        };
        let at = format!("{topic}[{}]@{}", message.partition(), message.offset());
        let outcome = match source {
            Source::Results => self.result(message).await,
            Source::Alerts => self.alert(message).await,
            Source::Changelog => self.changelog(message),
            Source::State(table) => self.state(table, message).await,
        };
        if let Err(why) = outcome {
            metrics::counter!("processor_query_unreadable_records_total", "topic" => topic.to_string())
                .increment(1);
            tracing::error!(record = %at, %why, "query layer: a record cannot be read; its table answers with this error until a later record replaces it");
            let key = message.key().map_or_else(String::new, key_text);
            let mut store = self.store();
            let tables: Vec<TableId> = match source {
                Source::Results | Source::Changelog => WINDOW_TABLES.to_vec(),
                Source::Alerts => vec![TableId::Alerts],
                Source::State(table) => vec![table],
            };
            for table in tables {
                store.break_table(table, key.clone(), format!("{at}: {why}"));
            }
        }
    }

    /// A Confluent-framed Avro value, read with its writer schema (fetched from the registry
    /// once per schema id; an unreachable registry is waited for, up to 30 s).
    async fn decode(&mut self, payload: &[u8]) -> Result<Value, String> {
        let (id, datum) = split_wire_format(payload).map_err(|e| e.to_string())?;
        if !self.readers.contains_key(&id) {
            let mut attempt = 0;
            let schema = loop {
                match self.registry.schema_by_id(id).await {
                    Ok(schema) => break schema,
                    Err(e) if e.is_retryable() && attempt < 30 => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => return Err(format!("writer schema {id}: {e}")),
                }
            };
            let reader = DatumReader::leaked(Schema::clone(&schema)).map_err(|e| e.0)?;
            self.readers.insert(id, reader);
        }
        match self.readers.get(&id) {
            Some(reader) => reader.read(datum).map_err(|e| e.0),
            None => Err(format!("no reader for writer schema {id}")),
        }
    }

    async fn result(&mut self, message: &BorrowedMessage<'_>) -> Result<(), String> {
        let Some(payload) = message.payload() else {
            return Ok(());
        };
        let row = ResultRow::closed(&self.decode(payload).await?)?;
        self.store().put_closed(row);
        Ok(())
    }

    async fn alert(&mut self, message: &BorrowedMessage<'_>) -> Result<(), String> {
        let Some(payload) = message.payload() else {
            return Ok(());
        };
        let (id, time, row) = store::alert_row(&self.decode(payload).await?)?;
        self.store().put_alert(id, time, row);
        Ok(())
    }

    fn changelog(&self, message: &BorrowedMessage<'_>) -> Result<(), String> {
        let (Some(key), Some(payload)) = (message.key(), message.payload()) else {
            return Ok(());
        };
        let StateKey::Window(lane, start, group) =
            changelog::decode_key(key).map_err(|e| format!("key does not decode: {e}"))?
        else {
            return Ok(());
        };
        let stamped =
            changelog::decode_value(payload).map_err(|e| format!("value does not decode: {e}"))?;
        let rows = match stamped.value {
            Some(StateValue::Window(agg)) => {
                let end = start.saturating_add(window_ms(&self.settings, lane));
                window_results(lane, start, end, group, agg, self.settings.heatmap_cell_px)
                    .into_iter()
                    .map(ResultRow::open)
                    .collect()
            }
            Some(_) => return Err("a window entry holds another kind of state".into()),
            None => Vec::new(),
        };
        self.store()
            .put_open(message.partition(), key.to_vec(), &key_text(key), rows);
        Ok(())
    }

    async fn state(&mut self, table: TableId, message: &BorrowedMessage<'_>) -> Result<(), String> {
        let key = message
            .key()
            .map(key_text)
            .ok_or("a state record without a key")?;
        let Some(payload) = message.payload() else {
            self.store().put_state(table, key, None);
            return Ok(());
        };
        let value = self.decode(payload).await?;
        let mut store = self.store();
        let row = if table == TableId::ExternalReadings {
            store::external_row(&key, &value)?
        } else {
            store::state_row(def(table), &value, store.state_row(table, &key))?
        };
        store.put_state(table, key, Some(row));
        Ok(())
    }
}

/// A Kafka key as text: UTF-8 as is, anything else (changelog keys) in hex.
fn key_text(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) => text.to_string(),
        Err(_) => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn platform_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
