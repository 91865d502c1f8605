"""Events of repeat customers over months: orders, tickets, NPS and CSAT answers naming them.

For the customer-level tests (unit and end to end): seeded, in time order, with a few
events resent within seconds (duplicates) and two shops in two currencies.
"""

from __future__ import annotations

import random
from datetime import datetime, timezone

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def customer_events(rng: random.Random, customers: int = 60, days: int = 200, t0: int = T0) -> list[dict]:
    """Orders, tickets, NPS and CSAT answers of repeat customers over ``days``, in time order,
    with a few resends of the same event (duplicates) and shops in two currencies."""
    events: list[dict] = []
    n = 0
    for c in range(customers):
        storefront = rng.choice(["shop-a", "shop-b"])
        currency = "EUR" if storefront == "shop-a" else "USD"
        first = t0 + rng.randrange(days * DAY)
        for k in range(rng.choice([1, 1, 2, 3, 5])):
            ts = first + (0 if k == 0 else rng.randrange(120 * DAY))
            n += 1
            events.append({"event_id": f"o{n}", "type": "order.placed", "schema_version": 1,
                           "occurred_at": _iso(ts), "storefront": storefront, "order_id": f"O{n}",
                           "customer_id": f"c{c}", "total_minor": rng.randrange(500, 30_000),
                           "currency": currency, "first_order": k == 0})
        for _ in range(rng.choice([0, 1, 1, 2])):
            n += 1
            ts = first + rng.randrange(-20 * DAY, 100 * DAY)
            events.append({"event_id": f"t{n}", "type": "ticket.created", "schema_version": 1,
                           "occurred_at": _iso(ts), "storefront": storefront, "ticket_id": f"T{n}",
                           "support_channel": "email", "customer_id": f"c{c}"})
        for _ in range(rng.choice([0, 1, 1, 2])):
            n += 1
            ts = first + rng.randrange(60 * DAY)
            events.append({"event_id": f"n{n}", "type": "survey.answered", "schema_version": 1,
                           "occurred_at": _iso(ts), "storefront": storefront, "response_id": f"R{n}",
                           "kind": "nps", "score": rng.randrange(11), "customer_id": f"c{c}"})
        for _ in range(rng.choice([0, 1, 1, 2])):
            n += 1
            ts = first + rng.randrange(60 * DAY)
            events.append({"event_id": f"s{n}", "type": "survey.answered", "schema_version": 1,
                           "occurred_at": _iso(ts), "storefront": storefront, "response_id": f"R{n}",
                           "kind": "csat", "score": rng.randint(1, 5), "customer_id": f"c{c}"})
    events.sort(key=lambda e: e["occurred_at"])
    for i in rng.sample(range(len(events)), k=len(events) // 30):  # resent within seconds
        events.insert(min(len(events), i + 2), dict(events[i]))
    return events
