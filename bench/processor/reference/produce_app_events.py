"""Loader for the app-events processor benchmark.

Writes N AppEvent records (schemas/AppEvent.avsc) to a Kafka topic in Confluent wire format
(byte 0 = magic 0, bytes 1-4 = big-endian schema id, then the Avro binary datum), with the
record timestamp set to the event's timestamp. The data are a pure function of the arguments
(seeded RNG):

- event types from a small fixed list: app events (page_view, click, search, filter,
  booking_view, click_cta, app_open) come from MOBILE_APP or WEB_APP, booking-system events
  (booking_created, booking_confirmed, payment_captured) from BOOKING_SYSTEM;
- user_id drawn from U distinct users (user-000000 ...), null for ~10% of the events;
- timestamps in order: event i has timestamp start_ms + floor(i * span_ms / N), so the events
  cover span_ms / 5 min tumbling windows (30 min = 6 windows by default).

Record key (--key):
- "kind" (default): "event_type|source", the aggregation key, so each key's records sit in one
  partition in event-time order. A processor that re-keys by (event_type, source) then sees every
  key's events in order, and a per-key final window (quixstreams' default) loses nothing with
  grace 0, however the partitions of the backlog are interleaved when read.
- "gateway": booking_id, else session_id, as the workload generator and gateway key app events;
  each key's records are spread over all partitions. Replaying such a backlog, a consumer reads
  partitions at very different event times (on tansu, a whole partition at a time), so per-key
  windows close early and most events arrive late unless the processor uses a cross-partition
  watermark or a grace as long as the backlog's event-time span.

Prints one JSON line: {"produced": N, "seconds": ..., plus what the processors should find:
"keys" (distinct (event_type, source)), "windows_total" ((key, window) pairs with events) and
"windows_final_expected" (pairs a per-key event-time processor emits as final after reading
every record: window end + grace <= the key's largest timestamp; --grace-ms, default 0)}.
"seconds" covers encoding and producing until the last delivery report (flush).

Usage: python produce_app_events.py --brokers 127.0.0.1:29092 --topic topic_app_events \
           --count 200000 --users 20000 --seed 1 --start-ms 1767225600000
"""

import argparse
import io
import json
import os
import random
import struct
import sys
import time
import uuid

from confluent_kafka import KafkaException, Producer
from fastavro import parse_schema, schemaless_writer

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "schemas", "AppEvent.avsc"))
WINDOW_MS = 5 * 60 * 1000

APP_TYPES = ["page_view", "click", "search", "filter", "booking_view", "click_cta", "app_open"]
APP_SOURCES = ["MOBILE_APP", "WEB_APP"]
BOOKING_TYPES = ["booking_created", "booking_confirmed", "payment_captured"]
# (event_type, source) pairs and their weights: app traffic dominates.
KINDS = [(t, s) for t in APP_TYPES for s in APP_SOURCES] + [(t, "BOOKING_SYSTEM") for t in BOOKING_TYPES]
WEIGHTS = [6] * (len(APP_TYPES) * len(APP_SOURCES)) + [2] * len(BOOKING_TYPES)

DEVICES = {
    "MOBILE_APP": [("IOS", "iOS 18.1", "4.12.0", None), ("ANDROID", "Android 15", "4.12.0", None)],
    "WEB_APP": [("DESKTOP", None, None, "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"),
                ("MOBILE_WEB", None, None, "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1) Safari/604.1")],
    "BOOKING_SYSTEM": [("SERVER", None, None, None)],
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--brokers", default="127.0.0.1:29092")
    p.add_argument("--topic", default="topic_app_events")
    p.add_argument("--count", type=int, required=True, help="number of records N")
    p.add_argument("--users", type=int, default=20000, help="distinct user ids U")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start-ms", type=int, default=1767225600000,
                   help="timestamp of the first event (default 2026-01-01T00:00:00Z, a window boundary)")
    p.add_argument("--span-ms", type=int, default=6 * WINDOW_MS,
                   help="event-time span covered by the N events (default 30 min = 6 windows)")
    p.add_argument("--schema-id", type=int, default=1)
    p.add_argument("--schema", default=DEFAULT_SCHEMA, help="path to AppEvent.avsc")
    p.add_argument("--null-user-ratio", type=float, default=0.1)
    p.add_argument("--key", choices=["kind", "gateway"], default="kind",
                   help='record key: "event_type|source" (default) or booking_id/session_id')
    p.add_argument("--grace-ms", type=int, default=0,
                   help="grace used for windows_final_expected in the summary (default 0)")
    return p.parse_args()


def main():
    a = parse_args()
    if a.count <= 0 or a.users <= 0:
        sys.exit("--count and --users must be positive")
    with open(a.schema) as f:
        schema = parse_schema(json.load(f))
    rng = random.Random(a.seed)
    header = struct.pack(">bI", 0, a.schema_id)

    producer = Producer({
        "bootstrap.servers": a.brokers,
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "acks": "all",
        "compression.type": "none",
    })
    errors = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(str(err))

    kinds = rng.choices(range(len(KINDS)), weights=WEIGHTS, k=a.count)
    # Per (event_type, source) key: max timestamp and the windows it has events in.
    key_max = {}
    key_windows = {}
    users_sessions = {}
    buf = io.BytesIO()
    received_lag_ms = 150

    t0 = time.perf_counter()
    for i in range(a.count):
        ts = a.start_ms + (i * a.span_ms) // a.count
        event_type, source = KINDS[kinds[i]]
        if rng.random() < a.null_user_ratio:
            user_id = None
            session_id = "anon-%012x" % rng.getrandbits(48)
        else:
            u = rng.randrange(a.users)
            user_id = "user-%06d" % u
            # A few sessions per user, stable for a while: realistic keys with some locality.
            session_id = users_sessions.setdefault((u, ts // WINDOW_MS), "sess-%012x" % rng.getrandbits(48))
        device_type, os_version, app_version, user_agent = rng.choice(DEVICES[source])
        booking_id = "bk-%08d" % rng.randrange(10**8) if event_type in BOOKING_TYPES or event_type == "booking_view" else None
        props = {"screen": event_type}
        if event_type == "search":
            props["query"] = rng.choice(["hanoi", "da nang", "hoi an", "saigon", "phu quoc"])
        elif booking_id is not None:
            props["amount"] = "%d.00" % rng.randrange(50, 2000)
            props["currency"] = "USD"
        record = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "event_type": event_type,
            "source": source,
            "user_id": user_id,
            "session_id": session_id,
            "booking_id": booking_id,
            "device": {"device_type": device_type, "os_version": os_version,
                       "app_version": app_version, "user_agent": user_agent},
            "timestamp": ts,
            "received_at": ts + received_lag_ms,
            "properties": props,
        }
        buf.seek(0)
        buf.truncate()
        buf.write(header)
        schemaless_writer(buf, schema, record)
        if a.key == "kind":
            key = event_type + "|" + source
        else:
            key = booking_id or session_id
        while True:
            try:
                producer.produce(a.topic, value=buf.getvalue(), key=key.encode(), timestamp=ts,
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
        k = (event_type, source)
        if ts > key_max.get(k, -1):
            key_max[k] = ts
        key_windows.setdefault(k, set()).add(ts - ts % WINDOW_MS)

    remaining = producer.flush(120)
    seconds = time.perf_counter() - t0
    if remaining or errors:
        print(json.dumps({"error": "delivery failed", "undelivered": remaining, "errors": errors[:5],
                          "failed": len(errors)}), file=sys.stderr)
        sys.exit(1)

    windows_total = sum(len(w) for w in key_windows.values())
    final_expected = sum(1 for k, ws in key_windows.items() for w in ws
                         if w + WINDOW_MS + a.grace_ms <= key_max[k])
    print(json.dumps({
        "produced": a.count,
        "seconds": round(seconds, 3),
        "topic": a.topic,
        "first_ts": a.start_ms,
        "last_ts": a.start_ms + ((a.count - 1) * a.span_ms) // a.count,
        "keys": len(key_windows),
        "windows_total": windows_total,
        "windows_final_expected": final_expected,
        "grace_ms": a.grace_ms,
        "key": a.key,
    }))


if __name__ == "__main__":
    try:
        main()
    except KafkaException as e:
        sys.exit(f"kafka error: {e}")
