"""The ticket summaries the merge stage remote-writes (streams/runtime/remote_write.py): per support
channel and per storefront merged over the contact reasons, and per reason over the support channels,
never per channel x reason; the window counters carry the whole segment, reason included."""

from __future__ import annotations

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
