"""The producer library against a real broker, and kcat as a second producer.

Events sent one per message and in batches come back from Kafka byte-exact
through ``decode_message``; a batch only holds events whose own key maps to
its partition, and carries its first event's key; every event's delivery
report points at the record that holds it; client settings (compression,
acks, idempotence, linger) reach the client; a broker that dies fails each
queued event within delivery.timeout.ms; kcat produces a valid event when
told to use Kafka's murmur2 partitioner (librdkafka's default, CRC32, puts
keys elsewhere).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.config import Settings
from streams.contract import EVENT_TYPES, FAMILIES, message_key
from streams.decode import as_dict, decode_message
from streams.devtools.broker import LocalBroker, create_topics
from streams.errors import DeliveryError
from streams.contract import partition_for
from streams.producer import DeliveryReport, Producer


def _session(i: int) -> dict[str, Any]:
    steps = ["session.started", "session.product_viewed", "session.cart_added", "session.checkout_started"]
    event = {"type": steps[i % 4], "session_id": f"sess-{i // 4:04d}", "channel": "web", "device": "mobile"}
    if i % 4 == 0:
        event["visitor_id"] = f"vis-{i // 4:04d}"
    return event


def _order(i: int) -> dict[str, Any]:
    order_id = f"ord-{i // 3:04d}"
    return [
        {"type": "order.placed", "order_id": order_id, "customer_id": f"cus-{i % 7}", "total_minor": 1000 + i,
         "currency": "EUR", "first_order": i % 2 == 0},
        {"type": "order.refunded", "order_id": order_id, "amount_minor": 500, "currency": "EUR"},
        {"type": "order.returned", "order_id": order_id},
    ][i % 3]


def _ticket(i: int) -> dict[str, Any]:
    ticket_id = f"tkt-{i // 4:04d}"
    return [
        {"type": "ticket.created", "ticket_id": ticket_id, "support_channel": "chat"},
        {"type": "ticket.replied", "ticket_id": ticket_id, "author": "agent", "public": True},
        {"type": "ticket.resolved", "ticket_id": ticket_id},
        {"type": "ticket.reopened", "ticket_id": ticket_id},
    ][i % 4]


def _survey(i: int) -> dict[str, Any]:
    return {"type": "survey.answered", "response_id": f"resp-{i:04d}", "kind": "nps", "score": i % 11}


FACTORIES: dict[str, Callable[[int], dict[str, Any]]] = {
    "session": _session, "order": _order, "ticket": _ticket, "survey": _survey,
}
N_EVENTS = 60


def _consume(settings: Settings, topic: str, enough: Callable[[list], bool], timeout_s: float = 20) -> list:
    """Every record of ``topic`` from the beginning, until ``enough(records)``."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers.split(","), enable_auto_commit=False,
        **settings.kafka_security(),
    )
    partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    records: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while not enough(records):
            assert time.monotonic() < deadline, f"only {len(records)} records on {topic}"
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
    finally:
        consumer.close()
    return sorted(records, key=lambda r: (r.partition, r.offset))


def _decoded(records: list, family: str) -> list[tuple[Any, list[dict]]]:
    out = []
    for record in records:
        events, rejections = decode_message(record.value, family)
        assert rejections == []
        out.append((record, [as_dict(e.body) for e in events]))
    return out


def _event_count(family: str) -> Callable[[list], bool]:
    return lambda records: sum(len(decode_message(r.value, family)[0]) for r in records) >= N_EVENTS


@pytest.mark.parametrize("batch_events", [1, 8])
@pytest.mark.parametrize("family", FAMILIES)
def test_events_round_trip(settings: Settings, family: str, batch_events: int) -> None:
    with Producer.from_settings(settings, batch_events=batch_events, linger_ms=200, storefront="shop-test") as producer:
        sent = [orjson.loads(orjson.dumps(producer_event)) for producer_event in
                (FACTORIES[family](i) for i in range(N_EVENTS))]
        ids = producer.send_many(sent)
    topic = settings.topics[family]
    decoded = _decoded(_consume(settings, topic, _event_count(family)), family)
    received = {e["event_id"]: e for _, events in decoded for e in events}
    assert list(received) and set(received) == set(ids)
    for event_id, original in zip(ids, sent):
        assert {k: v for k, v in received[event_id].items() if k in original} == original
    per_key: dict[str, list[str]] = defaultdict(list)
    for record, events in decoded:
        for event in events:
            assert partition_for(message_key(event), settings.partitions) == record.partition
            per_key[message_key(event)].append(event["event_id"])
        # Every message is keyed, a batch by its first event (whose key maps to this partition).
        assert record.key == message_key(events[0]).encode()
        assert partition_for(record.key.decode(), settings.partitions) == record.partition
        if batch_events == 1:
            assert orjson.loads(record.value) == events[0]
        else:
            assert len(events) <= batch_events
    by_key: dict[str, list[str]] = defaultdict(list)
    for event_id, original in zip(ids, sent):
        by_key[message_key(original)].append(event_id)
    assert per_key == by_key  # each key's events arrive in the order they were sent
    if batch_events > 1:
        assert any(len(events) > 1 for _, events in decoded), "expected some batched messages"


def test_every_method_sends_a_valid_event(settings: Settings) -> None:
    with Producer.from_settings(settings, batch_events=1, storefront="shop-test") as producer:
        producer.session_started(session_id="sess-m1", visitor_id="vis-m1", channel="app", device="tablet", source="email")
        producer.product_viewed(session_id="sess-m1", channel="app", device="tablet", product_id="sku-1")
        producer.cart_added(session_id="sess-m1", channel="app", device="tablet")
        producer.checkout_started(session_id="sess-m1", channel="app", device="tablet")
        producer.order_placed(order_id="ord-m1", customer_id="cus-m1", total_minor=12999, currency="USD",
                              first_order=False, session_id="sess-m1")
        producer.order_refunded(order_id="ord-m1", amount_minor=2999, currency="USD")
        producer.order_returned(order_id="ord-m1", amount_minor=2999, currency="USD")
        producer.ticket_created(ticket_id="tkt-m1", support_channel="sms", order_id="ord-m1")
        producer.ticket_replied(ticket_id="tkt-m1", author="bot", public=True)
        producer.ticket_resolved(ticket_id="tkt-m1")
        producer.ticket_reopened(ticket_id="tkt-m1", support_channel="phone")
        producer.survey_sent(response_id="resp-m1", kind="csat", channel="web", ticket_id="tkt-m1")
        producer.survey_answered(response_id="resp-m1", kind="csat", score=5, ticket_id="tkt-m1")
    seen: set[str] = set()
    for family in FAMILIES:
        want = sum(t.family == family for t in EVENT_TYPES.values())
        records = _consume(settings, settings.topics[family], lambda r, want=want: len(r) >= want)
        for _, events in _decoded(records, family):
            seen.update(e["type"] for e in events)
    assert seen == set(EVENT_TYPES)


# ---------------------------------------------------------------- delivery reports, client settings, a dying broker

def test_delivery_reports_point_at_each_events_record(settings: Settings) -> None:
    reports: list[DeliveryReport] = []
    with Producer.from_settings(settings, batch_events=8, linger_ms=200, storefront="shop-test",
                                on_delivery=reports.append) as producer:
        ids = producer.send_many(_ticket(i) for i in range(N_EVENTS))
    # Leaving the block flushed: every report is in (callbacks run before flush returns).
    assert sorted(r.event_id for r in reports) == sorted(ids) and all(r.ok for r in reports)
    records = _consume(settings, settings.topic_tickets, _event_count("ticket"))
    at = {(record.partition, record.offset): events for record, events in _decoded(records, "ticket")}
    for report in reports:
        assert report.topic == settings.topic_tickets
        assert at[(report.partition, report.offset)][report.index]["event_id"] == report.event_id
    assert any(r.index > 0 for r in reports), "expected some batched messages"


def test_client_settings_reach_the_client(settings: Settings) -> None:
    config = {"compression.type": "gzip", "acks": "all", "enable.idempotence": "true", "linger.ms": 20,
              "client.id": "storefront-checkout"}
    with Producer(settings.bootstrap_servers, config, topics=settings.topics, storefront="shop-test") as producer:
        ids = producer.send_many(_order(i) for i in range(N_EVENTS))
        client = producer._kafka.config  # kafka-python's resolved settings, after connecting
        assert client["compression_type"] == "gzip" and client["acks"] == -1 and client["enable_idempotence"]
        assert client["client_id"] == "storefront-checkout" and producer.linger_ms == 20
    decoded = _decoded(_consume(settings, settings.topic_orders, _event_count("order")), "order")
    assert {e["event_id"] for _, events in decoded for e in events} == set(ids)


def test_a_dying_broker_fails_each_queued_event_within_delivery_timeout(tmp_path: Path) -> None:
    # Its own broker: this test kills it.
    with LocalBroker(log_path=tmp_path / "tansu.log") as broker:
        settings = Settings.from_env({}, bootstrap_servers=broker.bootstrap, partitions=4)
        create_topics(settings)
        reports: list[DeliveryReport] = []
        config = {"delivery.timeout.ms": 3000, "request.timeout.ms": 1000, "max.block.ms": 2000}
        producer = Producer.from_settings(settings, config, batch_events=10, linger_ms=60_000,
                                          storefront="shop-test", on_delivery=reports.append)
        delivered = producer.ticket_created(ticket_id="tkt-live", support_channel="chat")
        producer.flush(timeout_s=30)
        assert [(r.event_id, r.ok) for r in reports] == [(delivered, True)]
        queued = [producer.ticket_resolved(ticket_id=f"tkt-{i}") for i in range(5)]  # lingering, not yet sent
        broker.kill()
        started = time.monotonic()
        with pytest.raises(DeliveryError, match=f"not delivered to Kafka at {broker.bootstrap}") as caught:
            producer.flush()
        elapsed = time.monotonic() - started
        assert elapsed < 3.0 + 5.0, f"flush took {elapsed:.1f}s for delivery.timeout.ms=3000"
        assert caught.value.failed == 5
        failed = {r.event_id: r for r in reports[1:]}
        assert set(failed) == set(queued) and not any(r.ok for r in failed.values())
        producer.close(timeout_s=5)


# ---------------------------------------------------------------- kcat

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
KCAT_KEYS = [f"tkt-kcat-{i:03d}" for i in range(24)]


@pytest.fixture(scope="session")
def kcat_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """kcat's environment, with a librdkafka new enough for the dev broker.

    Debian's kcat 1.7.1 links librdkafka 2.0.2, which cannot parse Tansu 0.6.0's
    ApiVersions v3 reply ("Read underflow"). The confluent-kafka wheel (a dev
    dependency, also the benchmark ceiling) bundles librdkafka 2.16, which can:
    kcat loads it through LD_LIBRARY_PATH. Real Kafka works with either.
    """
    import confluent_kafka

    bundled = sorted(Path(confluent_kafka.__file__).parent.parent.glob("confluent_kafka.libs/librdkafka*.so*"))
    assert bundled, "the confluent-kafka wheel bundles no librdkafka: reinstall the dev extra"
    libdir = tmp_path_factory.mktemp("librdkafka")
    (libdir / "librdkafka.so.1").symlink_to(bundled[0])
    return {**os.environ, "LD_LIBRARY_PATH": str(libdir)}


@pytest.fixture
def kcat(settings: Settings, kcat_env: dict[str, str]) -> str:
    assert KCAT is not None, "kcat is not installed: ./dev setup installs it (Debian package kcat)"
    probe = subprocess.run([KCAT, "-b", settings.bootstrap_servers, "-L", "-m", "5"], env=kcat_env,
                           capture_output=True, text=True, timeout=30)
    assert probe.returncode == 0, f"kcat cannot talk to the broker: {probe.stderr.strip()[-300:]}"
    return KCAT


def _kcat_produce(kcat: str, settings: Settings, lines: list[str], *extra: str, env: dict[str, str]) -> None:
    command = [kcat, "-b", settings.bootstrap_servers, "-t", settings.topic_tickets, "-P", "-K", "|", *extra]
    subprocess.run(command, input="\n".join(lines) + "\n", text=True, check=True, timeout=30, env=env)


def _ticket_line(key: str) -> str:
    event = {"event_id": f"evt-{key}", "type": "ticket.created", "schema_version": 1,
             "occurred_at": "2025-03-15T08:02:00+01:00", "storefront": "shop-test",
             "ticket_id": key, "support_channel": "email"}
    return f"{key}|{orjson.dumps(event).decode()}"


def test_kcat_with_murmur2_partitioner_matches_the_library(kcat: str, settings: Settings,
                                                          kcat_env: dict[str, str]) -> None:
    _kcat_produce(kcat, settings, [_ticket_line(k) for k in KCAT_KEYS], "-X", "partitioner=murmur2_random",
                  env=kcat_env)
    records = _consume(settings, settings.topic_tickets, lambda r: len(r) >= len(KCAT_KEYS))
    for record, events in _decoded(records, "ticket"):
        assert events and record.key.decode() == events[0]["ticket_id"]
        assert record.partition == partition_for(record.key.decode(), settings.partitions)


def test_kcat_default_partitioner_is_not_kafkas(kcat: str, settings: Settings, kcat_env: dict[str, str]) -> None:
    # librdkafka's default is consistent_random: CRC32 of the key, not murmur2.
    _kcat_produce(kcat, settings, [_ticket_line(k) for k in KCAT_KEYS], env=kcat_env)
    records = _consume(settings, settings.topic_tickets, lambda r: len(r) >= len(KCAT_KEYS))
    n = settings.partitions
    assert all(r.partition == zlib.crc32(r.key) % n for r in records)
    assert any(r.partition != partition_for(r.key.decode(), n) for r in records)
