"""Reading the state changelog back, to the Fetch high-water mark.

Recovery reads changelog partitions from an offset to their end. The end is the
high-water mark the broker returns in every Fetch response (librdkafka reports it as
partition EOF), not the ListOffsets answer: Tansu's ListOffsets(LATEST) returns the
base offset of the last batch, so a reader trusting it stops short (Faust's own table
recovery does, see ENVIRONMENT.md). The Fetch value is right on every broker.

Blocking; the worker calls it between batches, with the partitions it recovers paused.

    >>> reader = ChangelogReader(Settings())  # connects on first read
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition

from streams.config import Settings
from streams.errors import StateRecoveryError
from streams.pipeline.records import Record
from streams.runtime.kafka import client_config

log = logging.getLogger("cxpulse.changelog")

PROBE_S = 3.0  # how long a partition may give nothing before its end is asked for
STALL_S = 30.0  # a changelog read that makes no progress this long gives up (the recovery is retried)


class ChangelogReader:
    def __init__(self, settings: Settings, timeout_s: float = STALL_S) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._consumer: Consumer | None = None
        # read_uncommitted, for a changelog whose read_committed end stays held (see read())
        self._uncommitted: Consumer | None = None
        self._probe: Consumer | None = None
        # Called when a read makes no progress for PROBE_S: the engine writes to the shared
        # partitions so that a broker holding a transaction "prepared" finishes it (Sink.nudge).
        self.on_stall: Callable[[], Any] | None = None

    def _client(self, committed: bool = True) -> Consumer:
        if not committed:
            if self._uncommitted is None:
                self._uncommitted = Consumer(client_config(self.settings, **{
                    "group.id": f"{self.settings.app_id}.recovery",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": 20,
                    "max.partition.fetch.bytes": 8 * 1024 * 1024,
                    "isolation.level": "read_uncommitted",
                }))
            return self._uncommitted
        if self._consumer is None:
            self._consumer = Consumer(client_config(self.settings, **{
                "group.id": f"{self.settings.app_id}.recovery",  # never joins: assign() only
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 20,  # an empty partition answers at once: recovery is not a tail
                "max.partition.fetch.bytes": 8 * 1024 * 1024,
                "isolation.level": "read_committed",
            }))
        return self._consumer

    def _prober(self) -> Consumer:
        """A client that only asks for high-water marks (read_uncommitted: the log's end)."""
        if self._probe is None:
            self._probe = Consumer(client_config(self.settings, **{
                "group.id": f"{self.settings.app_id}.recovery",
                "enable.auto.commit": False,
                "isolation.level": "read_uncommitted",
            }))
        return self._probe

    def _to_end(self, tps: list[TopicPartition], keep: bool,
                committed: bool = True) -> dict[tuple[str, int], tuple[list, int]]:
        """Consume each partition from its given offset to the Fetch high-water mark. Gives up
        when ``timeout_s`` pass without progress (a long changelog may take longer in all)."""
        consumer = self._client(committed)
        consumer.assign(tps)
        records: dict[tuple[str, int], list] = {(tp.topic, tp.partition): [] for tp in tps}
        ends: dict[tuple[str, int], int] = {}
        errors: set[int] = set()
        below: dict[tuple[str, int], int] = {}  # a probe's end below where reading starts
        deadline = time.monotonic() + self.timeout_s
        probe_at = time.monotonic() + PROBE_S
        try:
            while len(ends) < len(records):
                for message in consumer.consume(10_000, 0.1):
                    where = (message.topic(), message.partition())
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            ends[where] = message.offset()
                            deadline = time.monotonic() + self.timeout_s
                        elif error.code() not in errors:  # once per kind, not once per retry
                            errors.add(error.code())
                            log.warning("event=changelog_read_error error=%s", error)
                        continue
                    deadline = time.monotonic() + self.timeout_s
                    ends.pop(where, None)  # more arrived after an EOF: not the end yet
                    if keep:
                        records[where].append((message.key(), message.value()))
                now = time.monotonic()
                if keep and now > probe_at:
                    # A broker that lost data (a restarted memory broker) answers a Fetch beyond
                    # its end with nothing, not OFFSET_OUT_OF_RANGE: a partition that gave no
                    # record and no end since reading began, and whose end is below where reading
                    # starts, ends there (the caller sees the changelog shorter than it knew).
                    # The end is asked for with read_uncommitted (the high-water mark: a
                    # read_committed answer stops at an open transaction, and Tansu's can
                    # under-report), and only believed when two probes PROBE_S apart agree:
                    # a slow fetch on a busy machine must not pass for a lost changelog.
                    probe_at = now + PROBE_S
                    if self.on_stall is not None:
                        self.on_stall()
                    for tp in tps:
                        where = (tp.topic, tp.partition)
                        if where not in ends and not records[where] and tp.offset > 0:
                            high = self._prober().get_watermark_offsets(tp, timeout=5, cached=False)[1]
                            if high >= tp.offset:
                                below.pop(where, None)
                            elif below.get(where) == high:
                                ends[where] = high
                            else:
                                below[where] = high
                if now > deadline:
                    late = sorted(set(records) - set(ends))
                    self.close()  # the next attempt starts with a new client (fresh metadata)
                    raise StateRecoveryError(f"changelog partitions {late} not read to their end: no progress "
                                             f"in {self.timeout_s:.0f}s")
        finally:
            if consumer in (self._consumer, self._uncommitted):
                consumer.unassign()
        return {where: (records[where], ends[where]) for where in records}

    def read(self, starts: dict[int, int],
             committed: bool = True) -> dict[int, tuple[list[tuple[bytes, bytes | None]], int]]:
        """Records of state-changelog partitions from their start offsets to their ends, all in
        one pass: partition -> (records, end), the end being the Fetch high-water mark.

        ``committed=False`` reads read_uncommitted: the engine's last resort when the
        read_committed end stayed held through two attempts (a minute and more). A claimed
        changelog partition has no open transaction on Kafka (the claim aborted the previous
        owner's, and the coordinator aborts any after its 60 s timeout), so there the two
        differ only by aborted records; the test broker shows those to read_committed readers
        anyway, and holds prepared transactions until a later one ends (docs/operations.md)."""
        topic = self.settings.topic_state
        found = self._to_end([TopicPartition(topic, p, start) for p, start in starts.items()], keep=True,
                             committed=committed)
        return {partition: found[topic, partition] for partition in starts}

    def read_held(self, topic: str, partition: int, start: int, timeout_s: float = 5.0) -> list[Record]:
        """Records of one partition from ``start`` to its log end, read_uncommitted: for a merge or
        customer partition whose read_committed end the broker holds (Engine._read_held). What
        arrives within ``timeout_s``; the rest is read the next time."""
        consumer = self._client(committed=False)
        consumer.assign([TopicPartition(topic, partition, start)])
        out: list[Record] = []
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                for message in consumer.consume(10_000, 0.1):
                    error = message.error()
                    if error is None:
                        out.append(Record(message.topic(), message.partition(), message.offset(),
                                          message.timestamp()[1], message.value()))
                    elif error.code() == KafkaError._PARTITION_EOF:
                        return out
            return out
        finally:
            consumer.unassign()

    def highwaters(self, topic_partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The Fetch high-water mark of each (topic, partition), read from near the end (the
        ListOffsets answer, which may stop short, is only where reading starts)."""
        found = self._to_end([TopicPartition(t, p, OFFSET_END) for t, p in topic_partitions], keep=False)
        # A read_committed end stops at a transaction still open (or, on Tansu, still
        # "prepared"): on a topic written in transactions it can lie below what the state has
        # read. The log's own end (read_uncommitted) may not: take the larger.
        prober = self._prober()
        return {where: max(end, prober.get_watermark_offsets(TopicPartition(*where), timeout=5, cached=False)[1])
                for where, (_, end) in found.items()}

    def log_end(self, topic: str, partition: int) -> int:
        """The partition's log end (read_uncommitted high-water mark)."""
        return self._prober().get_watermark_offsets(TopicPartition(topic, partition), timeout=5, cached=False)[1]

    def has_data(self, topic: str, partition: int, start: int, end: int) -> bool:
        """True if the partition holds a (committed) record at an offset in [start, end)."""
        consumer = self._client()
        consumer.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + min(self.timeout_s, 10.0)
        try:
            while time.monotonic() < deadline:
                for message in consumer.consume(100, 0.2):
                    error = message.error()
                    if error is None:
                        return message.offset() < end
                    if error.code() == KafkaError._PARTITION_EOF:
                        return False
            # Nothing readable yet (a read_committed end held by an open or, on the test broker,
            # prepared transaction): say there is data. The caller then reads from ``start``,
            # which is always safe: what lies there is either unread data or markers.
            log.info("event=gap_check_undecided topic=%s partition=%d from_offset=%d action=read_from_state",
                     topic, partition, start)
            return True
        finally:
            consumer.unassign()

    def topic_ids(self, topics: list[str]) -> dict[str, str | None]:
        """Kafka's topic id of each topic (None where the broker reports none): a topic
        deleted and created again, or a restarted memory broker, gets a new id."""
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers.split(","),
                                 **self.settings.kafka_security())
        try:
            consumer.topics()  # refreshes the cluster metadata, topic ids included
            cluster = consumer._client.cluster  # kafka-python keeps topic ids only here
            ids = {topic: cluster.topic_id(topic) for topic in topics}
        finally:
            consumer.close()
        return {topic: (str(value) if value else None) for topic, value in ids.items()}

    def close(self) -> None:
        for client in (self._consumer, self._probe, self._uncommitted):
            if client is not None:
                client.close()
        self._consumer = self._probe = self._uncommitted = None
