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
                fetch_max_bytes=32 * 1024 * 1024,
                **self.settings.kafka_security(),
            )
        return self._consumer

    def read(self, partition: int, start: int = 0) -> tuple[list[tuple[bytes, bytes | None]], int]:
        """Records of one changelog partition from ``start`` to its end; and that end.

        The end is the Fetch high-water mark, read after the last record.
        """
        consumer = self._client()
        tp = TopicPartition(self.settings.topic_state, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        records: list[tuple[bytes, bytes | None]] = []
        deadline = time.monotonic() + self.timeout_s
        while True:
            for record in consumer.poll(timeout_ms=200, max_records=50_000).get(tp, ()):
                records.append((record.key, record.value))
            highwater = consumer.highwater(tp)
            position = consumer.position(tp)
            if highwater is not None and position >= highwater:
                return records, position
            if time.monotonic() > deadline:
                raise StateRecoveryError(
                    f"state changelog {tp.topic}[{partition}] not read to its end within {self.timeout_s:.0f}s "
                    f"(at offset {position}, high-water mark {highwater})")

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
