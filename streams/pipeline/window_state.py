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

from dataclasses import dataclass, field
from typing import Any, Iterable

import msgspec
import orjson

from streams.config import Settings
from streams.contract import EVENT_TYPES, Family
from streams.pipeline import exchange
from streams.pipeline.aggregates import Cell, Segment
from streams.pipeline.records import Applied, Message, Meta, Parked
from streams.pipeline.windows import is_late, window_start

UNKNOWN = "unknown"
OTHER = "other"  # where label values beyond the allow-list or the cap go
_CAPPED = ("storefront", "channel", "currency")  # free-form labels; device and support_channel are enums
NO_CURRENCY = "XXX"  # ISO 4217's code for "no currency": a return without an amount

DAY_MS = 86_400_000
# Day totals kept per segment (for initiative ROI over months): field -> also kept.
DAY_FIELDS = frozenset({"sessions_started", "orders_placed", "revenue_minor"})
# Counted events that name a customer become facts for the customer state (customer_state.py):
# event type (and survey kind) -> fact kind. CES answers are no customer fact.
FACT_KINDS = {"order.placed": "o", "ticket.created": "t", "nps": "n", "csat": "c"}

# Label names of each family's segment, in the order of the segment tuple.
SEGMENT_LABELS: dict[Family, tuple[str, ...]] = {
    "session": ("storefront", "channel", "device"),
    "order": ("storefront", "channel", "device", "currency"),
    "ticket": ("storefront", "support_channel"),
    "survey": ("storefront", "channel"),
}


@dataclass
class Slot:
    """One state record's cells (a base window, or the running totals)."""

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
    def from_json(cls, data: bytes) -> "Slot":
        through, cells = orjson.loads(data)
        return cls(through, {tuple(s): Cell.from_json(c) for s, c in cells})


@dataclass
class Ticket:
    """What a partition remembers of one open ticket (never exported)."""

    through: int = 0
    created_ms: int | None = None
    channel: str | None = None
    storefront: str = UNKNOWN
    first_reply_ms: int | None = None  # earliest public agent reply seen
    frt_recorded: bool = False
    agent_replies: int = 0
    reopened: bool = False
    last_ms: int = 0

    def to_json(self) -> bytes:
        return orjson.dumps([self.through, self.created_ms, self.channel, self.storefront, self.first_reply_ms,
                             self.frt_recorded, self.agent_replies, self.reopened, self.last_ms])

    @classmethod
    def from_json(cls, data: bytes) -> "Ticket":
        return cls(*orjson.loads(data))


class PartitionState:
    """Window state of one (family, partition); see the module docstring."""

    def __init__(self, family: Family, partition: int, settings: Settings) -> None:
        self.family = family
        self.partition = partition
        self.window_ms = settings.window_ms
        self.grace_ms = settings.grace_ms
        self.retention_ms = settings.retention_ms
        self.horizon_ms = settings.dedupe_horizon_ms
        self.ticket_ttl_ms = settings.ticket_ttl_ms
        self.day_retention_ms = settings.day_retention_ms
        self.lead_ms = settings.watermark_lead_ms
        self.partitions = settings.partitions  # of the re-keyed stages too (customer, merge)
        self.meta = Meta()
        self.windows: dict[int, Slot] = {}
        self.days: dict[int, Slot] = {}  # UTC day start -> day totals (sessions and orders only)
        self._keep_days = family in ("session", "order")
        self._dirty_days: set[int] = set()
        self.totals = Slot()
        self.tickets: dict[str, Ticket] = {}
        self.seen: dict[str, tuple[int, int, int]] = {}  # event_id -> (bucket, offset, index)
        self.seen_records: dict[int, int] = {}  # first offset of a seen-ids record -> its newest bucket
        self._evicted_below = 0  # watermark bucket up to which eviction ran
        self._dirty_windows: set[int] = set()  # changed since the last snapshot
        self._prefix = f"{family}|{partition}|".encode()
        handler = getattr(self, f"_on_{family}")
        self._handlers = {name: handler for name, t in EVENT_TYPES.items() if t.family == family}
        self._labels = SEGMENT_LABELS[family]
        self._allowed = {name: settings.allowed_values(name) for name in self._labels if name in _CAPPED}
        self._label_cap = settings.label_cap
        self._segment_cap = settings.segment_cap
        self._bounded: dict[Segment, Segment] = {}  # memo of _bound, dropped on restore
        self._admitting = tuple(label for label in self._labels if label in _CAPPED and self._allowed[label] is None)
        self._admitted_sets: dict[str, set[str]] = {}  # meta.admitted as sets, dropped on restore

    # ----------------------------------------------------------------- apply
    def apply(self, messages: Iterable[Message]) -> Applied:
        """Apply a batch of messages in offset order; return what to persist.

        The per-event path, in order: dedupe, lateness, first sight, watermark, label
        admission, the customer fact, then the event type's additions (``_on_<type>``) to
        the base window, the day totals and the running totals: each skipped for a record
        whose ``through`` already holds this message (a replay)."""
        parked: list[Parked] = []
        touched_windows: set[int] = set()
        touched_days: set[int] = set()
        touched_tickets: set[str] = set()
        facts: list[list[Any]] = []
        new_seen: list[list[Any]] = []
        meta, window_ms, grace_ms, lead_ms = self.meta, self.window_ms, self.grace_ms, self.lead_ms
        seen, horizon_ms, windows, days, totals = self.seen, self.horizon_ms, self.windows, self.days, self.totals
        bounded, handlers, keep_days = self._bounded, self._handlers, self._keep_days
        last_offset = None
        counted = 0
        overflow_event = -1
        totals_touched = False
        offset = 0
        ts_ms = 0

        def add(start: int, raw_segment: Segment, name: str, amount: int, duration: int | None) -> None:
            nonlocal overflow_event, totals_touched
            segment = bounded.get(raw_segment)
            if segment is None:
                segment = self._bound(raw_segment)
            if segment is not raw_segment and segment != raw_segment and overflow_event != counted:
                overflow_event = counted  # count an event once, not once per field it adds
                self._count_overflow(raw_segment, segment)
            slot = windows.get(start)
            if slot is None:
                slot = windows[start] = Slot()
            if offset >= slot.through:
                touched_windows.add(start)
                cell = slot.cells.get(segment) or slot.cell(segment)
                if duration is None:
                    cell.counts[name] = cell.counts.get(name, 0) + amount
                else:
                    cell.observe(name, duration)
            if keep_days and name in DAY_FIELDS:
                day = ts_ms - ts_ms % DAY_MS
                day_slot = days.get(day)
                if day_slot is None:
                    day_slot = days[day] = Slot()
                if offset >= day_slot.through:
                    touched_days.add(day)
                    cell = day_slot.cell(segment)
                    cell.add(name, amount)
                    if name == "revenue_minor":  # for the variance of revenue per visitor
                        cell.add("revenue_sq", float(amount) * amount)
            if offset >= totals.through:
                totals_touched = True
                cell = totals.cells.get(segment) or totals.cell(segment)
                if duration is None:
                    cell.counts[name] = cell.counts.get(name, 0) + amount
                else:
                    cell.observe(name, duration)

        for message in messages:
            offset = message.offset
            if offset < meta.through:
                continue  # fully persisted before: a replay after a crash or rebalance
            last_offset = offset
            meta.messages += 1
            for rejection in message.rejections:
                meta.rejected[rejection.reason] = meta.rejected.get(rejection.reason, 0) + 1
                parked.append(Parked(offset, rejection.reason, rejection.detail, rejection.index, rejection.raw))
            bound_ms = message.timestamp_ms + lead_ms if message.timestamp_ms > 0 else None
            for body, ts_ms, index in message.events:
                event_id = body.event_id
                watermark = meta.watermark_ms
                first = seen.get(event_id)
                # Within the horizon of this watermark only, whenever eviction last ran:
                # the verdict must not depend on where batches happened to be cut.
                if (first is not None and (first[1] != offset or first[2] != index)
                        and (watermark is None or first[0] >= watermark - horizon_ms)):
                    meta.duplicates += 1
                    continue
                bucket = ts_ms - ts_ms % window_ms
                if watermark is not None and watermark >= bucket + window_ms + grace_ms:  # its window closed
                    meta.late += 1
                    parked.append(Parked(offset, "late", f"event time is older than its window's grace "
                                         f"({watermark - ts_ms} ms behind the watermark)", index,
                                         _encoded(body, message.value)))
                    continue
                # Record the first sight, also when replaying it: this batch's seen-ids
                # record may replace one written under the same key before a crash.
                seen[event_id] = (bucket, offset, index)
                new_seen.append([event_id, bucket, offset, index])
                # The watermark follows event time, but never further than the lead past the
                # message's timestamp: one producer whose clock runs ahead cannot close the
                # windows of everyone else (docs/metrics.md, "Watermark").
                advance = ts_ms if bound_ms is None or ts_ms <= bound_ms else bound_ms
                if watermark is None or advance > watermark:
                    meta.watermark_ms = advance
                meta.events += 1
                counted += 1
                self._admit(body)
                if getattr(body, "customer_id", None) is not None:
                    fact = self._fact(body, ts_ms)
                    if fact is not None:
                        facts.append(fact)
                handlers[body.TYPE](body, ts_ms, offset, touched_tickets, add)
        if last_offset is None:
            return Applied([], parked, 0)
        end = last_offset + 1
        records: list[tuple[bytes, bytes | None]] = []
        self._dirty_windows.update(touched_windows)
        for start in sorted(touched_windows):
            slot = self.windows[start]
            slot.through = end
            records.append((self._key(b"w", start), slot.to_json()))
        self._dirty_days.update(touched_days)
        for day in sorted(touched_days):
            slot = self.days[day]
            slot.through = end
            records.append((self._key(b"y", day), slot.to_json()))
        if totals_touched:
            self.totals.through = end
            records.append((self._key(b"c", 0), self.totals.to_json()))
        for ticket_id in sorted(touched_tickets):
            ticket = self.tickets[ticket_id]
            ticket.through = end
            records.append((self._key(b"t", ticket_id), ticket.to_json()))
        for chunk in _seen_chunks(new_seen):
            # One record per chunk, cut at message boundaries and keyed by the chunk's
            # first offset: one record for a whole batch outgrows the broker's message
            # size limit (2,000 messages x 100 events = 200k ids, ~10 MB).
            self.seen_records[chunk[0][2]] = max(item[1] for item in chunk)
            records.append((self._key(b"d", chunk[0][2]), orjson.dumps(chunk)))
        sends = exchange.fact_messages(facts, self.partitions) + self._close()
        records.extend(self._evict())
        meta.through = end
        records.append((self._key(b"m", 0), meta.to_json()))
        return Applied(records, parked, counted, sends)

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
        partials = [(start, self.windows[start].cells) for start in closing]
        return exchange.window_messages(self.family, self.partition, until, partials, self.partitions)

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
        records.append((self._key(b"m", 0), meta.to_json()))
        return Applied(records, [], 0, sends)

    def _fact(self, body: Any, ts_ms: int) -> list[Any] | None:
        """What the customer state needs of a counted event that names a customer.

        Label values are bounded like the segment's (the fact's storefront and currency
        become labels of customer-level KPIs).
        """
        kind = FACT_KINDS.get(body.kind if body.TYPE == "survey.answered" else body.TYPE)
        if kind is None:
            return None
        fact = [kind, self._bound_value("storefront", body.storefront), body.customer_id, body.event_id, ts_ms]
        if kind == "o":
            fact += [body.total_minor, self._bound_value("currency", body.currency)]
        elif kind in ("n", "c"):
            fact.append(body.score)
        return fact

    def _bound_value(self, label: str, value: str) -> str:
        allowed = self._allowed.get(label)
        if allowed is not None:
            return value if value in allowed else OTHER
        return value if value in self.meta.admitted.get(label, ()) else OTHER

    # One handler per family: calls add(window start, segment, field, amount, duration_ms or None).
    def _on_session(self, body: Any, ts_ms: int, offset: int, touched: set[str], add: Any) -> None:
        add(ts_ms - ts_ms % self.window_ms, (body.storefront, body.channel, body.device), _SESSION_FIELD[body.TYPE],
            1, None)

    def _on_order(self, body: Any, ts_ms: int, offset: int, touched: set[str], add: Any) -> None:
        segment = (body.storefront, body.channel or UNKNOWN, body.device or UNKNOWN, body.currency or NO_CURRENCY)
        start = ts_ms - ts_ms % self.window_ms
        kind = body.TYPE
        if kind == "order.placed":
            add(start, segment, "orders_placed", 1, None)
            add(start, segment, "revenue_minor", body.total_minor, None)
            if body.first_order:
                add(start, segment, "first_orders", 1, None)
        elif kind == "order.refunded":
            add(start, segment, "refunds", 1, None)
            add(start, segment, "refund_minor", body.amount_minor, None)
        else:
            add(start, segment, "returns", 1, None)
            add(start, segment, "return_minor", body.amount_minor or 0, None)

    def _on_survey(self, body: Any, ts_ms: int, offset: int, touched: set[str], add: Any) -> None:
        segment = (body.storefront, body.channel or UNKNOWN)
        start = ts_ms - ts_ms % self.window_ms
        kind, score = body.kind, body.score
        responses, score_sum = _SURVEY_FIELDS[kind]
        add(start, segment, responses, 1, None)
        add(start, segment, score_sum, score, None)
        if kind == "nps":
            if score >= 9:
                add(start, segment, "nps_promoters", 1, None)
            elif score <= 6:
                add(start, segment, "nps_detractors", 1, None)
        elif kind == "csat" and score >= 4:
            add(start, segment, "csat_satisfied", 1, None)

    def _on_ticket(self, body: Any, ts_ms: int, offset: int, touched: set[str], add: Any) -> None:
        ticket_id = body.ticket_id
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            ticket = self.tickets[ticket_id] = Ticket()
        if offset < ticket.through:
            # This ticket's record already holds the event; so do the windows
            # its observations went to (they are written before tickets).
            return
        touched.add(ticket_id)
        ticket.storefront = body.storefront
        ticket.last_ms = max(ticket.last_ms, ts_ms)
        if ticket.channel is None and body.support_channel:
            ticket.channel = body.support_channel
        kind = body.TYPE
        window_ms = self.window_ms
        segment = (ticket.storefront, ticket.channel or UNKNOWN)
        if kind == "ticket.created":
            ticket.created_ms = ts_ms
            ticket.channel = body.support_channel
            segment = (ticket.storefront, ticket.channel)
            add(ts_ms - ts_ms % window_ms, segment, "tickets_created", 1, None)
        elif kind == "ticket.replied":
            if body.author == "agent" and body.public:
                ticket.agent_replies += 1
                if ticket.first_reply_ms is None or ts_ms < ticket.first_reply_ms:
                    ticket.first_reply_ms = ts_ms
        elif kind == "ticket.reopened":
            ticket.reopened = True
            add(ts_ms - ts_ms % window_ms, segment, "tickets_reopened", 1, None)
        elif kind == "ticket.resolved" and ticket.created_ms is not None:
            start = ts_ms - ts_ms % window_ms
            add(start, segment, "resolution", 1, ts_ms - ticket.created_ms)
            if ticket.agent_replies <= 1 and not ticket.reopened:
                add(start, segment, "tickets_resolved_one_touch", 1, None)
        elif kind == "ticket.resolved":
            add(ts_ms - ts_ms % window_ms, segment, "resolved_unmatched", 1, None)
        if not ticket.frt_recorded and ticket.created_ms is not None and ticket.first_reply_ms is not None:
            ticket.frt_recorded = True
            start = window_start(ticket.first_reply_ms, window_ms)
            watermark = self.meta.watermark_ms
            if watermark is not None and is_late(ticket.first_reply_ms, watermark, window_ms, self.grace_ms):
                # A reply dated before its ticket's creation arrived first and that window has
                # closed since: a closed window never changes, so it counts where the pair completed.
                start = window_start(ts_ms, window_ms)
            add(start, segment, "first_response", 1, ticket.first_reply_ms - ticket.created_ms)

    # ----------------------------------------------------------- cardinality
    def _bound(self, segment: Segment) -> Segment:
        """Map label values outside the allow-list or over the cap to ``other``.

        The first ``label_cap`` values of a label seen on this partition keep
        their own series, and at most ``segment_cap`` segments exist; the choice
        lives in the meta record, so a replay decides the same way. Overflow is
        counted per label in ``meta.overflow``.
        """
        admitted = self.meta.admitted
        values = list(segment)
        for i, (label, value) in enumerate(zip(self._labels, segment)):
            if label not in _CAPPED or value in (UNKNOWN, NO_CURRENCY, OTHER):
                continue
            allowed = self._allowed[label]
            if (value not in allowed) if allowed is not None else (value not in admitted.get(label, ())):
                values[i] = OTHER
        bounded = tuple(values)
        if bounded not in self.totals.cells and len(self.totals.cells) >= self._segment_cap:
            bounded = (OTHER,) * len(bounded)
        if len(self._bounded) < 4 * self._segment_cap:  # bounded memo: an attack cannot grow it
            self._bounded[segment] = bounded
        return bounded

    def _admit(self, body: Any) -> None:
        """Give the event's free-form label values a series while the cap allows.

        Decided once per counted event, from the event alone, so a replay (which
        may skip the event for some records) admits in the same order.
        """
        for label in self._admitting:  # free-form labels of this family without an allow-list
            value = getattr(body, label, None)
            if value is None:
                continue
            known = self._admitted_sets.get(label)
            if known is None:
                known = self._admitted_sets[label] = set(self.meta.admitted.get(label, ()))
            if value not in known and len(known) < self._label_cap:
                known.add(value)
                self.meta.admitted.setdefault(label, []).append(value)

    def _count_overflow(self, raw: Segment, bounded: Segment) -> None:
        overflow = self.meta.overflow
        if all(value == OTHER for value in bounded) and any(value != OTHER for value in raw):
            overflow["segment"] = overflow.get("segment", 0) + 1
            return
        for label, before, after in zip(self._labels, raw, bounded):
            if before != after:
                overflow[label] = overflow.get(label, 0) + 1

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
            tombstones.append((self._key(b"w", start), None))
        for day in [d for d in self.days if d < watermark - self.day_retention_ms]:
            del self.days[day]
            self._dirty_days.add(day)
            tombstones.append((self._key(b"y", day), None))
        horizon = watermark - self.horizon_ms
        if any(bucket < horizon for bucket, _, _ in self.seen.values()):
            self.seen = {i: v for i, v in self.seen.items() if v[0] >= horizon}
        for first, newest in [(f, b) for f, b in self.seen_records.items() if b < horizon]:
            del self.seen_records[first]
            tombstones.append((self._key(b"d", first), None))
        for ticket_id in [t for t, tk in self.tickets.items() if tk.last_ms < watermark - self.ticket_ttl_ms]:
            del self.tickets[ticket_id]
            tombstones.append((self._key(b"t", ticket_id), None))
        return tombstones

    # --------------------------------------------------------------- restore
    def _key(self, kind: bytes, ident: int | str) -> bytes:
        return self._prefix + kind + b"|" + str(ident).encode()

    def restore(self, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Apply changelog records (oldest first) on top of this state.

        Works from empty (full recovery) and on a state kept from an earlier
        assignment (incremental: only the records written since). Records of
        other partitions are ignored; returns how many were applied.
        """
        applied = 0
        prefix, size = self._prefix, len(self._prefix)
        for key, value in records:
            if not key.startswith(prefix):
                continue
            applied += 1
            kind, _, ident = key[size:].partition(b"|")
            if kind == b"w":
                if value is None:
                    self.windows.pop(int(ident), None)
                else:
                    self.windows[int(ident)] = Slot.from_json(value)
            elif kind == b"y":
                if value is None:
                    self.days.pop(int(ident), None)
                else:
                    self.days[int(ident)] = Slot.from_json(value)
            elif kind == b"c":
                self.totals = Slot() if value is None else Slot.from_json(value)
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
            elif kind == b"m":
                self.meta = Meta() if value is None else Meta.from_json(value)
        self._bounded = {}
        self._admitted_sets = {}
        if self.meta.watermark_ms is not None:
            self._evicted_below = window_start(self.meta.watermark_ms, self.window_ms)
            horizon = self.meta.watermark_ms - self.horizon_ms
            self.seen = {i: v for i, v in self.seen.items() if v[0] >= horizon}
        self._dirty_windows.update(self.windows)
        self._dirty_days.update(self.days)
        return applied

    def tombstones(self) -> list[tuple[bytes, None]]:
        """Delete every record this state has in the changelog (a reset)."""
        keys = [self._key(b"w", start) for start in self.windows]
        keys += [self._key(b"y", day) for day in self.days]
        keys += [self._key(b"t", ticket_id) for ticket_id in self.tickets]
        keys += [self._key(b"d", first) for first in self.seen_records]
        keys += [self._key(b"c", 0), self._key(b"m", 0)]
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


_SURVEY_FIELDS = {kind: (f"{kind}_responses", f"{kind}_score_sum") for kind in ("nps", "csat", "ces")}


def _encoded(body: Any, fallback: bytes) -> bytes:
    """The JSON of a decoded event, for the dead-letter topic (a late event)."""
    try:
        return msgspec.json.encode(body)
    except (TypeError, ValueError):
        return fallback


_SESSION_FIELD = {
    "session.started": "sessions_started",
    "session.product_viewed": "product_views",
    "session.cart_added": "carts_added",
    "session.checkout_started": "checkouts_started",
}
