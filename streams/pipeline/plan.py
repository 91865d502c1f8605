"""The batch plan: the worker's partition states, and what one batch makes of them.

The middle of the flow, between a source and a sink, with no Kafka client in it:

    records (topic, partition, offset, timestamp, value) from any source
      -> decode (events, customer facts or window items) -> group by partition
      -> apply to that partition's state -> one ``Outbox`` per partition:
         dead letters and sends to the re-keyed stages (written first), changelog
         records (meta last), the offset to commit, complete windows to export

A sink writes an outbox atomically per partition (or in that order, where the broker
cannot do it atomically), and only then may the source commit its offset; until the
sink confirms, ``Pipeline`` keeps no promise. If it fails, the partition's state is
dropped and recovered from the changelog again (``drop``), so a batch is replayed,
never half-applied.

Ownership: ``claim`` says which partitions to recover and from where (a state this
worker kept since it last owned the partition is read forward from its own last
record, after checking that record is still its own); ``install`` puts a recovered
state in place; ``release`` keeps a state when a partition goes.

    >>> pipeline = Pipeline(Settings(), worker="w1")
    >>> pipeline.stage_of("cx.orders")
    'order'
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from streams.config import Settings
from streams.contract import FAMILIES
from streams.decode import Rejection, decode_message
from streams.pipeline import exchange
from streams.pipeline.customer_state import CustomerState
from streams.pipeline.deadletter import Headers, dead_letter
from streams.pipeline.merge_state import MergeState, WindowExport
from streams.pipeline.records import Applied, Key, Message, Meta, Record, state_partition
from streams.pipeline.state import PartitionStateProtocol
from streams.pipeline.window_state import PartitionState

State = PartitionStateProtocol  # PartitionState, CustomerState or MergeState


@dataclass
class Outbox:
    """Everything one batch of one partition must put on the broker, in write order."""

    key: Key
    state_partition: int
    dead_letters: list[tuple[bytes, Headers]] = field(default_factory=list)
    sends: list[tuple[str, int, bytes]] = field(default_factory=list)  # (stage, partition, value)
    changelog: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    next_offset: int | None = None  # the source offset to commit once written; None: commit nothing
    exports: list[WindowExport] = field(default_factory=list)
    parked: dict[str, int] = field(default_factory=dict)  # reason -> count, for the log
    first_parked: dict[str, Any] = field(default_factory=dict)  # reason -> (offset, detail)
    timestamps_ms: list[int] = field(default_factory=list)  # of the messages, for freshness


@dataclass(frozen=True)
class RecoveryJob:
    """Read changelog partition ``state_partition`` from ``start`` and restore ``state``."""

    key: Key
    state_partition: int
    start: int
    state: State
    expect_writer: str | None  # incremental: the record at start - 1 must be our own meta


@dataclass
class _Kept:
    state: State
    changelog_end: int


class Pipeline:
    """The partition states of one worker; pure: records in, outboxes out."""

    def __init__(self, settings: Settings, worker: str) -> None:
        self.settings = settings
        self.worker = worker
        self._stage_of: dict[str, str] = {name: family for family, name in settings.topics.items()}
        self._stage_of[settings.topic_customers] = "customer"
        self._stage_of[settings.topic_windows] = "merge"
        self.topic_of: dict[str, str] = {stage: topic for topic, stage in self._stage_of.items()}
        self.states: dict[Key, State] = {}
        self.changelog_end: dict[Key, int] = {}
        self._kept: dict[Key, _Kept] = {}
        self._writer: dict[Key, str] = {}
        self._active_at: dict[Key, float] = {}  # monotonic time of the last message per partition
        # Partitions a source delivered records of while no state was held for them (assigned and
        # still recovering, or revoked): those records were not applied, so a source that moves on
        # by itself (Faust) must be sought back to the state's position once it is recovered.
        self.skipped: set[Key] = set()
        self._claims = itertools.count(1)

    # ------------------------------------------------------------ topology
    def stage_of(self, topic: str) -> str:
        return self._stage_of[topic]

    def topics(self) -> list[str]:
        """Every topic the worker consumes: the four event topics and the two re-keyed ones."""
        return list(self._stage_of)

    def key_of(self, topic: str, partition: int) -> Key | None:
        stage = self._stage_of.get(topic)
        return None if stage is None else (stage, partition)

    def new_state(self, key: Key) -> State:
        stage, partition = key
        if stage == "customer":
            return CustomerState(partition, self.settings)
        if stage == "merge":
            return MergeState(partition, self.settings)
        return PartitionState(stage, partition, self.settings)  # type: ignore[arg-type]

    # ----------------------------------------------------------- ownership
    def claim(self, keys: Iterable[Key]) -> list[RecoveryJob]:
        """Recovery jobs for the partitions not yet held: a kept state forward from its end,
        else a new state from the changelog's start."""
        jobs = []
        for key in sorted(set(keys) - set(self.states)):
            target = state_partition(key[0], key[1], self.settings.partitions)
            kept = self._kept.pop(key, None)
            if kept is not None and kept.changelog_end > 0:
                jobs.append(RecoveryJob(key, target, kept.changelog_end - 1, kept.state, kept.state.meta.writer))
            else:
                jobs.append(RecoveryJob(key, target, 0, self.new_state(key), None))
        return jobs

    def unclaim(self, jobs: Iterable[RecoveryJob]) -> None:
        """Recovery jobs that could not run (the broker did not answer): keep what they would
        have continued from, for the next claim."""
        for job in jobs:
            if job.expect_writer is not None and job.key not in self.states:
                self._kept[job.key] = _Kept(job.state, job.start + 1)

    def install(self, job: RecoveryJob, records: list[tuple[bytes, bytes | None]], end: int) -> State | None:
        """Put a recovered state in place; None when an incremental read found that the last
        record before it is not this worker's own (someone wrote in between): recover from 0."""
        state = job.state
        if job.expect_writer is not None:
            if not records or not _is_meta_by(records[0], job.key, job.expect_writer):
                return None
            records = records[1:]
        state.restore(records)
        token = f"{self.worker}.{next(self._claims)}"
        state.meta.writer = token
        self._writer[job.key] = token
        self.states[job.key] = state
        self.changelog_end[job.key] = end
        self._active_at[job.key] = time.monotonic()
        return state

    def fresh(self, key: Key) -> State:
        """Replace a partition's state by a new one (its source was recreated: start over)."""
        state = self.new_state(key)
        state.meta.writer = self._writer.get(key)
        self.states[key] = state
        return state

    def release(self, keys: Iterable[Key]) -> None:
        """Partitions that went to another worker: keep their states in case they come back."""
        for key in keys:
            state = self.states.pop(key, None)
            end = self.changelog_end.pop(key, 0)
            if state is not None:
                self._kept[key] = _Kept(state, end)
            self._active_at.pop(key, None)

    def drop(self, keys: Iterable[Key]) -> None:
        """Partitions whose last write failed or was fenced: what memory holds is ahead of the
        broker, so forget it (and any kept copy); the next claim recovers from the changelog."""
        for key in keys:
            self.states.pop(key, None)
            self.changelog_end.pop(key, None)
            self._kept.pop(key, None)
            self._active_at.pop(key, None)

    def written(self, key: Key, changelog_end: int) -> None:
        """The sink has the outbox of ``key`` on the broker, its changelog ending at ``changelog_end``."""
        if key in self.states:
            self.changelog_end[key] = max(self.changelog_end.get(key, 0), changelog_end)

    # --------------------------------------------------------------- batch
    def plan(self, records: Iterable[Record], now_ms: int | None = None) -> list[Outbox]:
        """Decode and apply a batch (records of a partition in offset order); an outbox per
        partition that had records. Records of partitions not held are skipped (their new
        owner reads them again)."""
        settings = self.settings
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        not_after = now_ms + settings.max_clock_skew_ms
        messages: dict[Key, list[Message]] = defaultdict(list)
        for record in records:
            stage = self._stage_of.get(record.topic)
            key = (stage, record.partition)
            if stage is None:
                continue
            if key not in self.states:
                self.skipped.add(key)
                continue
            batch = messages[key]
            if batch and record.offset <= batch[-1].offset:
                continue  # delivered twice in one batch (a source that sought back): a replay
            value = record.value or b""
            if stage in FAMILIES:
                events, rejections = decode_message(
                    value, stage, max_bytes=settings.max_message_bytes, max_events=settings.max_batch_events,
                    not_after_ms=not_after, partition=record.partition, partitions=settings.partitions)
            else:
                events, rejections = _internal(stage, value)
            batch.append(Message(record.offset, events, rejections, record.timestamp_ms, value))
        now = time.monotonic()
        outboxes = []
        for key, batch in messages.items():
            self._active_at[key] = now
            outbox = self._outbox(key, self.states[key].apply(batch))
            outbox.next_offset = batch[-1].offset + 1
            outbox.timestamps_ms = [m.timestamp_ms for m in batch]
            outboxes.append(outbox)
        return outboxes

    def idle(self, caught_up: set[Key]) -> list[Outbox]:
        """Window-stage partitions with no message for ``idle_partition_ms`` that have read
        everything there is: their watermark follows the worker's other partitions of the
        family (else of any family), ``idle_partition_ms`` behind, so their windows close."""
        idle_ms = self.settings.idle_partition_ms
        now = time.monotonic()
        marks: dict[str, int] = {}
        for (stage, _), state in self.states.items():
            if stage in FAMILIES and state.meta.watermark_ms is not None:
                marks[stage] = max(marks.get(stage, state.meta.watermark_ms), state.meta.watermark_ms)
        if not marks:
            return []
        anywhere = max(marks.values())
        outboxes = []
        for key, state in self.states.items():
            if key[0] not in FAMILIES or key not in caught_up:
                continue
            if now - self._active_at.get(key, now) < idle_ms / 1000:
                continue
            applied = state.advance_idle(marks.get(key[0], anywhere) - idle_ms)  # type: ignore[union-attr]
            if applied is not None:
                outboxes.append(self._outbox(key, applied))
        return outboxes

    def idle_for(self, key: Key) -> float:
        """Seconds since the last message of a partition (since it was recovered, if none)."""
        return time.monotonic() - self._active_at.get(key, time.monotonic())

    def _outbox(self, key: Key, applied: Applied) -> Outbox:
        settings = self.settings
        topic = self.topic_of[key[0]]
        outbox = Outbox(key, state_partition(key[0], key[1], settings.partitions), sends=applied.sends,
                        changelog=applied.records, exports=applied.exports)
        for parked in applied.parked:
            outbox.dead_letters.append(dead_letter(parked, topic, key[1], settings.deadletter_max_bytes))
            outbox.parked[parked.reason] = outbox.parked.get(parked.reason, 0) + 1
            outbox.first_parked.setdefault(parked.reason, (parked.offset, parked.detail))
        return outbox


def _is_meta_by(record: tuple[bytes, bytes | None], key: Key, writer: str) -> bool:
    record_key, value = record
    if value is None or record_key != f"{key[0]}|{key[1]}|m|0".encode():
        return False
    return Meta.from_json(value).writer == writer


def _internal(stage: str, value: bytes) -> tuple[list, list[Rejection]]:
    """A message of a re-keyed topic: only cxpulse writes them, so a bad one is foreign data."""
    decode = exchange.decode_facts if stage == "customer" else exchange.decode_window_items
    try:
        return decode(value), []
    except ValueError as error:  # orjson.JSONDecodeError is a ValueError
        return [], [Rejection("malformed_json", f"not a {stage}-topic message: {error}", None, value)]
