"""A parked event as a dead-letter record: its bytes and the headers that say why.

Every parked event reaches the dead-letter topic, whatever its size: a message the broker
delivered can be larger than what a producer may send back (a 5 MB message read from a
topic whose limit is higher, a 1 MB label), so a record over ``max_bytes`` goes there
truncated, with its original size and a SHA-256 of the whole, and the reason as always.
No message can stop a worker by being too big to park.

    >>> value, headers = dead_letter(Parked(7, "oversized", "too big", None, b"x" * 10), "cx.orders", 1, 4)
    >>> value, dict(headers)["cx-original-bytes"]
    (b'xxxx', b'10')
"""

from __future__ import annotations

import hashlib

from streams.pipeline.records import Parked

Headers = list[tuple[str, bytes]]


def dead_letter(parked: Parked, topic: str, partition: int, max_bytes: int) -> tuple[bytes, Headers]:
    """The record value and headers for one parked event (see docs/events.md, "Dead letters")."""
    headers: Headers = [
        ("cx-reason", parked.reason.encode()),
        ("cx-detail", parked.detail.encode()[:1024]),
        ("cx-source-topic", topic.encode()),
        ("cx-source-partition", str(partition).encode()),
        ("cx-source-offset", str(parked.offset).encode()),
        ("cx-batch-index", b"" if parked.index is None else str(parked.index).encode()),
    ]
    raw = parked.raw
    if len(raw) > max_bytes:
        headers += [
            ("cx-truncated", b"true"),
            ("cx-original-bytes", str(len(raw)).encode()),
            ("cx-sha256", hashlib.sha256(raw).hexdigest().encode()),
        ]
        raw = raw[:max_bytes]
    return raw, headers
