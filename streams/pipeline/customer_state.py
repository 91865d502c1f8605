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
(order: amount in minor units, currency), ``t`` (ticket), ``n`` (NPS answer: score)
or ``c`` (CSAT answer: score). Customers are keyed by (storefront, customer id) and
never exported.

What a customer contributes to the exported aggregates is a pure function of its
record and the watermark (``contribution``); applying a fact replaces the old
contribution by the new one. Exactness follows the window state's rules: every
record carries ``through`` (the customer-topic offset after the last fact it
holds); per batch the aggregates record is written first, then the customers,
evictions, and the meta record last. A fact is applied to a customer only once
(its event id is kept), so a window stage that resends facts after a crash adds
nothing. A state written before some aggregate kinds existed (``NEW_KINDS``) gets them
on restore, computed from the customers it holds (``restore``).

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
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import orjson

from streams.config import Settings
from streams.days import DAY_MS, day_label, iso_week
from streams.pipeline.customer_kpis import (CHECKOUT_DAYS, Checkout, Customer, Key, checkout_contribution, contribution,
                                            period_label, period_start_ms)
from streams.pipeline.exchange import SESSION_KINDS
from streams.pipeline.records import Applied, Message, Meta, Parked
from streams.pipeline.state import ExactlyOnce

log = logging.getLogger("cxpulse.customers")

MAX_ITEMS = 1000  # orders / tickets / NPS answers kept per customer; more are counted as dropped
# The aggregates record's format: [through, items, version, new kinds' through]. Version 2 added
# NEW_KINDS (a record without a version is 1, written before they existed).
AGGREGATES_VERSION = 2
NEW_KINDS = frozenset({
    "cohort_mature_customers", "cohort_mature_repeat_customers", "support_mature_customers",
    "support_mature_converted", "support_orders", "support_revenue", "csat_customers", "csat_revenue",
    "retention_customers", "retention_retained", "cohort_retention_customers", "cohort_retention_retained",
})
# Where a kind's key holds its cohort week, and its (period, period_start) labels: what pruning reads.
_COHORT_AT: dict[str, int] = {kind: 2 for kind in (
    "cohort_customers", "cohort_repeat_customers", "cohort_revenue", "cohort_mature_customers",
    "cohort_mature_repeat_customers", "support_customers", "support_converted", "support_mature_customers",
    "support_mature_converted", "support_orders", "support_revenue", "cohort_retention_customers",
    "cohort_retention_retained")}
_PERIOD_AT: dict[str, int] = {"retention_customers": 2, "retention_retained": 2,
                              "cohort_retention_customers": 3, "cohort_retention_retained": 3}
# Where a checkout kind's key holds the day of the session's first checkout.
_DAY_AT: dict[str, int] = {kind: 4 for kind in ("checkout_sessions", "checkout_decided", "checkout_abandoned")}


@dataclass(frozen=True)
class CustomerSnapshot:
    """What the scrape reads of one customer partition: never mutated after creation."""

    family: str
    partition: int
    meta: Meta
    aggregates: dict[Key, int]
    customers: int
    sessions: int = 0  # sessions held by the checkout join


class CustomerState(ExactlyOnce):
    """Per-customer records of one customer-topic partition and the aggregates they make."""

    family = "customer"
    # The aggregates record's through never goes back (``_persist``): after a restore that
    # found it ahead of the meta record, it stays ahead until the batches catch up.
    unbounded_kinds = frozenset({b"a"})

    def __init__(self, partition: int, settings: Settings) -> None:
        self.partition = partition
        self.ttl_ms = settings.customer_ttl_ms
        self.max_customers = settings.customer_max
        self.post_support_ms = settings.post_support_ms
        self.cohort_weeks = settings.cohort_weeks
        self.periods_ms = settings.retention_periods_ms
        self.meta = Meta()
        self.customers: OrderedDict[tuple[str, str], Customer] = OrderedDict()  # oldest activity first
        self.aggregates: dict[Key, int] = {}
        self.aggregates_through = 0
        # `through` of the NEW_KINDS aggregates: the same as aggregates_through, except after
        # restoring a state written before they existed, until the batches catch up (``restore``).
        self.new_kinds_through = 0
        self._maturing: list[tuple[int, str, str]] = []  # heap of (watermark, storefront, customer id)
        # heap of (last activity, storefront, customer id); an entry whose customer has been active
        # since is stale (a newer one stands for it) and skipped
        self._expiring: list[tuple[int, str, str]] = []
        # The checkout join (keyed by session id): a session is forgotten once the watermark is the
        # exported days, its horizon and the grace past its last fact. By then its first checkout's day
        # has left the exported days, so nothing a late fact could change about it is exported any more.
        self.horizon_ms = settings.checkout_horizon_ms
        self.margin_ms = settings.grace_ms
        self.session_ttl_ms = CHECKOUT_DAYS * DAY_MS + settings.checkout_horizon_ms + settings.grace_ms
        self.sessions: OrderedDict[str, Checkout] = OrderedDict()  # oldest activity first
        self._deciding: list[tuple[int, str]] = []  # heap of (watermark, session id)
        self._session_expiring: list[tuple[int, str]] = []  # heap of (last activity, session id); stale ok
        self._sessions_touched: set[str] = set()
        self._sessions_evicted: set[str] = set()
        self._prefix = f"customer|{partition}|".encode()
        self._warned = False
        self._expired: tuple[int | None, Callable[[Key], bool]] | None = None  # (watermark, its test)

    # ----------------------------------------------------------------- apply
    def apply(self, messages: Iterable[Message]) -> Applied:
        """Apply a batch of facts in offset order; return what to persist (the aggregates
        record first, then the customers, evictions, and the meta record last)."""
        touched: set[tuple[str, str]] = set()
        parked: list[Parked] = []
        evicted: set[tuple[str, str]] = set()
        self._sessions_touched, self._sessions_evicted = set(), set()
        last_offset = None
        changed = False
        for message in self.unpersisted(messages, parked):
            offset = last_offset = message.offset
            for index, fact in enumerate(message.events):
                if fact[0] in SESSION_KINDS:
                    changed |= self._apply_session_fact(fact, offset, index)
                else:
                    changed |= self._apply_fact(fact, offset, index, touched, evicted)
            changed |= self._mature(offset, touched)
            changed |= self._decide(offset)
            evicted |= self._evict()
            self._evict_sessions()
        if last_offset is None:
            return Applied([], parked, 0)
        return Applied(self._persist(last_offset + 1, changed, touched, evicted), parked, 0)

    def _apply_fact(self, fact: list[Any], offset: int, index: int, touched: set[tuple[str, str]],
                    evicted: set[tuple[str, str]]) -> bool:
        """One fact ``[kind, storefront, customer_id, event_id, ts_ms, ...]`` (``families.facts``);
        whether the aggregates changed."""
        kind, storefront, customer_id, event_id, ts_ms = fact[:5]
        self._count_fact(ts_ms)
        key = (storefront, customer_id)
        changed = False
        customer = self.customers.get(key)
        if customer is None:
            customer = self.customers[key] = Customer()
            evicted.discard(key)
            changed = self._account({}, {("customers_created",): 1}, offset)
        else:
            self.customers.move_to_end(key)
        if offset < customer.through:
            return changed  # this customer's record holds the fact (and so do the aggregates)
        _seen(customer, offset, index, ts_ms, self._expiring, (ts_ms, storefront, customer_id))
        touched.add(key)
        items = (customer.orders if kind == "o" else customer.tickets if kind == "t"
                 else customer.answers if kind == "n" else customer.csat)
        skipped = "facts_duplicate" if customer.has(event_id) else (
            "facts_dropped" if len(items) >= MAX_ITEMS else None)
        if skipped is not None:
            # a window stage resent it after a crash / more than a customer record keeps
            return self._account({}, {(skipped,): 1}, offset) or changed
        return self._add_fact(key, customer, items, fact, offset) or changed

    def _apply_session_fact(self, fact: list[Any], offset: int, index: int) -> bool:
        """One fact of the checkout join, ``["k", storefront, session_id, event_id, ts_ms, channel,
        device]`` or ``["s", storefront, session_id, event_id, ts_ms]``; whether the aggregates changed."""
        kind, storefront, session_id, event_id, ts_ms = fact[:5]
        self._count_fact(ts_ms)
        session = self.sessions.get(session_id)
        if session is None:
            session = self.sessions[session_id] = Checkout()
            self._sessions_evicted.discard(session_id)
        else:
            self.sessions.move_to_end(session_id)
        if offset < session.through:
            return False  # this session's record holds the fact (and so do the aggregates)
        _seen(session, offset, index, ts_ms, self._session_expiring, (ts_ms, session_id))
        self._sessions_touched.add(session_id)
        items = session.checkouts if kind == "k" else session.orders
        skipped = "facts_duplicate" if session.has(event_id) else (
            "facts_dropped" if len(items) >= MAX_ITEMS else None)
        if skipped is not None:
            return self._account({}, {(skipped,): 1}, offset)
        before = checkout_contribution(session, session.wm, self.horizon_ms, self.margin_ms)
        pending = session.decided_at(self.horizon_ms, self.margin_ms)
        items.append([ts_ms, event_id, storefront, *fact[5:]] if kind == "k" else [ts_ms, event_id])
        items.sort()
        watermark = session.wm = self.meta.watermark_ms
        changed = self._account(before, checkout_contribution(session, watermark, self.horizon_ms, self.margin_ms),
                                offset)
        when = session.decided_at(self.horizon_ms, self.margin_ms)
        if when is not None and when != pending and when > watermark:  # type: ignore[operator]
            heapq.heappush(self._deciding, (when, session_id))
        return changed

    def _count_fact(self, ts_ms: int) -> None:
        """A fact read: counted, and the partition's watermark (its newest fact time) moved."""
        meta = self.meta
        meta.events += 1
        if meta.watermark_ms is None or ts_ms > meta.watermark_ms:
            meta.watermark_ms = ts_ms

    def _add_fact(self, key: tuple[str, str], customer: Customer, items: list[list[Any]], fact: list[Any],
                  offset: int) -> bool:
        """Add a new fact to its customer's record; replace the customer's contribution."""
        storefront, customer_id = key
        kind, event_id, ts_ms = fact[0], fact[3], fact[4]
        before = self._contribution(storefront, customer, customer.wm)
        pending = customer.maturities(self.post_support_ms)
        if kind == "o":
            items.append([ts_ms, fact[5], fact[6], event_id])
        elif kind == "t":
            items.append([ts_ms, event_id])
        else:
            items.append([ts_ms, fact[5], event_id])
        items.sort()
        watermark = customer.wm = self.meta.watermark_ms
        changed = self._account(before, self._contribution(storefront, customer, watermark), offset)
        # each maturity once: a customer with many facts does not fill the heap with copies
        for when in customer.maturities(self.post_support_ms) - pending:
            if when > watermark:  # type: ignore[operator]
                heapq.heappush(self._maturing, (when, storefront, customer_id))
        return changed

    def _persist(self, end: int, changed: bool, touched: set[tuple[str, str]],
                 evicted: set[tuple[str, str]]) -> list[tuple[bytes, bytes | None]]:
        records: list[tuple[bytes, bytes | None]] = []
        if changed or self.new_kinds_through < end:
            self._prune()
            # never back: after an upgrade the old kinds may be ahead of the batch (see ``restore``)
            self.aggregates_through = max(self.aggregates_through, end)
            self.new_kinds_through = end
            records.append((self.key(b"a", 0), orjson.dumps(
                [self.aggregates_through, [[list(k), v] for k, v in self.aggregates.items()], AGGREGATES_VERSION,
                 self.new_kinds_through])))
        for key in sorted(touched - evicted):
            customer = self.customers[key]
            customer.through = end
            records.append((self.key(b"k", _ident(key)), customer.to_json()))
        for key in sorted(evicted):
            records.append((self.key(b"k", _ident(key)), None))
        for session_id in sorted(self._sessions_touched - self._sessions_evicted):
            session = self.sessions[session_id]
            session.through = end
            records.append((self.key(b"s", _session_ident(session_id)), session.to_json()))
        for session_id in sorted(self._sessions_evicted):
            records.append((self.key(b"s", _session_ident(session_id)), None))
        self.seal(records, end)
        return records

    def _contribution(self, storefront: str, customer: Customer, watermark: int | None) -> dict[Key, int]:
        return contribution(storefront, customer, watermark, self.post_support_ms, self.periods_ms)

    def _account(self, before: dict[Key, int], after: dict[Key, int], offset: int) -> bool:
        """Apply a change of contribution made by the message at ``offset``, to the aggregates
        that do not hold that message yet."""
        if offset >= self.aggregates_through:
            return self._change(before, after)
        if offset >= self.new_kinds_through:  # only right after restoring a state of an older format
            return self._change(_new_kinds(before), _new_kinds(after))
        return False

    def _change(self, before: dict[Key, int], after: dict[Key, int]) -> bool:
        """Replace a customer's old contribution by its new one (cohorts and periods past the
        exported horizon are frozen)."""
        expired = self._expiry()
        changed = False
        aggregates = self.aggregates
        for key in before.keys() | after.keys():
            delta = after.get(key, 0) - before.get(key, 0)
            if not delta or expired(key):
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
            before = self._contribution(storefront, customer, customer.wm)
            after = self._contribution(storefront, customer, watermark)
            if before != after:
                customer.wm = watermark
                touched.add(key)
                changed |= self._account(before, after, offset)
        return changed

    def _decide(self, offset: int) -> bool:
        """Sessions whose checkout deadline (+ margin) the watermark passed with no order in time
        now count as decided and abandoned."""
        watermark = self.meta.watermark_ms
        changed = False
        while self._deciding and watermark is not None and self._deciding[0][0] <= watermark:
            _, session_id = heapq.heappop(self._deciding)
            session = self.sessions.get(session_id)
            if session is None or session.wm == watermark or offset < session.through:
                continue  # gone, current, or its record (and the aggregates) already hold this
            before = checkout_contribution(session, session.wm, self.horizon_ms, self.margin_ms)
            after = checkout_contribution(session, watermark, self.horizon_ms, self.margin_ms)
            if before != after:
                session.wm = watermark
                self._sessions_touched.add(session_id)
                changed |= self._account(before, after, offset)
        return changed

    def _evict_sessions(self) -> None:
        """Forget sessions with no fact for the session TTL (their contribution is final and
        stays), and the least recently active beyond ``customer_max`` (a memory guard, as for
        customers)."""
        watermark = self.meta.watermark_ms
        sessions, expiring = self.sessions, self._session_expiring
        if watermark is not None:
            while expiring and expiring[0][0] < watermark - self.session_ttl_ms:
                last_ms, session_id = heapq.heappop(expiring)
                session = sessions.get(session_id)
                if session is None or session.last_ms != last_ms:
                    continue  # forgotten already, or active since
                del sessions[session_id]
                self._sessions_evicted.add(session_id)
        while len(sessions) > self.max_customers:
            session_id = next(iter(sessions))
            del sessions[session_id]
            self._sessions_evicted.add(session_id)
        if len(expiring) > 2 * len(sessions) + 1024:  # stale entries of active sessions: compact
            self._session_expiring = [(c.last_ms, sid) for sid, c in sessions.items()]
            heapq.heapify(self._session_expiring)

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

    def _expiry(self) -> Callable[[Key], bool]:
        """Whether a key lies past the exported horizon at the current watermark: a cohort week
        older than the last ``cohort_weeks``, or a retention period before the previous one.
        Such keys are dropped and never change again (a replay decides the same way)."""
        watermark = self.meta.watermark_ms
        if self._expired is not None and self._expired[0] == watermark:
            return self._expired[1]
        if watermark is None:
            return lambda key: False
        oldest_week = iso_week(watermark - (self.cohort_weeks - 1) * 7 * DAY_MS)
        oldest_period = {period_label(p): day_label(period_start_ms(watermark, p) - p) for p in self.periods_ms}
        oldest_day = day_label(watermark - (CHECKOUT_DAYS - 1) * DAY_MS)

        def expired(key: Key) -> bool:
            at = _COHORT_AT.get(key[0])
            if at is not None and key[at] < oldest_week:
                return True
            at = _DAY_AT.get(key[0])
            if at is not None:
                return key[at] < oldest_day
            at = _PERIOD_AT.get(key[0])
            return at is not None and key[at + 1] < oldest_period.get(key[at], "")

        self._expired = (watermark, expired)
        return expired

    def _prune(self) -> None:
        expired = self._expiry()
        for key in [k for k in self.aggregates if expired(k)]:
            del self.aggregates[key]

    def exported(self) -> dict[Key, int]:
        """The aggregates as exported: a retention period starts to show once the watermark is
        in it (until then its base grows, with nothing retained yet)."""
        watermark = self.meta.watermark_ms
        if watermark is None:
            return dict(self.aggregates)
        current = {period_label(p): day_label(period_start_ms(watermark, p)) for p in self.periods_ms}
        out = {}
        for key, value in self.aggregates.items():
            at = _PERIOD_AT.get(key[0])
            if at is None or key[at + 1] <= current.get(key[at], ""):
                out[key] = value
        return out

    # --------------------------------------------------------------- restore
    def restore(self, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        applied = 0
        version = AGGREGATES_VERSION
        size = len(self._prefix)
        forgotten: dict[tuple[str, str], Customer] = {}
        forgotten_sessions: dict[str, Checkout] = {}
        for key, value in self.settled(records):  # this state's own records only
            applied += 1
            kind, _, ident = key[size:].partition(b"|")
            if kind == b"k":
                _restore_one(self.customers, forgotten, _parse_ident(ident.decode()), value, Customer.from_json)
            elif kind == b"s":
                _restore_one(self.sessions, forgotten_sessions, orjson.loads(ident), value, Checkout.from_json)
            elif kind == b"a":
                if value is None:
                    self.aggregates, self.aggregates_through, version = {}, 0, AGGREGATES_VERSION
                    self.new_kinds_through = 0
                else:
                    through, items, *rest = orjson.loads(value)
                    self.aggregates = {tuple(k): v for k, v in items}
                    self.aggregates_through = through
                    version, self.new_kinds_through = (rest[0], rest[1]) if rest else (1, through)
            elif kind == b"m":
                self.meta = Meta() if value is None else Meta.from_json(value)
        # A tombstone has no ``through``: one written by a batch past this state's position (a
        # batch that never committed, see ``settled``) forgot a customer the replay still holds
        # until the watermark passes its TTL. Such a customer, not yet expired here, stays.
        watermark = self.meta.watermark_ms
        for who, customer in forgotten.items():
            if watermark is None or customer.last_ms >= watermark - self.ttl_ms:
                self.customers[who] = customer
        for session_id, session in forgotten_sessions.items():
            if watermark is None or session.last_ms >= watermark - self.session_ttl_ms:
                self.sessions[session_id] = session
        # The eviction order is the order of last activity, as it was when the facts arrived.
        self.customers = OrderedDict(sorted(self.customers.items(), key=lambda item: item[1].seq))
        self._maturing = [(when, sf, cid) for (sf, cid), c in self.customers.items()
                          for when in c.maturities(self.post_support_ms) if c.wm is None or when > c.wm]
        heapq.heapify(self._maturing)
        self._expiring = [(c.last_ms, sf, cid) for (sf, cid), c in self.customers.items()]
        heapq.heapify(self._expiring)
        self.sessions = OrderedDict(sorted(self.sessions.items(), key=lambda item: item[1].seq))
        self._deciding = [(when, sid) for sid, c in self.sessions.items()
                          if (when := c.decided_at(self.horizon_ms, self.margin_ms)) is not None
                          and (c.wm is None or when > c.wm)]
        heapq.heapify(self._deciding)
        self._session_expiring = [(c.last_ms, sid) for sid, c in self.sessions.items()]
        heapq.heapify(self._session_expiring)
        if version < AGGREGATES_VERSION:
            # Written before NEW_KINDS existed: they start as the contribution of the customers held
            # (each as of its own record, which may be behind the aggregates after a crash), so until
            # the next aggregates record every replayed fact a customer applies counts for them.
            for (storefront, _), customer in self.customers.items():
                self._change({}, _new_kinds(self._contribution(storefront, customer, customer.wm)))
            self.new_kinds_through = 0
        return applied

    def tombstones(self) -> list[tuple[bytes, None]]:
        keys = [self.key(b"k", _ident(key)) for key in self.customers]
        keys += [self.key(b"s", _session_ident(session_id)) for session_id in self.sessions]
        keys += [self.key(b"a", 0), self.key(b"m", 0)]
        return [(key, None) for key in keys]

    def snapshot(self, previous: Any = None) -> CustomerSnapshot:
        return CustomerSnapshot(self.family, self.partition, self.meta.copy(), self.exported(),
                                len(self.customers), len(self.sessions))


def _seen(record: Customer | Checkout, offset: int, index: int, ts_ms: int, expiring: list[Any],
          entry: tuple[Any, ...]) -> None:
    """A customer's or session's new fact: its place in the eviction order, and its last activity
    (a newer one goes on the expiry heap; the entry it replaces there turns stale)."""
    record.seq = (offset, index)
    if ts_ms > record.last_ms:
        record.last_ms = ts_ms
        heapq.heappush(expiring, entry)


def _restore_one(held: Any, forgotten: dict[Any, Any], who: Any, value: bytes | None,
                 load: Callable[[bytes], Any]) -> None:
    """One customer or session record read back: held, or (a tombstone) forgotten, kept aside in case
    the tombstone came from a batch that never committed (``restore``)."""
    if value is None:
        gone = held.pop(who, None)
        if gone is not None:
            forgotten[who] = gone
    else:
        held[who] = load(value)
        forgotten.pop(who, None)


def _ident(key: tuple[str, str]) -> str:
    return orjson.dumps(list(key)).decode()


def _session_ident(session_id: str) -> str:
    return orjson.dumps(session_id).decode()


def _parse_ident(text: str) -> tuple[str, str]:
    storefront, customer_id = orjson.loads(text)
    return storefront, customer_id


def _new_kinds(contributed: dict[Key, int]) -> dict[Key, int]:
    return {key: n for key, n in contributed.items() if key[0] in NEW_KINDS}
