"""The report's content in words and numbers, shared by the Markdown and the HTML.

After the figures (``figures.py``), before each format: how a value reads
(``2.91%``, ``89.40 EUR``, ``14.2 min``), the headline and movers tables, the
"at a glance" lines, and the customer and initiative sections as format-free
``Block``s that ``markdown.py`` and ``html.py`` each render. Pure text: no I/O.

    >>> fmt_duration(852), fmt_money(1234.5, "EUR", signed=True)
    ('14.2 min', '+1,234.50 EUR')
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from streams.catalog import KPIS, Kpi
from streams.report.figures import (MIN_SEGMENT_COUNT, MIN_SEGMENT_SHARE, NOTABLE_RELATIVE, Figure, Initiative,
                                    Mover, NpsLtv, ReasonMover, Report)
from streams.report.queries import CUSTOMER_SHARES, sample_metric
from streams.report.weeks import DAY_S


MOVERS_SHOWN = 5

NOUNS = {  # sample-size words, by denominator series
    "cxpulse_sessions_started_total": "sessions", "cxpulse_orders_placed_total": "orders",
    "cxpulse_checkouts_started_total": "checkouts", "cxpulse_ticket_resolution_seconds_count": "resolutions",
    "cxpulse_ticket_first_response_seconds_count": "first responses", "cxpulse_nps_responses_total": "answers",
    "cxpulse_csat_responses_total": "answers", "cxpulse_ces_responses_total": "answers",
    "cxpulse_tickets_created_total": "tickets", "cxpulse_nps_surveys_sent_total": "surveys sent",
    "cxpulse_csat_surveys_sent_total": "surveys sent", "cxpulse_ces_surveys_sent_total": "surveys sent",
}


def fmt_value(kpi: Kpi, value: float | None, labels: dict[str, str] | None = None) -> str:
    """A KPI value for people: 2.91%, 89.40 EUR, 14.2 min, +31.0, 5.12.

        >>> fmt_value(KPIS[0], 0.02912)
        '2.91%'
    """
    if value is None or not math.isfinite(value):
        return "no data"
    if kpi.unit == "ratio":
        return fmt_percent(value)
    if kpi.unit == "currency":
        return f"{value:,.2f} {(labels or {}).get('currency', '')}".rstrip()
    if kpi.unit == "seconds":
        return fmt_duration(value)
    if kpi.shape == "nps":
        return f"{value:+.1f}"
    return f"{value:.2f}"


def fmt_percent(value: float) -> str:
    return f"{100 * value:.2f}%" if abs(value) < 0.1 else f"{100 * value:.1f}%"


def fmt_duration(seconds: float) -> str:
    """45 s, 14.2 min, 3.5 h, 2.1 d"""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def fmt_change(fig: Figure) -> str:
    change = fig.change
    if change is None:
        return "-"
    digits = 2 if fig.change_unit == "pp" or (fig.change_unit == "pts" and fig.kpi.shape != "nps") else 1
    unit = {"pp": " pp", "pts": " pts", "%": "%"}[fig.change_unit]
    return f"{change:+.{digits}f}{unit}"


def fmt_interval(fig: Figure) -> str:
    if fig.interval is None:
        return "-"
    lo, hi = fig.interval
    if fig.kpi.unit == "ratio":
        return f"{fmt_percent(lo)} to {fmt_percent(hi)}"
    return f"{lo:+.1f} to {hi:+.1f}"


def fmt_count(value: float) -> str:
    return f"{value:,.0f}"


def fmt_sample(fig: Figure) -> str:
    noun = NOUNS.get(sample_metric(fig.kpi), "")
    return f"{fmt_count(fig.n)} / {fmt_count(fig.n_previous)} {noun}".rstrip()


def fmt_mover_change(mover: Mover, value: float) -> str:
    if mover.kpi.unit == "ratio":
        return f"{100 * value:+.2f} pp"
    if mover.kpi.unit == "seconds":
        return ("-" if value < 0 else "+") + fmt_duration(abs(value))
    return f"{value:+.2f}"


def scope(report: Report) -> str:
    return f"storefront {report.storefront}" if report.storefront else "all storefronts"


def tables(report: Report) -> list[tuple[str, str, list[str], list[list[str]], str]]:
    """(anchor, title, header, rows, caption) of every table, shared by Markdown and HTML."""
    w, p = report.week.label.split("-")[1], report.week.previous().label.split("-")[1]
    rows = []
    for fig in report.figures:
        arrow = {"better": " (better)", "worse": " (worse)"}.get(fig.direction, "")
        rows.append([fig.name, fmt_value(fig.kpi, fig.value, fig.labels), fmt_interval(fig),
                     fmt_value(fig.kpi, fig.previous, fig.labels), fmt_change(fig) + arrow, fmt_sample(fig)])
    tables = [("headline", "Headline KPIs", ["KPI", w, "95% interval", p, "change", f"sample {w} / {p}"], rows,
               "Change: pp = percentage points (shares), pts = points (NPS -100..100, mean scores), % = relative "
               "(money, times). 95% interval: Wilson for shares, adjusted Wald for NPS; none for money, times and "
               "means. Sample: the KPI's denominator counted in each week.")]
    for key, moved in report.movers.items():
        if not moved:
            continue
        kpi = moved[0].kpi
        mrows = [[f"{m.dimension}={m.segment}", fmt_value(kpi, m.previous), fmt_value(kpi, m.value),
                  fmt_mover_change(m, m.change), f"{100 * m.share:.0f}% ({fmt_count(m.n)})",
                  fmt_mover_change(m, m.weighted) + (" (better)" if m.better else " (worse)")]
                 for m in moved[:MOVERS_SHOWN]]
        noun = NOUNS.get(sample_metric(kpi), "volume")
        tables.append((f"movers-{key}", f"{kpi.title}: segments that moved most",
                       ["segment", p, w, "change", f"share of {noun} {w}", "weighted change"], mrows, ""))
    if report.volume_movers:
        vrows = [[f"{m.dimension}={m.segment}", fmt_count(m.previous), fmt_count(m.count), f"{m.change:+,.0f}",
                  f"{100 * (m.count / m.previous - 1):+.0f}%" if m.previous else "new"]
                 for m in report.volume_movers[:MOVERS_SHOWN]]
        tables.append(("movers-volume", "Tickets created: segments that moved most",
                       ["segment", p, w, "change", "relative"], vrows, ""))
    if report.reasons:
        tables.append(("movers-reasons", "Contact reasons that moved most",
                       ["reason", f"tickets {p}", f"tickets {w}", "change", "relative", f"per 100 orders {p}",
                        f"per 100 orders {w}"], reason_rows(report.reasons), REASONS_CAPTION))
    if report.categories:
        tables.append(("movers-categories", "Product categories that moved most",
                       ["product category", f"tickets {p}", f"tickets {w}", "change", "relative",
                        f"per 100 orders {p}", f"per 100 orders {w}"], reason_rows(report.categories),
                       CATEGORIES_CAPTION))
    return tables


REASONS_CAPTION = (
    "Tickets created per contact reason (the ticket's issue type; unknown: created without one) and per 100 orders "
    "of the same week (the reason's ticket-to-order rate x 100; orders carry no reason, so every order counts). "
    "Ranked by the change in tickets.")


CATEGORIES_CAPTION = (
    "By event time: tickets created per product category (ticket.created's product_category, or the first event "
    "of the ticket that named one) and per 100 orders, both counted in the week's one-minute event-time windows; "
    "tickets without a category count in none. Ranked by the change in tickets.")


def reason_rows(reasons: list[ReasonMover]) -> list[list[str]]:
    """The rows of the contact-reasons (or product-categories) table, the largest changes first.

        >>> reason_rows([ReasonMover("shipping", 120, 60, 4000, 4000), ReasonMover("account", 35, 0, 4000, 4000)])
        [['shipping', '60', '120', '+60', '+100%', '1.50', '3.00'], ['account', '0', '35', '+35', 'new', '0.00', '0.88']]
    """
    def per_100(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}"

    return [[m.reason, fmt_count(m.previous), fmt_count(m.count), f"{m.change:+,.0f}",
             f"{100 * (m.count / m.previous - 1):+.0f}%" if m.previous else "new",
             per_100(m.per_order_previous), per_100(m.per_order)] for m in reasons[:MOVERS_SHOWN]]


MOVERS_CAPTION = (
    "Ranked by weighted change = change x the segment's share of the volume this week (for conversion: the "
    "points of overall conversion the segment's change is worth at an unchanged traffic mix). Segments under "
    f"{MIN_SEGMENT_SHARE:.0%} of the volume or {MIN_SEGMENT_COUNT} sessions / observations in either week are left "
    "out. Ticket volume is ranked by the change in tickets.")


def glance(report: Report) -> list[str]:
    lines = []
    for fig in report.figures:
        if fig.notable:
            verb = "up" if (fig.change or 0) > 0 else "down"
            to = fmt_value(fig.kpi, fig.value, fig.labels)
            lines.append(f"{fig.name} {verb} {fmt_change(fig).lstrip('+-')} to {to} ({fig.direction})")
    return lines or ["No KPI moved beyond its week-to-week noise (95% intervals overlap; money and times within "
                     f"{NOTABLE_RELATIVE:.0%})."]


@dataclass(frozen=True)
class Block:
    """A piece of the customer and initiative sections, rendered by both ``markdown`` and ``html_document``."""

    kind: Literal["h2", "h3", "p", "caption", "ul", "table", "chart"]
    text: str = ""  # h2, h3, p, caption; chart: the alt text
    items: tuple[str, ...] = ()  # ul
    header: tuple[str, ...] = ()  # table
    rows: tuple[tuple[str, ...], ...] = ()  # table
    left: int = 1  # table: leading text columns, aligned left
    chart: str = ""  # chart: a key of Report.charts


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> Block:
    return Block("table", header=tuple(header), rows=tuple(map(tuple, rows)), left=left)


def fmt_money(value: float, currency: str, signed: bool = False) -> str:
    return f"{value:{'+' if signed else ''},.2f} {currency}".rstrip()


def fmt_ratio_change(ratio: float) -> str:
    """A relative change given as a ratio - 1: 0.25 -> '+25.0%'."""
    return f"{100 * ratio:+.1f}%"


def _horizon(horizon: str) -> str:
    return horizon.replace("d", " days") if re.fullmatch(r"\d+d", horizon) else horizon


CUSTOMER_SHARES_CAPTION = (
    "Per storefront, at the end of each week. Repeat customers: of the customers whose first order fell in the "
    "first-order cohorts exported (the last CXPULSE_COHORT_WEEKS ISO weeks, 26 by default), the share who ordered "
    "again within 90 days of their first order (the youngest cohorts have not had 90 days yet). Post-support "
    "conversion: of the customers with a ticket in the ticket weeks exported, the share who ordered within "
    "CXPULSE_POST_SUPPORT (7 days by default) after that week's first ticket. Wilson 95% intervals; customers: "
    "the denominator.")

COHORT_CAPTION = (
    "LTV: revenue of the cohort's orders within 30 / 90 days of each customer's first order, per customer of the "
    "cohort (the ISO week of the first order; gross of refunds). Mature: the horizon, plus a day for late events, "
    "had passed for every customer of the cohort by the week's end. The cohort before is the latest mature one a "
    "week earlier.")

NPS_CAPTION = (
    "Customers by the category of their latest NPS answer and their orders within 90 days of the first (1, 2, 3, "
    "4+), counted once the horizon has passed: LTV (customers). \"Worth X% more\" compares promoters with "
    "detractors at the same purchase counts: the promoters' LTV at each count, weighted by the detractors' "
    "customers at that count, against the detractors' own LTV.")

NPS_CATEGORIES = ("promoter", "passive", "detractor")

CSAT_BANDS = ("satisfied", "neutral", "unsatisfied")

CSAT_CAPTION = (
    "Customers by the band of their latest CSAT answer (satisfied 4-5, neutral 3, unsatisfied 1-2) and their orders "
    "within 90 days of the first, counted once the horizon has passed: LTV (customers). \"Worth X% more\" compares "
    "satisfied with unsatisfied customers at the same purchase counts, as for NPS.")

RETENTION_CAPTION = (
    "Of the customers who ordered in the period before (customers), the share who ordered again in the period; "
    "churn is the rest. A period is a block of days counted from Monday 1969-12-29 UTC (CXPULSE_RETENTION_PERIODS); "
    "shown: the latest period complete by the week's end. Wilson 95% interval.")

SUPPORT_REVENUE_CAPTION = (
    "Orders placed within CXPULSE_POST_SUPPORT (7 days by default) after the customer's latest ticket before them, "
    "and their revenue, by the ISO week of that ticket (each order once; gross of refunds). The report week's "
    "tickets still gain orders for up to 7 days after the week's end.")


CHECKOUT_CAPTION = (
    "Cart abandonment as the guide defines it, per session: of the checkout sessions whose first checkout fell on a "
    "day (UTC) of the week and whose outcome is decided (decided), the share with no order naming the session within "
    "CXPULSE_CHECKOUT_HORIZON (1 hour by default) of it. Orders without a checkout count nowhere. Wilson 95% "
    "interval.")


def _ltv_blocks(title: str, groups: list, categories: tuple[str, ...], headers: tuple[str, ...],
                caption: str) -> list[Block]:
    """LTV per purchase count and category (NPS categories or CSAT bands), the group's ``high``
    against its ``low`` category in the last column."""
    if not groups:
        return []
    rows = []
    for group in groups:
        for purchases, cats in group.strata.items():
            cells = [f"{fmt_money(cats[c][1], group.currency)} ({fmt_count(cats[c][0])})" if c in cats else "-"
                     for c in categories]
            both = purchases in group.compared() and cats[group.low][1] > 0
            vs = fmt_ratio_change(cats[group.high][1] / cats[group.low][1] - 1) if both else "-"
            rows.append([group.storefront, _horizon(group.horizon), purchases, *cells, vs])
    return [Block("h3", title), Block("ul", items=tuple(nps_sentence(g) for g in groups)),
            _table(["storefront", "horizon", "purchases", *headers, f"{headers[0]} vs {headers[-1]}"], rows, 3),
            Block("caption", caption)]


def customer_blocks(report: Report) -> list[Block]:
    section = report.customers
    out = [Block("h2", "Customers")]
    if section.note:
        return out + [Block("p", section.note)]
    w, p = report.week.label.split("-")[1], report.week.previous().label.split("-")[1]
    if section.shares:
        rows = []
        for share in section.shares:
            interval = "-" if share.interval is None else \
                f"{fmt_percent(share.interval[0])} to {fmt_percent(share.interval[1])}"
            rows.append([CUSTOMER_SHARES[share.key][0], share.storefront,
                         "no data" if share.value is None else fmt_percent(share.value), interval,
                         "no data" if share.previous is None else fmt_percent(share.previous),
                         "-" if share.change is None else f"{share.change:+.2f} pp",
                         f"{fmt_count(share.n)} / {fmt_count(share.n_previous)}"])
        out += [_table(["KPI", "storefront", w, "95% interval", p, "change", f"customers {w} / {p}"], rows, 2),
                Block("caption", CUSTOMER_SHARES_CAPTION)]
    if section.cohorts:
        rows = [[c.storefront, _horizon(c.horizon), c.cohort, fmt_money(c.ltv, c.currency), fmt_count(c.customers),
                 c.previous_cohort or "-",
                 "-" if c.previous_ltv is None else fmt_money(c.previous_ltv, c.currency),
                 "-" if c.previous_customers is None else fmt_count(c.previous_customers),
                 "-" if c.change is None else f"{c.change:+.1f}%"] for c in section.cohorts]
        out += [Block("h3", "Lifetime value of the latest mature cohorts"),
                _table(["storefront", "horizon", "cohort", "LTV", "customers", "cohort before", "LTV", "customers",
                        "change"], rows, 3),
                Block("caption", COHORT_CAPTION)]
    out += _ltv_blocks("LTV by NPS category, at the same number of purchases", section.nps, NPS_CATEGORIES,
                       ("promoters", "passives", "detractors"), NPS_CAPTION)
    out += _ltv_blocks("LTV by CSAT band, at the same number of purchases", section.csat, CSAT_BANDS,
                       ("satisfied", "neutral", "unsatisfied"), CSAT_CAPTION)
    if section.retention:
        rows = [[r.storefront, _horizon(r.period), r.period_start, fmt_count(r.customers),
                 "no data" if r.value is None else fmt_percent(r.value),
                 "-" if r.interval is None else f"{fmt_percent(r.interval[0])} to {fmt_percent(r.interval[1])}",
                 "no data" if r.churn is None else fmt_percent(r.churn)] for r in section.retention]
        out += [Block("h3", "Customer retention and churn"),
                _table(["storefront", "period", "from", "customers", "retention", "95% interval", "churn"], rows, 3),
                Block("caption", RETENTION_CAPTION)]
    if section.checkouts:
        rows = [[c.storefront, fmt_count(c.decided), "no data" if c.value is None else fmt_percent(c.value),
                 "-" if c.interval is None else f"{fmt_percent(c.interval[0])} to {fmt_percent(c.interval[1])}",
                 fmt_count(c.previous_decided), "no data" if c.previous is None else fmt_percent(c.previous)]
                for c in section.checkouts]
        out += [Block("h3", "Cart abandonment per session"),
                _table(["storefront", f"decided {w}", f"abandoned {w}", "95% interval", f"decided {p}",
                        f"abandoned {p}"], rows, 1),
                Block("caption", CHECKOUT_CAPTION)]
    if section.support_revenue:
        rows = [[r.storefront, r.cohort, fmt_count(r.orders), fmt_money(r.revenue, r.currency)]
                for r in section.support_revenue]
        out += [Block("h3", "Revenue after support"), _table(["storefront", "tickets of", "orders", "revenue"], rows, 2),
                Block("caption", SUPPORT_REVENUE_CAPTION)]
    return out


PLURAL = {"promoter": "promoters", "detractor": "detractors", "satisfied": "satisfied customers",
          "unsatisfied": "unsatisfied customers"}


def nps_sentence(group: NpsLtv) -> str:
    """``north-outfitters, 90-day revenue per customer in EUR: promoters are worth 23.9% more than
    detractors with the same number of purchases (98 promoters, 74 detractors with 1, 2 or 4+ purchases).``
    The same for satisfied against unsatisfied customers (CSAT bands)."""
    what = f"{group.storefront}, {group.horizon.removesuffix('d')}-day revenue per customer in {group.currency}"
    high, low = PLURAL[group.high], PLURAL[group.low]
    premium = group.premium
    if premium is None:
        return f"{what}: no purchase count with both {high} and {low} yet."
    more = f"{abs(100 * premium):.1f}% {'more' if premium >= 0 else 'less'}"
    counts = group.compared()
    at = ", ".join(counts[:-1]) + " or " + counts[-1] if len(counts) > 1 else counts[0]
    return (f"{what}: {high} are worth {more} than {low} with the same number of purchases "
            f"({fmt_count(group.customers(group.high))} {high}, {fmt_count(group.customers(group.low))} {low} "
            f"with {at} purchase{'' if counts == ['1'] else 's'}).")


INITIATIVES_CAPTION = (
    "From each initiative's start to the week's end (to date), treated against control, as evaluated at the week's "
    "end. Uplift: KPI(treated) - KPI(control), and relative to the control. Incremental revenue: uplift x treated "
    "sessions (RPV), x treated sessions x treated AOV (conversion), x treated orders (AOV); profit: x gross margin. "
    "ROI = (incremental profit - investment) / investment, with its 95% interval. The interval covers sampling "
    "noise only, not a control that differs from the treated segment for other reasons.")


def verdict_line(row: Initiative) -> str:
    """``live-chat pays off (ROI +100.0% to date, 95% interval +77.9% to +122.1%, above 0).``"""
    verdict, values = row.verdict, row.values
    if verdict == "no data yet":
        return f"{row.name}: no data yet (an arm has no sessions or orders counted, so no ROI)."
    roi = f"ROI {fmt_ratio_change(values['roi'])} to date" if "roi" in values else "ROI -"
    interval = f"95% interval {fmt_ratio_change(values['roi_lower'])} to {fmt_ratio_change(values['roi_upper'])}"
    if verdict == "pays off":
        return f"{row.name} pays off ({roi}, {interval}, above 0)."
    if verdict == "does not pay off":
        return f"{row.name} does not pay off ({roi}, {interval}, below 0)."
    return f"{row.name}: not enough evidence yet ({roi}, but its {interval} includes 0)."


def _kpi_of(row: Initiative) -> Kpi | None:
    return next((k for k in KPIS if k.key == row.kpi), None)


def _day(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).date().isoformat()


def _period(row: Initiative) -> str:
    start = _day(row.start_s) if row.start_s is not None else "?"
    return f"{start} to {_day(row.end_s - DAY_S) if row.end_s is not None else 'now'}"


def initiative_blocks(report: Report) -> list[Block]:
    section = report.initiatives
    out = [Block("h2", "Initiatives")]
    if not section.rows:
        return out + [Block("p", section.note)]
    out += [Block("p", f"Initiatives active in {report.week.label}, each from its start to the week's end:"),
            Block("ul", items=tuple(verdict_line(row) for row in section.rows))]
    rows = []
    for row in section.rows:
        kpi, values, currency = _kpi_of(row), row.values, row.currency
        uplift = values.get("uplift")
        if uplift is None or kpi is None:
            uplift_text = "-"
        else:
            uplift_text = f"{100 * uplift:+.2f} pp" if kpi.unit == "ratio" else fmt_money(uplift, currency, True)
            if "uplift_ratio" in values:
                uplift_text += f" ({fmt_ratio_change(values['uplift_ratio'])})"

        def money(key: str) -> str:
            return fmt_money(values[key], currency, True) if key in values else "-"

        interval = (f"{fmt_ratio_change(values['roi_lower'])} to {fmt_ratio_change(values['roi_upper'])}"
                    if "roi_lower" in values and "roi_upper" in values else "-")
        rows.append([row.name, kpi.title if kpi else row.kpi or "-", uplift_text, money("incremental_revenue"),
                     money("incremental_profit"),
                     "-" if row.investment is None else fmt_money(row.investment, currency),
                     fmt_ratio_change(values["roi"]) if "roi" in values else "-", interval, row.verdict])
    out += [Block("h3", "Return on investment"),
            _table(["initiative", "KPI", "uplift", "incremental revenue", "incremental profit", "investment", "ROI",
                    "95% interval", "verdict"], rows, 2),
            Block("caption", INITIATIVES_CAPTION)]
    if "initiatives" in report.charts:
        out.append(Block("chart", f"ROI of the initiatives active in {report.week.label}", chart="initiatives"))
    arm_rows = []
    for row in section.rows:
        kpi = _kpi_of(row)
        before = row.control == "before"
        for arm, segment, days in (
                ("treated", row.treated or "-", _period(row)),
                ("control", f"{row.treated}, before the start" if before else row.control or "-",
                 "the days before" if before else "the same days")):
            figures = row.arms.get(arm, {})
            value = figures.get("kpi")
            shown = "-" if value is None or kpi is None else fmt_value(kpi, value, {"currency": row.currency})
            arm_rows.append([row.name, arm, segment, days, fmt_count(figures.get("sessions", 0.0)),
                             fmt_count(figures.get("orders", 0.0)), shown])
    out += [Block("h3", "The arms"),
            _table(["initiative", "arm", "segment", "days", "sessions", "orders", "KPI"], arm_rows, 4),
            Block("caption", "Sessions and orders (in the initiative's currency) of each arm's segment and days, "
                             "counted to the week's end: the samples the KPI, the uplift and the interval come from.")]
    return out
