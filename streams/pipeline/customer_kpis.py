"""What one customer contributes to the customer-level KPIs: a pure function of its record.

The customer stage (``customer_state.py``) keeps one ``Customer`` record per (storefront,
customer id) from the facts the window stage re-keys to it (the fact format is built by
``families.fact``); ``contribution`` turns a record and the event-time watermark into
the integer aggregates it adds (docs/metrics.md, "Customer KPIs"): first-order cohorts
and their repeat purchase and LTV, LTV by NPS category and CSAT band, retention per
period, and conversion and revenue after support. The same stage joins each session's
checkout with the orders that name the session (``Checkout``, ``checkout_contribution``):
cart abandonment as the CX guide defines it.

    >>> c = Customer(orders=[[0, 1000, "EUR", "e1"], [86_400_000, 500, "EUR", "e2"]])
    >>> contribution("shop", c, None, 7 * DAY_MS)[("cohort_revenue", "shop", "1970-W01", "EUR", "30d")]
    1500
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from streams.config import format_duration
from streams.days import DAY_MS, day_label, iso_week, week_start_ms

HORIZONS: dict[str, int] = {"30d": 30 * DAY_MS, "90d": 90 * DAY_MS}
REPEAT_WITHIN_MS = 90 * DAY_MS  # a repeat customer ordered again within 90 days of the first order
# An LTV horizon counts for the NPS cohorts once the watermark is this far past it:
# orders are counted up to the window stage's grace behind its watermark.
MATURITY_MARGIN_MS = DAY_MS
NPS_CATEGORIES = ("detractor", "passive", "promoter")
CSAT_BANDS = ("unsatisfied", "neutral", "satisfied")
PURCHASE_BUCKETS = ("1", "2", "3", "4+")
# Retention periods are blocks of whole days counted from Monday 1969-12-29 00:00 UTC, the first
# day of ISO week 1970-W01: one grid for every storefront, and a 7-day period is an ISO week.
PERIOD_ANCHOR_MS = -3 * DAY_MS


def nps_category(score: int) -> str:
    """The category of an NPS answer (0-10).

        >>> nps_category(9), nps_category(7), nps_category(6)
        ('promoter', 'passive', 'detractor')
    """
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def csat_band(score: int) -> str:
    """The band of a CSAT answer (1-5).

        >>> csat_band(5), csat_band(3), csat_band(2)
        ('satisfied', 'neutral', 'unsatisfied')
    """
    return "satisfied" if score >= 4 else "neutral" if score == 3 else "unsatisfied"


def period_start_ms(ts_ms: int, period_ms: int) -> int:
    """Start of the retention period of ``period_ms`` (whole days) holding ``ts_ms``.

        >>> day_label(period_start_ms(1_767_225_600_000, 30 * DAY_MS))   # 2026-01-01
        '2025-12-05'
    """
    return ts_ms - (ts_ms - PERIOD_ANCHOR_MS) % period_ms


period_label = functools.lru_cache(maxsize=16)(format_duration)  # "30d" for 30 days of ms


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
    csat: list[list[Any]] = field(default_factory=list)  # CSAT answers: [ts_ms, score, event_id]

    def to_json(self) -> bytes:
        return orjson.dumps([self.through, list(self.seq), self.last_ms, self.wm, self.orders, self.tickets,
                             self.answers, self.csat])

    @classmethod
    def from_json(cls, data: bytes) -> "Customer":
        through, seq, last_ms, wm, orders, tickets, answers, *rest = orjson.loads(data)
        # a record written before CSAT facts existed has no 8th field
        return cls(through, tuple(seq), last_ms, wm, orders, tickets, answers, rest[0] if rest else [])

    def has(self, event_id: str) -> bool:
        return any(item[-1] == event_id for items in (self.orders, self.tickets, self.answers, self.csat)
                   for item in items)

    def first_order_ms(self) -> int | None:
        return self.orders[0][0] if self.orders else None  # kept sorted

    def week_tickets(self) -> dict[int, int]:
        """Start of each ISO week with a ticket -> the earliest ticket of that week."""
        weeks: dict[int, int] = {}
        for ts, _ in self.tickets:
            weeks.setdefault(week_start_ms(ts), ts)  # kept sorted: the first seen is the earliest
        return weeks

    def maturities(self, post_support_ms: int) -> set[int]:
        """Watermarks at which this customer's contribution changes without a new fact: its
        first order's 90 days (repeat purchase), its LTV horizons when it answered a survey,
        and the post-support window of each ticket week, each a margin later."""
        out = {ticket_ms + post_support_ms + MATURITY_MARGIN_MS for ticket_ms in self.week_tickets().values()}
        first = self.first_order_ms()
        if first is not None:
            out.add(first + REPEAT_WITHIN_MS + MATURITY_MARGIN_MS)
            if self.answers or self.csat:
                out.update(first + span + MATURITY_MARGIN_MS for span in HORIZONS.values())
        return out


Key = tuple[Any, ...]


def contribution(storefront: str, customer: Customer, watermark: int | None, post_support_ms: int,
                 periods_ms: tuple[int, ...] = ()) -> dict[Key, int]:
    """What one customer adds to the exported aggregates (all integers; money in minor units).

    * first-order cohort (ISO week of the first order): a customer; a repeat customer
      when a second order falls within 90 days of the first; revenue of the orders within
      30 and 90 days of the first order (LTV), per currency; and, once the watermark is 90
      days and a margin past the first order, the same customer as *mature* (so storefront
      ratios leave out customers too young to have had their 90 days);
    * NPS and CSAT cohorts (category of the latest NPS answer, band of the latest CSAT
      answer, and purchases within 90 days of the first order: 1, 2, 3, 4+): the same
      customer and LTV, counted once the horizon has passed (so young customers do not drag
      the LTV of a category down);
    * retention, for each period length: a customer of period *k* (labelled with the start
      of *k*) when it ordered in period *k - 1*; retained when it ordered in *k* too; the
      same per first-order cohort;
    * ticket cohort (ISO week of the customer's first ticket of that week): a customer
      with a ticket, converted when they order within ``post_support_ms`` after it (also as
      mature, once that window and a margin have passed); and every order placed within
      ``post_support_ms`` after the customer's latest ticket before it, with its revenue,
      in the ISO week of that ticket.
    """
    out: dict[Key, int] = {}

    def add(key: Key, n: int) -> None:
        out[key] = out.get(key, 0) + n

    first = customer.first_order_ms()
    if first is not None:
        cohort = iso_week(first)
        _first_order_cohort(add, storefront, customer.orders, first, cohort, watermark)
        _survey_cohorts(add, storefront, customer, first, watermark)
        _retention(add, storefront, customer.orders, cohort, periods_ms)
    _after_support(add, storefront, customer, watermark, post_support_ms)
    return out


Add = Callable[[Key, int], None]


def _first_order_cohort(add: Add, storefront: str, orders: list[list[Any]], first: int, cohort: str,
                        watermark: int | None) -> None:
    """A customer of its first-order cohort, repeat or not, mature or not, and its LTV."""
    add(("cohort_customers", storefront, cohort), 1)
    repeat = _first_90_days(orders, first) >= 2
    if repeat:
        add(("cohort_repeat_customers", storefront, cohort), 1)
    if watermark is not None and watermark >= first + REPEAT_WITHIN_MS + MATURITY_MARGIN_MS:
        add(("cohort_mature_customers", storefront, cohort), 1)
        if repeat:
            add(("cohort_mature_repeat_customers", storefront, cohort), 1)
    for horizon, span in HORIZONS.items():
        for ts, amount, currency, _ in orders:
            if ts < first + span:
                add(("cohort_revenue", storefront, cohort, currency, horizon), amount)


def _survey_cohorts(add: Add, storefront: str, customer: Customer, first: int, watermark: int | None) -> None:
    """The customer and its LTV by NPS category and by CSAT band (of its latest answer) and
    purchases within 90 days, once each LTV horizon has passed."""
    orders = customer.orders
    purchases = PURCHASE_BUCKETS[min(_first_90_days(orders, first), 4) - 1]
    for survey, answers, group in (("nps", customer.answers, nps_category), ("csat", customer.csat, csat_band)):
        if not answers or watermark is None:
            continue
        category = group(max(answers)[1])  # the latest answer (ties: the higher score)
        for horizon, span in HORIZONS.items():
            if watermark < first + span + MATURITY_MARGIN_MS:
                continue
            add((f"{survey}_customers", storefront, category, purchases, horizon), 1)
            for ts, amount, currency, _ in orders:
                if ts < first + span:
                    add((f"{survey}_revenue", storefront, category, purchases, currency, horizon), amount)


def _retention(add: Add, storefront: str, orders: list[list[Any]], cohort: str, periods_ms: tuple[int, ...]) -> None:
    """For each period length: one of period k's base when it ordered in k - 1, retained
    when it ordered in k too; also per first-order cohort."""
    for period_ms in periods_ms:
        period = period_label(period_ms)
        active = {period_start_ms(o[0], period_ms) for o in orders}
        for start in active:
            this = day_label(start + period_ms)  # the customer is one of the next period's base
            add(("retention_customers", storefront, period, this), 1)
            add(("cohort_retention_customers", storefront, cohort, period, this), 1)
            if start + period_ms in active:
                add(("retention_retained", storefront, period, this), 1)
                add(("cohort_retention_retained", storefront, cohort, period, this), 1)


def _after_support(add: Add, storefront: str, customer: Customer, watermark: int | None,
                   post_support_ms: int) -> None:
    """Ticket cohorts (converted when an order follows within ``post_support_ms``) and the
    orders and revenue placed within it after the customer's latest ticket before them."""
    orders = customer.orders
    for week, ticket_ms in customer.week_tickets().items():
        cohort = iso_week(week)
        converted = any(ticket_ms < o[0] <= ticket_ms + post_support_ms for o in orders)
        add(("support_customers", storefront, cohort), 1)
        if converted:
            add(("support_converted", storefront, cohort), 1)
        if watermark is not None and watermark >= ticket_ms + post_support_ms + MATURITY_MARGIN_MS:
            add(("support_mature_customers", storefront, cohort), 1)
            if converted:
                add(("support_mature_converted", storefront, cohort), 1)
    if customer.tickets:
        # last touch: an order belongs to the latest ticket before it, so no order counts twice
        times = [t[0] for t in customer.tickets]
        for ts, amount, currency, _ in orders:
            i = bisect.bisect_left(times, ts)  # times[:i] are the tickets strictly before the order
            if i and ts - times[i - 1] <= post_support_ms:
                cohort = iso_week(times[i - 1])
                add(("support_orders", storefront, cohort, currency), 1)
                add(("support_revenue", storefront, cohort, currency), amount)


def _first_90_days(orders: list[list[Any]], first: int) -> int:
    """How many orders fall within 90 days of the first (``REPEAT_WITHIN_MS``)."""
    return sum(1 for o in orders if o[0] < first + REPEAT_WITHIN_MS)


# ------------------------------------------------------------------ the checkout join
CHECKOUT_DAYS = 8  # days of first checkouts exported: the watermark's (UTC) and the 7 before it


@dataclass
class Checkout:
    """What the customer stage remembers of one session of the checkout join, keyed by its
    session id (never exported): its counted checkouts and the orders that name it."""

    through: int = 0
    seq: tuple[int, int] = (0, 0)  # (offset, index) of the last fact: the eviction order
    last_ms: int = 0
    wm: int | None = None  # the watermark its current contribution was computed at
    checkouts: list[list[Any]] = field(default_factory=list)  # [ts_ms, event_id, storefront, channel, device]
    orders: list[list[Any]] = field(default_factory=list)  # [ts_ms, event_id]

    def to_json(self) -> bytes:
        return orjson.dumps([self.through, list(self.seq), self.last_ms, self.wm, self.checkouts, self.orders])

    @classmethod
    def from_json(cls, data: bytes) -> "Checkout":
        through, seq, last_ms, wm, checkouts, orders = orjson.loads(data)
        return cls(through, tuple(seq), last_ms, wm, checkouts, orders)

    def has(self, event_id: str) -> bool:
        return any(item[1] == event_id for items in (self.checkouts, self.orders) for item in items)

    def decided_at(self, horizon_ms: int, margin_ms: int) -> int | None:
        """The watermark from which a session with no order in time counts as abandoned."""
        return self.checkouts[0][0] + horizon_ms + margin_ms if self.checkouts else None


def checkout_contribution(session: Checkout, watermark: int | None, horizon_ms: int,
                          margin_ms: int) -> dict[Key, int]:
    """What one session adds to the checkout aggregates, labelled by the storefront, channel and
    device of its first checkout (the earliest; the lowest event id on a tie) and that checkout's
    UTC day: a checkout session; *decided* once an order of the session placed before first
    checkout + ``horizon_ms`` is known (converted), or once the watermark is ``margin_ms`` past
    that deadline without one (then also *abandoned*). A session with orders and no checkout adds
    nothing: an order without a checkout is not the checkout's conversion.

        >>> s = Checkout(checkouts=[[0, "e1", "shop", "web", "mobile"]])
        >>> sorted(checkout_contribution(s, 3_720_000, 3_600_000, 120_000))
        [('checkout_abandoned', 'shop', 'web', 'mobile', '1970-01-01'), ('checkout_decided', 'shop', 'web', 'mobile', '1970-01-01'), ('checkout_sessions', 'shop', 'web', 'mobile', '1970-01-01')]
    """
    if not session.checkouts:
        return {}
    first_ms, _, storefront, channel, device = session.checkouts[0]  # kept sorted
    key = (storefront, channel, device, day_label(first_ms))
    out = {("checkout_sessions", *key): 1}
    deadline = first_ms + horizon_ms
    if any(ts < deadline for ts, _ in session.orders):
        out[("checkout_decided", *key)] = 1
    elif watermark is not None and watermark >= deadline + margin_ms:
        out[("checkout_decided", *key)] = 1
        out[("checkout_abandoned", *key)] = 1
    return out
