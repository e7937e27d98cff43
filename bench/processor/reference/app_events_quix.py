"""Reference implementation of the "app-events" streaming job in quixstreams (3.28.1), run side by
side with the Rust processor on the same broker.

Job: read `topic_app_events` (AppEvent, Confluent wire format: magic byte 0, 4-byte big-endian
schema id, Avro binary datum), take event time from the record's `timestamp` field, and for every
5-minute tumbling event-time window and (event_type, source) count the events and the unique
users (distinct non-null user_id); emit final results only (`.final()`), as JSON, to the output
topic.

The pipeline, in quixstreams terms:

  input topic, custom Avro deserializer (fastavro schemaless_reader, local schema, 5-byte header
  skipped), timestamp_extractor = value["timestamp"]
  -> project to {event_type, source, user_id}
  -> group_by("event_type|source")             (re-keying: an internal repartition__ topic)
  -> tumbling_window(5 min, grace).agg(event_count=Count(), unique_users=<see below>)
  -> .final()                                   (closing strategy "key", quixstreams' default)
  -> JSON record to the output topic, key "event_type|source"

Unique users (--unique-users; quixstreams 3.28 has no Set aggregation):
- "collect" (default): `Collect("user_id")` with a result of len(set(non-null values)): the
  window store keeps every event's user_id (O(1) per event) and de-duplicates when the window
  closes. Memory grows with the events in open windows.
- "set": a custom aggregator, `UniqueCount`, whose window state is the set of user ids (a JSON
  object {user_id: 1}, as the state store serializes JSON), i.e. a Reduce over a set. quixstreams
  deserializes and re-serializes the aggregate on every event, so the cost per event grows with
  the number of distinct users in the window (measured: 131-142 CPU-s per million events at
  200k events / 20k users, 508 at 1M / 100k users, against 61-75 for "collect").

Event time is per key: a (key, window) closes when an event of that key arrives with a timestamp
>= window end + grace, and later events for it are dropped as late (counted in
late_events_dropped, with max_event_time_disorder_ms = the grace that would have kept them). The
key's last window never closes. Replaying a backlog whose keys are spread over partitions makes
quixstreams drop most events (see README.md); produce_app_events.py --key kind avoids it.

Stopping and measuring: the job counts the events that reach the window step (after the
repartition, i.e. fully processed events) and calls `app.stop()` when the count reaches
`--expect`; quixstreams then finishes that message, commits a last checkpoint (flushes the
producer, commits offsets, and in exactly-once mode commits the transaction) and returns.
The clock starts when the first input record is consumed (after the consumer-group join and
start-up) and stops when that last checkpoint is committed. cpu_seconds is user+sys CPU of this
process (getrusage RUSAGE_SELF, all threads, librdkafka's included) over the same interval;
cpu_seconds_process is for the whole process. peak_rss_kib is the process's ru_maxrss.

Prints one JSON line on stdout (quixstreams logs go to stderr):
{"events": N, "wall_seconds": ..., "cpu_seconds": ..., "peak_rss_kib": ..., "windows_emitted": ...,
 ...details}
"""

import argparse
import json
import os
import resource
import sys
import threading
import time
import warnings
from datetime import timedelta
from io import BytesIO

# authlib (pulled in by quixstreams through confluent-kafka's schema-registry extra) installs an
# "always" filter for its own deprecation warning and warns on import; keep stderr for our logs.
try:
    from authlib.deprecate import AuthlibDeprecationWarning

    warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)
except ImportError:
    pass

from fastavro import parse_schema, schemaless_reader
from quixstreams import Application
from quixstreams.dataframe.windows import Collect, Count
from quixstreams.dataframe.windows.aggregations import Aggregator
from quixstreams.models import TopicConfig
from quixstreams.models.serializers import Deserializer

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "schemas", "AppEvent.avsc"))
WINDOW = timedelta(minutes=5)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--brokers", default="127.0.0.1:29092")
    p.add_argument("--input-topic", default="topic_app_events")
    p.add_argument("--output-topic", default="topic_quix_app_event_counts")
    p.add_argument("--group", default="quix-app-events",
                   help="consumer group; also names quixstreams' repartition and changelog topics")
    p.add_argument("--expect", type=int, required=True, help="stop after N input events are processed")
    p.add_argument("--state-dir", default="/tmp/quix-app-events-state")
    p.add_argument("--exactly-once", action="store_true",
                   help='processing_guarantee="exactly-once" (default "at-least-once")')
    p.add_argument("--grace-ms", type=int, default=0, help="allowed lateness of the windows (default 0)")
    p.add_argument("--commit-interval", type=float, default=5.0, help="checkpoint interval, s (quixstreams default 5)")
    p.add_argument("--unique-users", choices=["collect", "set"], default="collect",
                   help="how unique users are aggregated (see the module doc)")
    p.add_argument("--schema", default=DEFAULT_SCHEMA, help="path to AppEvent.avsc")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="give up (exit 1) if N events are not processed within this many seconds of start")
    p.add_argument("--consumer-config", action="append", default=[], metavar="KEY=VALUE",
                   help="extra librdkafka consumer setting (repeatable)")
    p.add_argument("--loglevel", default="WARNING")
    return p.parse_args()


class ConfluentAvroDeserializer(Deserializer):
    """Confluent wire format -> dict: checks the magic byte, skips the 5-byte header (the schema
    id is not looked up: the local schema is the writer schema) and decodes the Avro datum with
    fastavro's schemaless_reader.

    The timestamp-millis logical type is dropped from the parsed copy used for reading: the bytes
    are the same long, and the job wants epoch milliseconds, not a datetime."""

    def __init__(self, schema_path: str):
        super().__init__()
        with open(schema_path) as f:
            raw = json.load(f)
        for field in raw["fields"]:
            if isinstance(field["type"], dict) and field["type"].get("logicalType") == "timestamp-millis":
                field["type"] = "long"
        self._schema = parse_schema(raw)

    def __call__(self, value: bytes, ctx):
        if len(value) < 5 or value[0] != 0:
            raise ValueError("not Confluent wire format (magic byte %r)" % value[:1])
        return schemaless_reader(BytesIO(value[5:]), self._schema, None)


class UniqueCount(Aggregator):
    """Number of distinct non-null values of `column` in the window. State: a JSON object used as
    a set ({value: 1}), serialized by the state store on every update."""

    def initialize(self) -> dict:
        return {}

    def agg(self, old: dict, new, timestamp: int) -> dict:
        v = new.get(self.column)
        if v is not None and v not in old:
            old[v] = 1
        return old

    def result(self, value: dict) -> int:
        return len(value)


class UniqueCollect(Collect):
    """`Collect(column)` whose result is the number of distinct non-null collected values."""

    def result(self, items) -> int:
        return len({v for v in items if v is not None})


def main():
    a = parse_args()
    stats = {
        "consumed": 0, "processed": 0, "late": 0, "windows": 0, "window_events": 0,
        "max_disorder_ms": 0, "max_input_disorder_ms": 0, "input_latest": 0,
        "t_first": None, "cpu_first": None, "t_nth": None, "t_end": None, "cpu_end": None,
    }
    t_start = time.perf_counter()

    def cpu_now():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    app = Application(
        broker_address=a.brokers,
        consumer_group=a.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once" if a.exactly_once else "at-least-once",
        state_dir=a.state_dir,
        commit_interval=a.commit_interval,
        auto_create_topics=True,
        loglevel=a.loglevel,
        consumer_extra_config=dict(kv.split("=", 1) for kv in a.consumer_config),
    )

    input_topic = app.topic(
        a.input_topic,
        key_deserializer="bytes",
        value_deserializer=ConfluentAvroDeserializer(a.schema),
        timestamp_extractor=lambda value, headers, ts, ts_type: value["timestamp"],
    )
    output_topic = app.topic(a.output_topic, key_serializer="str", value_serializer="json",
                             config=TopicConfig(num_partitions=6, replication_factor=1))

    def on_consumed(_value, _key, timestamp, _headers):
        if stats["consumed"] == 0:
            stats["t_first"] = time.perf_counter()
            stats["cpu_first"] = cpu_now()
            stats["input_latest"] = timestamp
        stats["consumed"] += 1
        # Event-time disorder of the input as consumed (all partitions interleaved).
        if timestamp > stats["input_latest"]:
            stats["input_latest"] = timestamp
        elif stats["input_latest"] - timestamp > stats["max_input_disorder_ms"]:
            stats["max_input_disorder_ms"] = stats["input_latest"] - timestamp

    key_latest = {}

    def on_processed(_value, key, timestamp, _headers):
        stats["processed"] += 1
        # Event-time disorder per key as the window sees it: how far behind the key's latest
        # timestamp this event is. The grace needed for no late drops is the maximum of it.
        latest = key_latest.get(key)
        if latest is None or timestamp > latest:
            key_latest[key] = timestamp
        elif latest - timestamp > stats["max_disorder_ms"]:
            stats["max_disorder_ms"] = latest - timestamp
        if stats["processed"] == a.expect:
            stats["t_nth"] = time.perf_counter()
            app.stop()

    def on_late(value, key, timestamp_ms, late_by_ms, start, end, name, topic, partition, offset):
        stats["late"] += 1
        return False  # counted; no per-event warning log

    def to_output(window, key, _timestamp, _headers):
        event_type, source = key.split("|", 1)
        stats["windows"] += 1
        stats["window_events"] += window["event_count"]
        return {
            "window_start": window["start"],
            "window_end": window["end"],
            "event_type": event_type,
            "source": source,
            "event_count": window["event_count"],
            "unique_users": window["unique_users"],
        }

    sdf = app.dataframe(input_topic)
    sdf = sdf.update(on_consumed, metadata=True)
    sdf = sdf.apply(lambda v: {"event_type": v["event_type"], "source": v["source"], "user_id": v["user_id"]})
    sdf = sdf.group_by(lambda v: v["event_type"] + "|" + v["source"], name="event_type_source",
                       key_serializer="str", key_deserializer="str")
    sdf = sdf.update(on_processed, metadata=True)
    users = UniqueCount("user_id") if a.unique_users == "set" else UniqueCollect("user_id")
    sdf = (
        sdf.tumbling_window(duration_ms=WINDOW, grace_ms=a.grace_ms, on_late=on_late)
        .agg(event_count=Count(), unique_users=users)
        .final()
    )
    sdf = sdf.apply(to_output, metadata=True)
    sdf.to_topic(output_topic)

    # The end of the run is the commit of the last checkpoint, forced by app.stop(): wrap
    # quixstreams' checkpoint commit to time it (private attribute, fixed by the pinned version).
    ctx = app._processing_context
    orig_commit = ctx.commit_checkpoint

    def commit_checkpoint(force=False, revoking=False):
        orig_commit(force=force, revoking=revoking)
        if force and stats["t_nth"] is not None and stats["t_end"] is None:
            stats["t_end"] = time.perf_counter()
            stats["cpu_end"] = cpu_now()

    ctx.commit_checkpoint = commit_checkpoint

    timed_out = threading.Event()

    def watchdog():
        while stats["t_nth"] is None:
            if time.perf_counter() - t_start > a.timeout:
                timed_out.set()
                app.stop()
                return
            time.sleep(0.5)

    threading.Thread(target=watchdog, daemon=True).start()
    app.run()

    if stats["t_end"] is None:  # stopped by the watchdog (or a commit we did not see)
        stats["t_end"] = time.perf_counter()
        stats["cpu_end"] = cpu_now()
    t_first = stats["t_first"] if stats["t_first"] is not None else stats["t_end"]
    cpu_first = stats["cpu_first"] if stats["cpu_first"] is not None else stats["cpu_end"]
    wall = stats["t_end"] - t_first
    cpu = stats["cpu_end"] - cpu_first
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        "events": stats["processed"],
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "peak_rss_kib": ru.ru_maxrss,
        "windows_emitted": stats["windows"],
        "events_per_second": round(stats["processed"] / wall, 1) if wall > 0 else None,
        "cpu_seconds_per_million": round(cpu * 1e6 / stats["processed"], 2) if stats["processed"] else None,
        "wall_seconds_to_nth_event": round(stats["t_nth"] - t_first, 3) if stats["t_nth"] else None,
        "cpu_seconds_process": round(ru.ru_utime + ru.ru_stime, 3),
        "startup_seconds": round(t_first - t_start, 3),
        "consumed": stats["consumed"],
        "late_events_dropped": stats["late"],
        "max_event_time_disorder_ms": stats["max_disorder_ms"],
        "max_input_disorder_ms": stats["max_input_disorder_ms"],
        "events_in_emitted_windows": stats["window_events"],
        "processing_guarantee": "exactly-once" if a.exactly_once else "at-least-once",
        "grace_ms": a.grace_ms,
        "unique_users": a.unique_users,
        "complete": not timed_out.is_set() and stats["processed"] >= a.expect,
    }
    print(json.dumps(out), flush=True)
    return 0 if out["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
