"""The weekly report's contact reasons (docs/report.md, "What moved most"): what it asks Prometheus
and the table it writes, against a fake Prometheus that answers the report's own queries."""

from __future__ import annotations

import re

from streams.catalog import COUNTERS, HISTOGRAMS, KPIS
from streams.mixin.rules import component_level, kpi_components
from streams.report.build import MOVER_KPIS, category_movers, reason_movers
from streams.report.document import tables
from streams.report.figures import Customers, Initiatives, Report
from streams.report.markdown import markdown
from streams.report.queries import headline_level, sample_metric
from streams.report.weeks import WEEK_S, Week

WEEK = Week.parse("2026-W47")
# tickets created by reason (cumulative counters) at the end of this week, of last week, of the week before
TICKETS = {"shipping": (400, 150, 100), "payment": (210, 150, 90), "account": (70, 40, 10),
           "unknown": (13, 10, 8), "technical": (45, 45, 45)}
ORDERS = (30_000, 20_000, 12_000)


class FakePrometheus:
    url = "http://prometheus.test"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def instant(self, expr: str, at_s: float) -> list[tuple[dict[str, str], float]]:
        self.asked.append(expr)
        ago = round((WEEK.end_s - at_s) / WEEK_S)  # 0: this week's end, 1: last week's

        def at(values: tuple[int, ...], offset: bool) -> int:
            return values[ago + (1 if offset else 0)]

        def counted(values: tuple[int, ...]) -> float:  # the report's increase: now - offset 1w
            return at(values, False) - at(values, True)

        if "cxpulse_tickets_created_total" in expr and "sum by (reason)" in expr:
            return [({"reason": reason}, counted(values)) for reason, values in TICKETS.items()]
        if "cxpulse_orders_placed_total" in expr and "sum by ()" in expr:
            return [({}, counted(ORDERS))]
        return []


def test_reasons_that_moved_rank_tickets_per_reason_with_their_rate_per_order() -> None:
    prom = FakePrometheus()
    found = reason_movers(prom, WEEK, 'job=~"(.+/)?cxpulse"')
    # this week: shipping 250 (last 50), payment 60 (60), account 30 (30), unknown 3 (2), technical 0 (0)
    assert [(m.reason, m.count, m.previous) for m in found] == [
        ("shipping", 250, 50), ("account", 30, 30), ("payment", 60, 60)]  # change 200, then 0s by name
    assert (found[0].orders, found[0].orders_previous) == (10_000, 8_000)
    assert (found[0].per_order, found[0].per_order_previous) == (0.025, 0.00625)
    assert all(re.search(r"offset 1w", expr) for expr in prom.asked)


def test_the_report_writes_a_reasons_table_under_what_moved_most() -> None:
    reasons = reason_movers(FakePrometheus(), WEEK, 'job=~"(.+/)?cxpulse"')
    report = Report(WEEK, None, "http://prometheus.test", WEEK.end, [], {}, [], Initiatives([]),
                    Customers([], [], []), [], reasons=reasons)
    (table,) = [t for t in tables(report) if t[0] == "movers-reasons"]
    _, title, header, rows, caption = table
    assert title == "Contact reasons that moved most"
    assert rows[0] == ["shipping", "50", "250", "+200", "+400%", "0.62", "2.50"]
    assert "per 100 orders" in header[-1] and "unknown" in caption
    text = markdown(report)
    assert "## What moved most" in text and "### Contact reasons that moved most" in text
    assert text.index("## What moved most") < text.index("### Contact reasons that moved most")


def _cumulative_labels(metric: str) -> tuple[str, ...]:
    """The labels of a cumulative series on /metrics (a histogram's ``_bucket``/``_count`` has its own)."""
    for counter in COUNTERS:
        if counter.name == metric:
            return counter.labels
    return next(h.labels for h in HISTOGRAMS if metric in (h.name + "_bucket", h.name + "_count"))


def test_every_level_the_report_reads_is_a_label_of_the_cumulative_series() -> None:
    """The report counts weeks from the cumulative series: a mover by a label one of them lacks (the
    histograms' reason) would divide by a sum over every value of it, or find nothing."""
    asked = [(next(k for k in KPIS if k.key == key), (dimension,)) for key, dimension in MOVER_KPIS]
    asked += [(kpi, headline_level(kpi)) for kpi in KPIS]
    for kpi, level in asked:
        for metric in {*kpi_components(kpi), sample_metric(kpi)}:
            by = set(component_level(metric, level)) - {"le"}
            assert by <= set(_cumulative_labels(metric)), (kpi.key, level, metric)


def test_support_times_and_fcr_do_not_move_by_reason() -> None:
    assert not {key for key, dimension in MOVER_KPIS if dimension == "reason"}


# tickets created per product category and orders, summed over the event-time windows of this week, last week
CATEGORY_TICKETS = {"electronics": (300, 60), "apparel": (80, 90), "toys": (10, 12)}
WINDOW_ORDERS = (9_000, 7_500)


class FakeWindows:
    """Answers the report's week-of-windows queries (``sum_over_time`` of the 1-minute window series)."""

    url = "http://prometheus.test"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def instant(self, expr: str, at_s: float) -> list[tuple[dict[str, str], float]]:
        self.asked.append(expr)
        ago = round((WEEK.end_s - at_s) / WEEK_S)
        if "cxpulse_window_category_tickets_created" in expr and "sum by (product_category)" in expr:
            return [({"product_category": c}, values[ago]) for c, values in CATEGORY_TICKETS.items()]
        if "cxpulse_window_orders_placed" in expr:
            return [({}, WINDOW_ORDERS[ago])]
        return []


def test_product_categories_that_moved_come_from_the_weeks_event_time_windows() -> None:
    prom = FakeWindows()
    found = category_movers(prom, WEEK, "north")
    assert [(m.category, m.count, m.previous) for m in found] == [("electronics", 300, 60), ("apparel", 80, 90)]
    assert (found[0].per_order, found[0].per_order_previous) == (300 / 9_000, 60 / 7_500)
    # one week of 1-minute windows of the chosen storefront, read at the week's end and a week earlier
    assert all('window="1m", storefront="north"' in e and "[10079m59s999ms]" in e for e in prom.asked)
    assert not any("job=" in e or "offset" in e for e in prom.asked)  # remote-written: no job label
    report = Report(WEEK, "north", "http://prometheus.test", WEEK.end, [], {}, [], Initiatives([]),
                    Customers([], [], []), [], categories=found)
    (table,) = [t for t in tables(report) if t[0] == "movers-categories"]
    _, title, header, rows, caption = table
    assert title == "Product categories that moved most" and header[0] == "product category"
    assert rows[0] == ["electronics", "60", "300", "+240", "+400%", "0.80", "3.33"]
    assert "event time" in caption.lower()
    assert "### Product categories that moved most" in markdown(report)
