//! The acknowledgement rule: a position is released only once every record sent before it was
//! acknowledged, whatever order Kafka answers in; a failed delivery freezes it for good.

use std::time::Duration;

use super::{fake::FakeProducer, *};
use crate::error::ErrorKind;

fn sink(start: Lsn) -> (OrderedSink<FakeProducer>, FakeProducer) {
    let producer = FakeProducer::default();
    (
        OrderedSink::new(producer.clone(), start, Health::default()),
        producer,
    )
}

fn record(key: &str) -> Outgoing<'_> {
    Outgoing {
        topic: "t",
        key,
        payload: b"v",
        timestamp_unix_millis: 0,
    }
}

fn send(sink: &OrderedSink<FakeProducer>, key: &str) {
    assert!(sink.try_send(record(key), None).is_ok());
}

/// The acknowledged position: answers reach the ledger as they are given, no task in between.
async fn settled(sink: &OrderedSink<FakeProducer>) -> AckState {
    sink.acks().borrow().clone()
}

#[tokio::test]
async fn out_of_order_acknowledgements_release_positions_in_order() {
    let (sink, producer) = sink(100);
    send(&sink, "a");
    sink.checkpoint(200, None);
    send(&sink, "b");
    send(&sink, "c");
    sink.checkpoint(300, None);

    producer.acknowledge(2);
    producer.acknowledge(1);
    assert_eq!(settled(&sink).await.acked_lsn, 100, "a is still in flight");

    producer.acknowledge(0);
    let state = settled(&sink).await;
    assert_eq!(state.acked_lsn, 300);
    assert!(state.failure.is_none());
}

#[tokio::test]
async fn a_checkpoint_waits_only_for_what_was_sent_before_it() {
    let (sink, producer) = sink(0);
    send(&sink, "a");
    sink.checkpoint(10, None);
    send(&sink, "b");
    producer.acknowledge(0);
    assert_eq!(settled(&sink).await.acked_lsn, 10, "b comes after 10");
}

#[tokio::test]
async fn a_failed_delivery_freezes_the_position_before_it() {
    let (sink, producer) = sink(5);
    send(&sink, "a");
    sink.checkpoint(10, None);
    send(&sink, "b");
    sink.checkpoint(20, None);
    send(&sink, "c");
    sink.checkpoint(30, None);

    producer.with(1, |b| {
        b.fail(ConnectorError::new(
            ErrorKind::KafkaRejected,
            "Kafka refused a record",
            "message too large",
        ))
    });
    producer.acknowledge(2);
    producer.acknowledge(0);
    let state = settled(&sink).await;
    assert_eq!(
        state.acked_lsn, 10,
        "nothing past the failed record is released"
    );
    let failure = state.failure.expect("the failure is reported");
    assert_eq!(failure.kind(), ErrorKind::KafkaRejected);
    assert!(sink.drained().await.is_err());
}

#[tokio::test]
async fn a_retry_after_a_failure_starts_from_the_last_acknowledged_position() {
    let (first, producer) = sink(0);
    send(&first, "a");
    first.checkpoint(10, None);
    send(&first, "b");
    first.checkpoint(20, None);
    producer.acknowledge(0);
    producer.with(1, |b| {
        b.fail(ConnectorError::new(
            ErrorKind::KafkaUnavailable,
            "delivering",
            "timed out",
        ))
    });
    let resume_from = settled(&first).await.acked_lsn;
    assert_eq!(resume_from, 10);
    drop(first);

    // The next session resumes at the confirmed position and sends b again.
    let (second, producer) = sink(resume_from);
    send(&second, "b");
    second.checkpoint(20, None);
    assert_eq!(settled(&second).await.acked_lsn, 10);
    producer.acknowledge(0);
    assert_eq!(settled(&second).await.acked_lsn, 20);
}

#[tokio::test]
async fn drained_waits_for_every_record_sent_before_it() {
    let (sink, producer) = sink(0);
    send(&sink, "a");
    send(&sink, "b");
    let waiting = tokio::time::timeout(Duration::from_millis(50), sink.drained()).await;
    assert!(waiting.is_err(), "nothing acknowledged yet");
    producer.acknowledge_all();
    tokio::time::timeout(Duration::from_secs(5), sink.drained())
        .await
        .expect("drained once both are acknowledged")
        .expect("no failure");
}

#[tokio::test]
async fn a_full_queue_is_reported_and_nothing_is_queued() {
    let (sink, producer) = sink(0);
    *producer.queue_full_for.lock().unwrap() = 1;
    assert!(matches!(
        sink.try_send(record("a"), None),
        Err(SendError::QueueFull)
    ));
    sink.checkpoint(10, None);
    assert_eq!(settled(&sink).await.acked_lsn, 10, "no record was queued");
    send(&sink, "a");
    assert_eq!(producer.count(), 1);
}
