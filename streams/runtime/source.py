"""The batch source: a confluent-kafka consumer in the worker's consumer group.

It reads the four event topics and the two re-keyed topics in batches
(``consume(n)``, one call per batch: librdkafka fetches in the background, so Python
pays per batch, not per message) and turns each message into a ``Record``, the only
shape the pipeline sees. Rebalances arrive through callbacks: a newly assigned
partition is paused at once and stays paused until the engine has recovered its
state and seeks it to the state's own position (``start``), so the committed offset
is only a hint and the state is the truth about where to read. Offsets are committed
in the sink's transaction (``offset``, ``group_metadata``); ``commit`` is for the
rest.

    source = KafkaSource(settings, topics, on_assigned, on_revoked)
    for record in source.poll(2000, 0.1): ...
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streams.config import Settings
from streams.pipeline.records import Key, Record
from streams.runtime.kafka import client_config

log = logging.getLogger("cxpulse.source")


class KafkaSource:
    def __init__(self, settings: Settings, stage_of: dict[str, str],
                 on_assigned: Callable[[set[Key]], None], on_revoked: Callable[[set[Key], bool], None]) -> None:
        self.settings = settings
        self.stage_of = stage_of  # topic -> stage
        self.topic_of = {stage: topic for topic, stage in stage_of.items()}
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self.rebalancing = False  # between a revoke and the next assignment
        self._last_error_log = 0.0
        self.consumer = Consumer(client_config(settings, **{
            "group.id": settings.app_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Tansu answers JoinGroup after half the session timeout (ENVIRONMENT.md): 10 s keeps
            # joins near 5 s; a stopped worker loses its partitions after 10 s.
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            # librdkafka sends this as the group's rebalance timeout too: how long a rebalance
            # waits for members that were in the group to join again (the test broker keeps a
            # member that left mid-rebalance until then). Recovery happens between polls, so it
            # must fit in it (a changelog reads at 100k+ records/s here).
            "max.poll.interval.ms": 60_000,
            # Eager range assignment: measured on the test broker, a join takes ~5 s; the
            # cooperative protocol needs two rounds (~30 s to move a partition).
            "partition.assignment.strategy": "range",
            "fetch.wait.max.ms": settings.fetch_wait_ms,
            "isolation.level": "read_committed",
            "error_cb": self._client_error,
        }))
        self.consumer.subscribe(sorted(stage_of), on_assign=self._assigned, on_revoke=self._revoked,
                                on_lost=self._lost)

    # ----------------------------------------------------------- callbacks
    def _keys(self, partitions: list[TopicPartition]) -> set[Key]:
        return {(self.stage_of[tp.topic], tp.partition) for tp in partitions if tp.topic in self.stage_of}

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.rebalancing = False
        consumer.assign(partitions)
        consumer.pause(partitions)  # until the engine has recovered their state (start())
        self._on_assigned(self._keys(partitions))

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.rebalancing = True
        self._on_revoked(self._keys(partitions), False)
        consumer.unassign()

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.rebalancing = True
        self._on_revoked(self._keys(partitions), True)
        consumer.unassign()

    def _client_error(self, error: KafkaError) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 10:
            self._last_error_log = now
            log.warning("event=consumer_error error=%s", error)

    # ---------------------------------------------------------------- read
    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to ``max_records`` records; rebalance callbacks run inside this call."""
        records = []
        for message in self.consumer.consume(max_records, timeout_s):
            if message.error() is not None:
                self._client_error(message.error())
                continue
            records.append(Record(message.topic(), message.partition(), message.offset(), message.timestamp()[1],
                                  message.value()))
        return records

    def tp(self, key: Key, offset: int | None = None) -> TopicPartition:
        topic = self.topic_of[key[0]]
        return TopicPartition(topic, key[1]) if offset is None else TopicPartition(topic, key[1], offset)

    def start(self, positions: dict[Key, int]) -> None:
        """Read each partition from the given offset on (its recovered state's position)."""
        for key, offset in positions.items():
            self.consumer.seek(self.tp(key, offset))
        self.consumer.resume([self.tp(key) for key in positions])

    def seek(self, key: Key, offset: int) -> None:
        self.consumer.seek(self.tp(key, offset))

    def pause(self, keys: set[Key]) -> None:
        if keys:
            self.consumer.pause([self.tp(key) for key in keys])

    def committed(self, keys: set[Key], timeout_s: float = 10.0) -> dict[Key, int | None]:
        """The group's committed offsets (a hint: logged where it differs from the state)."""
        if not keys:
            return {}
        try:
            found = self.consumer.committed([self.tp(key) for key in keys], timeout_s)
        except KafkaException:
            return {key: None for key in keys}
        return {(self.stage_of[tp.topic], tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in found}

    def highwater(self, key: Key) -> int | None:
        """The high-water mark of the last Fetch response (ListOffsets may stop short)."""
        try:
            _, high = self.consumer.get_watermark_offsets(self.tp(key), cached=True)
        except KafkaException:
            return None
        return high if high >= 0 else None

    def group_metadata(self) -> Any:
        return self.consumer.consumer_group_metadata()

    def commit(self, offsets: dict[Key, int]) -> None:
        if offsets:
            try:
                self.consumer.commit(offsets=[self.tp(k, o) for k, o in offsets.items()], asynchronous=False)
            except KafkaException as exc:  # a stale member: the new owner reads from its state anyway
                log.warning("event=commit_failed error=%s", exc.args[0])

    def close(self) -> None:
        try:
            self.consumer.close()  # leaves the group: the partitions move at once
        except (KafkaException, RuntimeError):
            pass
