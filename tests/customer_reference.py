"""The independent reference for the customer-level KPIs, written from docs/customers.md.

Input: the events the window stage counted, in send order (``tests/reference.py`` decides
which: valid, first-seen, on time). Shares nothing with ``streams/pipeline/customer_state.py``; plain dicts:

    ref = customer_kpis(counted_events, partitions=4)
    ref["cohort_customers"][("shop-a", "2026-W03")]      # customers of a first-order week
    ref["nps_revenue"][("shop-a", "promoter", "2", "EUR", "90d")]   # minor units
    ref["retention_retained"][("shop-a", "30d", "2026-02-08")]

Definitions (docs/customers.md, "Definitions"):

* A customer is (storefront, customer_id). Orders count once per event_id. The watermark of
  a customer is the largest fact time of its customer partition (Kafka's murmur2 of the id);
  *mature* means the watermark is at least the given time + 1 day.
* First-order cohort = ISO week (UTC) of the customer's earliest order. Repeat customer: a
  second order earlier than first + 90 days; counted as mature once first + 90 days is
  mature. Revenue within 30d / 90d: orders earlier than first + 30 / 90 days, per currency.
* NPS / CSAT cohort: category of the latest NPS answer (9-10 promoter, 7-8 passive, 0-6
  detractor), band of the latest CSAT answer (4-5 satisfied, 3 neutral, 1-2 unsatisfied);
  latest by event time, the higher score on a tie; purchases = orders within 90 days of the
  first (1, 2, 3, 4+); a customer counts for horizon h once first + h is mature.
* Retention, period length P (whole days): period number floor((t - 1969-12-29T00:00Z) / P),
  ``period_start`` its first day. Customers of period k: an order in k - 1; retained: an order
  in k too. Exported: the period of the watermark and the one before (per partition).
* Post-support: per customer and ISO week with a ticket, converted when an order's time is
  after that week's earliest ticket and at most N (7 days) after it; mature once that ticket
  + N is mature. Revenue after support: each order after the customer's latest ticket before
  it and at most N after it, for the ISO week of that ticket, per currency.

Checkouts (docs/customers.md, "Checkouts"): a session (by session_id) with a counted
``session.checkout_started``; its first checkout is the earliest (the lowest event_id on a tie),
which gives its storefront, channel, device and ``day`` (UTC date). Converted: a counted
``order.placed`` naming the session with a time before first + H (CXPULSE_CHECKOUT_HORIZON).
Decided: converted, or the watermark of the session's partition is at least first + H + grace.
Abandoned: decided and not converted. Exported: the days from the watermark's date - 7 days.
The watermark of a partition counts every fact: those keyed by customer and those keyed by
session (a checkout, an order naming its session).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from tests.reference import event_ms, partition_of

DAY = 86_400_000
GRID_START = datetime(1969, 12, 29, tzinfo=timezone.utc)  # a Monday: ISO week 1970-W01 begins


def _week(ms: int) -> str:
    year, week, _ = datetime.fromtimestamp(ms / 1000, timezone.utc).isocalendar()
    return f"{year}-W{week:02d}"


def _category(score: int) -> str:
    if score >= 9:
        return "promoter"
    if score >= 7:
        return "passive"
    return "detractor"


def _band(score: int) -> str:
    return {5: "satisfied", 4: "satisfied", 3: "neutral"}.get(score, "unsatisfied")


def _period(ms: int, days: int) -> int:
    since = datetime.fromtimestamp(ms / 1000, timezone.utc) - GRID_START
    return (since // timedelta(days=1)) // days


def _period_start(number: int, days: int) -> str:
    return (GRID_START + timedelta(days=number * days)).date().isoformat()


def watermarks(counted: list[dict[str, Any]], partitions: int) -> dict[int, int]:
    """The newest fact time of each customer-topic partition: facts keyed by customer (orders,
    tickets, NPS and CSAT answers naming one) and by session (checkouts, orders naming one)."""
    out: dict[int, int] = {}
    for event in counted:
        kind, ts = event["type"], event_ms(event["occurred_at"])
        keys = []
        if event.get("customer_id") is not None and (
                kind in ("order.placed", "ticket.created")
                or (kind == "survey.answered" and event["kind"] in ("nps", "csat"))):
            keys.append(event["customer_id"])
        if kind == "session.checkout_started" or (kind == "order.placed" and event.get("session_id")):
            keys.append(event["session_id"])
        for key in keys:
            p = partition_of(key, partitions)
            out[p] = max(out.get(p, ts), ts)
    return out


def checkout_kpis(counted: list[dict[str, Any]], partitions: int, horizon_ms: int = 3_600_000,
                  grace_ms: int = 120_000) -> dict[str, dict[tuple, int]]:
    """checkout_sessions / checkout_decided / checkout_abandoned by (storefront, channel, device, day)."""
    wm = watermarks(counted, partitions)
    checkouts: dict[str, dict[str, tuple]] = defaultdict(dict)
    orders: dict[str, dict[str, int]] = defaultdict(dict)
    for event in counted:
        ts = event_ms(event["occurred_at"])
        if event["type"] == "session.checkout_started":
            checkouts[event["session_id"]].setdefault(
                event["event_id"], (ts, event["event_id"], event["storefront"], event["channel"], event["device"]))
        elif event["type"] == "order.placed" and event.get("session_id"):
            orders[event["session_id"]].setdefault(event["event_id"], ts)
    out: dict[str, dict[tuple, int]] = defaultdict(lambda: defaultdict(int))
    for session_id, mine in checkouts.items():
        first, _, storefront, channel, device = min(mine.values())
        watermark = wm[partition_of(session_id, partitions)]
        day = datetime.fromtimestamp(first / 1000, timezone.utc).date()
        oldest = datetime.fromtimestamp(watermark / 1000, timezone.utc).date() - timedelta(days=7)
        if day < oldest:
            continue  # past the exported days
        key = (storefront, channel, device, day.isoformat())
        out["checkout_sessions"][key] += 1
        converted = any(ts < first + horizon_ms for ts in orders[session_id].values())
        if converted or watermark >= first + horizon_ms + grace_ms:
            out["checkout_decided"][key] += 1
            if not converted:
                out["checkout_abandoned"][key] += 1
    return {kind: dict(values) for kind, values in out.items()}


def customer_kpis(counted: Iterable[dict[str, Any]], partitions: int, post_support_ms: int = 7 * DAY,
                  periods_days: tuple[int, ...] = (30, 90), horizon_ms: int = 3_600_000,
                  grace_ms: int = 120_000) -> dict[str, dict[tuple, int]]:
    """Every customer-stage aggregate: the customer-level KPIs and the checkout join's."""
    counted = list(counted)
    orders: dict[tuple[str, str], dict[str, tuple[int, int, str]]] = defaultdict(dict)
    tickets: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    surveys: dict[str, dict[tuple[str, str], dict[str, tuple[int, int]]]] = {
        "nps": defaultdict(dict), "csat": defaultdict(dict)}
    watermark = watermarks(counted, partitions)
    for event in counted:
        customer_id = event.get("customer_id")
        kind = event["type"]
        if customer_id is None or kind not in ("order.placed", "ticket.created", "survey.answered"):
            continue
        if kind == "survey.answered" and event["kind"] not in surveys:
            continue
        ts = event_ms(event["occurred_at"])
        who = (event["storefront"], customer_id)
        if kind == "order.placed":
            orders[who].setdefault(event["event_id"], (ts, event["total_minor"], event["currency"]))
        elif kind == "ticket.created":
            tickets[who].setdefault(event["event_id"], ts)
        else:
            surveys[event["kind"]][who].setdefault(event["event_id"], (ts, event["score"]))

    out: dict[str, dict[tuple, int]] = defaultdict(lambda: defaultdict(int))
    for who in set(orders) | set(tickets):
        storefront, customer_id = who
        wm = watermark[partition_of(customer_id, partitions)]

        def mature(ms: int) -> bool:
            return wm >= ms + DAY

        mine = sorted(orders[who].values())
        if mine:
            first = mine[0][0]
            cohort = _week(first)
            out["cohort_customers"][storefront, cohort] += 1
            within90 = [o for o in mine if o[0] < first + 90 * DAY]
            repeat = len(within90) >= 2
            if repeat:
                out["cohort_repeat_customers"][storefront, cohort] += 1
            if mature(first + 90 * DAY):
                out["cohort_mature_customers"][storefront, cohort] += 1
                if repeat:
                    out["cohort_mature_repeat_customers"][storefront, cohort] += 1
            for horizon, days in (("30d", 30), ("90d", 90)):
                for ts, amount, currency in mine:
                    if ts < first + days * DAY:
                        out["cohort_revenue"][storefront, cohort, currency, horizon] += amount
            purchases = str(len(within90)) if len(within90) < 4 else "4+"
            for survey, group in (("nps", _category), ("csat", _band)):
                answers = surveys[survey][who]
                if not answers:
                    continue
                latest = max(answers.values())  # (time, score): the later, then the higher score
                category = group(latest[1])
                for horizon, days in (("30d", 30), ("90d", 90)):
                    if mature(first + days * DAY):
                        out[f"{survey}_customers"][storefront, category, purchases, horizon] += 1
                        for ts, amount, currency in mine:
                            if ts < first + days * DAY:
                                out[f"{survey}_revenue"][storefront, category, purchases, currency, horizon] += amount
            for days in periods_days:
                shown = {_period(wm, days), _period(wm, days) - 1}
                active = {_period(ts, days) for ts, _, _ in mine}
                for k in shown:
                    if k - 1 in active:
                        labels = (f"{days}d", _period_start(k, days))
                        out["retention_customers"][(storefront, *labels)] += 1
                        out["cohort_retention_customers"][(storefront, cohort, *labels)] += 1
                        if k in active:
                            out["retention_retained"][(storefront, *labels)] += 1
                            out["cohort_retention_retained"][(storefront, cohort, *labels)] += 1
        earliest_in_week: dict[str, int] = {}
        for ts in tickets[who].values():
            week = _week(ts)
            earliest_in_week[week] = min(ts, earliest_in_week.get(week, ts))
        for week, ticket_ts in earliest_in_week.items():
            converted = any(ticket_ts < o[0] <= ticket_ts + post_support_ms for o in mine)
            out["support_customers"][storefront, week] += 1
            if converted:
                out["support_converted"][storefront, week] += 1
            if mature(ticket_ts + post_support_ms):
                out["support_mature_customers"][storefront, week] += 1
                if converted:
                    out["support_mature_converted"][storefront, week] += 1
        for ts, amount, currency in mine:
            before = [t for t in tickets[who].values() if t < ts]
            if before and ts - max(before) <= post_support_ms:
                week = _week(max(before))
                out["support_orders"][storefront, week, currency] += 1
                out["support_revenue"][storefront, week, currency] += amount
    return {**{kind: dict(values) for kind, values in out.items()},
            **checkout_kpis(counted, partitions, horizon_ms, grace_ms)}
