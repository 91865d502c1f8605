"""The merge stage: closed windows of every source partition, summed per storefront.

Each source partition closes its own event-time windows by its own watermark and sends
their cells, storefront by storefront, to the merge partition of that storefront
(``exchange.window_messages``), with a marker saying how far it has closed. A merge
partition holds, per (family, window, storefront), the cells of each source partition
that had data there, and per source partition the end of its last closed window. A
family's window is **complete** once every source partition of the family has closed
it; only then is it summed and exported, so what the TSDB receives for a storefront is
the whole window, never one worker's or one partition's share:

    source partitions --(closed windows, markers)--> merge partition of the storefront
        --(complete windows: 1m, and 5m/15m/1h ending at every minute)--> TSDB (exports)

Exactly once by content: a partial is stored under its source partition (a resend
replaces it with the same cells) and markers only move forward, so replays after a
crash change nothing. Every record carries ``through`` like the other states; meta last.

    >>> state = MergeState(0, Settings(partitions=1))
    >>> applied = state.apply([Message(0, [["m", "survey", 0, 120_000]], [])])
    >>> state.complete["survey"]
    120000
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import orjson

from streams.config import Settings
from streams.contract import FAMILIES
from streams.pipeline.aggregates import Cell, Segment, merge_cells
from streams.pipeline.families import widen
from streams.pipeline.records import Applied, Message, Meta, Parked
from streams.pipeline.state import ExactlyOnce


@dataclass(frozen=True)
class WindowExport:
    """One complete window of one family and storefront, for the TSDB.

    ``end_ms`` is the window's (exclusive) end and the sample's timestamp; ``cells`` maps
    a full segment (storefront first) to its sums; empty when the storefront had no event
    of the family in the window (the family is complete there all the same).
    """

    family: str
    storefront: str
    view_ms: int
    end_ms: int
    cells: dict[Segment, Cell]


@dataclass(frozen=True)
class MergeSnapshot:
    """What the scrape reads of one merge partition: never mutated after creation."""

    family: str
    partition: int
    meta: Meta
    complete: dict[str, int]
    exported: dict[str, int]
    sources: dict[tuple[str, int], int]
    windows: int


class MergeState(ExactlyOnce):
    """Partials and markers of one merge-topic partition; see the module docstring."""

    family = "merge"

    def __init__(self, partition: int, settings: Settings) -> None:
        self.partition = partition
        self.partitions = settings.partitions
        self.window_ms = settings.window_ms
        self.views_ms = settings.views_ms
        self.retention_ms = settings.retention_ms
        self.meta = Meta()
        self.sources: dict[tuple[str, int], int] = {}  # (family, source partition) -> closed until
        # (family, window start, storefront) -> source partition -> cells
        self.partials: dict[tuple[str, int, str], dict[int, dict[Segment, Cell]]] = {}
        self.complete: dict[str, int] = {}  # family -> end of the last complete window
        self.exported: dict[str, int] = {}  # family -> end of the last window the TSDB acknowledged
        self.progress_through = 0  # `through` of the sources/complete record
        self._through: dict[tuple[str, int, str], int] = {}  # `through` of each window record
        # (family, window start, storefront) -> its partials summed over the source partitions, built once
        # for the views that hold the window (``windows_between``); dropped when a partial of it changes.
        # Never persisted, never handed out (exports get copies); only windows within the longest view.
        self._summed: dict[tuple[str, int, str], dict[Segment, Cell]] = {}
        self._prefix = f"merge|{partition}|".encode()

    # ----------------------------------------------------------------- apply
    def apply(self, messages: Iterable[Message]) -> Applied:
        meta = self.meta
        parked: list[Parked] = []
        touched: set[tuple[str, int, str]] = set()
        last_offset = None
        progressed = False
        for message in self.unpersisted(messages, parked):
            offset = last_offset = message.offset
            for item in message.events:
                family, source = item[1], item[2]
                if family not in FAMILIES or not 0 <= source < self.partitions:
                    meta.rejected["bad_value"] = meta.rejected.get("bad_value", 0) + 1
                    continue
                meta.events += 1
                if item[0] == "m":  # markers only move forward: a resent one changes nothing
                    before = self.sources.get((family, source))
                    if before is None or item[3] > before:
                        self.sources[family, source] = item[3]
                        progressed = True
                    continue
                key = (family, item[3], item[4])
                if offset < self._through.get(key, 0):
                    continue  # this window's record already holds it
                self.partials.setdefault(key, {})[source] = {widen(family, seg): Cell.from_json(cell)
                                                             for seg, cell in item[5]}
                self._summed.pop(key, None)
                touched.add(key)
        if last_offset is None:
            return Applied([], parked)
        end = last_offset + 1
        exports = self._complete() if progressed else []
        records: list[tuple[bytes, bytes | None]] = []
        for key in sorted(touched):
            self._through[key] = end
            records.append((self._window_key(key), self._window_value(key, end)))
        records.extend(self._evict())
        if progressed or self.progress_through < end:
            self.progress_through = end
            records.append((self.key(b"s", "0"), self._progress_value()))
        meta.closed_ms = min(self.complete.values()) if len(self.complete) == len(FAMILIES) else None
        self.seal(records, end)
        return Applied(records, parked, 0, [], exports)

    def _complete(self) -> list[WindowExport]:
        """Windows that every source partition of a family has now closed, summed."""
        exports: list[WindowExport] = []
        for family in FAMILIES:
            closed = [self.sources.get((family, p)) for p in range(self.partitions)]
            if any(value is None for value in closed):
                continue
            until = min(closed)  # type: ignore[type-var]
            before = self.complete.get(family)
            if before is not None and until <= before:
                continue
            self.complete[family] = until
            exports.extend(self.windows_between(family, before, until))
        return exports

    def windows_between(self, family: str, after_ms: int | None, until_ms: int) -> list[WindowExport]:
        """Exports of every view window of ``family`` ending in ``(after_ms, until_ms]``, each
        storefront of this partition; ``after_ms`` None: from the oldest window held."""
        window_ms = self.window_ms
        starts = sorted({start for fam, start, _ in self.partials if fam == family})
        if after_ms is None:
            after_ms = (starts[0] if starts else until_ms - window_ms)
        after_ms = max(after_ms, until_ms - self.retention_ms + max(self.views_ms))
        storefronts = sorted({storefront for _, _, storefront in self.partials})
        out: list[WindowExport] = []
        end = after_ms - after_ms % window_ms + window_ms
        summed = self._sum_sources
        while end <= until_ms:
            for view in self.views_ms:  # every view ends at every base window's end (trailing)
                for storefront in storefronts:
                    # the base windows' sums over the sources, summed (exact: integer counts and
                    # histogram buckets add, sets unite, in any grouping); new cells, inputs untouched
                    cells = merge_cells(summed((family, start, storefront))
                                        for start in range(end - view, end, window_ms))
                    out.append(WindowExport(family, storefront, view, end, cells))
            end += window_ms
        oldest = until_ms - max(self.views_ms)  # no later view holds an older window
        for key in [k for k in self._summed if k[0] == family and k[1] < oldest]:
            del self._summed[key]
        return out

    def _sum_sources(self, key: tuple[str, int, str]) -> dict[Segment, Cell]:
        """One base window's partials summed over the source partitions (kept in ``_summed``)."""
        found = self._summed.get(key)
        if found is None:
            sources = self.partials.get(key)
            if sources is None:
                return {}
            found = self._summed[key] = merge_cells(sources.values())
        return found

    def pending_exports(self) -> list[WindowExport]:
        """Complete windows the TSDB has not acknowledged (after a recovery: send them again;
        the TSDB keeps the first copy of a sample, and every copy is the same)."""
        out: list[WindowExport] = []
        for family, until in sorted(self.complete.items()):
            out.extend(self.windows_between(family, self.exported.get(family), until))
        return out

    def mark_exported(self, family: str, end_ms: int) -> None:
        """The TSDB holds every window of ``family`` ending at or before ``end_ms`` (persisted
        with the next batch; until then a recovery sends them again)."""
        if end_ms > self.exported.get(family, end_ms - 1):
            self.exported[family] = end_ms

    # ----------------------------------------------------------------- evict
    def _evict(self) -> list[tuple[bytes, None]]:
        """Drop windows past the retention behind their family's completion (or behind the
        furthest family, for one that has never completed: its memory stays bounded)."""
        if not self.complete:
            return []
        furthest = max(self.complete.values())
        gone = [key for key in self.partials
                if key[1] + self.window_ms <= self.complete.get(key[0], furthest) - self.retention_ms]
        for key in gone:
            del self.partials[key]
            self._through.pop(key, None)
            self._summed.pop(key, None)
        return [(self._window_key(key), None) for key in gone]

    # --------------------------------------------------------------- records
    def _window_key(self, key: tuple[str, int, str]) -> bytes:
        return self.key(b"w", orjson.dumps(list(key)).decode())

    def _window_value(self, key: tuple[str, int, str], through: int) -> bytes:
        sources = self.partials[key]
        return orjson.dumps([through, [[p, [[list(s), c.to_json()] for s, c in cells.items()]]
                                       for p, cells in sorted(sources.items())]])

    def _progress_value(self) -> bytes:
        return orjson.dumps([self.progress_through, [[f, p, v] for (f, p), v in sorted(self.sources.items())],
                             self.complete, self.exported])

    def restore(self, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        applied = 0
        size = len(self._prefix)
        through = self._through
        for key, value in self.settled(records):  # this state's own records only
            applied += 1
            kind, _, ident = key[size:].partition(b"|")
            if kind == b"w":
                family, start, storefront = orjson.loads(ident)
                window = (family, start, storefront)
                self._summed.pop(window, None)
                if value is None:
                    self.partials.pop(window, None)
                    through.pop(window, None)
                else:
                    at, sources = orjson.loads(value)
                    through[window] = at
                    self.partials[window] = {p: {widen(family, s): Cell.from_json(c) for s, c in cells}
                                             for p, cells in sources}
            elif kind == b"s":
                if value is None:
                    self.progress_through, self.sources, self.complete, self.exported = 0, {}, {}, {}
                else:
                    at, sources, complete, exported = orjson.loads(value)
                    self.progress_through = at
                    self.sources = {(f, p): v for f, p, v in sources}
                    self.complete, self.exported = dict(complete), dict(exported)
            elif kind == b"m":
                self.meta = Meta() if value is None else Meta.from_json(value)
        return applied

    def tombstones(self) -> list[tuple[bytes, None]]:
        keys = [self._window_key(key) for key in self.partials]
        keys += [self.key(b"s", "0"), self.key(b"m", "0")]
        return [(key, None) for key in keys]

    def snapshot(self, previous: Any = None) -> MergeSnapshot:
        return MergeSnapshot(self.family, self.partition, self.meta.copy(), dict(self.complete),
                             dict(self.exported), dict(self.sources), len(self.partials))
