"""No worker creates a topic by asking about it: a topic missing from the cluster (being set up,
a broker that came back empty, deleted) stays missing until ``cxpulse topics`` creates it with
the plan's partitions and configs. Against the real test broker, which auto-creates a topic for
any Metadata request that allows it (ENVIRONMENT.md)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, client
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from streams.devtools.broker import LocalBroker
from streams.runtime.faust_engine import _never_auto_create_topics


def topics_on(broker: LocalBroker) -> set[str]:
    return set(AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10).topics)


def test_the_faust_engines_kafka_client_asks_for_a_missing_topic_without_creating_it(
        broker: LocalBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "MetadataRequest", client.MetadataRequest)  # undone after the test
    _never_auto_create_topics()
    missing = f"t{uuid.uuid4().hex[:8]}.cx.sessions"

    async def ask() -> set[str] | None:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=f"g-{missing}")
        await consumer.start()
        try:
            consumer.subscribe([missing])
            await consumer._client.force_metadata_update()  # the request the consumer repeats while it waits
            return consumer.partitions_for_topic(missing)
        finally:
            await consumer.stop()

    assert asyncio.run(asyncio.wait_for(ask(), 60)) is None
    assert missing not in topics_on(broker)


def test_the_batch_engines_kafka_client_asks_for_a_missing_topic_without_creating_it(broker: LocalBroker) -> None:
    missing = f"t{uuid.uuid4().hex[:8]}.cx.sessions"
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{missing}"})
    try:
        metadata = consumer.list_topics(missing, timeout=10)
        assert metadata.topics[missing].error is not None, "the broker reported the topic as present"
    finally:
        consumer.close()
    assert missing not in topics_on(broker)
