"""Customer-level state: one partition of the customer topic, applied exactly once.

The window workers see each event family on its own partitions, keyed by session,
order, ticket or response id: no worker sees all of one customer. So every counted
event that names a customer (``order.placed``, ``ticket.created``, an NPS
``survey.answered``) leaves the window stage as a small *fact*, re-keyed by customer
id onto the customer topic (``CXPULSE_TOPIC_CUSTOMERS``). That is the one extra hop;
every customer-level KPI reads the same per-customer record:

    events --(window stage: decode, dedupe, count)--> facts keyed by customer
          --(customer stage: per-customer record)--> cohort aggregates -> /metrics

A fact is ``[kind, storefront, customer_id, event_id, ts_ms, ...]``: kind ``o``
(order: amount in minor units, currency), ``t`` (ticket) or ``n`` (NPS answer:
score). Customers are keyed by (storefront, customer id) and never exported.

What a customer contributes to the exported aggregates is a pure function of its
record and the watermark (``contribution``); applying a fact replaces the old
contribution by the new one. Exactness follows the window state's rules: every
record carries ``through`` (the customer-topic offset after the last fact it
holds); per batch the aggregates record is written first, then the customers,
evictions, and the meta record last. A fact is applied to a customer only once
(its event id is kept), so a window stage that resends facts after a crash adds
nothing.

Bounds: a customer inactive for ``customer_ttl`` is forgotten (per message, from
the event-time watermark and the customer's own last activity only, never from
where other customers stand, so a replay decides the same way); what they
contributed stays in the aggregates. ``customer_max`` per
partition is a memory guard: beyond it the least recently active customer is
forgotten, and which one may differ after a crash (a record restored ahead of the
replay counts early), so exactness holds while the guard is not reached.

    >>> state = CustomerState(0, Settings())
    >>> applied = state.apply([Message(0, [["o", "shop", "c1", "e1", 0, 1000, "EUR"]], [])])
    >>> state.aggregates[("cohort_customers", "shop", "1970-W01")]
    1
"""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import orjson

from streams.config import Settings
from streams.pipeline.records import Applied, Message, Meta, Parked

log = logging.getLogger("cxpulse.customers")

DAY_MS = 86_400_000
HORIZONS: dict[str, int] = {"30d": 30 * DAY_MS, "90d": 90 * DAY_MS}
REPEAT_WITHIN_MS = 90 * DAY_MS  # a repeat customer ordered again within 90 days of the first order
# An LTV horizon counts for the NPS cohorts once the watermark is this far past it:
# orders are counted up to the window stage's grace behind its watermark.
MATURITY_MARGIN_MS = DAY_MS
MAX_ITEMS = 1000  # orders / tickets / NPS answers kept per customer; more are counted as dropped
NPS_CATEGORIES = ("detractor", "passive", "promoter")
PURCHASE_BUCKETS = ("1", "2", "3", "4+")


def nps_category(score: int) -> str:
    """The category of an NPS answer (0-10).

        >>> nps_category(9), nps_category(7), nps_category(6)
        ('promoter', 'passive', 'detractor')
    """
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def iso_week(ts_ms: int) -> str:
    """The ISO week of an event time, the cohort label: ``2026-W47``.

        >>> iso_week(1_795_000_000_000)
        '2026-W47'
    """
    year, week, _ = datetime.fromtimestamp(ts_ms / 1000, timezone.utc).isocalendar()
    return f"{year}-W{week:02d}"


def week_start_ms(ts_ms: int) -> int:
    """Monday 00:00 UTC of the ISO week holding ``ts_ms`` (1970-01-01 was a Thursday)."""
    return ts_ms - (ts_ms + 3 * DAY_MS) % (7 * DAY_MS)


@dataclass
class Customer:
    """What the customer stage remembers of one customer (never exported)."""

    through: int = 0
    seq: tuple[int, int] = (0, 0)  # (offset, index) of the last fact: the eviction order
    last_ms: int = 0
    wm: int | None = None  # the watermark its current contribution was computed at
    orders: list[list[Any]] = field(default_factory=list)  # [ts_ms, amount_minor, currency, event_id]
    tickets: list[list[Any]] = field(default_factory=list)  # [ts_ms, event_id]
    answers: list[list[Any]] = field(default_factory=list)  # NPS answers: [ts_ms, score, event_id]

    def to_json(self) -> bytes:
        return orjson.dumps([self.through, list(self.seq), self.last_ms, self.wm, self.orders, self.tickets,
                             self.answers])

    @classmethod
    def from_json(cls, data: bytes) -> "Customer":
        through, seq, last_ms, wm, orders, tickets, answers = orjson.loads(data)
        return cls(through, tuple(seq), last_ms, wm, orders, tickets, answers)

    def has(self, event_id: str) -> bool:
        return any(item[-1] == event_id for items in (self.orders, self.tickets, self.answers) for item in items)

    def first_order_ms(self) -> int | None:
        return min((o[0] for o in self.orders), default=None)

    def maturities(self) -> list[int]:
        """Watermarks at which this customer's contribution changes without a new fact."""
        first = self.first_order_ms()
        if first is None or not self.answers:
            return []
        return [first + span + MATURITY_MARGIN_MS for span in HORIZONS.values()]


Key = tuple[Any, ...]


def contribution(storefront: str, customer: Customer, watermark: int | None, post_support_ms: int) -> dict[Key, int]:
    """What one customer adds to the exported aggregates (all integers; money in minor units).

    * first-order cohort (ISO week of the first order): a customer; a repeat customer
      when a second order falls within 90 days of the first; revenue of the orders within
      30 and 90 days of the first order (LTV), per currency;
    * NPS cohort (category of the latest NPS answer, and purchases within 90 days of the
      first order: 1, 2, 3, 4+): the same customer and LTV, counted once the horizon has
      passed (so young customers do not drag the LTV of a category down);
    * ticket cohort (ISO week of the customer's first ticket of that week): a customer
      with a ticket, converted when they order within ``post_support_ms`` after it.
    """
    out: dict[Key, int] = {}

    def add(key: Key, n: int) -> None:
        out[key] = out.get(key, 0) + n

    first = customer.first_order_ms()
    if first is not None:
        cohort = iso_week(first)
        add(("cohort_customers", storefront, cohort), 1)
        within = [o for o in customer.orders if o[0] < first + REPEAT_WITHIN_MS]
        if len(within) >= 2:
            add(("cohort_repeat_customers", storefront, cohort), 1)
        for horizon, span in HORIZONS.items():
            for ts, amount, currency, _ in customer.orders:
                if ts < first + span:
                    add(("cohort_revenue", storefront, cohort, currency, horizon), amount)
        if customer.answers and watermark is not None:
            category = nps_category(max(customer.answers)[1])  # the latest answer (ties: the higher score)
            purchases = PURCHASE_BUCKETS[min(len(within), 4) - 1]
            for horizon, span in HORIZONS.items():
                if watermark < first + span + MATURITY_MARGIN_MS:
                    continue
                add(("nps_customers", storefront, category, purchases, horizon), 1)
                for ts, amount, currency, _ in customer.orders:
                    if ts < first + span:
                        add(("nps_revenue", storefront, category, purchases, currency, horizon), amount)
    weeks: dict[int, int] = {}
    for ts, _ in customer.tickets:
        week = week_start_ms(ts)
        weeks[week] = min(ts, weeks.get(week, ts))
    for week, ticket_ms in weeks.items():
        cohort = iso_week(week)
        add(("support_customers", storefront, cohort), 1)
        if any(ticket_ms < o[0] <= ticket_ms + post_support_ms for o in customer.orders):
            add(("support_converted", storefront, cohort), 1)
    return out


@dataclass(frozen=True)
class CustomerSnapshot:
    """What the scrape reads of one customer partition: never mutated after creation."""

    family: str
    partition: int
    meta: Meta
    aggregates: dict[Key, int]
    customers: int


class CustomerState:
    """Per-customer records of one customer-topic partition and the aggregates they make."""

    family = "customer"

    def __init__(self, partition: int, settings: Settings) -> None:
        self.partition = partition
        self.ttl_ms = settings.customer_ttl_ms
        self.max_customers = settings.customer_max
        self.post_support_ms = settings.post_support_ms
        self.cohort_weeks = settings.cohort_weeks
        self.meta = Meta()
        self.customers: OrderedDict[tuple[str, str], Customer] = OrderedDict()  # oldest activity first
        self.aggregates: dict[Key, int] = {}
        self.aggregates_through = 0
        self._maturing: list[tuple[int, str, str]] = []  # heap of (watermark, storefront, customer id)
        # heap of (last activity, storefront, customer id); an entry whose customer has been active
        # since is stale (a newer one stands for it) and skipped
        self._expiring: list[tuple[int, str, str]] = []
        self._prefix = f"customer|{partition}|".encode()
        self._warned = False

    # ----------------------------------------------------------------- apply
    def apply(self, messages: Iterable[Message]) -> Applied:
        meta = self.meta
        touched: set[tuple[str, str]] = set()
        parked: list[Parked] = []
        evicted: set[tuple[str, str]] = set()
        last_offset = None
        aggregates_touched = False
        for message in messages:
            offset = message.offset
            if offset < meta.through:
                continue  # fully persisted before
            last_offset = offset
            meta.messages += 1
            for rejection in message.rejections:
                meta.rejected[rejection.reason] = meta.rejected.get(rejection.reason, 0) + 1
                parked.append(Parked(offset, rejection.reason, rejection.detail, rejection.index, rejection.raw))
            for index, fact in enumerate(message.events):
                kind, storefront, customer_id, event_id, ts_ms = fact[:5]
                meta.events += 1
                if meta.watermark_ms is None or ts_ms > meta.watermark_ms:
                    meta.watermark_ms = ts_ms
                key = (storefront, customer_id)
                customer = self.customers.get(key)
                if customer is None:
                    customer = self.customers[key] = Customer()
                    evicted.discard(key)
                    if offset >= self.aggregates_through:
                        aggregates_touched |= self._change({}, {("customers_created",): 1})
                else:
                    self.customers.move_to_end(key)
                if offset < customer.through:
                    continue  # this customer's record holds the fact (and so do the aggregates)
                customer.seq = (offset, index)
                if ts_ms > customer.last_ms:
                    customer.last_ms = ts_ms
                    heapq.heappush(self._expiring, (ts_ms, storefront, customer_id))
                touched.add(key)
                items = customer.orders if kind == "o" else customer.tickets if kind == "t" else customer.answers
                skipped = "facts_duplicate" if customer.has(event_id) else (
                    "facts_dropped" if len(items) >= MAX_ITEMS else None)
                if skipped is not None:
                    # a window stage resent it after a crash / more than a customer record keeps
                    if offset >= self.aggregates_through:
                        aggregates_touched |= self._change({}, {(skipped,): 1})
                    continue
                before = contribution(storefront, customer, customer.wm, self.post_support_ms)
                if kind == "o":
                    items.append([ts_ms, fact[5], fact[6], event_id])
                elif kind == "t":
                    items.append([ts_ms, event_id])
                else:
                    items.append([ts_ms, fact[5], event_id])
                items.sort()
                customer.wm = meta.watermark_ms
                after = contribution(storefront, customer, customer.wm, self.post_support_ms)
                if offset >= self.aggregates_through:
                    aggregates_touched |= self._change(before, after)
                for when in customer.maturities():
                    if when > meta.watermark_ms:
                        heapq.heappush(self._maturing, (when, storefront, customer_id))
            aggregates_touched |= self._mature(offset, touched)
            evicted |= self._evict()
        if last_offset is None:
            return Applied([], parked, 0)
        end = last_offset + 1
        records: list[tuple[bytes, bytes | None]] = []
        if aggregates_touched or self.aggregates_through < end:
            self._prune()
            self.aggregates_through = end
            records.append((self._key(b"a", 0), orjson.dumps(
                [end, [[list(k), v] for k, v in self.aggregates.items()]])))
        for key in sorted(touched - evicted):
            customer = self.customers[key]
            customer.through = end
            records.append((self._key(b"k", _ident(key)), customer.to_json()))
        for key in sorted(evicted):
            records.append((self._key(b"k", _ident(key)), None))
        meta.through = end
        records.append((self._key(b"m", 0), meta.to_json()))
        return Applied(records, parked, 0)

    def _change(self, before: dict[Key, int], after: dict[Key, int]) -> bool:
        """Replace a customer's old contribution by its new one (cohorts past the horizon are frozen)."""
        oldest = self._oldest_week()
        changed = False
        aggregates = self.aggregates
        for key in before.keys() | after.keys():
            delta = after.get(key, 0) - before.get(key, 0)
            if not delta or (oldest is not None and _week_of(key) is not None and _week_of(key) < oldest):
                continue
            value = aggregates.get(key, 0) + delta
            if value:
                aggregates[key] = value
            else:
                aggregates.pop(key, None)
            changed = True
        return changed

    def _mature(self, offset: int, touched: set[tuple[str, str]]) -> bool:
        """Customers whose LTV horizon the watermark passed now count in their NPS cohort."""
        watermark = self.meta.watermark_ms
        changed = False
        while self._maturing and watermark is not None and self._maturing[0][0] <= watermark:
            _, storefront, customer_id = heapq.heappop(self._maturing)
            key = (storefront, customer_id)
            customer = self.customers.get(key)
            if customer is None or customer.wm == watermark or offset < customer.through:
                continue  # gone, current, or its record (and the aggregates) already hold this
            before = contribution(storefront, customer, customer.wm, self.post_support_ms)
            after = contribution(storefront, customer, watermark, self.post_support_ms)
            if before != after:
                customer.wm = watermark
                touched.add(key)
                if offset >= self.aggregates_through:
                    changed |= self._change(before, after)
        return changed

    def _evict(self) -> set[tuple[str, str]]:
        """Forget customers inactive for the TTL, and the least recently active beyond the budget.

        The TTL is decided per customer (its last activity against the watermark), not by
        walking the customers in order of arrival: a record restored ahead of the replay
        moves a customer in that order, and a walk that stops at the first active customer
        would then forget a different set after a crash than without one.
        """
        out: set[tuple[str, str]] = set()
        watermark = self.meta.watermark_ms
        customers = self.customers
        expiring = self._expiring
        if watermark is not None:
            while expiring and expiring[0][0] < watermark - self.ttl_ms:
                last_ms, storefront, customer_id = heapq.heappop(expiring)
                key = (storefront, customer_id)
                customer = customers.get(key)
                if customer is None or customer.last_ms != last_ms:
                    continue  # forgotten already, or active since
                del customers[key]
                out.add(key)
        while len(customers) > self.max_customers:
            key = next(iter(customers))
            del customers[key]
            out.add(key)
            if not self._warned:
                self._warned = True
                log.warning("event=customer_budget_reached partition=%d customers=%d action=forget_least_recent",
                            self.partition, self.max_customers)
        if len(expiring) > 2 * len(customers) + 1024:  # stale entries of active customers: compact
            self._expiring = [(c.last_ms, sf, cid) for (sf, cid), c in customers.items()]
            heapq.heapify(self._expiring)
        return out

    def _oldest_week(self) -> str | None:
        if self.meta.watermark_ms is None:
            return None
        return iso_week(self.meta.watermark_ms - (self.cohort_weeks - 1) * 7 * DAY_MS)

    def _prune(self) -> None:
        oldest = self._oldest_week()
        if oldest is None:
            return
        for key in [k for k in self.aggregates if _week_of(k) is not None and _week_of(k) < oldest]:
            del self.aggregates[key]

    # --------------------------------------------------------------- restore
    def _key(self, kind: bytes, ident: int | str) -> bytes:
        return self._prefix + kind + b"|" + str(ident).encode()

    def restore(self, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        applied = 0
        prefix, size = self._prefix, len(self._prefix)
        for key, value in records:
            if not key.startswith(prefix):
                continue
            applied += 1
            kind, _, ident = key[size:].partition(b"|")
            if kind == b"k":
                who = _parse_ident(ident.decode())
                if value is None:
                    self.customers.pop(who, None)
                else:
                    self.customers[who] = Customer.from_json(value)
            elif kind == b"a":
                if value is None:
                    self.aggregates, self.aggregates_through = {}, 0
                else:
                    through, items = orjson.loads(value)
                    self.aggregates = {tuple(k): v for k, v in items}
                    self.aggregates_through = through
            elif kind == b"m":
                self.meta = Meta() if value is None else Meta.from_json(value)
        # The eviction order is the order of last activity, as it was when the facts arrived.
        self.customers = OrderedDict(sorted(self.customers.items(), key=lambda item: item[1].seq))
        self._maturing = [(when, sf, cid) for (sf, cid), c in self.customers.items() for when in c.maturities()
                          if c.wm is None or when > c.wm]
        heapq.heapify(self._maturing)
        self._expiring = [(c.last_ms, sf, cid) for (sf, cid), c in self.customers.items()]
        heapq.heapify(self._expiring)
        return applied

    def tombstones(self) -> list[tuple[bytes, None]]:
        keys = [self._key(b"k", _ident(key)) for key in self.customers]
        keys += [self._key(b"a", 0), self._key(b"m", 0)]
        return [(key, None) for key in keys]

    def snapshot(self, previous: Any = None) -> CustomerSnapshot:
        return CustomerSnapshot(self.family, self.partition, self.meta.copy(), dict(self.aggregates),
                                len(self.customers))


def _ident(key: tuple[str, str]) -> str:
    return orjson.dumps(list(key)).decode()


def _parse_ident(text: str) -> tuple[str, str]:
    storefront, customer_id = orjson.loads(text)
    return storefront, customer_id


def _week_of(key: Key) -> str | None:
    """The cohort week of an aggregate key, when it has one."""
    return key[2] if key[0] in ("cohort_customers", "cohort_repeat_customers", "cohort_revenue",
                                "support_customers", "support_converted") else None
