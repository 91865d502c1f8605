"""Reading the state changelog back, to the Fetch high-water mark.

Recovery reads one changelog partition from an offset to its end. The end is
the high-water mark that the broker returns in every Fetch response, not the
ListOffsets answer: Tansu's ListOffsets(LATEST) returns the base offset of the
last batch, so a reader trusting it stops short (Faust's own table recovery
does, see ENVIRONMENT.md). The Fetch value is right on every broker.

Blocking (kafka-python); the worker calls it from a thread.

    >>> reader = ChangelogReader(Settings())  # connects on first read
"""

from __future__ import annotations

import logging
import time

from kafka import KafkaConsumer, TopicPartition

from streams.config import Settings
from streams.errors import StateRecoveryError

log = logging.getLogger("cxpulse.changelog")


class ChangelogReader:
    def __init__(self, settings: Settings, timeout_s: float = 120.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._consumer: KafkaConsumer | None = None

    def _client(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.settings.bootstrap_servers.split(","),
                group_id=None,
                enable_auto_commit=False,
                max_partition_fetch_bytes=8 * 1024 * 1024,
                fetch_max_wait_ms=20,  # an empty partition answers at once: recovery is not a tail
                fetch_max_bytes=32 * 1024 * 1024,
                **self.settings.kafka_security(),
            )
        return self._consumer

    def read(self, starts: dict[int, int]) -> dict[int, tuple[list[tuple[bytes, bytes | None]], int]]:
        """Records of changelog partitions from their start offsets to their ends.

        ``starts`` maps partition -> first offset to read. Returns partition ->
        (records, end), the end being the Fetch high-water mark read after the
        last record. All partitions are fetched together, in one pass.
        """
        consumer = self._client()
        tps = {TopicPartition(self.settings.topic_state, p): p for p in starts}
        consumer.assign(list(tps))
        for tp, partition in tps.items():
            consumer.seek(tp, starts[partition])
        records: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in starts}
        pending = set(tps)
        deadline = time.monotonic() + self.timeout_s
        while pending:
            for tp, batch in consumer.poll(timeout_ms=100, max_records=50_000).items():
                records[tps[tp]].extend((record.key, record.value) for record in batch)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None and consumer.position(tp) >= highwater:
                    pending.discard(tp)
            if pending and time.monotonic() > deadline:
                late = {tp.partition: (consumer.position(tp), consumer.highwater(tp)) for tp in pending}
                raise StateRecoveryError(
                    f"state changelog {self.settings.topic_state} not read to its end within {self.timeout_s:.0f}s "
                    f"(partition: (offset, high-water mark) {late})")
        return {partition: (records[partition], consumer.position(tp)) for tp, partition in tps.items()}

    def highwaters(self, topic_partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The Fetch high-water mark of each (topic, partition): fetched from near the end."""
        consumer = self._client()
        tps = [TopicPartition(topic, partition) for topic, partition in topic_partitions]
        consumer.assign(tps)
        consumer.seek_to_end(*tps)  # ListOffsets may stop short (Tansu); the fetch from there tells the truth
        deadline = time.monotonic() + self.timeout_s
        while any(consumer.highwater(tp) is None for tp in tps):
            consumer.poll(timeout_ms=100, max_records=1)
            if time.monotonic() > deadline:
                raise StateRecoveryError(f"no high-water mark for {[str(tp) for tp in tps]} within "
                                         f"{self.timeout_s:.0f}s")
        return {(tp.topic, tp.partition): consumer.highwater(tp) for tp in tps}

    def topic_ids(self, topics: list[str]) -> dict[str, str | None]:
        """Kafka's topic id of each topic (None where the broker reports none): a topic
        deleted and created again, or a restarted memory broker, gets a new id."""
        consumer = self._client()
        consumer.topics()  # refreshes the cluster metadata, topic ids included
        cluster = consumer._client.cluster  # kafka-python keeps topic ids only here
        ids = {topic: cluster.topic_id(topic) for topic in topics}
        return {topic: (str(value) if value else None) for topic, value in ids.items()}

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
