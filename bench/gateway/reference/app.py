"""Reference gateway for the benchmark: FastAPI + confluent-kafka doing the same work as the
Rust gateway on POST /events/user and POST /events/batch (user events): strict validation
(pydantic, unknown fields refused), Avro encoding with the registered AppEvent schema
(Confluent wire format), an idempotent acks=all producer, an answer only after the broker's
acknowledgement (503 + Retry-After when it does not come in time), and an in-memory idempotency
window on event_id.

Configuration (environment): REF_KAFKA_BROKERS, REF_SCHEMA_REGISTRY_URL, REF_SCHEMA_FILE.
Run: uvicorn app:app --workers N (the idempotency window is per worker process).
"""

import asyncio
import os
import threading
import time
from datetime import datetime
from typing import Dict, List, Literal, Optional, Union

from confluent_kafka import KafkaException, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

TOPIC = "topic_app_events"
PRODUCE_TIMEOUT_S = 5.0
DEDUP_WINDOW_S = 600.0
EARLIEST_MS = 946_684_800_000
MAX_SKEW_MS = 86_400_000

UserEventType = Literal[
    "page_view", "click", "search", "filter", "booking_view", "click_cta", "app_open",
    "app_close", "add_to_wishlist", "share", "sign_in", "sign_out", "sign_up",
]


class Device(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_type: Literal["ios", "android", "desktop", "tablet", "mobile_web", "server"]
    os_version: Optional[str] = Field(default=None, min_length=1, max_length=128)
    app_version: Optional[str] = Field(default=None, min_length=1, max_length=128)
    user_agent: Optional[str] = Field(default=None, min_length=1, max_length=4096)


class UserEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_id: str = Field(min_length=1, max_length=128)
    event_type: UserEventType
    user_id: Optional[str] = Field(default=None, min_length=1, max_length=128)
    session_id: str = Field(min_length=1, max_length=128)
    app_type: Literal["mobile", "web"]
    timestamp: Union[int, datetime]
    booking_id: Optional[str] = Field(default=None, min_length=1, max_length=128)
    device: Optional[Device] = None
    properties: Dict[str, str] = Field(default_factory=dict)


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["user"]
    event: dict


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: List[dict] = Field(min_length=1, max_length=500)


def millis(ts: Union[int, datetime]) -> int:
    return ts if isinstance(ts, int) else int(ts.timestamp() * 1000)


class Gateway:
    def __init__(self) -> None:
        registry = SchemaRegistryClient({"url": os.environ["REF_SCHEMA_REGISTRY_URL"]})
        with open(os.environ["REF_SCHEMA_FILE"]) as f:
            schema = f.read()
        self.serializer = AvroSerializer(registry, schema, conf={"auto.register.schemas": True})
        self.producer = Producer({
            "bootstrap.servers": os.environ["REF_KAFKA_BROKERS"],
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(PRODUCE_TIMEOUT_S * 1000),
        })
        self.done: Dict[str, tuple] = {}
        self.in_flight: Dict[str, asyncio.Future] = {}
        self.running = True
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.poller.start()

    def _poll(self) -> None:
        while self.running:
            self.producer.poll(0.05)

    async def produce(self, event: UserEvent, now_ms: int) -> tuple:
        """Returns (status, receipt) with status 'stored' or 'duplicate'; raises on failure."""
        loop = asyncio.get_running_loop()
        while True:
            seen = self.done.get(event.event_id)
            if seen and time.monotonic() - seen[0] < DEDUP_WINDOW_S:
                return "duplicate", seen[1]
            pending = self.in_flight.get(event.event_id)
            if pending is None:
                break
            try:
                await asyncio.shield(pending)
            except Exception:
                pass
        future = loop.create_future()
        self.in_flight[event.event_id] = future
        try:
            record = {
                "event_id": event.event_id,
                "event_type": event.event_type,
                "source": "MOBILE_APP" if event.app_type == "mobile" else "WEB_APP",
                "user_id": event.user_id,
                "session_id": event.session_id,
                "booking_id": event.booking_id,
                "device": None if event.device is None else {
                    "device_type": event.device.device_type.upper(),
                    "os_version": event.device.os_version,
                    "app_version": event.device.app_version,
                    "user_agent": event.device.user_agent,
                },
                "timestamp": millis(event.timestamp),
                "received_at": now_ms,
                "properties": event.properties,
            }
            value = self.serializer(record, SerializationContext(TOPIC, MessageField.VALUE))

            def delivered(err, msg):
                if err is not None:
                    loop.call_soon_threadsafe(future.set_exception, KafkaException(err))
                else:
                    loop.call_soon_threadsafe(future.set_result, {"topic": TOPIC, "partition": msg.partition(), "offset": msg.offset()})

            self.producer.produce(TOPIC, key=event.session_id, value=value, on_delivery=delivered)
            receipt = await asyncio.wait_for(asyncio.shield(future), PRODUCE_TIMEOUT_S + 1)
            self.done[event.event_id] = (time.monotonic(), receipt)
            return "stored", receipt
        finally:
            self.in_flight.pop(event.event_id, None)
            if not future.done():
                future.cancel()


app = FastAPI(title="Reference gateway (FastAPI + confluent-kafka)")
gateway: Optional[Gateway] = None
user_adapter = TypeAdapter(UserEvent)


@app.on_event("startup")
def start() -> None:
    global gateway
    gateway = Gateway()


def unavailable(reason: str) -> JSONResponse:
    return JSONResponse({"error": "unavailable", "message": reason}, status_code=503, headers={"Retry-After": "5"})


def check_time(event: UserEvent, now_ms: int) -> Optional[str]:
    ts = millis(event.timestamp)
    if ts < EARLIEST_MS or ts > now_ms + MAX_SKEW_MS:
        return "timestamp out of range"
    return None


@app.get("/health")
def health() -> dict:
    return {"ready": gateway is not None}


@app.post("/events/user")
async def post_user(request: Request):
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return JSONResponse({"error": "unsupported_media_type"}, status_code=415)
    try:
        event = user_adapter.validate_json(await request.body())
    except ValidationError as e:
        return JSONResponse({"error": "invalid_event", "details": e.errors(include_url=False, include_context=False)}, status_code=422)
    now_ms = int(time.time() * 1000)
    if (problem := check_time(event, now_ms)) is not None:
        return JSONResponse({"error": "invalid_event", "message": problem}, status_code=422)
    try:
        status, receipt = await gateway.produce(event, now_ms)
    except (KafkaException, BufferError, asyncio.TimeoutError) as e:
        return unavailable(str(e))
    return JSONResponse({"status": status, "id": event.event_id, **receipt}, status_code=201 if status == "stored" else 200)


@app.post("/events/batch")
async def post_batch(request: Request):
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return JSONResponse({"error": "unsupported_media_type"}, status_code=415)
    try:
        batch = Batch.model_validate_json(await request.body())
    except ValidationError as e:
        return JSONResponse({"error": "invalid_event", "details": e.errors(include_url=False, include_context=False)}, status_code=422)
    now_ms = int(time.time() * 1000)

    async def one(index: int, raw: dict) -> dict:
        try:
            item = BatchItem.model_validate(raw)
            event = user_adapter.validate_python(item.event)
        except ValidationError as e:
            return {"index": index, "status": "rejected", "error": str(e)}
        if (problem := check_time(event, now_ms)) is not None:
            return {"index": index, "status": "rejected", "error": problem}
        try:
            status, receipt = await gateway.produce(event, now_ms)
        except (KafkaException, BufferError, asyncio.TimeoutError) as e:
            return {"index": index, "status": "failed", "error": str(e)}
        return {"index": index, "status": status, "id": event.event_id, **receipt}

    results = await asyncio.gather(*(one(i, raw) for i, raw in enumerate(batch.events)))
    counts = {s: sum(1 for r in results if r["status"] == s) for s in ("stored", "duplicate", "rejected", "failed")}
    if counts["stored"] + counts["duplicate"] == len(results):
        code = 200
    elif counts["failed"] == len(results):
        code = 503
    elif counts["rejected"] == len(results):
        code = 422
    else:
        code = 207
    return JSONResponse({**counts, "duplicates": counts.pop("duplicate"), "results": results}, status_code=code)
