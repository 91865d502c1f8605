"""The producer library without a broker: partitioning, batching, validation.

A fake stands in for kafka-python's KafkaProducer and records what would be
sent; the integration tests send the same way to a real broker.
"""

from __future__ import annotations

import inspect
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from streams.config import Settings
from streams.contract import ENVELOPE, EVENT_TYPES, message_key
from streams.decode import decode_message
from streams.errors import InvalidEvent
from streams.producer import METHODS, Producer, format_timestamp, pack_messages, partition_for


class _Future:
    def add_errback(self, callback: Any) -> None:
        self.errback = callback


class FakeKafka:
    def __init__(self, partitions: int = 4) -> None:
        self.partitions = partitions
        self.sent: list[tuple[str, bytes | None, bytes, int]] = []
        self.futures: list[_Future] = []
        self.closed = False

    def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def send(self, topic: str, *, value: bytes, key: bytes | None, partition: int) -> _Future:
        self.sent.append((topic, key, value, partition))
        self.futures.append(_Future())
        return self.futures[-1]

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


SETTINGS = Settings()


def _producer(**kwargs: Any) -> tuple[Producer, FakeKafka]:
    fake = FakeKafka(kwargs.pop("partitions", 4))
    return Producer(SETTINGS, kafka=fake, storefront="shop-eu", **kwargs), fake


def _events(value: bytes) -> list[dict]:
    body = orjson.loads(value)
    return body if isinstance(body, list) else [body]


# ---------------------------------------------------------------- murmur2 partitioning

# Expected values from Kafka's Java client (org.apache.kafka.common.utils.Utils.murmur2
# and kafka-python's compatibility table): the partition of each key among 1000.
@pytest.mark.parametrize(("key", "partition"), [
    ("", 681), ("a", 524), ("ab", 434), ("abc", 107), ("123456789", 566), ("\x00 ", 742),
])
def test_partition_matches_java_client(key: str, partition: int) -> None:
    assert partition_for(key, 1000) == partition


def test_partition_is_stable_and_in_range() -> None:
    keys = [f"sess-{i:05d}" for i in range(2000)]
    spread = [partition_for(k, 4) for k in keys]
    assert set(spread) == {0, 1, 2, 3}
    assert spread == [partition_for(k, 4) for k in keys]


# ---------------------------------------------------------------- packing

@pytest.mark.parametrize(("n", "max_events", "sizes"), [
    (1, 100, [1]), (5, 1, [1, 1, 1, 1, 1]), (5, 2, [2, 2, 1]), (6, 3, [3, 3]), (250, 100, [100, 100, 50]),
])
def test_pack_by_count(n: int, max_events: int, sizes: list[int]) -> None:
    encoded = [orjson.dumps({"i": i}) for i in range(n)]
    messages = pack_messages(encoded, max_events, 10**6)
    assert [len(_events(m)) for m in messages] == sizes
    assert [e["i"] for m in messages for e in _events(m)] == list(range(n))
    assert all((m[:1] == b"[") == (len(_events(m)) > 1) for m in messages)


def test_pack_by_bytes() -> None:
    encoded = [orjson.dumps({"pad": "x" * 90, "i": i}) for i in range(10)]  # ~107 bytes each
    messages = pack_messages(encoded, 100, 350)
    assert all(len(m) <= 350 for m in messages)
    assert [len(_events(m)) for m in messages] == [3, 3, 3, 1]


# ---------------------------------------------------------------- batching by partition

def _sessions(n: int) -> list[dict]:
    return [dict(type="session.started", session_id=f"sess-{i:04d}", visitor_id=f"vis-{i:04d}",
                 channel="web", device="mobile") for i in range(n)]


def test_batches_hold_only_events_of_their_partition() -> None:
    producer, fake = _producer(batch_events=10, linger_ms=10_000)
    producer.send_many(_sessions(100))
    producer.flush()
    seen = 0
    for topic, key, value, partition in fake.sent:
        assert topic == SETTINGS.topic_sessions
        events = _events(value)
        seen += len(events)
        assert len(events) <= 10
        assert all(partition_for(message_key(e), 4) == partition for e in events)
        if len(events) > 1:
            assert key is None
    assert seen == 100
    producer.close()


def test_full_group_goes_at_once_and_lingering_one_on_timer() -> None:
    producer, fake = _producer(batch_events=3, linger_ms=30)
    key = "sess-0001"
    for _ in range(4):
        producer.product_viewed(session_id=key, channel="web", device="desktop")
    assert len(fake.sent) == 1 and len(_events(fake.sent[0][2])) == 3
    deadline = time.monotonic() + 2
    while len(fake.sent) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(fake.sent) == 2
    assert fake.sent[1][1] == key.encode()  # a lone event goes as a keyed object
    producer.close()


def test_batch_events_one_sends_keyed_objects() -> None:
    producer, fake = _producer(batch_events=1)
    producer.send_many(_sessions(5))
    assert len(fake.sent) == 5
    for topic, key, value, partition in fake.sent:
        event = orjson.loads(value)
        assert isinstance(event, dict)
        assert key == event["session_id"].encode()
        assert partition == partition_for(event["session_id"], 4)
    producer.close()


def test_families_go_to_their_topics() -> None:
    producer, fake = _producer(batch_events=1)
    producer.order_placed(order_id="ord-1", customer_id="cus-1", total_minor=100, currency="EUR", first_order=True)
    producer.ticket_created(ticket_id="tkt-1", support_channel="chat")
    producer.survey_answered(response_id="resp-1", kind="ces", score=3)
    assert [s[0] for s in fake.sent] == [SETTINGS.topic_orders, SETTINGS.topic_tickets, SETTINGS.topic_surveys]
    assert [s[1] for s in fake.sent] == [b"ord-1", b"tkt-1", b"resp-1"]


def test_close_flushes_and_closes() -> None:
    producer, fake = _producer(batch_events=50, linger_ms=60_000)
    producer.send_many(_sessions(3))
    assert fake.sent == []
    with producer:
        pass
    assert sum(len(_events(v)) for _, _, v, _ in fake.sent) == 3
    assert fake.closed
    producer.close()  # idempotent
    with pytest.raises(RuntimeError):
        producer.send(_sessions(1)[0])


def test_delivery_failure_surfaces_from_flush() -> None:
    producer, fake = _producer(batch_events=1)
    producer.send(_sessions(1)[0])
    fake.futures[0].errback(OSError("broker went away"))
    with pytest.raises(OSError, match="broker went away"):
        producer.flush()
    producer.flush()  # reported once


# ---------------------------------------------------------------- filling and validation

def test_envelope_is_filled() -> None:
    producer, fake = _producer(batch_events=1)
    event_id = producer.checkout_started(session_id="sess-1", channel="web", device="tablet")
    event = orjson.loads(fake.sent[0][2])
    assert event["event_id"] == event_id and len(event_id) == 32
    assert event["schema_version"] == 1 and event["storefront"] == "shop-eu"
    assert event["occurred_at"].endswith("+00:00")
    assert decode_message(fake.sent[0][2], "session")[1] == []


def test_given_envelope_and_extra_fields_are_kept() -> None:
    producer, fake = _producer(batch_events=1)
    moment = datetime(2025, 3, 14, 9, 30, tzinfo=timezone(timedelta(hours=1)))
    producer.ticket_replied(ticket_id="tkt-1", author="agent", public=False, storefront="outlet",
                            occurred_at=moment, event_id="evt-fixed-1", macro="refund-policy")
    event = orjson.loads(fake.sent[0][2])
    assert event == {"type": "ticket.replied", "event_id": "evt-fixed-1", "storefront": "outlet",
                     "occurred_at": "2025-03-14T09:30:00.000+01:00", "schema_version": 1,
                     "ticket_id": "tkt-1", "author": "agent", "public": False, "macro": "refund-policy"}


def test_send_does_not_change_the_callers_dict() -> None:
    producer, _ = _producer(batch_events=1)
    event = {"type": "ticket.resolved", "ticket_id": "tkt-9"}
    producer.send(event)
    assert event == {"type": "ticket.resolved", "ticket_id": "tkt-9"}


@pytest.mark.parametrize(("call", "reason", "field"), [
    (lambda p: p.session_started(session_id="sess 1", visitor_id="v", channel="web", device="mobile"),
     "bad_value", "session_id"),
    (lambda p: p.product_viewed(session_id="s", channel="web", device="watch"), "bad_value", "device"),
    (lambda p: p.order_placed(order_id="o", customer_id="c", total_minor=49.99, currency="EUR",
                              first_order=True), "wrong_type", "total_minor"),
    (lambda p: p.order_refunded(order_id="o", amount_minor=-1, currency="EUR"), "out_of_range", "amount_minor"),
    (lambda p: p.order_returned(order_id="o", amount_minor=100), "missing_field", "currency"),
    (lambda p: p.ticket_replied(ticket_id="t", author="agent", public="yes"), "wrong_type", "public"),
    (lambda p: p.survey_answered(response_id="r", kind="csat", score=0), "out_of_range", "csat"),
    (lambda p: p.send({"type": "order.cancelled", "order_id": "o"}), "unknown_type", "order.cancelled"),
    (lambda p: p.send({"ticket_id": "t"}), "missing_field", "type"),
    (lambda p: p.send({"type": "ticket.resolved", "ticket_id": "t", "schema_version": 2}),
     "unsupported_version", "schema_version"),
    (lambda p: p.send({"type": "ticket.resolved", "ticket_id": "t", "occurred_at": "2025-03-14 09:00"}),
     "bad_timestamp", "occurred_at"),
    (lambda p: p.ticket_resolved(ticket_id="t", occurred_at=datetime(2025, 3, 14)), "bad_timestamp", "naive"),
    (lambda p: p.ticket_created(ticket_id="t", support_channel="chat", note="x" * 1_100_000),
     "oversized", "bytes"),
])
def test_invalid_events_raise_naming_the_field(call: Any, reason: str, field: str) -> None:
    producer, fake = _producer(batch_events=1)
    with pytest.raises(InvalidEvent) as caught:
        call(producer)
    assert caught.value.reason == reason
    assert field in str(caught.value)
    assert fake.sent == []


def test_missing_storefront_without_default() -> None:
    producer = Producer(SETTINGS, kafka=FakeKafka(), batch_events=1)
    with pytest.raises(InvalidEvent, match="storefront is required"):
        producer.ticket_resolved(ticket_id="t")


@pytest.mark.parametrize("batch_events", [0, SETTINGS.max_batch_events + 1])
def test_batch_events_is_bounded(batch_events: int) -> None:
    with pytest.raises(ValueError, match="batch_events"):
        Producer(SETTINGS, kafka=FakeKafka(), batch_events=batch_events)


def test_format_timestamp_needs_an_offset() -> None:
    assert format_timestamp(datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)) == "2025-01-02T03:04:05.678+00:00"


# ---------------------------------------------------------------- methods vs contract

@pytest.mark.parametrize("type_name", EVENT_TYPES)
def test_a_method_per_event_type_with_its_fields(type_name: str) -> None:
    method = getattr(Producer, METHODS[type_name])
    params = inspect.signature(method).parameters
    envelope = {"storefront", "occurred_at", "event_id"}
    named = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert named == envelope | EVENT_TYPES[type_name].names
    for f in EVENT_TYPES[type_name].fields:
        has_default = params[f.name].default is not inspect.Parameter.empty
        assert has_default is (not f.required), f.name
    assert {f.name for f in ENVELOPE} - envelope == {"type", "schema_version"}
