"""From queued events to Kafka messages: packing, and what became of each event.

``pack_messages`` is how the producer writes one partition's waiting events as
message values (a JSON array, or the plain object when alone) within the size
limits; the benchmark's workloads pack the same way. A ``DeliveryReport`` tells
the sender where Kafka wrote each event, or why it was not written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# Room for Kafka's record and batch framing: a batch's value stays this far under
# max_message_bytes, so it also fits a broker left at message.max.bytes=1048588.
BATCH_HEADROOM_BYTES = 16_384


def _chunks(encoded: list[bytes], max_events: int, max_bytes: int) -> list[tuple[int, int]]:
    """[start, end) ranges of ``encoded`` that each fit one message (see pack_messages)."""
    ranges: list[tuple[int, int]] = []
    start = 0
    size = 2  # the brackets
    for i, event in enumerate(encoded):
        if i > start and (i - start >= max_events or size + 1 + len(event) > max_bytes):
            ranges.append((start, i))
            start, size = i, 2
        size += len(event) + 1  # the comma
    if start < len(encoded):
        ranges.append((start, len(encoded)))
    return ranges


def pack_messages(encoded: list[bytes], max_events: int, max_bytes: int) -> list[bytes]:
    """Pack encoded events, in order, into message values of at most ``max_events``
    events and ``max_bytes`` bytes: a JSON array, or the plain object when alone.

        >>> pack_messages([b'{"a":1}', b'{"b":2}', b'{"c":3}'], 2, 100)
        [b'[{"a":1},{"b":2}]', b'{"c":3}']
    """
    return [_value(encoded[start:end]) for start, end in _chunks(encoded, max_events, max_bytes)]


def _value(chunk: list[bytes]) -> bytes:
    return chunk[0] if len(chunk) == 1 else b"[" + b",".join(chunk) + b"]"


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What became of one sent event: where Kafka wrote it, or why it was not written.

    ``offset`` is the offset of the Kafka message that holds the event and ``index``
    its position in that message's JSON array (0 for a message of one event), so
    ``(topic, partition, offset, index)`` finds it again. A failed event has
    ``offset=None`` and its ``error``.

        producer.send(event, on_delivery=lambda r: print(r.event_id, r.partition, r.offset, r.error))
        producer.flush()
    """

    event_id: str
    topic: str
    partition: int
    offset: int | None
    index: int
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """True when the broker acknowledged the event."""
        return self.error is None


DeliveryCallback = Callable[[DeliveryReport], None]
