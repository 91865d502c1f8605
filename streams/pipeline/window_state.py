"""Window state of one source partition, applied exactly once by Kafka offset.

Third stop of the flow (decode -> **apply to window state** -> expose). Each
source topic-partition (a family and a partition number) owns one
``PartitionState``: its base windows (segment -> ``Cell``), running totals, the
tickets it follows, the event ids it has seen, and a meta record (the next
offset it will read, its watermark, its pipeline counters). Nothing here knows
Kafka clients or Faust: the worker feeds batches in offset order and writes the
records ``apply`` returns to the state changelog, in the order returned.

Exactness under at-least-once delivery rests on three rules:

1. Every state record carries ``through``: the offset after the last message
   whose effect it holds. A replayed message at ``offset < through`` is already
   in that record and is skipped *for that record only*.
2. Records of one batch are written in a fixed order to one changelog partition
   (windows, days, totals, tickets, seen-ids, then meta). Kafka keeps that order, so
   a persisted meta record proves the whole batch persisted: messages below
   ``meta.through`` are skipped outright.
3. A duplicate is an event whose ``event_id`` was first seen at another
   (offset, index) within the dedupe horizon; seeing the *same* (offset, index)
   again is a replay, not a duplicate.

    >>> state = PartitionState("survey", 0, Settings())
    >>> state.meta.through
    0
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any, Iterable

import msgspec
import orjson

from streams.config import Settings
from streams.contract import EVENT_TYPES, Family
from streams.days import day_start_ms
from streams.pipeline import exchange
from streams.pipeline.aggregates import Cell, Segment
from streams.pipeline.families import (BREAKDOWN, DAY_FIELDS, FACT_TYPES, HANDLERS, SEGMENT_LABELS, Ticket,
                                       breakdown_field, facts, widen)
from streams.pipeline.labels import OTHER, LabelBounds
from streams.pipeline.records import Applied, Message, Meta, Parked
from streams.pipeline.state import ExactlyOnce
from streams.pipeline.windows import window_start

RECORD_ITEMS = 5000  # sessions or visitors per funnel / visitor record (~50 bytes each): far below Kafka's 1 MB
# Distinct visitors kept per base window, storefront and partition (~25 bytes each in the window items and
# the merge stage's records, which hold every partition's: these stay far below Kafka's 1 MB). Beyond it the
# storefront's window is marked over budget and its visitor series are not written: absent, never wrong.
VISITORS_MAX = 2000

@dataclass
class Slot:
    """One state record's cells (a base window, a day, or the running totals)."""

    through: int = 0
    cells: dict[Segment, Cell] = field(default_factory=dict)

    def cell(self, segment: Segment) -> Cell:
        found = self.cells.get(segment)
        if found is None:
            found = self.cells[segment] = Cell()
        return found

    def to_json(self) -> bytes:
        return orjson.dumps([self.through, [[list(s), c.to_json()] for s, c in self.cells.items()]])

    @classmethod
    def from_json(cls, data: bytes, family: str | None = None) -> "Slot":
        """A slot record; with ``family``, segments of an older, shorter segment are widened (``widen``)."""
        through, cells = orjson.loads(data)
        if family is None:
            return cls(through, {tuple(s): Cell.from_json(c) for s, c in cells})
        return cls(through, {widen(family, s): Cell.from_json(c) for s, c in cells})


class PartitionState(ExactlyOnce):
    """Window state of one (family, partition); see the module docstring."""

    unbounded_kinds = frozenset({b"d"})  # seen ids: no through of their own, offsets per item

    def __init__(self, family: Family, partition: int, settings: Settings) -> None:
        self.family = family
        self.partition = partition
        self.window_ms = settings.window_ms
        self.grace_ms = settings.grace_ms
        self.retention_ms = settings.retention_ms
        self.horizon_ms = settings.dedupe_horizon_ms
        self.ticket_ttl_ms = settings.ticket_ttl_ms
        self.calendars = settings.calendars  # support calendars: ticket times in business hours too
        self.day_retention_ms = settings.day_retention_ms
        self.lead_ms = settings.watermark_lead_ms
        self.partitions = settings.partitions  # of the re-keyed stages too (customer, merge)
        self.meta = Meta()
        self.windows: dict[int, Slot] = {}
        self.days: dict[int, Slot] = {}  # UTC day start -> day totals (sessions and orders only)
        self.keep_days = family in ("session", "order")
        self._dirty_days: set[int] = set()
        self.totals = Slot()
        self.tickets: dict[str, Ticket] = {}
        # Session family: the funnel steps each session has reached ([mask, last event time], families.on_session),
        # persisted per batch in chunks keyed by the batch's end and a chunk number -> the newest event time in it.
        self.funnels: dict[str, list[int]] = {}
        # (last event time when last checked, session id): one entry per session in ``funnels``, pushed when
        # ``on_session`` adds it; eviction pops the entries behind the timeout and drops the sessions really
        # over, pushing the others back with their newer last event time (no scan of every session).
        self.funnel_expiry: list[tuple[int, str]] = []
        self.funnel_records: dict[str, int] = {}
        self.session_timeout_ms = settings.session_timeout_ms
        # Session family: the distinct visitors of each open base window per (bounded) segment, handed to
        # the merge stage with the window's cells when it closes (``families.on_session``). Persisted as
        # the batch's new (window, segment, visitor) triples in chunks -> the newest window start in them.
        self.visitors: dict[int, dict[Segment, set[str]]] = {}
        self.visitor_counts: dict[tuple[int, str], int] = {}  # (window start, storefront) -> visitors kept
        self.visitors_over: set[tuple[int, str]] = set()  # (window start, storefront) past VISITORS_MAX
        self.visitor_records: dict[str, int] = {}
        self._visits: list[list[Any]] = []
        self.seen: dict[str, tuple[int, int, int]] = {}  # event_id -> (bucket, offset, index)
        self.seen_records: dict[int, int] = {}  # first offset of a seen-ids record -> its newest bucket
        self._evicted_below = 0  # watermark bucket up to which eviction ran
        self._dirty_windows: set[int] = set()  # changed since the last snapshot
        self._prefix = f"{family}|{partition}|".encode()
        handler = HANDLERS[family]
        self._handlers = {name: handler for name, t in EVENT_TYPES.items() if t.family == family}
        self.bounds = LabelBounds(SEGMENT_LABELS[family], settings, (BREAKDOWN,) if family == "ticket" else ())

    # ----------------------------------------------------------------- apply
    def apply(self, messages: Iterable[Message]) -> Applied:
        """Apply a batch of messages in offset order; return what to persist.

        The per-event path, in order: dedupe, lateness, first sight and watermark
        (``_first_sight``), label admission, the customer fact, then the event type's
        additions (``families``) to the base window, the day totals and the running totals
        (``_Batch.add``): each skipped for a record whose ``through`` already holds this
        message (a replay)."""
        batch = _Batch(self)
        meta, handlers, bounds, lead_ms = self.meta, self._handlers, self.bounds, self.lead_ms
        first_sight = self._first_sight
        for message in self.unpersisted(messages, batch.parked):
            offset = batch.offset = batch.last_offset = message.offset
            bound_ms = message.timestamp_ms + lead_ms if message.timestamp_ms > 0 else None
            for body, ts_ms, index in message.events:
                if not first_sight(body, ts_ms, offset, index, bound_ms, message.value, batch):
                    continue
                batch.ts_ms = ts_ms
                batch.counted += 1
                bounds.admit(body, meta.admitted)
                if body.TYPE in FACT_TYPES:
                    batch.facts.extend(facts(body, ts_ms, self._bound_value))
                handlers[body.TYPE](self, body, ts_ms, offset, batch.touched, batch.add)
        if batch.last_offset is None:
            return Applied([], batch.parked, 0)
        return self._persist(batch, batch.last_offset + 1)

    def _first_sight(self, body: Any, ts_ms: int, offset: int, index: int, bound_ms: int | None, value: bytes,
                     batch: "_Batch") -> bool:
        """Whether the event counts: not a duplicate within the dedupe horizon, not late. One
        that counts is recorded as seen and moves the watermark."""
        meta = self.meta
        event_id = body.event_id
        watermark = meta.watermark_ms
        first = self.seen.get(event_id)
        # Within the horizon of this watermark only, whenever eviction last ran:
        # the verdict must not depend on where batches happened to be cut.
        if (first is not None and (first[1] != offset or first[2] != index)
                and (watermark is None or first[0] >= watermark - self.horizon_ms)):
            meta.duplicates += 1
            return False
        window_ms = self.window_ms
        bucket = ts_ms - ts_ms % window_ms
        if watermark is not None and watermark >= bucket + window_ms + self.grace_ms:  # its window closed
            meta.late += 1
            batch.parked.append(Parked(offset, "late", f"event time is older than its window's grace "
                                       f"({watermark - ts_ms} ms behind the watermark)", index,
                                       _encoded(body, value)))
            return False
        # Record the first sight, also when replaying it: this batch's seen-ids
        # record may replace one written under the same key before a crash.
        self.seen[event_id] = (bucket, offset, index)
        batch.seen.append([event_id, bucket, offset, index])
        # The watermark follows event time, but never further than the lead past the
        # message's timestamp: one producer whose clock runs ahead cannot close the
        # windows of everyone else (docs/metrics.md, "Watermark").
        advance = ts_ms if bound_ms is None or ts_ms <= bound_ms else bound_ms
        if watermark is None or advance > watermark:
            meta.watermark_ms = advance
        meta.events += 1
        return True

    def _persist(self, batch: "_Batch", end: int) -> Applied:
        """The batch's changelog records in their fixed order: windows, days, totals, tickets,
        seen ids, tombstones, meta last; and the facts and closed windows it sends on."""
        records: list[tuple[bytes, bytes | None]] = []
        self._dirty_windows.update(batch.windows)
        for start in sorted(batch.windows):
            slot = self.windows[start]
            slot.through = end
            records.append((self.key(b"w", start), slot.to_json()))
        self._dirty_days.update(batch.days)
        for day in sorted(batch.days):
            slot = self.days[day]
            slot.through = end
            records.append((self.key(b"y", day), slot.to_json()))
        if batch.totals:
            self.totals.through = end
            records.append((self.key(b"c", 0), self.totals.to_json()))
        if self.family == "ticket":
            for ticket_id in sorted(batch.touched):
                ticket = self.tickets[ticket_id]
                ticket.through = end
                records.append((self.key(b"t", ticket_id), ticket.to_json()))
        if self._visits:
            visits, self._visits = self._visits, []
            records += self._chunks(b"v", visits, end, self.visitor_records, 0)
        if self.family == "session" and batch.touched:
            # The sessions this batch touched, as they stand now; later records win on restore (each session
            # once per record, so their order in it does not matter: no sort).
            funnels = self.funnels
            items = [[session_id, *funnels[session_id]] for session_id in batch.touched]
            records += self._chunks(b"f", items, end, self.funnel_records, 2)
        for chunk in _seen_chunks(batch.seen):
            # One record per chunk, cut at message boundaries and keyed by the chunk's
            # first offset: one record for a whole batch outgrows the broker's message
            # size limit (2,000 messages x 100 events = 200k ids, ~10 MB).
            self.seen_records[chunk[0][2]] = max(item[1] for item in chunk)
            records.append((self.key(b"d", chunk[0][2]), orjson.dumps(chunk)))
        sends = exchange.fact_messages(batch.facts, self.partitions) + self._close()
        records.extend(self._evict())
        self.seal(records, end)
        return Applied(records, batch.parked, batch.counted, sends)

    def _chunks(self, kind: bytes, items: list[list[Any]], end: int, newest: dict[str, int],
                at: int) -> list[tuple[bytes, bytes | None]]:
        """A batch's funnel or visitor items as records of ``RECORD_ITEMS`` each, keyed by the batch's end
        and a chunk number; ``newest`` learns each record's largest ``item[at]`` (what eviction reads)."""
        out: list[tuple[bytes, bytes | None]] = []
        for k in range(0, len(items), RECORD_ITEMS):
            chunk = items[k:k + RECORD_ITEMS]
            ident = f"{end}-{k // RECORD_ITEMS}"
            newest[ident] = max(item[at] for item in chunk)
            out.append((self.key(kind, ident), orjson.dumps([end, chunk])))
        return out

    def _bound_value(self, label: str, value: str) -> str:
        return self.bounds.value(label, value, self.meta.admitted)

    def category(self, value: str) -> str:
        """A ticket's product category as its breakdown carries it: ``other`` outside the allow-list
        or the cap (admitted per event like a segment label, so a replay decides the same way)."""
        bounded = self.bounds.value(BREAKDOWN, value, self.meta.admitted)
        if bounded == OTHER and value != OTHER:
            overflow = self.meta.overflow
            overflow[BREAKDOWN] = overflow.get(BREAKDOWN, 0) + 1
        return bounded

    def visit(self, start: int, raw_segment: Segment, visitor_id: str) -> None:
        """A counted ``session.started``'s visitor, in its base window and segment (bounded as the
        ``add`` just before it bounded it)."""
        segment = self.bounds.memo.get(raw_segment)
        if segment is None:
            segment = self.bounds.bound(raw_segment, self.meta.admitted, self.totals.cells)
        by_segment = self.visitors.get(start)  # no setdefault: it would build a dict and a set per call
        if by_segment is None:
            by_segment = self.visitors[start] = {}
        members = by_segment.get(segment)
        if members is None:
            members = by_segment[segment] = set()
        elif visitor_id in members:
            return
        where = (start, segment[0])
        kept = self.visitor_counts.get(where, 0)
        if kept >= VISITORS_MAX:
            if where not in self.visitors_over:
                self.visitors_over.add(where)
                self._visits.append([start, None, segment[0]])
            return
        self.visitor_counts[where] = kept + 1
        members.add(visitor_id)
        self._visits.append([start, list(segment), visitor_id])

    # ----------------------------------------------------------------- close
    def _close(self) -> list[tuple[str, int, bytes]]:
        """Hand the windows the watermark has closed since the last batch to the merge stage.

        Each closed window goes, storefront by storefront, to the merge partition of that
        storefront; every merge partition also learns how far this partition has closed
        (the marker), also when no window held data. A closed window never changes again
        (later events are late), so a replay after a crash sends the same partials.
        """
        meta = self.meta
        if meta.watermark_ms is None:
            return []
        until = window_start(meta.watermark_ms - self.grace_ms, self.window_ms)
        if meta.closed_ms is not None and until <= meta.closed_ms:
            return []
        since = meta.closed_ms
        closing = sorted(start for start in self.windows
                         if start + self.window_ms <= until and (since is None or start + self.window_ms > since))
        meta.closed_ms = until
        partials = [(start, self._with_visitors(start)) for start in closing]
        for start in [s for s in self.visitors if s + self.window_ms <= until]:
            del self.visitors[start]  # handed on; its records go once every window in them is closed
        self.visitor_counts = {k: n for k, n in self.visitor_counts.items() if k[0] + self.window_ms > until}
        self.visitors_over = {k for k in self.visitors_over if k[0] + self.window_ms > until}
        return exchange.window_messages(self.family, self.partition, until, partials, self.partitions)

    def _with_visitors(self, start: int) -> dict[Segment, Cell]:
        """The closed window's cells, each with its distinct visitors (copies: the window's own cells
        and their records never carry the sets)."""
        cells = self.windows[start].cells
        visitors = self.visitors.get(start)
        if not visitors:
            return cells
        out = dict(cells)
        for segment, members in visitors.items():
            cell = Cell()
            found = cells.get(segment)
            if found is not None:
                cell.counts, cell.hists = found.counts, found.hists
            cell.sets = {"visitors": members}
            if (start, segment[0]) in self.visitors_over:
                cell.sets["over_budget"] = {"1"}  # the merge stage writes no visitor series for it
            out[segment] = cell
        return out

    def advance_idle(self, to_ms: int) -> Applied | None:
        """Move the watermark of a partition that has had no message for a while to ``to_ms``,
        so that it stops holding back closed windows (Flink's idleness, per partition).

        Only ever forward; persisted like a batch (meta last, position unchanged), so the
        events that arrive later are judged against it after a crash too.
        """
        meta = self.meta
        if meta.watermark_ms is not None and to_ms <= meta.watermark_ms:
            return None
        meta.watermark_ms = to_ms
        meta.idle_advances += 1
        sends = self._close()
        records = self._evict()
        records.append((self.key(b"m", 0), meta.to_json()))
        return Applied(records, [], 0, sends)

    # ----------------------------------------------------------------- evict
    def _evict(self) -> list[tuple[bytes, None]]:
        """Drop what fell out of retention; return tombstones for the changelog."""
        watermark = self.meta.watermark_ms
        if watermark is None or window_start(watermark, self.window_ms) <= self._evicted_below:
            return []
        self._evicted_below = window_start(watermark, self.window_ms)
        tombstones: list[tuple[bytes, None]] = []
        for start in [s for s in self.windows if s < watermark - self.retention_ms]:
            del self.windows[start]
            self._dirty_windows.add(start)
            tombstones.append((self.key(b"w", start), None))
        for day in [d for d in self.days if d < watermark - self.day_retention_ms]:
            del self.days[day]
            self._dirty_days.add(day)
            tombstones.append((self.key(b"y", day), None))
        horizon = watermark - self.horizon_ms
        if any(bucket < horizon for bucket, _, _ in self.seen.values()):
            self.seen = {i: v for i, v in self.seen.items() if v[0] >= horizon}
        for first, newest in [(f, b) for f, b in self.seen_records.items() if b < horizon]:
            del self.seen_records[first]
            tombstones.append((self.key(b"d", first), None))
        for ticket_id in [t for t, tk in self.tickets.items() if tk.last_ms < watermark - self.ticket_ttl_ms]:
            del self.tickets[ticket_id]
            tombstones.append((self.key(b"t", ticket_id), None))
        over = watermark - self.session_timeout_ms  # sessions over: a later event starts a new one anyway
        self._evict_sessions(over)
        for ident in [i for i, newest in self.funnel_records.items() if newest < over]:
            del self.funnel_records[ident]
            tombstones.append((self.key(b"f", ident), None))
        closed = self.meta.closed_ms
        if closed is not None:
            for ident in [i for i, newest in self.visitor_records.items() if newest + self.window_ms <= closed]:
                del self.visitor_records[ident]
                tombstones.append((self.key(b"v", ident), None))
        return tombstones

    def _evict_sessions(self, over: int) -> None:
        """Drop the sessions whose last event is older than ``over``: exactly those, as a scan of
        ``funnels`` would, by popping only the expiry entries behind ``over``.

        Why it is exact: every session in ``funnels`` has one entry, whose time is at most its last
        event time, or (a session that ``on_session`` restarted after a timeout keeps its old entry)
        older than an earlier ``over``, so older than this one. Each entry behind ``over`` is popped
        and checked against the session's last event time now."""
        expiry, funnels = self.funnel_expiry, self.funnels
        while expiry and expiry[0][0] < over:
            _, session_id = heapq.heappop(expiry)
            funnel = funnels.get(session_id)
            if funnel is None:
                continue
            if funnel[1] < over:
                del funnels[session_id]
            else:  # active since: check again once its last event falls behind
                heapq.heappush(expiry, (funnel[1], session_id))

    # --------------------------------------------------------------- restore
    def restore(self, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Apply changelog records (oldest first) on top of this state.

        Works from empty (full recovery) and on a state kept from an earlier
        assignment (incremental: only the records written since). Records of
        other partitions are ignored; returns how many were applied.
        """
        applied = 0
        size = len(self._prefix)
        for key, value in self.settled(records):  # this state's own records only
            applied += 1
            kind, _, ident = key[size:].partition(b"|")
            if kind == b"w":
                if value is None:
                    self.windows.pop(int(ident), None)
                else:
                    self.windows[int(ident)] = Slot.from_json(value, self.family)
            elif kind == b"y":
                if value is None:
                    self.days.pop(int(ident), None)
                else:
                    self.days[int(ident)] = Slot.from_json(value, self.family)
            elif kind == b"c":
                self.totals = Slot() if value is None else Slot.from_json(value, self.family)
            elif kind == b"t":
                if value is None:
                    self.tickets.pop(ident.decode(), None)
                else:
                    self.tickets[ident.decode()] = Ticket.from_json(value)
            elif kind == b"d":
                if value is None:
                    self.seen_records.pop(int(ident), None)
                    continue
                items = orjson.loads(value)
                for event_id, bucket, offset, index in items:
                    # later records win: an id may be seen anew once the horizon forgot it
                    self.seen[event_id] = (bucket, offset, index)
                if items:
                    self.seen_records[int(ident)] = max(item[1] for item in items)
            elif kind == b"f":
                if value is None:
                    self.funnel_records.pop(ident.decode(), None)
                    continue
                _, items = orjson.loads(value)
                for session_id, mask, last_ms in items:  # later records win
                    self.funnels[session_id] = [mask, last_ms]
                if items:
                    self.funnel_records[ident.decode()] = max(item[2] for item in items)
            elif kind == b"v":
                if value is None:
                    self.visitor_records.pop(ident.decode(), None)
                    continue
                _, items = orjson.loads(value)
                for start, segment, visitor_id in items:
                    if segment is None:  # [start, None, storefront]: that window went over budget
                        self.visitors_over.add((start, visitor_id))
                        continue
                    segment = widen(self.family, segment)
                    members = self.visitors.setdefault(start, {}).setdefault(segment, set())
                    if visitor_id not in members:
                        members.add(visitor_id)
                        where = (start, segment[0])
                        self.visitor_counts[where] = self.visitor_counts.get(where, 0) + 1
                if items:
                    self.visitor_records[ident.decode()] = max(item[0] for item in items)
            elif kind == b"m":
                self.meta = Meta() if value is None else Meta.from_json(value)
        self.bounds.reset()
        if self.meta.watermark_ms is not None:
            self._evicted_below = window_start(self.meta.watermark_ms, self.window_ms)
            horizon = self.meta.watermark_ms - self.horizon_ms
            self.seen = {i: v for i, v in self.seen.items() if v[0] >= horizon}
            over = self.meta.watermark_ms - self.session_timeout_ms
            self.funnels = {sid: f for sid, f in self.funnels.items() if f[1] >= over}
        self.funnel_expiry = [(f[1], sid) for sid, f in self.funnels.items()]
        heapq.heapify(self.funnel_expiry)
        if self.meta.closed_ms is not None:  # windows closed (and handed on) before the crash
            closed = self.meta.closed_ms
            self.visitors = {s: v for s, v in self.visitors.items() if s + self.window_ms > closed}
            self.visitor_counts = {k: n for k, n in self.visitor_counts.items() if k[0] + self.window_ms > closed}
            self.visitors_over = {k for k in self.visitors_over if k[0] + self.window_ms > closed}
        self._dirty_windows.update(self.windows)
        self._dirty_days.update(self.days)
        return applied

    def tombstones(self) -> list[tuple[bytes, None]]:
        """Delete every record this state has in the changelog (a reset)."""
        keys = [self.key(b"w", start) for start in self.windows]
        keys += [self.key(b"y", day) for day in self.days]
        keys += [self.key(b"t", ticket_id) for ticket_id in self.tickets]
        keys += [self.key(b"d", first) for first in self.seen_records]
        keys += [self.key(b"f", ident) for ident in self.funnel_records]
        keys += [self.key(b"v", ident) for ident in self.visitor_records]
        keys += [self.key(b"c", 0), self.key(b"m", 0)]
        return [(key, None) for key in keys]

    # -------------------------------------------------------------- snapshot
    def snapshot(self, previous: "PartitionSnapshot | None") -> "PartitionSnapshot":
        """An immutable copy for the scrape thread; copies only what changed."""
        windows = dict(previous.windows) if previous is not None else {}
        for start in self._dirty_windows:
            slot = self.windows.get(start)
            if slot is None:
                windows.pop(start, None)
            else:
                windows[start] = {segment: cell.copy() for segment, cell in slot.cells.items()}
        if previous is None:
            windows = {start: {seg: c.copy() for seg, c in slot.cells.items()} for start, slot in self.windows.items()}
        self._dirty_windows.clear()
        days = dict(previous.days) if previous is not None else {}
        for day in (self._dirty_days if previous is not None else self.days):
            slot = self.days.get(day)
            if slot is None:
                days.pop(day, None)
            else:
                days[day] = {segment: cell.copy() for segment, cell in slot.cells.items()}
        self._dirty_days.clear()
        meta = self.meta
        return PartitionSnapshot(
            family=self.family,
            partition=self.partition,
            meta=meta.copy(),
            totals={segment: cell.copy() for segment, cell in self.totals.cells.items()},
            windows=windows,
            days=days,
            tickets=len(self.tickets),
            seen_ids=len(self.seen),
            sessions=len(self.funnels),
        )


@dataclass(frozen=True)
class PartitionSnapshot:
    """What the scrape reads of one partition: never mutated after creation."""

    family: Family
    partition: int
    meta: Meta
    totals: dict[Segment, Cell]
    windows: dict[int, dict[Segment, Cell]]
    days: dict[int, dict[Segment, Cell]]
    tickets: int
    seen_ids: int
    sessions: int = 0  # sessions whose funnel steps the session family follows


# Most event ids in one seen-ids changelog record: ~60 bytes each with 32-character
# ids, so a record stays far below Kafka's 1 MB default message size.
SEEN_RECORD_ITEMS = 4_000


def _seen_chunks(items: list[list[Any]]) -> list[list[list[Any]]]:
    """Split [event_id, bucket, offset, index] items into chunks of at most
    ``SEEN_RECORD_ITEMS``, never splitting one message (offset) across chunks."""
    chunks: list[list[list[Any]]] = []
    chunk: list[list[Any]] = []
    for item in items:
        if len(chunk) >= SEEN_RECORD_ITEMS and item[2] != chunk[-1][2]:
            chunks.append(chunk)
            chunk = []
        chunk.append(item)
    if chunk:
        chunks.append(chunk)
    return chunks


def _encoded(body: Any, fallback: bytes) -> bytes:
    """The JSON of a decoded event, for the dead-letter topic (a late event)."""
    try:
        return msgspec.json.encode(body)
    except (TypeError, ValueError):
        return fallback


class _Batch:
    """What one ``apply`` call has touched and produced, and where it stands (the offset and
    event time of the event being counted): ``add`` is what the family handlers call."""

    __slots__ = ("state", "offset", "ts_ms", "counted", "last_offset", "overflow_event", "windows", "days",
                 "touched", "totals", "parked", "facts", "seen")

    def __init__(self, state: PartitionState) -> None:
        self.state = state
        self.offset = self.ts_ms = self.counted = 0
        self.last_offset: int | None = None
        self.overflow_event = -1  # the last event counted as overflow: once, not once per field
        self.windows: set[int] = set()
        self.days: set[int] = set()
        self.touched: set[str] = set()  # ticket ids (ticket family) or session ids (session family)
        self.totals = False
        self.parked: list[Parked] = []
        self.facts: list[list[Any]] = []
        self.seen: list[list[Any]] = []

    def add(self, start: int, raw_segment: Segment, name: str, amount: int, duration: int | None,
            also: str | None = None, breakdown: str | None = None) -> None:
        """Add to the field ``name`` of the segment in the window at ``start``, the day totals
        and the running totals, in each unless its record already holds this message; ``also``:
        one more count of that field in the same cells (a session's first step, one lookup);
        ``breakdown``: a ticket's product category, the same addition to its breakdown field
        (``families.breakdown_field``) in the window's cell only."""
        state = self.state
        segment = state.bounds.memo.get(raw_segment)
        if segment is None:
            segment = state.bounds.bound(raw_segment, state.meta.admitted, state.totals.cells)
        if segment is not raw_segment and segment != raw_segment and self.overflow_event != self.counted:
            self.overflow_event = self.counted
            state.bounds.count_overflow(raw_segment, segment, state.meta.overflow)
        offset = self.offset
        slot = state.windows.get(start)
        if slot is None:
            slot = state.windows[start] = Slot()
        if offset >= slot.through:
            self.windows.add(start)
            _add(slot, segment, name, amount, duration, also)
            if breakdown is not None:
                _add(slot, segment, breakdown_field(name, breakdown), amount, duration)
        if state.keep_days and name in DAY_FIELDS:
            self._add_day(segment, name, amount)
        totals = state.totals
        if offset >= totals.through:
            self.totals = True
            _add(totals, segment, name, amount, duration, also)

    def _add_day(self, segment: Segment, name: str, amount: int) -> None:
        day = day_start_ms(self.ts_ms)
        days = self.state.days
        slot = days.get(day)
        if slot is None:
            slot = days[day] = Slot()
        if self.offset >= slot.through:
            self.days.add(day)
            cell = slot.cell(segment)
            cell.add(name, amount)
            if name == "revenue_minor":  # for the variance of revenue per visitor
                cell.add("revenue_sq", float(amount) * amount)


def _add(slot: Slot, segment: Segment, name: str, amount: int, duration: int | None, also: str | None = None) -> None:
    cell = slot.cells.get(segment) or slot.cell(segment)
    if duration is None:
        counts = cell.counts
        counts[name] = counts.get(name, 0) + amount
        if also is not None:
            counts[also] = counts.get(also, 0) + 1
    else:
        cell.observe(name, duration)
