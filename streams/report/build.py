"""Building the weekly report: every query it needs, at the two week ends, into a ``Report``.

The middle of the report's flow: ``build`` checks that Prometheus holds data for
the week (``check_data``, notes for what is missing), then asks for the headline
KPIs of ``catalog.KPIS`` with their samples, intervals and daily values, the
segments that moved most, the customer-level KPIs and the initiatives active in
the week, with the expressions of ``queries.py``, and returns the figures of
``figures.py``. Charts and documents are drawn from the result (``cli.write``).

    report = build(Prometheus("http://127.0.0.1:9090"), Week.parse("2026-W47"), storefront=None)
"""

from __future__ import annotations

import math
import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Callable

from streams.catalog import COUNTERS_BY_FIELD, KPIS, Kpi
from streams.errors import ReportError
from streams.initiatives.rules import ROI_QUERIES, ROI_RULES, inline
from streams.mixin.intervals import Z95, nps_interval, wilson
from streams.mixin.rules import FAMILY_ARRIVALS, JOB, PROPORTION_KPIS, component_level, kpi_expr
from streams.contract import NO_CURRENCY
from streams.report.figures import (MIN_SEGMENT_COUNT, MIN_SEGMENT_SHARE, CategoryMover, CheckoutWeek, CohortLtv,
                                    Customers,
                                    CustomerShare, Figure, Initiative, Initiatives, Mover, NpsLtv, Report,
                                    ReasonMover, Retention, SupportRevenue, VolumeMover)
from streams.report.prometheus import Prometheus
from streams.report.queries import (ARM_KPI_RULES, COHORT_CUSTOMERS_RULE, COHORT_LTV_RULE, CSAT_CUSTOMERS_RULE,
                                    CHECKOUT_ABANDONMENT_RULE, CHECKOUT_DECIDED_RULE, CSAT_LTV_RULE,
                                    CUSTOMER_SHARES, NPS_CUSTOMERS_RULE, NPS_LTV_RULE,
                                    RETENTION_CUSTOMERS_RULE, RETENTION_RULE, SUPPORT_ORDERS_RULE,
                                    SUPPORT_REVENUE_RULE, counted, customer_query, headline_level, sample_metric,
                                    selector, week_of_windows, window_selector)
from streams.report.weeks import DAY_S, WEEK_S, Week

# The window series the product-category table reads (event time, the merge stage's 1-minute windows).
TICKETS_BY_CATEGORY = COUNTERS_BY_FIELD["ticket", "tickets_created"].window_category_name
ORDERS_WINDOW = COUNTERS_BY_FIELD["order", "orders_placed"].window_name


# Movers: a KPI by one segment label, ranked by volume-weighted change (see ``Mover``). Only labels every
# cumulative series of the KPI carries: not the contact reason for support times or FCR (the cumulative
# histograms have no reason label; by reason they come from the window summaries, on the dashboards).
MOVER_KPIS: tuple[tuple[str, str], ...] = (
    ("conversion", "channel"), ("conversion", "device"),
    ("first_response_p90", "support_channel"), ("resolution_p90", "support_channel"),
)

VOLUME_MOVERS: tuple[tuple[str, str], ...] = (("cxpulse_tickets_created_total", "support_channel"),)

Key = tuple[tuple[str, str], ...]


def _key(labels: dict[str, str], names: tuple[str, ...]) -> Key:
    return tuple((name, labels.get(name, "")) for name in names)


def print_progress(message: str) -> None:
    """The default progress: one line per step on stderr."""
    print(f"cxpulse report: {message}", file=sys.stderr, flush=True)


def check_data(prom: Prometheus, week: Week, sel: str, storefront: str | None) -> list[str]:
    """Fail when no family has data at the week's end; notes for what is missing at its start."""
    ends = {"end": week.end_s, "start": week.end_s - WEEK_S, "previous start": week.end_s - 2 * WEEK_S}
    present: dict[str, dict[str, bool]] = {}
    for family, metrics in FAMILY_ARRIVALS.items():
        expr = " or ".join(f"count({m}{{{sel}}})" for m in metrics)
        present[family] = {name: bool(prom.instant(expr, at)) for name, at in ends.items()}
    if not any(p["end"] for p in present.values()):
        metrics = ", ".join(m for ms in FAMILY_ARRIVALS.values() for m in ms)
        where = f' with storefront="{storefront}"' if storefront else ""
        raise ReportError(
            f"no data for {week.label}: no series of {metrics}{where} at {week.end:%Y-%m-%d %H:%M} UTC, the week's "
            f"end, in Prometheus at {prom.url}. Check that this Prometheus scrapes the cxpulse workers (job "
            f"`cxpulse`; `up{{{JOB}}}` should be 1), that its retention (--storage.tsdb.retention.time) reaches "
            f"back to {week.previous().start:%Y-%m-%d}"
            + (", and the storefront name (label `storefront`)" if storefront else "") + ".")
    notes = []
    for family, seen in present.items():
        if not seen["end"]:
            notes.append(f"No {family} events were counted by {week.end:%Y-%m-%d %H:%M} UTC: its KPIs show no data.")
        elif not seen["start"]:
            notes.append(f"No {family} series at {week.start:%Y-%m-%d %H:%M} UTC, the week's start: counted from 0, "
                         "right if cxpulse started during the week, too high if Prometheus's retention is shorter "
                         "than the two weeks (and a day) the report reads.")
        elif not seen["previous start"]:
            notes.append(f"No {family} series at the start of {week.previous().label}: last week's {family} figures "
                         "count from 0.")
    return notes


def _by_key(result: list[tuple[dict[str, str], float]], names: tuple[str, ...]) -> dict[Key, float]:
    return {_key(labels, names): value for labels, value in result if math.isfinite(value)}


def _two_weeks(prom: Prometheus, expr: str, names: tuple[str, ...], end_s: int) -> tuple[dict[Key, float], ...]:
    """An expression at the week's end and a week earlier, by the label ``names``."""
    return _by_key(prom.instant(expr, end_s), names), _by_key(prom.instant(expr, end_s - WEEK_S), names)


def headline(prom: Prometheus, week: Week, sel: str) -> list[Figure]:
    """Every KPI of the catalog, this week and last, with its sample size, interval and daily values."""
    end = week.end_s
    first_day_end = end - 2 * WEEK_S + DAY_S  # the end of last week's Monday
    weekly, daily = counted(sel, "1w"), counted(sel, "1d")
    figures = []
    for kpi in KPIS:
        level = headline_level(kpi)
        now, before = _two_weeks(prom, kpi_expr(kpi, level, weekly), level, end)
        n_level = component_level(sample_metric(kpi), level)
        n_now, n_before = _two_weeks(prom, weekly(sample_metric(kpi), level), n_level, end)
        # an interval needs the numerators apart (NPS: promoters and detractors)
        with_interval = kpi.shape == "nps" or kpi.key in PROPORTION_KPIS
        parts = [_two_weeks(prom, weekly(m, level), level, end) for m in kpi.numerator] if with_interval else []
        days = {_key(labels, level): values for labels, values in
                prom.range(kpi_expr(kpi, level, daily), first_day_end, end, DAY_S)}
        keys = sorted((k for k in set(now) | set(before) if dict(k).get("currency") != NO_CURRENCY),
                      key=lambda k: -n_now.get(_project(k, n_level), 0.0)) or [()]
        for key in keys:
            nk = _project(key, n_level)
            fig = Figure(kpi, dict(key), now.get(key), before.get(key), n_now.get(nk, 0.0), n_before.get(nk, 0.0))
            if with_interval:
                fig.interval = _interval(kpi, [p[0].get(key, 0.0) for p in parts], fig.n, fig.value)
                fig.interval_previous = _interval(kpi, [p[1].get(key, 0.0) for p in parts], fig.n_previous,
                                                  fig.previous)
            values = days.get(key, {})
            points = [values.get(first_day_end + i * DAY_S) for i in range(14)]
            fig.daily_previous, fig.daily = points[:7], points[7:]
            figures.append(fig)
    return figures


def _project(key: Key, names: tuple[str, ...]) -> Key:
    return tuple((k, v) for k, v in key if k in names)


def _interval(kpi: Kpi, numerators: list[float], n: float, value: float | None) -> tuple[float, float] | None:
    """95% interval from the week's counts: Wilson for a share, adjusted Wald for NPS (streams.mixin.intervals)."""
    if value is None or n <= 0:
        return None
    if kpi.shape == "nps":
        return nps_interval(numerators[0], numerators[1], n, Z95)
    successes = sum(numerators)
    if kpi.shape == "one_minus":
        successes = n - successes
    return wilson(max(successes, 0.0), n, Z95)


def movers(prom: Prometheus, week: Week, sel: str) -> dict[str, list[Mover]]:
    """The biggest volume-weighted week-over-week moves per KPI (see ``Mover``), largest first."""
    weekly = counted(sel, "1w")
    found: dict[str, list[Mover]] = {}
    for key, dimension in MOVER_KPIS:
        kpi = next((k for k in KPIS if k.key == key), None)
        if kpi is None:
            continue
        level = (dimension,)
        now, before = _two_weeks(prom, kpi_expr(kpi, level, weekly), level, week.end_s)
        n_now, n_before = _two_weeks(prom, weekly(sample_metric(kpi), level), level, week.end_s)
        total, total_before = sum(n_now.values()), sum(n_before.values())
        for seg in set(now) & set(before):
            n, n_prev = n_now.get(seg, 0.0), n_before.get(seg, 0.0)
            if min(n, n_prev) < MIN_SEGMENT_COUNT or n < MIN_SEGMENT_SHARE * total \
                    or n_prev < MIN_SEGMENT_SHARE * total_before:
                continue
            found.setdefault(kpi.key, []).append(
                Mover(kpi, dimension, seg[0][1], now[seg], before[seg], n, n_prev, n / total))
    return {k: sorted(v, key=lambda m: -abs(m.weighted)) for k, v in found.items()}


def volume_movers(prom: Prometheus, week: Week, sel: str) -> list[VolumeMover]:
    weekly = counted(sel, "1w")
    found = []
    for metric, dimension in VOLUME_MOVERS:
        now, before = _two_weeks(prom, weekly(metric, (dimension,)), (dimension,), week.end_s)
        for seg in set(now) | set(before):
            count, previous = now.get(seg, 0.0), before.get(seg, 0.0)
            if max(count, previous) >= MIN_SEGMENT_COUNT:
                found.append(VolumeMover(metric, dimension, seg[0][1], count, previous))
    return sorted(found, key=lambda m: -abs(m.change))


def reason_movers(prom: Prometheus, week: Week, sel: str) -> list[ReasonMover]:
    """Tickets created per contact reason this week and last, with the orders of each week (all storefronts
    read: orders carry no reason), largest change in tickets first. Reasons under ``MIN_SEGMENT_COUNT``
    tickets in both weeks are left out."""
    weekly = counted(sel, "1w")
    level = ("reason",)
    now, before = _two_weeks(prom, weekly("cxpulse_tickets_created_total", level), level, week.end_s)
    orders_now, orders_before = _two_weeks(prom, weekly("cxpulse_orders_placed_total", ()), (), week.end_s)
    found = []
    for key in set(now) | set(before):
        count, previous = now.get(key, 0.0), before.get(key, 0.0)
        if max(count, previous) >= MIN_SEGMENT_COUNT:
            found.append(ReasonMover(key[0][1], count, previous, orders_now.get((), 0.0), orders_before.get((), 0.0)))
    return sorted(found, key=lambda m: (-abs(m.change), m.reason))


def category_movers(prom: Prometheus, week: Week, storefront: str | None) -> list[CategoryMover]:
    """Tickets created per product category this week and last, with the orders of each week, both counted
    in the week's event-time windows (the category breakdown exists only as window series, docs/metrics.md
    rule 17), largest change in tickets first. Categories under ``MIN_SEGMENT_COUNT`` tickets in both weeks
    are left out."""
    sel, level = window_selector(storefront), ("product_category",)
    now, before = _two_weeks(prom, week_of_windows(TICKETS_BY_CATEGORY, sel, "product_category"), level,
                             week.end_s)
    orders_now, orders_before = _two_weeks(prom, week_of_windows(ORDERS_WINDOW, sel, ""), (), week.end_s)
    found = []
    for key in set(now) | set(before):
        count, previous = now.get(key, 0.0), before.get(key, 0.0)
        if max(count, previous) >= MIN_SEGMENT_COUNT:
            found.append(CategoryMover(key[0][1], count, previous, orders_now.get((), 0.0),
                                       orders_before.get((), 0.0)))
    return sorted(found, key=lambda m: (-abs(m.change), m.reason))


def initiatives_section(prom: Prometheus, week: Week) -> Initiatives:
    """Initiatives active during the week and their ROI so far, at the week's end.

    Every ``ROI_QUERIES`` expression of ``streams.initiatives.rules`` (PromQL over the raw initiative
    gauges, one series per ``initiative``) and the arms' sessions, orders and KPI are evaluated at
    the week's end; the declaration (``cxpulse_initiative_info``: kpi, treated, control; the
    investment and its currency; start and end) labels the row. Active: started before the week's
    end, not ended by its start. No series: "No initiatives declared".
    """
    at, week_start_s = week.end_s, week.end_s - WEEK_S

    def by_initiative(expr: str, *others: str) -> dict[tuple[str, ...], tuple[dict[str, str], float]]:
        return {(labels["initiative"], *(labels.get(o, "") for o in others)): (labels, value)
                for labels, value in prom.instant(expr, at) if "initiative" in labels and math.isfinite(value)}

    about = {k[0]: labels for k, (labels, _) in by_initiative(
        "max by (initiative, kpi, treated, control) (cxpulse_initiative_info)").items()}
    investment = {k[0]: (labels.get("currency", ""), value) for k, (labels, value) in by_initiative(
        "max by (initiative, currency) (cxpulse_initiative_investment)").items()}
    starts = {k[0]: v for k, (_, v) in by_initiative(
        "max by (initiative) (cxpulse_initiative_start_timestamp_seconds)").items()}
    ends = {k[0]: v for k, (_, v) in by_initiative(
        "max by (initiative) (cxpulse_initiative_end_timestamp_seconds)").items()}
    declared = set(about) | set(investment) | set(starts)
    if not declared:
        return Initiatives([], "No initiatives declared.")
    active = sorted(n for n in declared if starts.get(n, 0) < at and ends.get(n, math.inf) > week_start_s)
    if not active:
        return Initiatives([], f"No declared initiative was active in {week.label}.")
    values: dict[str, dict[str, float]] = {n: {} for n in active}
    for column, expr in ROI_QUERIES.items():
        for (name,), (_, value) in by_initiative(expr).items():
            if name in values:
                values[name][column] = value
    arms: dict[str, dict[str, dict[str, float]]] = {n: {"treated": {}, "control": {}} for n in active}
    for noun, metric in (("sessions", "cxpulse_initiative_sessions"), ("orders", "cxpulse_initiative_orders")):
        for (name, arm), (_, value) in by_initiative(f"sum by (initiative, arm) ({metric})", "arm").items():
            if name in arms and arm in arms[name]:
                arms[name][arm][noun] = value
    recorded = {name for name, _ in ROI_RULES}
    for kpi in sorted({about.get(n, {}).get("kpi", "") for n in active} & set(ARM_KPI_RULES)):
        for arm, rule in zip(("treated", "control"), ARM_KPI_RULES[kpi]):
            if rule not in recorded:
                raise ReportError(f"{rule} is not a recording rule of streams.initiatives.rules.ROI_RULES: the report "
                                  "and the rules disagree on its name")
            for (name,), (_, value) in by_initiative(inline(rule)).items():
                if name in arms and about.get(name, {}).get("kpi") == kpi:
                    arms[name][arm]["kpi"] = value
    rows = []
    for name in active:
        labels = about.get(name, {})
        currency, invested = investment.get(name, ("", None))
        rows.append(Initiative(name, labels.get("kpi", ""), labels.get("treated", ""), labels.get("control", ""),
                               currency, invested, starts.get(name), ends.get(name), values[name], arms[name]))
    return Initiatives(rows)


CustomerRows = Callable[[str, int, tuple[str, ...]], dict[Key, float]]  # (rule, at_s, labels) -> key -> value


def customers_section(prom: Prometheus, week: Week, storefront: str | None) -> Customers:
    """The customer-level KPIs of docs/customers.md, per storefront (and currency), from the
    expressions of ``rules.customer_rules()`` evaluated at the week's end (and a week earlier):

    - repeat customers and post-support conversion, with their Wilson 95% intervals and customers;
    - LTV (30 / 90-day revenue per customer) of the latest mature first-order cohort;
    - LTV by NPS category and by CSAT band per purchase count, and promoters against detractors,
      satisfied against unsatisfied customers at the same counts;
    - retention and churn of the last complete period of each length;
    - revenue after support of the week's tickets and the week before's;
    - cart abandonment per session over the checkouts of the week's days and the week before's.
    """
    def rows(record: str, at_s: int, names: tuple[str, ...]) -> dict[Key, float]:
        found = _by_key(prom.instant(customer_query(record), at_s), names)
        return {k: v for k, v in found.items() if not storefront or dict(k).get("storefront") == storefront}

    shares, cohorts, nps = customer_shares(rows, week), cohort_ltv(rows, week), nps_ltv(rows, week)
    csat = nps_ltv(rows, week, CSAT_LTV_RULE, CSAT_CUSTOMERS_RULE, "csat_band", "satisfied", "unsatisfied")
    retention, support = customer_retention(rows, week), support_revenue(rows, week)
    checkouts = checkout_weeks(rows, week)
    note = "" if shares or cohorts or nps or csat or retention or support or checkouts else (
        "No customer-level data at the week's end: no cxpulse_customer_* series"
        + (f' with storefront="{storefront}"' if storefront else "")
        + " (the customer stage exports them; docs/customers.md).")
    return Customers(shares, cohorts, nps, csat, retention, support, note, checkouts)


def checkout_weeks(rows: CustomerRows, week: Week) -> list[CheckoutWeek]:
    """Per storefront: decided and abandoned checkout sessions whose first checkout fell on a UTC day
    of the report week (read at its end) and of the week before (read a week earlier); abandoned =
    the day's abandonment x its decided sessions, summed over the days."""
    level = ("storefront", "day")
    totals: dict[str, list[float]] = {}
    for slot, (w, at) in enumerate(((week, week.end_s), (week.previous(), week.end_s - WEEK_S))):
        days = {(w.start + timedelta(days=i)).date().isoformat() for i in range(7)}
        decided, ratio = rows(CHECKOUT_DECIDED_RULE, at, level), rows(CHECKOUT_ABANDONMENT_RULE, at, level)
        for key, n in decided.items():
            shop, day = dict(key)["storefront"], dict(key)["day"]
            if day in days:
                row = totals.setdefault(shop, [0.0] * 4)
                row[2 * slot] += n
                row[2 * slot + 1] += round(n * ratio.get(key, 0.0))  # counts: the ratio's rounding undone
    return [CheckoutWeek(shop, *row) for shop, row in sorted(totals.items())]


def customer_shares(rows: CustomerRows, week: Week) -> list[CustomerShare]:
    """Repeat customers and post-support conversion per storefront at the week's end and a week earlier."""
    at, before = week.end_s, week.end_s - WEEK_S
    level = ("storefront",)
    out = []
    for key, (_, ratio, customers) in CUSTOMER_SHARES.items():
        value = {t: rows(ratio, t, level) for t in (at, before)}
        n = {t: rows(customers, t, level) for t in (at, before)}
        bounds = {(side, t): rows(f"{ratio}_{side}", t, level) for side in ("lower", "upper") for t in (at, before)}

        def interval(k: Key, t: int) -> tuple[float, float] | None:
            lower, upper = bounds["lower", t].get(k), bounds["upper", t].get(k)
            return None if lower is None or upper is None else (lower, upper)

        for k in sorted(set(value[at]) | set(value[before]) | set(n[at]) | set(n[before])):
            out.append(CustomerShare(key, dict(k)["storefront"], value[at].get(k), value[before].get(k),
                                     n[at].get(k, 0.0), n[before].get(k, 0.0), interval(k, at), interval(k, before)))
    return out


def cohort_ltv(rows: CustomerRows, week: Week) -> list[CohortLtv]:
    """Per storefront, currency and horizon: the LTV of the latest first-order cohort whose horizon,
    plus a day for late events (``customers.MATURITY_MARGIN_MS``), had passed for every customer by
    the week's end, and of the latest mature a week earlier."""
    from streams.pipeline.customer_kpis import HORIZONS, MATURITY_MARGIN_MS

    ltv = rows(COHORT_LTV_RULE, week.end_s, ("storefront", "currency", "horizon", "cohort"))
    customers = rows(COHORT_CUSTOMERS_RULE, week.end_s, ("storefront", "cohort"))
    groups: dict[tuple[str, str, str], dict[str, float]] = {}
    for (shop, currency, horizon, cohort), value in ((tuple(v for _, v in k), value) for k, value in ltv.items()):
        if horizon in HORIZONS and currency != NO_CURRENCY and _cohort_end_s(cohort) is not None:
            groups.setdefault((shop, currency, horizon), {})[cohort] = value

    def latest_mature(cohorts: dict[str, float], horizon: str, at_s: int) -> str | None:
        age_s = (HORIZONS[horizon] + MATURITY_MARGIN_MS) // 1000
        return max((c for c in cohorts if (_cohort_end_s(c) or 0) + age_s <= at_s), key=_cohort_end_s, default=None)

    out = []
    for (shop, currency, horizon), values in sorted(groups.items(), key=lambda g: (*g[0][:2], HORIZONS[g[0][2]])):
        latest = latest_mature(values, horizon, week.end_s)
        previous = latest_mature(values, horizon, week.end_s - WEEK_S)
        if latest is None:
            continue
        size = {c: customers.get((("storefront", shop), ("cohort", c))) for c in (latest, previous) if c}
        out.append(CohortLtv(shop, currency, horizon, latest, values[latest], size[latest] or 0.0, previous,
                             values.get(previous) if previous else None, size.get(previous) if previous else None))
    return out


def nps_ltv(rows: CustomerRows, week: Week, ltv_rule: str = NPS_LTV_RULE, customers_rule: str = NPS_CUSTOMERS_RULE,
            group: str = "nps_category", high: str = "promoter", low: str = "detractor") -> list[NpsLtv]:
    """Per storefront, currency and horizon: customers and LTV by purchase count and NPS category
    (or, with the CSAT rules and ``csat_band``, by CSAT band)."""
    from streams.pipeline.customer_kpis import HORIZONS

    ltv = rows(ltv_rule, week.end_s, ("storefront", "currency", "horizon", "purchases", group))
    customers = rows(customers_rule, week.end_s, ("storefront", "horizon", "purchases", group))
    groups: dict[tuple[str, str, str], dict[str, dict[str, tuple[float, float]]]] = {}
    for k, value in ltv.items():
        shop, currency, horizon, purchases, category = (v for _, v in k)
        if currency == NO_CURRENCY:
            continue
        n = customers.get((("storefront", shop), ("horizon", horizon), ("purchases", purchases),
                           (group, category)), 0.0)
        groups.setdefault((shop, currency, horizon), {}).setdefault(purchases, {})[category] = (n, value)
    return [NpsLtv(shop, currency, horizon, dict(sorted(strata.items())), high, low)
            for (shop, currency, horizon), strata in sorted(
                groups.items(), key=lambda g: (*g[0][:2], HORIZONS.get(g[0][2], 0)))]


def customer_retention(rows: CustomerRows, week: Week) -> list[Retention]:
    """Per storefront and period length: the latest period complete by the week's end (its first
    day + its length at or before the week's end), its customers, retention and Wilson interval."""
    level = ("storefront", "period", "period_start")
    value, n = rows(RETENTION_RULE, week.end_s, level), rows(RETENTION_CUSTOMERS_RULE, week.end_s, level)
    bounds = {side: rows(f"{RETENTION_RULE}_{side}", week.end_s, level) for side in ("lower", "upper")}
    latest: dict[tuple[str, str], Key] = {}
    for key in n:
        shop, period, start = (v for _, v in key)
        days = re.fullmatch(r"(\d+)d", period)
        start_day = datetime.fromisoformat(start).replace(tzinfo=timezone.utc) if days else None
        if start_day is None or (start_day + timedelta(days=int(days[1]))).timestamp() > week.end_s:
            continue  # still in progress at the week's end
        if (shop, period) not in latest or dict(latest[shop, period])["period_start"] < start:
            latest[shop, period] = key
    out = []
    for (shop, period), key in sorted(latest.items(), key=lambda item: (item[0][0], int(item[0][1][:-1]))):
        lower, upper = bounds["lower"].get(key), bounds["upper"].get(key)
        out.append(Retention(shop, period, dict(key)["period_start"], n[key], value.get(key),
                             None if lower is None or upper is None else (lower, upper)))
    return out


def support_revenue(rows: CustomerRows, week: Week) -> list[SupportRevenue]:
    """Revenue after support of the tickets of the report week (still growing: orders count up to
    CXPULSE_POST_SUPPORT after a ticket) and of the week before, per storefront and currency."""
    level = ("storefront", "cohort", "currency")
    revenue, orders = rows(SUPPORT_REVENUE_RULE, week.end_s, level), rows(SUPPORT_ORDERS_RULE, week.end_s, level)
    weeks = (week.label, week.previous().label)
    return [SupportRevenue(shop, currency, cohort, orders.get(key, 0.0), value)
            for key, value in sorted(revenue.items(), key=lambda item: (dict(item[0])["storefront"],
                                                                       dict(item[0])["currency"],
                                                                       weeks.index(dict(item[0])["cohort"])
                                                                       if dict(item[0])["cohort"] in weeks else 2))
            for shop, cohort, currency in [tuple(v for _, v in key)]
            if cohort in weeks and currency != NO_CURRENCY]


def _cohort_end_s(cohort: str) -> int | None:
    """End (Unix seconds) of an ISO-week cohort label, ``2026-W47`` -> Monday 2026-11-23 00:00 UTC."""
    try:
        return Week.parse(cohort).end_s
    except ValueError:
        return None


def build(prom: Prometheus, week: Week, storefront: str | None = None,
          now: datetime | None = None, progress: Callable[[str], None] = print_progress) -> Report:
    """Query everything the report shows (charts are drawn by ``write``)."""
    sel = selector(storefront)
    progress(f"checking data for {week.label} ({week.start:%Y-%m-%d} to {week.end:%Y-%m-%d} UTC) in {prom.url}")
    notes = check_data(prom, week, sel, storefront)
    progress(f"headline KPIs: {len(KPIS)} KPIs, {week.label} and {week.previous().label}, daily values")
    figures = headline(prom, week, sel)
    progress("movers: " + ", ".join(f"{k} by {d}" for k, d in MOVER_KPIS + VOLUME_MOVERS)
             + ", contact reasons, product categories")
    moved, volumes, reasons = movers(prom, week, sel), volume_movers(prom, week, sel), reason_movers(prom, week, sel)
    categories = category_movers(prom, week, storefront)
    progress("customers: repeat customers, post-support conversion and revenue, cohort LTV, LTV by NPS category "
             "and CSAT band, retention, cart abandonment per session")
    customers = customers_section(prom, week, storefront)
    progress("initiatives")
    initiatives = initiatives_section(prom, week)
    return Report(week, storefront, prom.url, now or datetime.now(timezone.utc), figures, moved, volumes,
                  initiatives, customers, notes, reasons=reasons, categories=categories)
