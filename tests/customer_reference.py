"""The independent reference for the customer-level KPIs, written from docs/metrics.md.

Input: the events the window stage counted, in send order (``tests/reference.py`` decides
which: valid, first-seen, on time). Shares nothing with ``streams/pipeline/customer_state.py``; plain dicts:

    ref = customer_kpis(counted_events, partitions=4)
    ref["cohort_customers"][("shop-a", "2026-W03")]      # customers of a first-order week
    ref["nps_revenue"][("shop-a", "promoter", "2", "EUR", "90d")]   # minor units

Definitions (docs/metrics.md, "Customer-level KPIs"):

* A customer is (storefront, customer_id). Orders count once per event_id.
* First-order cohort = ISO week (UTC) of the customer's earliest order. Repeat customer: a
  second order earlier than first + 90 days. Revenue within 30d / 90d: orders earlier than
  first + 30 / 90 days, per currency.
* NPS cohort: category of the latest NPS answer (by event time; 9-10 promoter, 7-8 passive,
  0-6 detractor), purchases = orders within 90 days of the first (1, 2, 3, 4+); a customer
  counts for horizon h once the customer partition's watermark (largest fact time of the
  partition of Kafka's murmur2 of the customer id) is at least first + h + 1 day.
* Post-support: per customer and ISO week with a ticket, converted when an order's time is
  after that week's earliest ticket and at most 7 days after it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Iterable

from tests.reference import event_ms, partition_of

DAY = 86_400_000


def _week(ms: int) -> str:
    year, week, _ = datetime.fromtimestamp(ms / 1000, timezone.utc).isocalendar()
    return f"{year}-W{week:02d}"


def _category(score: int) -> str:
    if score >= 9:
        return "promoter"
    if score >= 7:
        return "passive"
    return "detractor"


def customer_kpis(counted: Iterable[dict[str, Any]], partitions: int,
                  post_support_ms: int = 7 * DAY) -> dict[str, dict[tuple, int]]:
    orders: dict[tuple[str, str], dict[str, tuple[int, int, str]]] = defaultdict(dict)
    tickets: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    answers: dict[tuple[str, str], dict[str, tuple[int, int]]] = defaultdict(dict)
    watermark: dict[int, int] = {}
    for event in counted:
        customer_id = event.get("customer_id")
        kind = event["type"]
        if customer_id is None or kind not in ("order.placed", "ticket.created", "survey.answered"):
            continue
        if kind == "survey.answered" and event["kind"] != "nps":
            continue
        ts = event_ms(event["occurred_at"])
        p = partition_of(customer_id, partitions)
        watermark[p] = max(watermark.get(p, ts), ts)
        who = (event["storefront"], customer_id)
        if kind == "order.placed":
            orders[who].setdefault(event["event_id"], (ts, event["total_minor"], event["currency"]))
        elif kind == "ticket.created":
            tickets[who].setdefault(event["event_id"], ts)
        else:
            answers[who].setdefault(event["event_id"], (ts, event["score"]))

    out: dict[str, dict[tuple, int]] = defaultdict(lambda: defaultdict(int))
    for who in set(orders) | set(tickets):
        storefront, customer_id = who
        mine = sorted(orders[who].values())
        if mine:
            first = mine[0][0]
            cohort = _week(first)
            out["cohort_customers"][storefront, cohort] += 1
            within90 = [o for o in mine if o[0] < first + 90 * DAY]
            if len(within90) >= 2:
                out["cohort_repeat_customers"][storefront, cohort] += 1
            for horizon, days in (("30d", 30), ("90d", 90)):
                for ts, amount, currency in mine:
                    if ts < first + days * DAY:
                        out["cohort_revenue"][storefront, cohort, currency, horizon] += amount
            if answers[who]:
                latest = max(answers[who].values())
                category = _category(latest[1])
                purchases = str(len(within90)) if len(within90) < 4 else "4+"
                wm = watermark[partition_of(customer_id, partitions)]
                for horizon, days in (("30d", 30), ("90d", 90)):
                    if wm >= first + days * DAY + DAY:
                        out["nps_customers"][storefront, category, purchases, horizon] += 1
                        for ts, amount, currency in mine:
                            if ts < first + days * DAY:
                                out["nps_revenue"][storefront, category, purchases, currency, horizon] += amount
        earliest_in_week: dict[str, int] = {}
        for ts in tickets[who].values():
            week = _week(ts)
            earliest_in_week[week] = min(ts, earliest_in_week.get(week, ts))
        for week, ticket_ts in earliest_in_week.items():
            out["support_customers"][storefront, week] += 1
            if any(ticket_ts < o[0] <= ticket_ts + post_support_ms for o in mine):
                out["support_converted"][storefront, week] += 1
    return {kind: dict(values) for kind, values in out.items()}
