"""The independent client the Python readers share: topic_cdc_changes from the beginning with
confluent-kafka's Consumer, each value decoded by AvroDeserializer with the schemas fetched from
the registry."""

import sys
import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def decoded_records(brokers, registry_url, count, timeout):
    """Yields (message, decoded value) for the first `count` records; exits non-zero, saying
    why, if fewer arrive within `timeout` seconds or a consumer error occurs."""
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": f"independent-client-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
    })
    consumer.subscribe(["topic_cdc_changes"])
    deadline = time.monotonic() + timeout
    received = 0
    try:
        while received < count:
            if time.monotonic() > deadline:
                sys.exit(f"only {received} of {count} records within {timeout}s")
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                sys.exit(f"consumer error: {message.error()}")
            received += 1
            yield message, deserializer(
                message.value(), SerializationContext(message.topic(), MessageField.VALUE)
            )
    finally:
        consumer.close()
