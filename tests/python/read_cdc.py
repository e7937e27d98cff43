"""Reads topic_cdc_changes with an independent client (confluent-kafka's Consumer and
AvroDeserializer, schemas fetched from the registry) and prints one JSON line per record.

usage: read_cdc.py BROKERS REGISTRY_URL COUNT TIMEOUT_SECONDS
Exits non-zero, saying why, if fewer than COUNT records arrive or one does not decode.
"""

import datetime
import json
import sys

from cdc_topic import decoded_records


def plain(value):
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot print {type(value)}")


def main():
    brokers, registry_url, count, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    for message, value in decoded_records(brokers, registry_url, count, timeout):
        print(json.dumps({"key": message.key().decode(), "value": value}, default=plain, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
