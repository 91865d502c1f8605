"""Event-time window maths: plain integers in milliseconds, no Kafka, no Faust.

Base windows are tumbling and aligned to the epoch: ``[start, start + window_ms)``.
Longer views (5 min, 1 h) are aligned groups of base windows. A window is
*closed* once the watermark (the largest event time seen) has passed its end
plus the grace period; an event whose window is closed is *late*.

    >>> window_start(125_000, 60_000)
    120000
    >>> is_late(ts_ms=59_000, watermark_ms=200_000, window_ms=60_000, grace_ms=120_000)
    True
"""

from __future__ import annotations


def window_start(ts_ms: int, window_ms: int) -> int:
    """Start of the aligned window holding ``ts_ms`` (works for negative ts too)."""
    return ts_ms - ts_ms % window_ms


def is_closed(start_ms: int, window_ms: int, watermark_ms: int, grace_ms: int) -> bool:
    """True when no event may enter the window any more."""
    return watermark_ms >= start_ms + window_ms + grace_ms


def is_late(ts_ms: int, watermark_ms: int, window_ms: int, grace_ms: int) -> bool:
    """True when the event's own base window is already closed."""
    return is_closed(window_start(ts_ms, window_ms), window_ms, watermark_ms, grace_ms)


def last_closed_start(view_ms: int, watermark_ms: int, grace_ms: int) -> int:
    """Start of the most recent closed view window for this watermark.

        >>> last_closed_start(300_000, watermark_ms=1_000_000, grace_ms=120_000)
        300000
    """
    return window_start(watermark_ms - grace_ms, view_ms) - view_ms


def base_starts(view_start_ms: int, view_ms: int, window_ms: int) -> range:
    """The base windows that make up one view window."""
    return range(view_start_ms, view_start_ms + view_ms, window_ms)
