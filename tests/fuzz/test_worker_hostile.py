"""The whole worker path under hostile input: a worker process, the real broker, thousands of bad messages.

Valid events (dated now, unique ids) are interleaved with hostile messages and hostile
events inside batches, on every source topic and partition. The expected outcome is
computed offline by the same rules (decode + ``PartitionState`` per partition, in offset
order); the worker must keep running, park every hostile event in the dead-letter topic
with a known reason, and count exactly the valid events on /metrics.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer

from streams.contract import EVENT_TYPES, FAMILIES
from streams.decode import decode_message
from streams.errors import REASONS
from streams.pipeline.records import Message
from streams.pipeline.window_state import PartitionState
from streams.devtools.stack import WorkerProcess
from tests.faults.common import metric_sum, valid_body
from tests.fuzz import tally
from tests.helpers import wait_until

MAX_BYTES, MAX_EVENTS = 16_384, 50
MESSAGES = 3000


def _hostile_item(rng: random.Random, family: str, now: datetime) -> Any:
    """An event-ish object that breaks one rule (or, rarely, none: the oracle decides)."""
    body = valid_body(rng, family, now)
    field = rng.choice(sorted(body))
    how = rng.randrange(9)
    if how == 0:
        del body[field]
    elif how == 1:
        body[field] = rng.choice([None, 42, -1, 1.5, 1e18, True, "", "x" * 5000, [], {}, "\u0000", "é"])
    elif how == 2:
        body["occurred_at"] = rng.choice(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2025-02-30T00:00:00Z",
                                          "yesterday", "2025-01-01T00:00:00", (now + timedelta(days=2)).isoformat()])
    elif how == 3:
        body["type"] = rng.choice(["order.deleted", "", "SESSION.STARTED", 7] + sorted(EVENT_TYPES))
    elif how == 4:
        body["schema_version"] = rng.choice([0, 2, "1", 1.5, None])
    elif how == 5 and family == "survey":
        body["score"] = rng.choice([-1, 11, 1e18, 9.5, "9"])
    elif how == 6:
        return rng.choice([None, 1, "event", [], [1, 2], {"nested": [[[[[]]]]]}])
    elif how == 7:
        body["extra"] = [[[[[[["deep"]]]]]]] * 3  # unknown fields are fine: stays valid
    else:
        body["storefront"] = rng.choice(["Shop", "shop eu", "-x", "a" * 80, "ß"])
    return body


def _hostile_bytes(rng: random.Random) -> bytes:
    return rng.choice([
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80))), b"\xff\xfe{", b"{not json", b"NaN",
        b'{"score": Infinity}', b"1e400", b"[]", b"42", b"null", b"", b"[" * 2000 + b"]" * 2000,
        b'{"pad": "' + b"x" * MAX_BYTES + b'"}', orjson.dumps([{}] * (MAX_EVENTS + 1)), b"\xc3\x28",
    ])


def build_messages(rng: random.Random, partitions: int, n: int) -> list[tuple[str, int, bytes]]:
    now = datetime.now(timezone.utc)
    out: list[tuple[str, int, bytes]] = []
    for _ in range(n):
        family = rng.choice(FAMILIES)
        partition = rng.randrange(partitions)
        roll = rng.random()
        if roll < 0.35:
            value = orjson.dumps(valid_body(rng, family, now, partition, partitions))
        elif roll < 0.65:
            items = [valid_body(rng, family, now, partition, partitions) if rng.random() < 0.6
                     else _hostile_item(rng, family, now) for _ in range(rng.randint(1, 8))]
            value = orjson.dumps(items)
        elif roll < 0.85:
            value = orjson.dumps(_hostile_item(rng, family, now))
        else:
            value = _hostile_bytes(rng)
        out.append((family, partition, value))
    return out


def expected(messages: list[tuple[str, int, bytes]], settings) -> tuple[Counter, Counter, int]:
    """Events counted per (family, partition), parked events by reason, hostile events in total."""
    not_after = int(time.time() * 1000) + settings.max_clock_skew_ms
    states: dict[tuple[str, int], PartitionState] = {}
    offsets: Counter = Counter()
    for family, partition, value in messages:
        state = states.setdefault((family, partition), PartitionState(family, partition, settings))
        decoded = decode_message(value, family, max_bytes=MAX_BYTES, max_events=MAX_EVENTS, not_after_ms=not_after,
                                 partition=partition, partitions=settings.partitions)
        state.apply([Message(offsets[family, partition], *decoded)])
        offsets[family, partition] += 1
    events = Counter({key: s.meta.events for key, s in states.items() if s.meta.events})
    parked: Counter = Counter()
    for state in states.values():
        parked.update(state.meta.rejected)
        if state.meta.late:
            parked["late"] += state.meta.late
    return events, parked, sum(parked.values())


def test_worker_survives_hostile_traffic_and_counts_valid_events(make_settings, tmp_path) -> None:
    settings = make_settings(max_message_bytes=MAX_BYTES, max_batch_events=MAX_EVENTS)
    rng = random.Random(6)
    messages = build_messages(rng, settings.partitions, MESSAGES)
    want_events, want_parked, hostile = expected(messages, settings)
    tally.count("worker path messages", len(messages))
    assert hostile > MESSAGES // 3 and sum(want_events.values()) > MESSAGES // 2  # the mix is really mixed

    worker = WorkerProcess(settings, log_path=tmp_path / "worker.log").start()
    try:
        worker.wait_ready(90)
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5,
                                 max_request_size=4 * MAX_BYTES)
        for family, partition, value in messages:
            producer.send(settings.topics[family], value=value, partition=partition)
        producer.flush()
        producer.close()

        wait_until(lambda: metric_sum(worker.scrape(), "cxpulse_messages_total") == len(messages), 120, 0.5,
                   what="every message read")
        text = worker.scrape()
        got_events = Counter()
        from prometheus_client.parser import text_string_to_metric_families

        got_rejected: Counter = Counter()
        late = 0
        for metric in text_string_to_metric_families(text):
            for sample in metric.samples:
                if sample.name == "cxpulse_events_total" and sample.value:
                    got_events[sample.labels["family"], int(sample.labels["partition"])] += int(sample.value)
                elif sample.name == "cxpulse_events_rejected_total":
                    got_rejected[sample.labels["reason"]] += int(sample.value)
                elif sample.name == "cxpulse_events_late_total":
                    late += int(sample.value)
        assert got_events == want_events
        if late:
            got_rejected["late"] += late
        assert +got_rejected == +want_parked

        consumer = KafkaConsumer(settings.topic_deadletter, bootstrap_servers=settings.bootstrap_servers,
                                 group_id=None, auto_offset_reset="earliest", consumer_timeout_ms=2000)
        parked: Counter = Counter()
        deadline = time.monotonic() + 60
        while sum(parked.values()) < hostile and time.monotonic() < deadline:
            for record in consumer:
                headers = {k: v.decode() for k, v in record.headers}
                if "cx-nudge" in headers:  # a worker's write that only finishes transactions
                    continue
                assert headers["cx-reason"] in REASONS and headers["cx-detail"]
                parked[headers["cx-reason"]] += 1
        consumer.close()
        assert parked == want_parked  # each hostile event parked once, with its reason
        assert worker.process.poll() is None, "the worker died"
    finally:
        assert worker.stop() == 0, f"the worker did not stop cleanly; see {worker.log_path}"
