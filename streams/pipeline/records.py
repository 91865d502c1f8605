"""The values every stage of the pipeline passes along: neutral types, no behaviour.

A source delivers ``Record``s (one Kafka message each); the batch plan decodes them
into ``Message``s and hands each partition state its own, in offset order. A state
answers with an ``Applied``: the changelog records that hold its new state, the
events it parks, and what it sends to other stages (customer facts, window
partials). ``Meta`` is the last record of every batch of every state: the position
(``through``) and the pipeline counters. Nothing here knows Kafka or Prometheus.

    >>> state_partition("order", 2, partitions=4)
    6
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import orjson

from streams.contract import FAMILIES

# A partition of the pipeline: (stage, partition number). The stage is an event family
# for the window stage, or "customer" / "merge" for the two re-keyed stages.
Key = tuple[str, int]

# State changelog partitions: one block of N per stage, in this order.
STATE_STAGES: tuple[str, ...] = (*FAMILIES, "customer", "merge")


def state_partition(stage: str, partition: int, partitions: int) -> int:
    """The changelog partition that holds one pipeline partition's state."""
    return STATE_STAGES.index(stage) * partitions + partition


class Record(NamedTuple):
    """One Kafka message as a source delivers it (the source's client never leaks past this)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # the broker's (LogAppendTime) or the producer's (CreateTime) timestamp
    value: bytes | None


@dataclass(frozen=True)
class Message:
    """One decoded Kafka message of a partition: its valid events (or facts) and its rejections."""

    offset: int
    events: Sequence[Any]
    rejections: Sequence[Any]
    timestamp_ms: int = 0
    value: bytes = b""  # the message as read, parked when an event of it cannot be re-encoded


@dataclass
class Parked:
    """A rejected or late event to write to the dead-letter topic."""

    offset: int
    reason: str
    detail: str
    index: int | None
    raw: bytes


@dataclass
class Applied:
    """What one batch of one partition produced.

    ``records`` are changelog records in write order (meta last); ``parked`` goes to the
    dead-letter topic; ``sends`` are messages for the re-keyed stages, as
    ``(stage, partition, value)`` with stage ``"customer"`` or ``"merge"``; ``exports``
    are complete event-time windows for the TSDB (merge stage only).
    """

    records: list[tuple[bytes, bytes | None]]
    parked: list[Parked]
    counted: int = 0
    sends: list[tuple[str, int, bytes]] = field(default_factory=list)
    exports: list[Any] = field(default_factory=list)


@dataclass
class Meta:
    """Position and pipeline counters of a partition's state (written last per batch).

    ``closed_ms``: end of the last event-time window this partition has closed (window
    stage) or found complete (merge stage); ``exported_ms``: end of the last window the
    TSDB acknowledged (merge stage); ``writer``: who wrote the record (an ownership token:
    recovery only trusts a kept state whose last record is its own).
    """

    through: int = 0
    watermark_ms: int | None = None
    events: int = 0  # valid, first-seen, on-time events counted into windows
    late: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    admitted: dict[str, list[str]] = field(default_factory=dict)  # label -> values given their own series
    overflow: dict[str, int] = field(default_factory=dict)  # label (or "segment") -> events sent to `other`
    source_id: str | None = None  # Kafka topic id of the source: a recreated topic gets a new one
    closed_ms: int | None = None
    exported_ms: int | None = None
    writer: str | None = None
    idle_advances: int = 0  # times the watermark moved because the partition was idle

    def to_json(self) -> bytes:
        return orjson.dumps([self.through, self.watermark_ms, self.events, self.late, self.duplicates, self.rejected,
                             self.messages, self.admitted, self.overflow, self.source_id, self.closed_ms,
                             self.exported_ms, self.writer, self.idle_advances])

    def copy(self) -> "Meta":
        return Meta(self.through, self.watermark_ms, self.events, self.late, self.duplicates, dict(self.rejected),
                    self.messages, {k: list(v) for k, v in self.admitted.items()}, dict(self.overflow),
                    self.source_id, self.closed_ms, self.exported_ms, self.writer, self.idle_advances)

    @classmethod
    def from_json(cls, data: bytes) -> "Meta":
        return cls(*orjson.loads(data))
