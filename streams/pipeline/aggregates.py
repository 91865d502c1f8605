"""Small running aggregates: counts, exact sums and a mergeable quantile sketch.

The window layer keeps one ``Cell`` per (window, segment): named integer counts
(money in minor units, so sums stay exact) and named duration histograms. A
``LogHistogram`` stores counts per logarithmic bucket (DDSketch's mapping), so
it merges by adding counts and answers any quantile within a relative error of
``ALPHA`` (1%). It also keeps exact counts per Prometheus ``le`` bucket, so the
exported histogram counts equal a direct count of the observations.

    >>> h = LogHistogram(); h.add(60_000); h.add(120_000)
    >>> round(h.quantile(0.5))
    60
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any, Iterable

ALPHA = 0.01  # relative error of every quantile the sketch reports
_GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(_GAMMA)

# Prometheus buckets for support times (seconds): 15 s up to 3 days.
LE_SECONDS: tuple[float, ...] = (
    15, 30, 60, 120, 300, 600, 900, 1800, 2700, 3600, 5400, 7200, 10800, 14400,
    21600, 28800, 43200, 57600, 86400, 129600, 172800, 259200,
)
_LE_MS = tuple(int(s * 1000) for s in LE_SECONDS)


class LogHistogram:
    """Durations in ms: a log-bucket sketch plus exact counts per ``le`` bucket."""

    __slots__ = ("buckets", "zero", "le", "count", "sum_ms")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.zero = 0  # observations of 0 ms (or less: clocks disagree)
        self.le = [0] * (len(_LE_MS) + 1)  # last slot is +Inf
        self.count = 0
        self.sum_ms = 0

    def add(self, duration_ms: int, times: int = 1) -> None:
        """Record a duration in milliseconds (``times`` < 0 retracts it)."""
        duration_ms = max(duration_ms, 0)
        if duration_ms == 0:
            self.zero += times
        else:
            index = math.ceil(math.log(duration_ms) / _LOG_GAMMA)
            self.buckets[index] = self.buckets.get(index, 0) + times
        self.le[bisect_left(_LE_MS, duration_ms)] += times
        self.count += times
        self.sum_ms += duration_ms * times

    def merge(self, other: "LogHistogram") -> None:
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.zero += other.zero
        self.le = [a + b for a, b in zip(self.le, other.le)]
        self.count += other.count
        self.sum_ms += other.sum_ms

    def quantile(self, q: float) -> float:
        """The q-quantile in seconds, within ALPHA relative error; NaN when empty.

        Rank rule: the smallest observation with at least ceil(q * n) observations
        at or below it (the "lower" quantile an analyst gets from sorted values).
        """
        if self.count <= 0:
            return math.nan
        rank = max(1, math.ceil(q * self.count))
        seen = self.zero
        if seen >= rank:
            return 0.0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return 2 * _GAMMA**index / (_GAMMA + 1) / 1000.0
        return 2 * _GAMMA ** max(self.buckets) / (_GAMMA + 1) / 1000.0

    def cumulative_le(self) -> list[tuple[float, int]]:
        """[(le_seconds, observations <= le)], +Inf last, as Prometheus wants."""
        out, running = [], 0
        for bound, n in zip((*LE_SECONDS, math.inf), self.le):
            running += n
            out.append((bound, running))
        return out

    def copy(self) -> "LogHistogram":
        clone = LogHistogram()
        clone.buckets = dict(self.buckets)
        clone.zero, clone.le, clone.count, clone.sum_ms = self.zero, list(self.le), self.count, self.sum_ms
        return clone

    def to_json(self) -> list[Any]:
        return [sorted(self.buckets.items()), self.zero, self.le, self.count, self.sum_ms]

    @classmethod
    def from_json(cls, data: list[Any]) -> "LogHistogram":
        hist = cls()
        hist.buckets = {int(i): int(n) for i, n in data[0]}
        hist.zero, hist.le, hist.count, hist.sum_ms = data[1], list(data[2]), data[3], data[4]
        return hist


class Cell:
    """The running aggregates of one (window, segment): counts and histograms; and, only on the
    cells a closed window hands to the merge stage, sets of distinct ids (``sets``: the session
    family's visitors), which merge by union."""

    __slots__ = ("counts", "hists", "sets")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.hists: dict[str, LogHistogram] = {}
        self.sets: dict[str, set[str]] | None = None

    def add(self, name: str, amount: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + amount

    def observe(self, name: str, duration_ms: int, times: int = 1) -> None:
        hist = self.hists.get(name)
        if hist is None:
            hist = self.hists[name] = LogHistogram()
        hist.add(duration_ms, times)

    def merge(self, other: "Cell") -> None:
        for name, n in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + n
        for name, hist in other.hists.items():
            mine = self.hists.get(name)
            if mine is None:
                self.hists[name] = hist.copy()
            else:
                mine.merge(hist)
        if other.sets:
            sets = self.sets if self.sets is not None else {}
            for name, members in other.sets.items():
                mine = sets.get(name)
                if mine is None:
                    sets[name] = set(members)  # a set of its own: never one of ``other``'s
                else:
                    mine |= members  # in place: this cell owns its sets (``copy`` and the line above)
            self.sets = sets

    def copy(self) -> "Cell":
        clone = Cell()
        clone.counts = dict(self.counts)
        clone.hists = {name: h.copy() for name, h in self.hists.items()}
        if self.sets:
            clone.sets = {name: set(members) for name, members in self.sets.items()}
        return clone

    def to_json(self) -> list[Any]:
        """``[counts, histograms]``, and ``{name: sorted ids}`` third when the cell has sets (a reader
        of an older release ignores it)."""
        out: list[Any] = [self.counts, {name: h.to_json() for name, h in self.hists.items()}]
        if self.sets:
            out.append({name: sorted(members) for name, members in self.sets.items()})
        return out

    @classmethod
    def from_json(cls, data: list[Any]) -> "Cell":
        cell = cls()
        cell.counts = dict(data[0])
        cell.hists = {name: LogHistogram.from_json(h) for name, h in data[1].items()}
        if len(data) > 2 and data[2]:
            cell.sets = {name: set(members) for name, members in data[2].items()}
        return cell


Segment = tuple[str, ...]


def merge_cells(groups: Iterable[dict[Segment, Cell]]) -> dict[Segment, Cell]:
    """Sum several {segment: cell} maps into a new one (inputs untouched)."""
    total: dict[Segment, Cell] = {}
    for group in groups:
        for segment, cell in group.items():
            mine = total.get(segment)
            if mine is None:
                total[segment] = cell.copy()
            else:
                mine.merge(cell)
    return total
