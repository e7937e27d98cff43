//! The session's confirmation rule with fakes at its three edges: a position is reported to
//! PostgreSQL as flushed only once Kafka acknowledged every record before it, whatever order
//! the acknowledgements arrive in; keepalives are confirmed only between transactions; a staged
//! transaction is published in order after its commit; failures end the session with the right
//! kind.

use std::{cell::RefCell, future::Future, time::Duration};

use bytes::BytesMut;
use clap::Parser;
use pgoutput::copy::Lsn;
use platform::{avro::RegisteredSchema, telemetry::Health};
use tokio::sync::mpsc;

use super::*;
use crate::{
    error::ErrorKind,
    incremental::{self, IncrementalSnapshot},
    options::Options,
    sink::fake::FakeProducer,
    snapshot::SnapshotTable,
    source::{catalog::Catalog, replication::ReplicationStream},
    test_wire::*,
};

const START: Lsn = 50;

struct FakeStream {
    incoming: mpsc::UnboundedReceiver<Vec<u8>>,
    statuses: mpsc::UnboundedSender<Vec<u8>>,
}

impl ReplicationStream for FakeStream {
    async fn next_copy_data(&mut self) -> Result<BytesMut, ConnectorError> {
        match self.incoming.recv().await {
            Some(payload) => Ok(BytesMut::from(&payload[..])),
            // The script is over: wait, as a quiet server does.
            None => std::future::pending().await,
        }
    }

    fn buffered_copy_data(&mut self) -> Result<Option<BytesMut>, ConnectorError> {
        Ok(self
            .incoming
            .try_recv()
            .ok()
            .map(|payload| BytesMut::from(&payload[..])))
    }

    async fn send_copy_data(&mut self, payload: &[u8]) -> Result<(), ConnectorError> {
        let _ = self.statuses.send(payload.to_vec());
        Ok(())
    }
}

/// A catalog whose answers the test sets.
#[derive(Default)]
struct FakeCatalog {
    tables_error: RefCell<Option<ConnectorError>>,
}

impl Catalog for FakeCatalog {
    async fn primary_key(&self, _relation_id: u32) -> Result<Vec<String>, ConnectorError> {
        Ok(vec!["booking_id".into()])
    }

    async fn describe_table(
        &self,
        _relation_id: u32,
    ) -> Result<crate::table_schema::CatalogTable, ConnectorError> {
        Ok(Default::default())
    }

    async fn published_tables(
        &self,
        _target: &PgTarget,
        _publication: &str,
        _filter: &ChangeFilter,
    ) -> Result<(Vec<SnapshotTable>, pgoutput::row::TypeNames), ConnectorError> {
        match self.tables_error.borrow_mut().take() {
            Some(error) => Err(error),
            None => Ok((Vec::new(), Default::default())),
        }
    }

    async fn open_window(&self, _: &mut IncrementalSnapshot) -> Result<bool, ConnectorError> {
        Ok(false)
    }
}

fn config(spill_directory: Option<std::path::PathBuf>) -> SessionConfig {
    let options = Options::parse_from(["cdc-connector", "--heartbeat-interval-secs", "0"]);
    let mut config = options.session_config().unwrap();
    // Status updates only when Kafka acknowledges something or the server asks.
    config.status_interval = Duration::from_secs(3600);
    config.spill_directory = spill_directory;
    config
}

fn schemas() -> Schemas {
    let schema = |id, text| RegisteredSchema {
        id,
        schema: platform::schemas::parse(text).unwrap(),
    };
    Schemas::new(
        schema(1, platform::schemas::CDC_CHANGE),
        crate::record::decimal::DecimalHandling::Text,
        schema(2, platform::schemas::CDC_TRANSACTION),
        schema(3, platform::schemas::CDC_MESSAGE),
        schema(4, platform::schemas::CDC_TABLE_SCHEMA),
        None,
    )
    .unwrap()
}

/// What the test holds: the server's side of the stream and the producer's answers.
struct Server {
    incoming: mpsc::UnboundedSender<Vec<u8>>,
    statuses: mpsc::UnboundedReceiver<Vec<u8>>,
    producer: FakeProducer,
    /// The highest flush position reported so far.
    flushed: Lsn,
}

impl Server {
    /// Sends WAL: each payload an XLogData at increasing positions from `at`.
    fn send_wal(&self, at: Lsn, messages: Vec<Vec<u8>>) {
        for (index, data) in messages.into_iter().enumerate() {
            self.incoming.send(xlog(at + index as u64, data)).unwrap();
        }
    }

    fn keepalive(&self, wal_end: Lsn) {
        self.incoming.send(keepalive(wal_end, true)).unwrap();
    }

    /// Reads status updates until `flush` is reported, checking none goes past `at_most`.
    async fn expect_flush(&mut self, flush: Lsn, at_most: Lsn) {
        let waiting = async {
            while self.flushed != flush {
                let update = self.statuses.recv().await.expect("the session is running");
                let (_, reported) = status_positions(&update);
                assert!(
                    reported <= at_most,
                    "flush {reported} reported while only {at_most} was acknowledged"
                );
                self.flushed = reported;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap_or_else(|_| panic!("flush never reached {flush}; last {}", self.flushed));
    }

    /// Asks for a status and checks that flush stays where it is.
    async fn expect_flush_stays(&mut self, wal_end: Lsn) {
        let before = self.flushed;
        self.keepalive(wal_end);
        self.settle().await;
        while let Ok(update) = self.statuses.try_recv() {
            let (_, reported) = status_positions(&update);
            assert_eq!(reported, before, "flush moved without acknowledgements");
        }
    }

    /// Lets the session catch up with what the test sent and answered.
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a session against the script until the script ends (None) or the session fails. The
/// producer acknowledges table-metadata records at once: the tests below are about changes.
async fn drive<F, Fut>(
    spill_directory: Option<std::path::PathBuf>,
    catalog: FakeCatalog,
    script: F,
) -> Option<Result<(), ConnectorError>>
where
    F: FnOnce(Server) -> Fut,
    Fut: Future<Output = ()>,
{
    let producer = FakeProducer::default();
    *producer.answer_at_once.lock().unwrap() =
        Some(platform::topics::CDC_TABLE_SCHEMAS.name.to_owned());
    drive_with(producer, spill_directory, catalog, script).await
}

async fn drive_with<F, Fut>(
    producer: FakeProducer,
    spill_directory: Option<std::path::PathBuf>,
    catalog: FakeCatalog,
    script: F,
) -> Option<Result<(), ConnectorError>>
where
    F: FnOnce(Server) -> Fut,
    Fut: Future<Output = ()>,
{
    let config = config(spill_directory);
    let schemas = schemas();
    let (incoming, incoming_rx) = mpsc::unbounded_channel();
    let (statuses_tx, statuses) = mpsc::unbounded_channel();
    let stream = FakeStream {
        incoming: incoming_rx,
        statuses: statuses_tx,
    };
    let health = Health::default();
    let mut session = Session::new(
        &config,
        stream,
        producer.clone(),
        catalog,
        &schemas,
        START,
        &health,
    );
    let server = Server {
        incoming,
        statuses,
        producer,
        flushed: START,
    };
    tokio::select! {
        result = session.stream_changes() => Some(result),
        () = script(server) => None,
    }
}

fn transaction(xid: u32, ids: &[&str], commit_lsn: Lsn) -> Vec<Vec<u8>> {
    let mut messages = vec![begin(commit_lsn, xid)];
    messages.extend(ids.iter().map(|id| insert(None, id)));
    messages.push(commit(commit_lsn, commit_lsn + 10));
    messages
}

/// A transaction PostgreSQL streamed in one chunk before its commit: staged, then replayed.
fn streamed_transaction(xid: u32, ids: &[&str], commit_lsn: Lsn) -> Vec<Vec<u8>> {
    let mut messages = vec![stream_start(xid), relation(Some(xid))];
    messages.extend(ids.iter().map(|id| insert(Some(xid), id)));
    messages.push(stream_stop());
    messages.push(stream_commit(xid, commit_lsn, commit_lsn + 10));
    messages
}

#[tokio::test]
async fn a_keepalive_between_transactions_is_confirmed_after_the_records_before_it() {
    let ended = drive(None, FakeCatalog::default(), |mut server| async move {
        server.send_wal(100, vec![relation(None)]);
        server.send_wal(101, transaction(7, &["1"], 200));
        server.settle().await;
        // The change and the transaction's boundary record.
        assert_eq!(server.producer.count(), 2);
        server.expect_flush_stays(300).await;
        server.producer.acknowledge(0);
        server.expect_flush_stays(300).await;
        server.producer.acknowledge(1);
        server.expect_flush(300, 300).await;
    })
    .await;
    assert!(ended.is_none(), "{ended:?}");
}

#[tokio::test]
async fn a_table_metadata_record_is_acknowledged_before_the_first_change_naming_it() {
    let ended = drive_with(
        FakeProducer::default(),
        None,
        FakeCatalog::default(),
        |mut server| async move {
            server.send_wal(100, vec![relation(None)]);
            server.send_wal(101, transaction(7, &["1"], 200));
            server.settle().await;
            // Only the metadata record: the change waits for its acknowledgement.
            assert_eq!(
                server.producer.keys(),
                [(
                    platform::topics::CDC_TABLE_SCHEMAS.name.to_owned(),
                    "public.bookings/d6d6cb7e17c0a0ac".to_owned()
                )]
            );
            server.producer.acknowledge(0);
            server.settle().await;
            assert_eq!(server.producer.count(), 3);
            let change = server.producer.sent.lock().unwrap()[1].payload.clone();
            let text = String::from_utf8_lossy(&change);
            assert!(text.contains("public.bookings/d6d6cb7e17c0a0ac"), "{text}");
            // The same table again (a second Relation message) publishes nothing new.
            server.send_wal(300, vec![relation(None)]);
            server.send_wal(301, transaction(8, &["2"], 400));
            server.settle().await;
            assert_eq!(server.producer.count(), 5);
            server.producer.acknowledge_all();
            server.expect_flush(410, 410).await;
        },
    )
    .await;
    assert!(ended.is_none(), "{ended:?}");
}

#[tokio::test]
async fn a_records_kafka_timestamp_is_the_timestamp_it_carries() {
    let before = crate::unix_micros_now() / 1000;
    let ended = drive(None, FakeCatalog::default(), |server| async move {
        server.send_wal(100, vec![relation(None)]);
        server.send_wal(101, transaction(7, &["1", "2"], 200));
        server.send_wal(300, streamed_transaction(8, &["3"], 400));
        server.settle().await;
        // The replay starts once everything before it is acknowledged.
        server.producer.acknowledge_all();
        server.settle().await;
        let after = crate::unix_micros_now() / 1000;
        let change_schema = platform::schemas::parse(platform::schemas::CDC_CHANGE).unwrap();
        let sent = server.producer.sent.lock().unwrap();
        let changes: Vec<_> = sent
            .iter()
            .filter(|record| record.topic == platform::topics::CDC_CHANGES.name)
            .collect();
        assert_eq!(changes.len(), 3, "two streamed changes and a replayed one");
        for record in changes {
            let (_, mut datum) = platform::avro::split_wire_format(&record.payload).unwrap();
            let value = apache_avro::reader::datum::GenericDatumReader::builder(&change_schema)
                .build()
                .and_then(|reader| reader.read_value(&mut datum))
                .expect("decodes");
            let carried = platform::avro::to_json(&value)["timestamp"]
                .as_i64()
                .expect("a timestamp field");
            assert_eq!(record.timestamp_unix_millis, carried, "{}", record.key);
            assert!((before..=after).contains(&carried), "{carried}");
        }
    })
    .await;
    assert!(ended.is_none(), "{ended:?}");
}

#[tokio::test]
async fn a_keepalive_inside_a_transaction_is_not_confirmed() {
    let ended = drive(None, FakeCatalog::default(), |mut server| async move {
        server.send_wal(100, vec![relation(None), begin(200, 7), insert(None, "1")]);
        server.settle().await;
        server.producer.acknowledge_all();
        // The transaction is open: its keepalive position must not be confirmed.
        server.expect_flush_stays(250).await;
        server.send_wal(103, vec![commit(200, 210)]);
        server.settle().await;
        server.producer.acknowledge_all();
        // The commit's end, not the earlier keepalive inside the transaction.
        server.expect_flush(210, 210).await;
    })
    .await;
    assert!(ended.is_none(), "{ended:?}");
}

#[tokio::test]
async fn acknowledgements_out_of_order_confirm_in_commit_order() {
    let ended = drive(None, FakeCatalog::default(), |mut server| async move {
        server.send_wal(100, vec![relation(None)]);
        server.send_wal(101, transaction(7, &["1", "2"], 200));
        server.send_wal(105, transaction(8, &["3"], 300));
        server.settle().await;
        // 1, 2, boundary of 7, then 3, boundary of 8.
        assert_eq!(server.producer.count(), 5);
        for later in [4, 3, 1] {
            server.producer.acknowledge(later);
        }
        server.expect_flush_stays(400).await;
        server.producer.acknowledge(0);
        server.producer.acknowledge(2);
        server.expect_flush(400, 400).await;
    })
    .await;
    assert!(ended.is_none(), "{ended:?}");
}

#[tokio::test]
async fn a_failed_delivery_ends_the_session_with_nothing_past_it_confirmed() {
    let ended = drive(None, FakeCatalog::default(), |mut server| async move {
        server.send_wal(100, vec![relation(None)]);
        server.send_wal(101, transaction(7, &["1"], 200));
        server.send_wal(104, transaction(8, &["2"], 300));
        server.settle().await;
        server.producer.acknowledge(0);
        server.producer.acknowledge(1);
        server.expect_flush(210, 210).await;
        server.producer.acknowledge(3);
        server.producer.with(2, |record| {
            record.fail(ConnectorError::new(
                ErrorKind::KafkaRejected,
                "Kafka refused a record",
                "Broker: Message size too large",
            ))
        });
        // The session ends before the script: never confirming 310.
        std::future::pending::<()>().await;
    })
    .await;
    let error = ended.expect("the session ends").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::KafkaRejected, "{error}");
    assert!(!error.is_transient());
}

#[tokio::test]
async fn a_streamed_transaction_is_published_in_order_after_its_commit_and_an_aborted_one_never() {
    let spill = tempfile::tempdir().unwrap();
    let ended = drive(
        Some(spill.path().to_path_buf()),
        FakeCatalog::default(),
        |mut server| async move {
            server.send_wal(
                100,
                vec![
                    stream_start(9),
                    relation(Some(9)),
                    insert(Some(9), "1"),
                    insert(Some(9), "2"),
                    stream_stop(),
                    stream_start(11),
                    insert(Some(11), "3"),
                    stream_stop(),
                ],
            );
            server.settle().await;
            assert_eq!(server.producer.count(), 0, "nothing before the commit");
            // Between streamed chunks a keepalive may be confirmed: PostgreSQL skips on restart
            // only transactions that committed before the confirmed position, and 9 and 11 have
            // not, so they are streamed again from their start.
            server.keepalive(150);
            server.expect_flush(150, 150).await;
            server.send_wal(110, vec![stream_abort(11, 11), stream_commit(9, 400, 410)]);
            server.settle().await;
            let keys = server.producer.keys();
            assert_eq!(
                keys,
                [
                    (
                        "topic_cdc_changes".into(),
                        r#"public.bookings/{"booking_id":1}"#.into()
                    ),
                    (
                        "topic_cdc_changes".into(),
                        r#"public.bookings/{"booking_id":2}"#.into()
                    ),
                    ("topic_cdc_transactions".into(), "9".into()),
                ],
                "the aborted transaction's row 3 is never published"
            );
            server.producer.acknowledge(0);
            server.producer.acknowledge(2);
            server.expect_flush_stays(420).await;
            server.producer.acknowledge(1);
            server.expect_flush(420, 420).await;
        },
    )
    .await;
    assert!(ended.is_none(), "{ended:?}");
}

#[tokio::test]
async fn a_catalog_outage_during_a_resnapshot_request_is_transient() {
    let catalog = FakeCatalog::default();
    *catalog.tables_error.borrow_mut() = Some(ConnectorError::new(
        ErrorKind::SourceUnavailable,
        "planning the snapshot",
        "connection closed",
    ));
    let ended = drive(None, catalog, |server| async move {
        let signal = br#"{"type": "execute-snapshot", "tables": ["public.bookings"]}"#;
        server.send_wal(
            100,
            vec![
                begin(200, 7),
                message_with(true, 150, incremental::SIGNAL_PREFIX, signal),
                commit(200, 210),
            ],
        );
        std::future::pending::<()>().await;
    })
    .await;
    let error = ended.expect("the session ends").unwrap_err();
    assert!(error.is_transient(), "{error}");
}

#[tokio::test]
async fn a_spill_directory_that_cannot_be_used_is_definite() {
    let missing = std::env::temp_dir().join("cdc-connector-no-such-spill-directory");
    let ended = drive(Some(missing), FakeCatalog::default(), |server| async move {
        server.send_wal(100, vec![stream_start(9), relation(Some(9))]);
        std::future::pending::<()>().await;
    })
    .await;
    let error = ended.expect("the session ends").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::SpillUnusable, "{error}");
}

/// A replay that keeps the session from reading for longer than the source timeout (here a
/// producer refusing records for ~90 s of paused time, the default timeout being 60 s) is not
/// the server's silence: afterwards the session asks for a reply and waits for it, and the
/// server answering keeps the session alive.
#[tokio::test(start_paused = true)]
async fn a_replay_longer_than_the_source_timeout_is_not_taken_for_a_silent_server() {
    let producer = FakeProducer::default();
    *producer.answer_at_once.lock().unwrap() =
        Some(platform::topics::CDC_TABLE_SCHEMAS.name.to_owned());
    // Each refusal waits 5 ms before the next try: 18,000 of them are 90 s.
    *producer.queue_full_for.lock().unwrap() = 18_000;
    let started = tokio::time::Instant::now();
    let ended = drive_with(
        producer,
        None,
        FakeCatalog::default(),
        |mut server| async move {
            server.send_wal(100, vec![relation(None)]);
            server.send_wal(101, transaction(7, &["1"], 200));
            // Answer every status that asks for a reply, as a live server does, for 200 s.
            let answering = async {
                while let Some(update) = server.statuses.recv().await {
                    if update.last() == Some(&1) {
                        server.keepalive(300);
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(200), answering).await;
            assert_eq!(server.producer.count(), 2, "the replay went through");
        },
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(90),
        "the producer did not hold the replay up: {:?}",
        started.elapsed()
    );
    assert!(ended.is_none(), "{ended:?}");
}

/// A committed streamed transaction goes through the replay producer only once every record
/// before it was acknowledged, and the records after it go to the streaming producer only once
/// every record of the replay was: two producers never hold records of one key at once.
#[tokio::test]
async fn a_replay_goes_through_its_own_producer_between_acknowledged_records_of_the_other() {
    let spill = tempfile::tempdir().unwrap();
    let ended = drive(
        Some(spill.path().to_path_buf()),
        FakeCatalog::default(),
        |mut server| async move {
            server.send_wal(100, vec![relation(None)]);
            server.send_wal(101, transaction(7, &["1"], 200));
            server.send_wal(110, streamed_transaction(9, &["2", "3"], 400));
            server.settle().await;
            assert_eq!(
                server.producer.count(),
                2,
                "the replay waits for transaction 7"
            );
            server.producer.acknowledge(0);
            server.producer.acknowledge(1);
            server.settle().await;
            assert_eq!(server.producer.count(), 5, "the replay was sent");
            server.send_wal(120, transaction(12, &["4"], 500));
            server.settle().await;
            assert_eq!(
                server.producer.count(),
                5,
                "transaction 12 waits for the replay"
            );
            server.producer.acknowledge(3);
            server.producer.acknowledge(2);
            server.settle().await;
            assert_eq!(
                server.producer.count(),
                5,
                "the replay is not all acknowledged"
            );
            server.producer.acknowledge(4);
            server.settle().await;
            let sent: Vec<_> = server
                .producer
                .sent
                .lock()
                .unwrap()
                .iter()
                .map(|record| (record.key.clone(), record.by_replay_producer))
                .collect();
            let change = |id: u32| format!(r#"public.bookings/{{"booking_id":{id}}}"#);
            assert_eq!(
                sent,
                [
                    (change(1), false),
                    ("7".into(), false),
                    (change(2), true),
                    (change(3), true),
                    ("9".into(), true),
                    (change(4), false),
                    ("12".into(), false),
                ]
            );
            // The replay's commit is confirmed, transaction 12 is not.
            server.expect_flush(410, 410).await;
            server.expect_flush_stays(600).await;
            server.producer.acknowledge_all();
            server.expect_flush(600, 600).await;
        },
    )
    .await;
    assert!(ended.is_none(), "{ended:?}");
}

/// A record of a replay that Kafka refuses ends the session with that failure, before
/// anything of the transaction or after it is confirmed.
#[tokio::test]
async fn a_refused_record_of_a_replay_ends_the_session() {
    let spill = tempfile::tempdir().unwrap();
    let ended = drive(
        Some(spill.path().to_path_buf()),
        FakeCatalog::default(),
        |mut server| async move {
            server.send_wal(100, streamed_transaction(9, &["1", "2"], 400));
            server.settle().await;
            assert_eq!(server.producer.count(), 3);
            server.producer.acknowledge(0);
            server.producer.acknowledge(2);
            server.producer.with(1, |record| {
                record.fail(ConnectorError::new(
                    ErrorKind::KafkaRejected,
                    "Kafka refused a record",
                    "Broker: Message size too large",
                ))
            });
            server.expect_flush_stays(500).await;
            std::future::pending::<()>().await;
        },
    )
    .await;
    let error = ended.expect("the session ends").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::KafkaRejected, "{error}");
}
