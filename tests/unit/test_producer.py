"""The producer library without a broker: partitioning, batching, validation,
field names, client settings, delivery reports, connecting lazily, import weight.

A fake stands in for kafka-python's KafkaProducer and records what would be
sent; the integration tests send the same way to a real broker. The tests of
connecting use a real kafka-python client against loopback sockets that are
not Kafka (a silent listener, a closed port).
"""

from __future__ import annotations

import functools
import inspect
import json
import random
import select
import socket
import subprocess
import sys
import time
from collections import namedtuple
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import orjson
import pytest
from kafka.errors import KafkaTimeoutError

from streams.config import Settings
from streams.contract import ENVELOPE, EVENT_TYPES, _murmur2_python, message_key, murmur2, partition_for
from streams.decode import decode_message
from streams.errors import ConfigError, DeliveryError, InvalidEvent, ProducerError
from streams.producer.client import FLUSH_MARGIN_S
from streams.producer import (
    CLIENT_SETTINGS,
    METHODS,
    DeliveryReport,
    Producer,
    format_timestamp,
    pack_messages,
)
from tests.helpers import free_port, wait_until

_Metadata = namedtuple("_Metadata", "topic partition offset")


class _Future:
    """kafka-python's future, as far as the producer uses it; the test settles it."""

    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition
        self.callbacks: list[Callable[[Any], None]] = []
        self.errbacks: list[Callable[[BaseException], None]] = []

    def add_callback(self, f: Any, *args: Any) -> None:
        self.callbacks.append(functools.partial(f, *args))

    def add_errback(self, f: Any, *args: Any) -> None:
        self.errbacks.append(functools.partial(f, *args))

    def succeed(self, offset: int) -> None:
        for callback in self.callbacks:
            callback(_Metadata(self.topic, self.partition, offset))

    def fail(self, error: BaseException) -> None:
        for errback in self.errbacks:
            errback(error)


class FakeKafka:
    def __init__(self, partitions: int = 4, refuse: BaseException | None = None) -> None:
        self.partitions = partitions
        self.refuse = refuse  # raise this from send(), as a client with a full buffer does
        self.sent: list[tuple[str, bytes | None, bytes, int]] = []
        self.futures: list[_Future] = []
        self.closed = False

    def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def send(self, topic: str, *, value: bytes, key: bytes | None, partition: int) -> _Future:
        if self.refuse is not None:
            raise self.refuse
        self.sent.append((topic, key, value, partition))
        self.futures.append(_Future(topic, partition))
        return self.futures[-1]

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


SETTINGS = Settings()


def _producer(**kwargs: Any) -> tuple[Producer, FakeKafka]:
    fake = FakeKafka(kwargs.pop("partitions", 4))
    return Producer.from_settings(SETTINGS, kafka=fake, storefront="shop-eu", **kwargs), fake


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


def test_batches_hold_only_events_of_their_partition_and_carry_the_first_key() -> None:
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
        # A batch is keyed by its first event: a key that maps to the batch's own partition.
        assert key == message_key(events[0]).encode()
    assert seen == 100
    assert any(len(_events(value)) > 1 for _, _, value, _ in fake.sent)
    producer.close()


def test_full_group_goes_at_once_and_lingering_one_on_timer() -> None:
    producer, fake = _producer(batch_events=3, linger_ms=30)
    key = "sess-0001"
    for _ in range(4):
        producer.product_viewed(session_id=key, channel="web", device="desktop")
    assert len(fake.sent) == 1 and len(_events(fake.sent[0][2])) == 3
    wait_until(lambda: len(fake.sent) >= 2, timeout_s=2, interval_s=0.01, what="the lingering event sent")
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


def test_a_survey_sent_and_its_answer_share_topic_key_and_partition() -> None:
    producer, fake = _producer(batch_events=1)
    sent_id = producer.survey_sent(response_id="resp-7", kind="csat", channel="web", ticket_id="tkt-7",
                                   customer_id="cus-7")
    producer.survey_answered(response_id="resp-7", kind="csat", score=4, channel="web")
    (topic, key, value, partition), answer = fake.sent
    assert (topic, key, partition) == (answer[0], answer[1], answer[3])
    assert (topic, key, partition) == (SETTINGS.topic_surveys, b"resp-7", partition_for("resp-7", 4))
    event = orjson.loads(value)
    assert event == {"type": "survey.sent", "event_id": sent_id, "storefront": "shop-eu", "schema_version": 1,
                     "occurred_at": event["occurred_at"], "response_id": "resp-7", "kind": "csat",
                     "channel": "web", "ticket_id": "tkt-7", "customer_id": "cus-7"}
    assert decode_message(value, "survey")[1] == []


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
    first, second = producer.send_many(_sessions(2))
    fake.futures[0].fail(OSError("broker went away"))
    fake.futures[1].fail(OSError("broker went away"))
    with pytest.raises(DeliveryError, match="broker went away") as caught:
        producer.flush()
    assert caught.value.failed == 2  # every failure counted, not only the first
    assert [r.event_id for r in caught.value.reports] == [first, second]
    assert isinstance(caught.value.__cause__, OSError)
    producer.flush()  # reported once


class StuckKafka(FakeKafka):
    """A client that never answers a message it sent, as kafka-python 3.0.12 did once after its
    broker was killed: its flush waits until the timeout it is given, forever without one."""

    def __init__(self) -> None:
        super().__init__()
        self.flush_timeouts: list[float | None] = []

    def flush(self, timeout: float | None = None) -> None:
        self.flush_timeouts.append(timeout)
        if timeout is None:
            raise AssertionError("flush() without a timeout would wait forever for this client")
        raise KafkaTimeoutError(f"Timeout after waiting for {timeout} secs.")


def test_flush_without_a_timeout_fails_what_the_client_never_answers_after_delivery_timeout() -> None:
    stuck = StuckKafka()
    reports: list[Any] = []
    producer = Producer.from_settings(SETTINGS, {"delivery.timeout.ms": 3000, "request.timeout.ms": 1000}, kafka=stuck,
                                      storefront="shop-eu", batch_events=1, on_delivery=reports.append)
    answered, *unanswered = producer.send_many(_sessions(3))
    stuck.futures[0].succeed(7)
    with pytest.raises(DeliveryError, match="delivery.timeout.ms=3000") as caught:
        producer.flush()
    assert stuck.flush_timeouts == [3.0 + FLUSH_MARGIN_S]  # bounded: delivery.timeout.ms and the margin
    assert caught.value.failed == 2
    assert [(r.event_id, r.ok) for r in reports] == [(answered, True)] + [(e, False) for e in unanswered]
    stuck.futures[1].succeed(8)  # a late answer after the report: not reported twice, not counted again
    assert len(reports) == 3
    with pytest.raises(ProducerError, match="within 1 s"):  # a caller's own timeout still raises as before
        producer.send_many(_sessions(1))
        producer.flush(timeout_s=1)


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
                            occurred_at=moment, event_id="evt-fixed-1", extra={"macro": "refund-policy"})
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
    (lambda p: p.survey_sent(response_id="r", kind="rating"), "bad_value", "kind"),
    (lambda p: p.survey_sent(response_id="r", kind="nps", score=9), "unknown_field", "score"),
    (lambda p: p.send({"type": "order.cancelled", "order_id": "o"}), "unknown_type", "order.cancelled"),
    (lambda p: p.send({"ticket_id": "t"}), "missing_field", "type"),
    (lambda p: p.send({"type": "ticket.resolved", "ticket_id": "t", "schema_version": 2}),
     "unsupported_version", "schema_version"),
    (lambda p: p.send({"type": "ticket.resolved", "ticket_id": "t", "occurred_at": "2025-03-14 09:00"}),
     "bad_timestamp", "occurred_at"),
    (lambda p: p.ticket_resolved(ticket_id="t", occurred_at=datetime(2025, 3, 14)), "bad_timestamp", "naive"),
    (lambda p: p.ticket_created(ticket_id="t", support_channel="chat", extra={"note": "x" * 1_100_000}),
     "oversized", "bytes"),
    (lambda p: p.ticket_created(ticket_id="t", support_channel="chat", extra={"tags": {"vip"}}),
     "wrong_type", "JSON"),
])
def test_invalid_events_raise_naming_the_field(call: Any, reason: str, field: str) -> None:
    producer, fake = _producer(batch_events=1)
    with pytest.raises(InvalidEvent) as caught:
        call(producer)
    assert caught.value.reason == reason
    assert field in str(caught.value)
    assert fake.sent == []


def test_missing_storefront_without_default() -> None:
    producer = Producer.from_settings(SETTINGS, kafka=FakeKafka(), batch_events=1)
    with pytest.raises(InvalidEvent, match="storefront is required"):
        producer.ticket_resolved(ticket_id="t")


@pytest.mark.parametrize("batch_events", [0, SETTINGS.max_batch_events + 1])
def test_batch_events_is_bounded(batch_events: int) -> None:
    with pytest.raises(ValueError, match="batch_events"):
        Producer.from_settings(SETTINGS, kafka=FakeKafka(), batch_events=batch_events)


def test_format_timestamp_needs_an_offset() -> None:
    assert format_timestamp(datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)) == "2025-01-02T03:04:05.678+00:00"


# ---------------------------------------------------------------- methods vs contract

@pytest.mark.parametrize("type_name", EVENT_TYPES)
def test_a_method_per_event_type_with_its_fields(type_name: str) -> None:
    method = getattr(Producer, METHODS[type_name])
    params = inspect.signature(method).parameters
    envelope = {"storefront", "occurred_at", "event_id"}
    named = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert named == envelope | EVENT_TYPES[type_name].names | {"extra", "on_delivery"}
    # The catch-all only exists to turn a misspelt keyword into InvalidEvent (see the typo tests).
    assert [n for n, p in params.items() if p.kind is inspect.Parameter.VAR_KEYWORD] == ["unknown"]
    for f in EVENT_TYPES[type_name].fields:
        has_default = params[f.name].default is not inspect.Parameter.empty
        assert has_default is (not f.required), f.name
    assert {f.name for f in ENVELOPE} - envelope == {"type", "schema_version"}


# ---------------------------------------------------------------- misspelt and extra field names

_ORDER = dict(order_id="ord-1", customer_id="cus-1", total_minor=4999, currency="EUR", first_order=True)


@pytest.mark.parametrize(("call", "typo", "meant"), [
    (lambda p: p.order_placed(**_ORDER, sesion_id="s1"), "sesion_id", "session_id"),
    (lambda p: p.order_placed(**_ORDER, session_id="s1", chanel="web"), "chanel", "channel"),
    (lambda p: p.ticket_replied(ticket_id="t", author="agent", public=True, suport_channel="chat"),
     "suport_channel", "support_channel"),
    (lambda p: p.session_started(session_id="s", visitor_id="v", channel="web", device="mobile", sorce="paid"),
     "sorce", "source"),
    (lambda p: p.ticket_resolved(ticket_id="t", occured_at="2025-03-14T09:00:00Z"), "occured_at", "occurred_at"),
])
def test_misspelt_keyword_fails_naming_the_closest_field(call: Any, typo: str, meant: str) -> None:
    producer, fake = _producer(batch_events=1)
    with pytest.raises(InvalidEvent) as caught:
        call(producer)
    assert caught.value.reason == "unknown_field"
    assert f"{typo} (did you mean {meant}?)" in str(caught.value)
    assert fake.sent == []


def test_every_misspelt_keyword_is_named_at_once() -> None:
    producer, _ = _producer(batch_events=1)
    with pytest.raises(InvalidEvent, match=r"chanel \(did you mean channel\?\), sesion_id \(did you mean session_id\?\)"):
        producer.order_placed(**_ORDER, sesion_id="s1", chanel="web")


@pytest.mark.parametrize(("event", "typo", "meant"), [
    ({"type": "order.placed", **_ORDER, "sesion_id": "s1"}, "sesion_id", "session_id"),
    ({"type": "ticket.replied", "ticket_id": "t", "author": "bot", "public": True, "suport_channel": "chat"},
     "suport_channel", "support_channel"),
    ({"type": "session.started", "sessionId": "s", "visitor_id": "v", "channel": "web", "device": "mobile"},
     "sessionId", "session_id"),
])
def test_misspelt_key_of_a_raw_event_fails_naming_the_closest_field(event: dict, typo: str, meant: str) -> None:
    producer, fake = _producer(batch_events=1)
    with pytest.raises(InvalidEvent) as caught:
        producer.send(event)
    assert caught.value.reason == "unknown_field"
    assert f"{typo} (did you mean {meant}?)" in str(caught.value)
    assert fake.sent == []


def test_an_unlisted_key_of_a_raw_event_must_come_through_extra() -> None:
    # Not a near miss of any field, still refused: what difflib cannot match is no safer.
    producer, fake = _producer(batch_events=1)
    event = {"type": "ticket.resolved", "ticket_id": "tkt-1"}
    with pytest.raises(InvalidEvent, match=r"^unknown_field: campaign is not a field of ticket.resolved; .*extra="):
        producer.send({**event, "campaign": "spring"})
    assert fake.sent == []
    producer.send(event, extra={"campaign": "spring"})
    assert orjson.loads(fake.sent[0][2])["campaign"] == "spring"


def test_extra_properties_are_sent_as_given() -> None:
    producer, fake = _producer(batch_events=1)
    producer.order_placed(**_ORDER, session_id="sess-1", channel="web", extra={"campaign": "x", "coupon": "SPRING"})
    event = orjson.loads(fake.sent[0][2])
    assert event["campaign"] == "x" and event["coupon"] == "SPRING"
    assert event["session_id"] == "sess-1" and event["channel"] == "web"
    assert decode_message(fake.sent[0][2], "order")[1] == []  # the worker reads it (and ignores the extras)


@pytest.mark.parametrize("extra", [{"session_id": "s1"}, {"type": "order.refunded"}, {"storefront": "outlet"}])
def test_extra_cannot_carry_a_field_of_the_contract(extra: dict) -> None:
    producer, fake = _producer(batch_events=1)
    with pytest.raises(InvalidEvent) as caught:
        producer.order_placed(**_ORDER, extra=extra)
    assert caught.value.reason == "field_in_extra" and next(iter(extra)) in str(caught.value)
    assert fake.sent == []


def test_fields_of_other_event_types_are_extras_here() -> None:
    producer, fake = _producer(batch_events=1)
    with pytest.raises(InvalidEvent, match="unknown_field: product_id is not a field of order.placed"):
        producer.send({"type": "order.placed", **_ORDER, "product_id": "sku-1"})
    producer.order_placed(**_ORDER, extra={"product_id": "sku-1"})
    assert orjson.loads(fake.sent[0][2])["product_id"] == "sku-1"


# ---------------------------------------------------------------- client settings


def test_client_settings_take_kafka_names_and_keep_the_owned_ones() -> None:
    producer = Producer("k1:9092, k2:9092", {
        "compression.type": "gzip", "acks": "1", "enable.idempotence": "false", "linger.ms": 20,
        "delivery.timeout.ms": "60000", "message.timeout.ms": 45_000, "sasl.username": "svc",
        "security.protocol": "SASL_SSL",
    }, batch_events=1)
    config = producer.client_config
    assert config["bootstrap_servers"] == ["k1:9092", "k2:9092"]
    assert config["compression_type"] == "gzip" and config["acks"] == 1 and config["enable_idempotence"] is False
    assert config["linger_ms"] == 20 and producer.linger_ms == 20
    assert config["delivery_timeout_ms"] == 45_000  # librdkafka's name, given later, wins
    assert config["sasl_plain_username"] == "svc" and config["security_protocol"] == "SASL_SSL"
    assert config["max_request_size"] == producer.max_message_bytes + 16_384
    producer.close()


def test_client_defaults_bound_every_wait() -> None:
    producer = Producer("k1:9092")
    config = producer.client_config
    assert config["acks"] == "all" and "enable_idempotence" not in config  # kafka-python's default: idempotent
    assert config["max_block_ms"] == 10_000 and config["bootstrap_timeout_ms"] == 10_000
    assert config["delivery_timeout_ms"] == 30_000 >= config["request_timeout_ms"] + config["linger_ms"]
    assert producer.linger_ms == 50 and config["linger_ms"] == 5  # batching: the wait happens before packing
    assert Producer("k1:9092", batch_events=1).linger_ms == 5
    producer.close()


def test_from_settings_brings_security_topics_and_limits() -> None:
    settings = Settings(topic_orders="shop.orders", security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                        sasl_username="u", sasl_password="p", max_message_bytes=500_000, app_id="shop")
    producer = Producer.from_settings(settings, {"acks": 1}, storefront="shop-eu")
    assert producer.bootstrap_servers == settings.bootstrap_servers
    assert producer.topics["order"] == "shop.orders" and producer.storefront == "shop-eu"
    assert producer.client_config["client_id"] == "shop-producer"
    assert producer.client_config["sasl_plain_password"] == "p" and producer.client_config["acks"] == 1
    assert producer.max_message_bytes == 500_000
    producer.close()


@pytest.mark.parametrize(("config", "message"), [
    ({"compresion.type": "gzip"}, "did you mean compression.type"),
    ({"enable.idempotency": True}, "did you mean enable.idempotence"),
    ({"value.serializer": str}, "writes each message's value itself"),
    ({"bootstrap.servers": "x:1"}, "first argument"),
    ({"linger.ms": 10, "delivery.timeout.ms": 5_000}, "delivery.timeout.ms=5000 must be at least"),
])
def test_wrong_client_settings_fail_in_the_constructor(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Producer("k1:9092", config)


def test_linger_given_twice_must_agree() -> None:
    with pytest.raises(ConfigError, match="disagree"):
        Producer("k1:9092", {"linger.ms": 10}, linger_ms=20)


def test_client_settings_list_is_kafka_pythons() -> None:
    from kafka import KafkaProducer

    assert CLIENT_SETTINGS == set(KafkaProducer.DEFAULT_CONFIG)


def test_settings_as_first_argument_still_work_with_a_warning() -> None:
    fake = FakeKafka()
    with pytest.warns(DeprecationWarning, match="from_settings"):
        producer = Producer(SETTINGS, kafka=fake, storefront="shop-eu", batch_events=1)
    producer.ticket_resolved(ticket_id="tkt-1")
    assert fake.sent[0][0] == SETTINGS.topic_tickets
    assert producer.client_config["client_id"] == f"{SETTINGS.app_id}-producer"


# ---------------------------------------------------------------- delivery reports


def test_every_event_of_a_batch_gets_its_report() -> None:
    seen: list[DeliveryReport] = []
    producer, fake = _producer(batch_events=3, linger_ms=60_000, on_delivery=seen.append)
    ids = [producer.product_viewed(session_id="sess-1", channel="web", device="mobile") for _ in range(3)]
    assert len(fake.sent) == 1 and seen == []  # nothing reported before the broker answers
    fake.futures[0].succeed(offset=41)
    partition = partition_for("sess-1", 4)
    assert seen == [DeliveryReport(event_id, SETTINGS.topic_sessions, partition, 41, index)
                    for index, event_id in enumerate(ids)]
    assert all(r.ok for r in seen)
    producer.flush()  # nothing failed: no error
    producer.close()


def test_a_failed_message_fails_each_of_its_events_and_others_still_succeed() -> None:
    seen: list[DeliveryReport] = []
    producer, fake = _producer(batch_events=2, linger_ms=60_000, on_delivery=seen.append)
    lost = [producer.ticket_replied(ticket_id="tkt-a", author="agent", public=True) for _ in range(2)]
    kept = producer.ticket_resolved(ticket_id="tkt-a")
    error = TimeoutError("batch expired")
    fake.futures[0].fail(error)
    assert [(r.event_id, r.offset, r.error) for r in seen] == [(lost[0], None, error), (lost[1], None, error)]
    assert not any(r.ok for r in seen)
    with pytest.raises(DeliveryError) as caught:
        producer.flush()  # hands over the lone third event, then reports the two failures
    assert caught.value.failed == 2 and {r.event_id for r in caught.value.reports} == set(lost)
    fake.futures[1].succeed(offset=7)
    assert seen[-1].event_id == kept and seen[-1].ok and seen[-1].offset == 7 and seen[-1].index == 0
    producer.close()


def test_a_per_call_callback_replaces_the_producers() -> None:
    default: list[DeliveryReport] = []
    mine: list[DeliveryReport] = []
    producer, fake = _producer(batch_events=1, on_delivery=default.append)
    mine_id = producer.ticket_resolved(ticket_id="tkt-1", on_delivery=mine.append)
    other_id = producer.send({"type": "ticket.resolved", "ticket_id": "tkt-2"})
    for offset, future in enumerate(fake.futures):
        future.succeed(offset)
    assert [r.event_id for r in mine] == [mine_id] and [r.event_id for r in default] == [other_id]


def test_a_refused_hand_over_is_reported_and_a_raising_callback_does_not_stop_the_rest() -> None:
    seen: list[DeliveryReport] = []

    def fragile(report: DeliveryReport) -> None:
        seen.append(report)
        raise RuntimeError("a bug in the caller's callback")

    producer, fake = _producer(batch_events=2, linger_ms=60_000, on_delivery=fragile)
    fake.refuse = TimeoutError("buffer full after max.block.ms")
    producer.send_many(_sessions(1) * 2)  # one partition, a full group: handed over at once
    assert [r.error for r in seen] == [fake.refuse] * 2 and [r.index for r in seen] == [0, 1]
    with pytest.raises(DeliveryError, match="2 events were not delivered"):
        producer.flush()


# ---------------------------------------------------------------- connecting lazily, failing in bounded time


def test_constructor_makes_no_network_call() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        producer = Producer(address, {"max.block.ms": 500})
        from_settings = Producer.from_settings(Settings(bootstrap_servers=address), {"max.block.ms": 500})
        assert time.monotonic() - started < 1.0
        # No connection now, nor a moment later (a background connect would show here).
        assert select.select([listener], [], [], 0.3)[0] == []
        # The first send is what connects: the listener is not Kafka, so it fails within max.block.ms.
        with pytest.raises(ProducerError):
            producer.send({"type": "ticket.resolved", "ticket_id": "tkt-1", "storefront": "shop-eu"})
        assert select.select([listener], [], [], 0)[0] == [listener]
        producer.close()
        from_settings.close()


def test_send_to_a_dead_broker_fails_within_max_block() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    producer = Producer(address, {"max.block.ms": 1000}, storefront="shop-eu")
    started = time.monotonic()
    with pytest.raises(ProducerError, match=rf"cannot connect to Kafka at {address} within 1000 ms \(max.block.ms\)"):
        producer.ticket_resolved(ticket_id="tkt-1")
    assert time.monotonic() - started < 1.0 + 2.0  # the bound, plus slack for a loaded machine
    producer.close()  # nothing was queued: closes without waiting


# ---------------------------------------------------------------- murmur2 without kafka-python, import weight


def test_own_murmur2_equals_kafka_pythons() -> None:
    from kafka.partitioner.default import murmur2 as kafka_murmur2

    rng = random.Random(7)
    keys = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64))) for _ in range(3000)]
    keys += ["tkt-é-😀".encode(), b"", b"a", b"ab", b"abc", b"abcd"]
    assert [murmur2(k) for k in keys] == [kafka_murmur2(k) for k in keys]
    assert [_murmur2_python(k) for k in keys] == [kafka_murmur2(k) for k in keys]  # the fallback, too


HEAVY_MODULES = ("faust", "mode", "matplotlib", "numpy", "prometheus_client", "confluent_kafka", "kafka", "aiokafka")


def test_importing_the_producer_loads_no_heavy_module() -> None:
    # A fresh interpreter: this test process has imported all of them already.
    code = "import json, sys, streams.producer; print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(done.stdout))
    assert "streams" in loaded
    assert loaded.isdisjoint(HEAVY_MODULES), sorted(loaded & set(HEAVY_MODULES))
