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


def customer_events(rng: random.Random, customers: int = 60, days: int = 200, t0: int = T0,
                    sessions: int = 0) -> list[dict]:
    """Orders, tickets, NPS and CSAT answers of repeat customers over ``days``, in time order,
    with a few resends of the same event (duplicates) and shops in two currencies; and
    ``sessions`` checkout sessions in the last 9 days (``_checkouts``)."""
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
    if sessions:
        end = max(e["occurred_at"] for e in events)
        events += _checkouts(rng, sessions, customers, _ms(end), n)
    events.sort(key=lambda e: e["occurred_at"])
    for i in rng.sample(range(len(events)), k=len(events) // 30):  # resent within seconds
        events.insert(min(len(events), i + 2), dict(events[i]))
    return events


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def _checkouts(rng: random.Random, sessions: int, customers: int, end: int, n: int) -> list[dict]:
    """Sessions of the checkout join in the 9 days before ``end`` (the exported 8 days and one
    before): a checkout (sometimes two) then an order within the 1h horizon, after it, an order
    stamped a little before the checkout, or none; and a few orders naming a session that never
    checked out (counted nowhere)."""
    out: list[dict] = []
    for k in range(sessions):
        storefront = rng.choice(["shop-a", "shop-b"])
        currency = "EUR" if storefront == "shop-a" else "USD"
        session = {"session_id": f"S{k}", "channel": rng.choice(["web", "app"]),
                   "device": rng.choice(["desktop", "mobile"])}
        start = end - rng.randrange(9 * DAY)
        checkouts = [] if rng.random() < 0.15 else [start] + ([start + rng.randrange(60_000, 1_800_000)]
                                                           if rng.random() < 0.2 else [])
        for ts in checkouts:
            n += 1
            out.append({"event_id": f"k{n}", "type": "session.checkout_started", "schema_version": 1,
                        "occurred_at": _iso(ts), "storefront": storefront, **session})
        u = rng.random()
        order = (start + rng.randrange(60_000, 3_000_000) if u < 0.5 or not checkouts
                 else start + rng.randrange(3_660_000, 10_800_000) if u < 0.6
                 else start - rng.randrange(1_000, 300_000) if u < 0.65 else None)
        if order is not None:
            n += 1
            out.append({"event_id": f"x{n}", "type": "order.placed", "schema_version": 1,
                        "occurred_at": _iso(order), "storefront": storefront, "order_id": f"O{n}",
                        "customer_id": f"c{rng.randrange(customers)}", "session_id": session["session_id"],
                        "total_minor": rng.randrange(500, 30_000), "currency": currency, "first_order": False})
    return out
