"""The tickets' breakdown by product category (docs/metrics.md, rule 17), worked by hand: which category
a ticket's counts and times go to, how categories are bounded, and the series the merge stage writes."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import orjson

from streams.config import Settings
from streams.decode import decode_message
from streams.pipeline.aggregates import Cell, merge_cells
from streams.pipeline.families import Ticket
from streams.pipeline.merge_state import WindowExport
from streams.pipeline.records import Message
from streams.pipeline.window_state import PartitionState
from streams.runtime.remote_write import window_series

SETTINGS = Settings(window_ms=60_000, grace_ms=120_000)
T0 = 1_795_000_000_000 - 1_795_000_000_000 % 60_000


def _event(kind: str, ticket: str, at_s: float, n: int, **fields) -> bytes:
    body = {"event_id": f"e{n}", "type": kind, "schema_version": 1, "storefront": "north", "ticket_id": ticket,
            "occurred_at": datetime.fromtimestamp((T0 + at_s * 1000) / 1000, timezone.utc).isoformat(), **fields}
    if kind == "ticket.created":
        body.setdefault("support_channel", "email")
    if kind == "ticket.replied":
        body.setdefault("author", "agent")
        body.setdefault("public", True)
    return orjson.dumps(body)


def _apply(state: PartitionState, payloads: list[bytes]) -> None:
    messages = []
    for offset, payload in enumerate(payloads):
        events, rejected = decode_message(payload, "ticket")
        assert not rejected, rejected
        messages.append(Message(offset, events, []))
    state.apply(messages)


def _series(state: PartitionState) -> dict[tuple[str, tuple], float]:
    """The category series of the first minute's window, as the merge stage would write it."""
    cells = merge_cells([state.windows[T0].cells])
    found = {}
    for labels, samples in window_series(WindowExport("ticket", "north", 60_000, T0 + 60_000, cells)):
        if "product_category" in labels:
            key = tuple(sorted((k, v) for k, v in labels.items() if k not in ("__name__", "window", "storefront")))
            found[labels["__name__"], key] = samples[0][0]
    return found


def test_a_ticket_counts_under_the_category_of_its_creation_and_one_without_under_none():
    """t1 (footwear) is created, answered after 20 s and resolved after 50 s with one reply; a later event
    naming another category changes nothing. t2 has no category: it counts in every ticket series but in
    no category's. t3's creation had none; its reply names bags, so its first response and resolution
    (recorded after that) count under bags, its creation (recorded before) under none."""
    state = PartitionState("ticket", 0, SETTINGS)
    _apply(state, [
        _event("ticket.created", "t1", 0, 1, product_category="footwear"),
        _event("ticket.created", "t2", 1, 2),
        _event("ticket.created", "t3", 2, 3),
        _event("ticket.replied", "t1", 20, 4, product_category="bags"),
        _event("ticket.replied", "t3", 22, 5, product_category="bags"),
        _event("ticket.resolved", "t1", 50, 6),
        _event("ticket.resolved", "t2", 51, 7),
        _event("ticket.resolved", "t3", 52, 8, product_category="home"),
    ])
    found = _series(state)
    footwear, bags = (("product_category", "footwear"),), (("product_category", "bags"),)
    assert found["cxpulse_window_category_tickets_created", footwear] == 1
    assert found["cxpulse_window_category_tickets_created", bags] == 0  # t3 had no category when created
    assert found["cxpulse_window_category_tickets_resolved_one_touch", footwear] == 1
    assert found["cxpulse_window_category_tickets_resolved_one_touch", bags] == 1
    assert found["cxpulse_window_category_ticket_first_response_seconds_count", footwear] == 1
    assert found["cxpulse_window_category_ticket_first_response_seconds_sum", footwear] == 20
    assert found["cxpulse_window_category_ticket_first_response_seconds_sum", bags] == 20
    assert found["cxpulse_window_category_ticket_resolution_seconds_sum", footwear] == 50
    assert found["cxpulse_window_category_ticket_resolution_seconds_sum", bags] == 50
    assert {dict(labels)["product_category"] for _, labels in found} == {"footwear", "bags"}  # no home, no unknown
    # every ticket still counts in the ticket series of its segment
    created = sum(cell.counts.get("tickets_created", 0) for cell in state.windows[T0].cells.values())
    assert created == 3
    # the running totals (the cumulative counters on /metrics) carry no breakdown
    assert not any("|" in name for cell in state.totals.cells.values() for name in (*cell.counts, *cell.hists))


def test_categories_beyond_the_cap_or_the_allow_list_count_as_other():
    capped = PartitionState("ticket", 0, replace(SETTINGS, label_cap=2))
    _apply(capped, [_event("ticket.created", f"t{i}", i, i, product_category=name)
                    for i, name in enumerate(["footwear", "bags", "home", "footwear", "toys"])])
    created = {dict(labels)["product_category"]: value for (name, labels), value in _series(capped).items()
               if name == "cxpulse_window_category_tickets_created"}
    assert created == {"footwear": 2, "bags": 1, "other": 2}
    assert capped.meta.overflow["product_category"] == 2

    listed = PartitionState("ticket", 0, replace(SETTINGS, allowed_product_categories="home,toys"))
    _apply(listed, [_event("ticket.created", f"t{i}", i, i, product_category=name)
                    for i, name in enumerate(["footwear", "bags", "home", "footwear", "toys"])])
    created = {dict(labels)["product_category"]: value for (name, labels), value in _series(listed).items()
               if name == "cxpulse_window_category_tickets_created"}
    assert created == {"home": 1, "toys": 1, "other": 3}


def test_the_merge_stage_sums_categories_over_partitions_and_segments():
    """Two partitions' cells of one window, in two segments: the category's series is their sum, the
    quantile from the merged sketches."""
    def cell(created: int, resolutions_s: list[int], category: str) -> Cell:
        c = Cell()
        c.counts["tickets_created"] = created
        c.counts[f"tickets_created|{category}"] = created
        for seconds in resolutions_s:
            c.observe("resolution", seconds * 1000)
            c.observe(f"resolution|{category}", seconds * 1000)
        return c

    one = {("north", "email", "shipping"): cell(2, [60, 600], "footwear")}
    two = {("north", "chat", "payment"): cell(3, [120], "footwear"), ("north", "chat", "other"): cell(1, [], "bags")}
    series = window_series(WindowExport("ticket", "north", 60_000, T0 + 60_000, merge_cells([one, two])))
    found = {(labels["__name__"], labels.get("product_category"), labels.get("quantile")): samples[0][0]
             for labels, samples in series if "product_category" in labels}
    assert found["cxpulse_window_category_tickets_created", "footwear", None] == 5
    assert found["cxpulse_window_category_tickets_created", "bags", None] == 1
    assert found["cxpulse_window_category_ticket_resolution_seconds_count", "footwear", None] == 3
    assert abs(found["cxpulse_window_category_ticket_resolution_seconds", "footwear", "0.9"] - 600) <= 6
    assert ("cxpulse_window_category_ticket_resolution_seconds_count", "bags", None) not in found


def test_a_ticket_record_from_before_categories_restores_without_one():
    record = Ticket(through=3, created_ms=T0, channel="chat", storefront="north", reason="payment").to_json()
    older = orjson.dumps(orjson.loads(record)[:10])
    assert Ticket.from_json(older).category is None
    assert Ticket.from_json(older).reason == "payment"
