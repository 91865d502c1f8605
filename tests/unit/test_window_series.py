"""What the merge stage remote-writes (streams/runtime/remote_write.py): the ticket summaries per support
channel and per storefront merged over the contact reasons, and per reason over the support channels,
never per channel x reason (the window counters carry the whole segment, reason included); and the
distinct visitors of a session window, the union over partitions and segments."""

from __future__ import annotations

from datetime import datetime, timezone

from streams.pipeline.aggregates import Cell
from streams.pipeline.merge_state import WindowExport
from streams.runtime.remote_write import window_series


def _cell(created: int, resolutions_s: list[float]) -> Cell:
    cell = Cell()
    cell.counts["tickets_created"] = created
    for seconds in resolutions_s:
        cell.observe("resolution", int(seconds * 1000))
    return cell


def test_ticket_summaries_are_per_channel_per_storefront_and_per_reason():
    cells = {
        ("shop", "email", "shipping"): _cell(3, [60, 120, 180]),
        ("shop", "chat", "shipping"): _cell(1, [600]),
        ("shop", "email", "payment"): _cell(2, [30]),
    }
    series = window_series(WindowExport("ticket", "shop", 300_000, 1_800_000_000_000, cells))
    found = {(labels["__name__"], tuple(sorted((k, v) for k, v in labels.items() if k not in ("__name__", "window")))):
             samples[0][0] for labels, samples in series}
    created = {labels: value for (name, labels), value in found.items() if name == "cxpulse_window_tickets_created"}
    assert created == {(("reason", "shipping"), ("storefront", "shop"), ("support_channel", "email")): 3,
                       (("reason", "shipping"), ("storefront", "shop"), ("support_channel", "chat")): 1,
                       (("reason", "payment"), ("storefront", "shop"), ("support_channel", "email")): 2}

    def counts(name: str) -> dict:
        return {labels: value for (n, labels), value in found.items() if n == name}

    assert counts("cxpulse_window_ticket_resolution_seconds_count") == {
        (("storefront", "shop"), ("support_channel", "email")): 4,
        (("storefront", "shop"), ("support_channel", "chat")): 1}
    assert counts("cxpulse_window_storefront_ticket_resolution_seconds_count") == {(("storefront", "shop"),): 5}
    assert counts("cxpulse_window_reason_ticket_resolution_seconds_count") == {
        (("reason", "shipping"), ("storefront", "shop")): 4, (("reason", "payment"), ("storefront", "shop")): 1}
    # the reason's p90 comes from the merged sketch of its channels (600 s within the sketch's 1%)
    p90 = counts("cxpulse_window_reason_ticket_resolution_seconds")
    assert abs(p90[(("quantile", "0.9"), ("reason", "shipping"), ("storefront", "shop"))] - 600) <= 6
    assert not any("reason" in dict(labels) and "support_channel" in dict(labels)
                   for name, labels in found if "seconds" in name)


def _sessions_through_the_stages(starts: list[tuple[int, str, str, str]], partitions: int = 2) -> dict:
    """(partition, channel, visitor, event id) session starts in the minute from T0, through each partition's
    window state (closed by a later event), the window items, one merge partition and the series it writes:
    {(name, labels): value} of the 1-minute window."""
    import orjson

    from streams.config import Settings
    from streams.decode import decode_message
    from streams.pipeline.exchange import decode_window_items
    from streams.pipeline.merge_state import MergeState
    from streams.pipeline.records import Message
    from streams.pipeline.window_state import PartitionState

    t0 = 1_800_000_000_000 - 1_800_000_000_000 % 60_000
    settings = Settings(partitions=partitions)
    merge = MergeState(0, settings)  # fed every item: as the merge partition of "shop"
    items: list = []
    for p in range(partitions):
        state = PartitionState("session", p, settings)
        mine = [s for s in starts if s[0] == p] + [(p, "web", "closer", f"late-{p}")]
        messages = []
        for i, (_, channel, visitor, event_id) in enumerate(mine):
            ts = t0 + i if visitor != "closer" else t0 + 10 * 60_000  # the first minute; the closer closes it
            body = {"event_id": event_id, "type": "session.started", "schema_version": 1,
                    "occurred_at": datetime.fromtimestamp(ts / 1000, timezone.utc).isoformat(timespec="milliseconds"),
                    "storefront": "shop", "session_id": f"s-{event_id}", "visitor_id": visitor, "channel": channel,
                    "device": "mobile"}
            events, rejected = decode_message(orjson.dumps(body), "session")
            assert not rejected, rejected
            messages.append(Message(i, events, []))
        for stage, _, value in state.apply(messages).sends:
            if stage == "merge":
                items += decode_window_items(value)
    for family in ("order", "ticket", "survey"):  # the other families closed too: the window is complete
        items += [["m", family, p, t0 + 9 * 60_000] for p in range(partitions)]
    exports = merge.apply([Message(0, items, [])]).exports
    first = [e for e in exports if e.family == "session" and e.view_ms == 60_000 and e.end_ms == t0 + 60_000]
    assert len(first) == 1, exports
    return {(labels["__name__"], tuple(sorted((k, v) for k, v in labels.items() if k not in ("__name__", "window")))):
            samples[0][0] for labels, samples in window_series(first[0]) if "visitors" in labels["__name__"]}


def test_distinct_visitors_are_the_union_over_partitions_and_segments():
    """v1 starts sessions on both partitions and in two channels, v2 twice on one: 3 visitors of the
    storefront (not 6 sessions, not the 4 segment-visitor pairs summed), and per segment the distinct ones."""
    found = _sessions_through_the_stages([(0, "web", "v1", "a"), (0, "web", "v2", "b"), (0, "web", "v2", "c"),
                                          (1, "web", "v1", "d"), (1, "app", "v1", "e"), (1, "app", "v3", "f")])
    shop, web, app = ("storefront", "shop"), (("channel", "web"), ("device", "mobile"), ("storefront", "shop")), \
        (("channel", "app"), ("device", "mobile"), ("storefront", "shop"))
    assert found[("cxpulse_window_storefront_visitors", (shop,))] == 3
    assert found[("cxpulse_window_visitors", web)] == 2  # v1, v2
    assert found[("cxpulse_window_visitors", app)] == 2  # v1, v3


def test_a_window_past_the_visitor_budget_writes_no_visitor_series():
    from streams.pipeline.window_state import VISITORS_MAX

    many = [(0, "web", f"v{i}", f"e{i}") for i in range(VISITORS_MAX + 1)]
    assert _sessions_through_the_stages(many, partitions=1) == {}  # absent: never a count that is too low
