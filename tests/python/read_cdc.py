"""Reads topic_cdc_changes with an independent client (confluent-kafka's Consumer and
AvroDeserializer, schemas fetched from the registry) and prints one JSON line per record.

usage: read_cdc.py BROKERS REGISTRY_URL COUNT TIMEOUT_SECONDS
Exits non-zero, saying why, if fewer than COUNT records arrive or one does not decode.
"""

import datetime
import json
import sys
import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def plain(value):
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot print {type(value)}")


def main():
    brokers, registry_url, count, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
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
            value = deserializer(message.value(), SerializationContext(message.topic(), MessageField.VALUE))
            print(json.dumps({"key": message.key().decode(), "value": value}, default=plain, sort_keys=True), flush=True)
            received += 1
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
