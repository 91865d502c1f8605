"""What the engine publishes for scrapes: one immutable view, swapped after every batch.

The engine builds a new ``Published`` at the end of each batch (one reference swap);
the collector reads only that view, never live state, so a scrape needs no lock and
never sees half a batch. Broker reachability changes between batches (a thread checks
it), so it lives beside the view, not in it.

    >>> Publisher().ready
    False
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FRESHNESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class Published:
    """Everything a scrape may read, frozen at the end of a batch."""

    snapshots: dict[tuple[str, int], Any] = field(default_factory=dict)
    recovered: bool = False  # partitions assigned and every one's state recovered
    consumer_lag: dict[tuple[str, int], int] = field(default_factory=dict)
    freshness_counts: tuple[int, ...] = (0,) * (len(FRESHNESS_BUCKETS) + 1)
    freshness_sum: float = 0.0
    recovery_seconds: float = 0.0
    recovered_records: int = 0
    state_resets: int = 0
    sink_failures: dict[str, int] = field(default_factory=dict)  # fenced / failed writes
    position_corrections: int = 0  # partitions whose committed offset differed from their state's
    idle: frozenset[tuple[str, int]] = frozenset()
    # (partition key, segment) of counter series born within CXPULSE_NEW_SERIES_HOLD: the first
    # scrape after their birth is served 0 for them (see the collector)
    born: dict[tuple[tuple[str, int], tuple[str, ...]], float] = field(default_factory=dict)
    engine: str = "kafka"


class Publisher:
    """Holds the latest ``Published`` view and the broker's reachability; the engine swaps
    the view, a thread sets ``broker_up``, scrapes read both."""

    def __init__(self) -> None:
        self.current = Published()
        self.broker_up = True
        self.exporter: Any = None  # the remote-write exporter, for its counters
        # (partition key, segment) of born series a scrape has been served at 0 (the collector adds)
        self.announced: set[tuple[tuple[str, int], tuple[str, ...]]] = set()

    @property
    def ready(self) -> bool:
        return self.current.recovered and self.broker_up
