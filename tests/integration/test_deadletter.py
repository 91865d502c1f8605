"""Bad input through a real worker: parked with its reason, the good events around it counted.

Every invalid example of schemas/examples and a set of malformed byte strings
go to the source topics between valid events; a worker process reads them from
the real broker. Each bad message must come out of the dead-letter topic with
the reason its file name gives and its source topic/partition/offset, and
/metrics must count exactly the valid events and the rejections by reason.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer

from streams.contract import FAMILIES, message_key
from streams.devtools.stack import WorkerProcess
from tests.helpers import metric_sum, wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
MAX_BYTES, MAX_EVENTS = 8192, 20


def _fresh(event: dict, now: datetime) -> dict:
    """A valid example, dated just now and given a new id (so it is neither late nor a duplicate)."""
    return {**event, "event_id": uuid.uuid4().hex, "occurred_at": (now - timedelta(seconds=30)).isoformat()}


def _malformed(family: str, now: datetime) -> list[tuple[str, bytes]]:
    valid = orjson.loads(next((EXAMPLES / family / "valid").glob(f"{family}.*.json")).read_bytes())
    future = {**_fresh(valid, now), "occurred_at": (now + timedelta(hours=2)).isoformat()}
    return [
        ("not_utf8", b"\xff\xfe\x00garbage"),
        ("not_json", b'{"type": "order.placed",'),
        ("not_json", b'{"score": NaN}'),
        ("oversized", b'{"pad": "' + b"x" * MAX_BYTES + b'"}'),
        ("empty_batch", b"[]"),
        ("too_many_events", orjson.dumps([_fresh(valid, now)] * (MAX_EVENTS + 1))),
        ("future_timestamp", orjson.dumps(future)),
        ("not_object", b"42"),
    ]


def test_bad_messages_are_parked_with_reason_and_valid_ones_counted(make_settings, tmp_path) -> None:
    settings = make_settings(max_message_bytes=MAX_BYTES, max_batch_events=MAX_EVENTS)
    worker = WorkerProcess(settings, log_path=tmp_path / "worker.log").start()
    try:
        worker.wait_ready(90)
        now = datetime.now(timezone.utc)
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
        expected_parked: dict[tuple[str, int, int], str] = {}
        events_in: Counter[tuple[str, int, int]] = Counter()  # a bad batch parks each of its events
        valid_events: Counter[str] = Counter()
        for family in FAMILIES:
            topic = settings.topics[family]

            def send(payload: bytes) -> tuple[str, int, int]:
                # Keyed by its (first) event's id, as a producer does: a batch sits on the
                # partition of its events (docs/events.md, the batching rule).
                meta = producer.send(topic, key=_key(payload), value=payload).get(timeout=10)
                return topic, meta.partition, meta.offset

            for path in sorted((EXAMPLES / family / "valid").glob("*.json")):
                body = orjson.loads(path.read_bytes())
                batch = [_fresh(e, now) for e in body] if isinstance(body, list) else _fresh(body, now)
                send(orjson.dumps(batch))
                valid_events[family] += len(batch) if isinstance(batch, list) else 1
            for path in sorted((EXAMPLES / family / "invalid").glob("*.json")):
                source = send(path.read_bytes())
                expected_parked[source] = path.name.split("__")[0]
                body = orjson.loads(path.read_bytes())
                events_in[source] = len(body) if isinstance(body, list) and body else 1
                send(orjson.dumps(_fresh(orjson.loads(next((EXAMPLES / family / "valid").glob(
                    f"{family}.*.json")).read_bytes()), now)))  # a valid neighbour after each bad one
                valid_events[family] += 1
            for reason, payload in _malformed(family, now):
                source = send(payload)
                expected_parked[source] = reason
                events_in[source] = 1
        producer.flush()

        parked: dict[tuple[str, int, int], dict[str, str]] = {}
        parked_count: Counter[tuple[str, int, int]] = Counter()
        consumer = KafkaConsumer(settings.topic_deadletter, bootstrap_servers=settings.bootstrap_servers,
                                 group_id=None, auto_offset_reset="earliest", consumer_timeout_ms=1000)
        deadline = time.monotonic() + 90
        while len(parked) < len(expected_parked) and time.monotonic() < deadline:
            for record in consumer:
                headers = {k: v.decode() for k, v in record.headers}
                if "cx-nudge" in headers:  # a worker's write that only finishes transactions
                    continue
                source = (headers["cx-source-topic"], int(headers["cx-source-partition"]),
                          int(headers["cx-source-offset"]))
                parked[source] = headers
                parked_count[source] += 1
        missing = {k: v for k, v in expected_parked.items() if k not in parked}
        assert not missing, f"never parked: {missing}"
        wrong = {k: (reason, parked[k]["cx-reason"], parked[k]["cx-detail"])
                 for k, reason in expected_parked.items() if parked[k]["cx-reason"] != reason}
        assert not wrong, f"parked with the wrong reason (expected, got, detail): {wrong}"
        assert set(parked) == set(expected_parked), "a valid message was parked"
        assert all(h["cx-detail"] for h in parked.values())
        assert parked_count == events_in, "a bad batch must park each of its bad events once"

        def counted() -> tuple[Counter, Counter]:
            text = worker.scrape()
            events = Counter({k: int(v) for k, v in metric_sum(text, "cxpulse_events_total", by="family").items()
                              if v})
            rejected = Counter({k: int(v) for k, v in
                                metric_sum(text, "cxpulse_events_rejected_total", by="reason").items()})
            return events, rejected

        wait_until(lambda: counted()[0] == valid_events, 30, what="valid events counted on /metrics")
        events, rejected = counted()
        assert events == valid_events
        by_reason: Counter[str] = Counter()
        for source, reason in expected_parked.items():
            by_reason[reason] += events_in[source]
        assert rejected == by_reason
    finally:
        assert worker.stop() == 0, "the worker did not stop cleanly on SIGTERM"


def _key(payload: bytes) -> bytes | None:
    """The message key of a payload's first event, when it has one."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    first = body[0] if isinstance(body, list) and body else body
    try:
        return message_key(first).encode()
    except (KeyError, TypeError, AttributeError):
        return None
