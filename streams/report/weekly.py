"""``cxpulse report``: the weekly CX report, read from Prometheus, as Markdown or HTML with PNG charts.

At the end of the flow, beside the dashboards: it reads what Prometheus recorded
from the workers' ``/metrics`` and writes the report the guide's contributors
send every week ("is it up or is it down?"): each KPI of ``catalog.KPIS`` for one
ISO week (Monday 00:00 to Monday 00:00 UTC) against the week before, with its
sample size and a 95% interval; the segments that moved most; the customer-level
KPIs (repeat customers, post-support conversion, cohort LTV, LTV by NPS category at
the same purchase count); the initiatives active in the week, their ROI to date and
a verdict; a daily chart, a movers chart and an ROI chart.

Figures come from the cumulative counters, not from ``increase()``: the count of a
week is the counter summed over partitions at the week's end minus the same sum a
week earlier (a segment with no series then counts from 0). The counters never
reset (state is recovered on restart, a partition moving to another worker keeps
its total), so that difference is exactly the events counted in the week, while
``increase()`` extrapolates to the range's edges and loses what a series that
starts inside the range (a moved partition, a new segment) had at its first
sample. The KPI formulas are the recording rules' own (``rules._kpi_expr``), fed
with that difference instead of a rate. Customer-level and initiative figures are
gauges: the rules' expressions (``rules.customer_rules``, ``initiatives.ROI_QUERIES``)
inlined over the raw series and evaluated at the week's end:

    week = Week.parse("2026-W47")
    report = build(Prometheus("http://127.0.0.1:9090"), week, storefront=None)
    write(report, Path("out"), "md")   # out/report.md, out/report.json, out/*.png
"""

from __future__ import annotations

import argparse
import base64
import functools
import html
import json
import math
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Literal

from streams.catalog import KPIS, Kpi
from streams.errors import ConfigError, CxpulseError
from streams.mixin.intervals import Z95, nps_interval, wilson
from streams.mixin.rules import FAMILY_ARRIVALS, JOB, PROPORTION_KPIS, Level, _kpi_expr, component_level, customer_expr

Format = Literal["md", "html"]
DAY_S = 86_400
WEEK_S = 7 * DAY_S

# The daily small multiples: the KPIs a weekly reader asks about first (guide: revenue, support, voice).
CHART_KPIS: tuple[str, ...] = (
    "conversion", "average_order_value", "revenue_per_visitor",
    "cart_abandonment", "first_contact_resolution", "first_response_p90",
    "resolution_p90", "nps", "csat",
)
# Movers: a KPI by one segment label, ranked by volume-weighted change (see ``Mover``).
MOVER_KPIS: tuple[tuple[str, str], ...] = (
    ("conversion", "channel"), ("conversion", "device"),
    ("first_response_p90", "support_channel"), ("resolution_p90", "support_channel"),
)
VOLUME_MOVERS: tuple[tuple[str, str], ...] = (("cxpulse_tickets_created_total", "support_channel"),)
MIN_SEGMENT_SHARE = 0.02  # a segment under 2% of its dimension's volume (either week) is not a mover ...
MIN_SEGMENT_COUNT = 30  # ... nor one under 30 sessions / observations: one order moves it by > 3 points
MOVERS_SHOWN = 5
NO_CURRENCY = "XXX"  # ISO 4217 "no currency": returns without an amount; no money KPI of its own
NOTABLE_RELATIVE = 0.10  # "at a glance" lists a KPI without an interval when it moved by 10% or more

NOUNS = {  # sample-size words, by denominator series
    "cxpulse_sessions_started_total": "sessions", "cxpulse_orders_placed_total": "orders",
    "cxpulse_checkouts_started_total": "checkouts", "cxpulse_ticket_resolution_seconds_count": "resolutions",
    "cxpulse_ticket_first_response_seconds_count": "first responses", "cxpulse_nps_responses_total": "answers",
    "cxpulse_csat_responses_total": "answers", "cxpulse_ces_responses_total": "answers",
    "cxpulse_tickets_created_total": "tickets",
}


class ReportError(CxpulseError):
    """The report cannot be made: Prometheus unreachable, no data, a bad week. The message says what to do."""


# ----------------------------------------------------------------------------- weeks
@dataclass(frozen=True)
class Week:
    """An ISO week, Monday 00:00 UTC to the next Monday 00:00 UTC.

        >>> w = Week.parse("2026-W47"); (w.start.date().isoformat(), w.previous().label)
        ('2026-11-16', '2026-W46')
    """

    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> "Week":
        match = re.fullmatch(r"(\d{4})-?W(\d{1,2})", text.strip(), re.IGNORECASE)
        if match:
            year, number = int(match[1]), int(match[2])
            try:
                datetime.fromisocalendar(year, number, 1)
                return cls(year, number)
            except ValueError:
                pass
        raise ValueError(f"{text!r} is not an ISO week: write YYYY-Www, e.g. 2026-W47 (weeks start on Monday, UTC)")

    @classmethod
    def containing(cls, moment: datetime) -> "Week":
        year, number, _ = moment.astimezone(timezone.utc).isocalendar()
        return cls(year, number)

    @classmethod
    def last_complete(cls, now: datetime) -> "Week":
        """The latest week that has ended at ``now``: Monday 2026-11-23 (any hour) -> 2026-W47."""
        return cls.containing(now - timedelta(days=7))

    @property
    def label(self) -> str:
        return f"{self.year}-W{self.number:02d}"

    @property
    def start(self) -> datetime:
        return datetime.fromisocalendar(self.year, self.number, 1).replace(tzinfo=timezone.utc)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=7)

    @property
    def end_s(self) -> int:
        return int(self.end.timestamp())

    def previous(self) -> "Week":
        return Week.containing(self.start - timedelta(days=1))

    def days(self) -> str:
        """``16-22 Nov 2026``"""
        first, last = self.start, self.end - timedelta(days=1)
        if first.month == last.month:
            return f"{first.day}-{last.day} {last:%b %Y}"
        year = f" {first.year}" if first.year != last.year else ""
        return f"{first.day} {first:%b}{year} - {last.day} {last:%b %Y}"


# ------------------------------------------------------------------------ Prometheus
class Prometheus:
    """The HTTP API (``/api/v1/query``, ``/api/v1/query_range``) over urllib; errors become ReportError."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"--prometheus {url!r} is not valid: it accepts the server's base URL, "
                              "e.g. http://prometheus:9090")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.queries = 0

    def ping(self, timeout_s: float = 5.0) -> None:
        """One trivial query with a short timeout (at most ``timeout_s``), so that an unreachable
        or silent server fails the report in seconds rather than after the first real query's
        --timeout; a ReportError names the URL."""
        saved, self.timeout_s = self.timeout_s, min(self.timeout_s, timeout_s)
        try:
            self._api("query", {"query": "1"})
        finally:
            self.timeout_s = saved

    def instant(self, expr: str, at_s: float) -> list[tuple[dict[str, str], float]]:
        data = self._api("query", {"query": expr, "time": f"{at_s:.3f}"})
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def range(self, expr: str, start_s: float, end_s: float,
              step_s: int) -> list[tuple[dict[str, str], dict[int, float]]]:
        data = self._api("query_range", {"query": expr, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}",
                                         "step": str(step_s)})
        return [(r["metric"], {int(float(t)): float(v) for t, v in r["values"]}) for r in data["result"]]

    def _api(self, endpoint: str, params: dict[str, str]) -> Any:
        # POST: KPI expressions with histogram joins outgrow what some proxies accept in a URL
        request = urllib.request.Request(f"{self.url}/api/v1/{endpoint}", data=urllib.parse.urlencode(params).encode(),
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.queries += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                answer = json.loads(body)
                detail = f"{answer.get('errorType')}: {answer.get('error')}"
            except ValueError:
                raise ReportError(f"{self.url} answered HTTP {exc.code} to /api/v1/{endpoint}: is --prometheus the "
                                  f"Prometheus server's base URL (e.g. http://prometheus:9090)?") from None
            raise ReportError(f"Prometheus at {self.url} refused a query ({detail}); the query was:\n"
                              f"{params['query']}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ReportError(f"cannot reach Prometheus at {self.url} (--prometheus): {reason}. Check the URL and "
                              f"that the server is up: curl {self.url}/-/ready") from None
        try:
            answer = json.loads(body)
        except ValueError:
            raise ReportError(f"{self.url}/api/v1/{endpoint} did not answer JSON: is --prometheus the Prometheus "
                              "server's base URL (e.g. http://prometheus:9090)?") from None
        if answer.get("status") != "success":
            raise ReportError(f"Prometheus at {self.url}: {answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]


# ---------------------------------------------------------------------------- queries
def selector(storefront: str | None) -> str:
    """Label matchers of every series the report reads: the workers' job, and the storefront if chosen."""
    matchers = [JOB]
    if storefront:
        escaped = storefront.replace("\\", "\\\\").replace('"', '\\"')
        matchers.append(f'storefront="{escaped}"')
    return ", ".join(matchers)


def counted(sel: str, span: str) -> Callable[[str, Level], str]:
    """``component(metric, level)`` for ``rules._kpi_expr``: what the counter counted in the ``span``
    before the evaluation time, summed to the level. Exact: cumulative counters at two instants.

        >>> print(counted('job="cxpulse"', "1w")("cxpulse_orders_placed_total", ("channel",)))
        (
          sum by (channel) (cxpulse_orders_placed_total{job="cxpulse"})
          - (
            sum by (channel) (cxpulse_orders_placed_total{job="cxpulse"} offset 1w)
            or 0 * sum by (channel) (cxpulse_orders_placed_total{job="cxpulse"})
          )
        )
    """
    def component(metric: str, level: Level) -> str:
        by = ", ".join(component_level(metric, level))
        now = f"sum by ({by}) ({metric}{{{sel}}})"
        before = f"sum by ({by}) ({metric}{{{sel}}} offset {span})"
        # `or 0 * now`: a segment with no series at the start of the span counted from 0
        return f"(\n  {now}\n  - (\n    {before}\n    or 0 * {now}\n  )\n)"

    return component


def headline_level(kpi: Kpi) -> Level:
    """Pooled over the storefronts read, except money: revenue never adds up across currencies and
    sessions carry none, so AOV and RPV keep the KPI's own level (storefront, currency)."""
    return tuple(kpi.by) if "currency" in kpi.by else ()


def sample_metric(kpi: Kpi) -> str:
    """The series whose count is the KPI's sample size n (its denominator)."""
    return kpi.histogram + "_count" if kpi.shape == "quantile" else kpi.denominator


Key = tuple[tuple[str, str], ...]


def _key(labels: dict[str, str], names: tuple[str, ...]) -> Key:
    return tuple((name, labels.get(name, "")) for name in names)


@dataclass
class Figure:
    """One KPI (and for money one storefront and currency) over the week and the week before."""

    kpi: Kpi
    labels: dict[str, str]
    value: float | None
    previous: float | None
    n: float
    n_previous: float
    interval: tuple[float, float] | None = None
    interval_previous: tuple[float, float] | None = None
    daily: list[float | None] = field(default_factory=list)
    daily_previous: list[float | None] = field(default_factory=list)

    @property
    def change_unit(self) -> Literal["pp", "pts", "%"]:
        """Shares change in percentage points, NPS and mean scores in points, money and times relatively."""
        if self.kpi.unit == "ratio":
            return "pp"
        return "pts" if self.kpi.unit == "score" else "%"

    @property
    def change(self) -> float | None:
        if self.value is None or self.previous is None:
            return None
        if self.change_unit == "pp":
            return 100 * (self.value - self.previous)
        if self.change_unit == "pts":
            return self.value - self.previous
        return 100 * (self.value / self.previous - 1) if self.previous else None

    @property
    def direction(self) -> Literal["better", "worse", "same", ""]:
        if self.change is None:
            return ""
        if self.change == 0:
            return "same"
        return "better" if (self.change > 0) == self.kpi.higher_is_better else "worse"

    @property
    def notable(self) -> bool:
        """Moved beyond the noise: the two weeks' 95% intervals do not overlap; without an
        interval, a relative change of NOTABLE_RELATIVE or more."""
        if self.change is None:
            return False
        if self.interval and self.interval_previous:
            return self.interval[0] > self.interval_previous[1] or self.interval[1] < self.interval_previous[0]
        if self.change_unit == "%":
            return abs(self.change) >= 100 * NOTABLE_RELATIVE
        return False

    @property
    def name(self) -> str:
        """``Average order value (AOV) in EUR, north-outfitters`` for money, else the KPI's title."""
        name = self.kpi.title
        if "currency" in self.labels:
            name += f" in {self.labels['currency']}"
        if "storefront" in self.labels:
            name += f", {self.labels['storefront']}"
        return name


@dataclass
class Mover:
    """One segment of a KPI whose value moved week over week.

    ``weighted`` = (this week - last week) x the segment's share of the dimension's volume this
    week: for conversion, the points of the overall conversion this segment's change is worth if
    the mix of traffic had stayed the same. Ranked by its size; segments under
    MIN_SEGMENT_SHARE of the volume or MIN_SEGMENT_COUNT in either week are left out.
    """

    kpi: Kpi
    dimension: str
    segment: str
    value: float
    previous: float
    n: float
    n_previous: float
    share: float

    @property
    def change(self) -> float:
        return self.value - self.previous

    @property
    def weighted(self) -> float:
        return self.change * self.share

    @property
    def better(self) -> bool:
        return (self.change > 0) == self.kpi.higher_is_better


@dataclass
class VolumeMover:
    """A segment's count (tickets created) this week and last; ranked by the size of the change."""

    metric: str
    dimension: str
    segment: str
    count: float
    previous: float

    @property
    def change(self) -> float:
        return self.count - self.previous


Verdict = Literal["pays off", "does not pay off", "not enough evidence yet", "no data yet"]


@dataclass
class Initiative:
    """One initiative active in the week, at the week's end: its declaration (``cxpulse_initiative_info``,
    investment, start, end), its ``ROI_QUERIES`` values and each arm's sample and KPI."""

    name: str
    kpi: str  # a key of catalog.KPIS: revenue_per_visitor, conversion, average_order_value
    treated: str  # segment, e.g. channel=app
    control: str  # a segment, or "before": the treated segment before the start
    currency: str
    investment: float | None
    start_s: float | None
    end_s: float | None  # None: running
    values: dict[str, float]  # ROI_QUERIES name -> value: uplift, uplift_ratio, incremental_revenue, ..., roi_upper
    arms: dict[str, dict[str, float]]  # treated / control -> sessions, orders, kpi (the arm's KPI value)

    @property
    def verdict(self) -> Verdict:
        """Whether the ROI's 95% interval excludes 0, and on which side."""
        lower, upper = self.values.get("roi_lower"), self.values.get("roi_upper")
        if lower is None or upper is None:
            return "no data yet"
        if lower > 0:
            return "pays off"
        if upper < 0:
            return "does not pay off"
        return "not enough evidence yet"


@dataclass
class Initiatives:
    """Initiatives active in the week (by name), or a note saying why there are none."""

    rows: list[Initiative]
    note: str = ""


@dataclass
class CustomerShare:
    """A customer-level share (repeat purchase, post-support conversion) of one storefront, at the
    week's end and a week earlier: the recording rule's value, its Wilson interval and its customers."""

    key: Literal["repeat_purchase", "post_support_conversion"]
    storefront: str
    value: float | None
    previous: float | None
    n: float
    n_previous: float
    interval: tuple[float, float] | None
    interval_previous: tuple[float, float] | None

    @property
    def change(self) -> float | None:
        """In percentage points."""
        return None if self.value is None or self.previous is None else 100 * (self.value - self.previous)


@dataclass
class CohortLtv:
    """Revenue per customer within ``horizon`` of the first order, of the latest first-order cohort
    whose horizon had passed for every customer by the week's end, and of the one before it (the
    latest mature a week earlier)."""

    storefront: str
    currency: str
    horizon: str  # 30d, 90d
    cohort: str
    ltv: float
    customers: float
    previous_cohort: str | None
    previous_ltv: float | None
    previous_customers: float | None

    @property
    def change(self) -> float | None:
        """Relative, in %."""
        if self.previous_ltv is None or not self.previous_ltv:
            return None
        return 100 * (self.ltv / self.previous_ltv - 1)


@dataclass
class NpsLtv:
    """LTV (revenue per customer within ``horizon``) by NPS category (or CSAT band), for one
    storefront, currency and horizon: per purchase count (1, 2, 3, 4+ orders within 90 days) and
    category, (customers, LTV). ``high`` and ``low`` are the categories compared."""

    storefront: str
    currency: str
    horizon: str
    strata: dict[str, dict[str, tuple[float, float]]]  # purchases -> category -> (customers, LTV)
    high: str = "promoter"
    low: str = "detractor"

    def compared(self) -> list[str]:
        """Purchase counts with both categories compared present."""
        return [b for b, cats in self.strata.items() if cats.get(self.high, (0, 0))[0] > 0
                and cats.get(self.low, (0, 0))[0] > 0]

    @property
    def premium(self) -> float | None:
        """How much more ``high`` customers (promoters) are worth than ``low`` ones (detractors) with
        the same number of purchases, as a ratio - 1: the high category's LTV per purchase count,
        weighted by the low category's customers at that count, over the low category's own (direct
        standardisation to the low category's mix).

            sum_b D_b x LTV(high, b) / sum_b D_b x LTV(low, b) - 1
        """
        high, low = self.high, self.low
        at_high_ltv = sum(self.strata[b][low][0] * self.strata[b][high][1] for b in self.compared())
        own = sum(self.strata[b][low][0] * self.strata[b][low][1] for b in self.compared())
        return at_high_ltv / own - 1 if own > 0 else None

    @property
    def promoter_premium(self) -> float | None:
        return self.premium

    def customers(self, category: str) -> float:
        """Customers of the category over the purchase counts compared."""
        return sum(self.strata[b][category][0] for b in self.compared())


@dataclass
class Retention:
    """Customer retention of the last retention period of ``period`` complete by the week's end, for
    one storefront: its customers (those of the period before), the share retained and its Wilson
    interval; churn is 1 - that."""

    storefront: str
    period: str  # 30d, 90d, ...
    period_start: str  # the period's first day, UTC
    customers: float
    value: float | None
    interval: tuple[float, float] | None

    @property
    def churn(self) -> float | None:
        return None if self.value is None else 1 - self.value


@dataclass
class SupportRevenue:
    """Revenue of the orders placed within CXPULSE_POST_SUPPORT after the customer's latest ticket
    before them, for the tickets of one ISO week (``cohort``), storefront and currency."""

    storefront: str
    currency: str
    cohort: str
    orders: float
    revenue: float


@dataclass
class Customers:
    """The customer-level KPIs (docs/customers.md) at the week's end, or a note saying why there are none."""

    shares: list[CustomerShare]
    cohorts: list[CohortLtv]
    nps: list[NpsLtv]
    csat: list[NpsLtv] = field(default_factory=list)
    retention: list[Retention] = field(default_factory=list)
    support_revenue: list[SupportRevenue] = field(default_factory=list)
    note: str = ""


@dataclass
class Report:
    week: Week
    storefront: str | None
    prometheus: str
    generated: datetime
    figures: list[Figure]
    movers: dict[str, list[Mover]]
    volume_movers: list[VolumeMover]
    initiatives: Initiatives
    customers: Customers
    notes: list[str]
    charts: dict[str, Path] = field(default_factory=dict)


# ------------------------------------------------------------------------ building
def _progress(message: str) -> None:
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
        now, before = _two_weeks(prom, _kpi_expr(kpi, level, "1w", weekly), level, end)
        n_level = component_level(sample_metric(kpi), level)
        n_now, n_before = _two_weeks(prom, weekly(sample_metric(kpi), level), n_level, end)
        # an interval needs the numerators apart (NPS: promoters and detractors)
        with_interval = kpi.shape == "nps" or kpi.key in PROPORTION_KPIS
        parts = [_two_weeks(prom, weekly(m, level), level, end) for m in kpi.numerator] if with_interval else []
        days = {_key(labels, level): values for labels, values in
                prom.range(_kpi_expr(kpi, level, "1d", daily), first_day_end, end, DAY_S)}
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
        now, before = _two_weeks(prom, _kpi_expr(kpi, level, "1w", weekly), level, week.end_s)
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


# The arm KPIs of ROI_RULES, by the initiative's KPI: (treated, control) recorded names.
ARM_KPI_RULES: dict[str, tuple[str, str]] = {
    "revenue_per_visitor": ("initiative:cxpulse_initiative_treated_rpv:ratio",
                            "initiative:cxpulse_initiative_control_rpv:ratio"),
    "conversion": ("initiative:cxpulse_initiative_treated_conversion:ratio",
                   "initiative:cxpulse_initiative_control_conversion:ratio"),
    "average_order_value": ("initiative:cxpulse_initiative_treated_aov:ratio",
                            "initiative:cxpulse_initiative_control_aov:ratio"),
}


def initiatives_section(prom: Prometheus, week: Week) -> Initiatives:
    """Initiatives active during the week and their ROI so far, at the week's end.

    Every ``ROI_QUERIES`` expression of ``streams.initiatives.core`` (PromQL over the raw initiative
    gauges, one series per ``initiative``) and the arms' sessions, orders and KPI are evaluated at
    the week's end; the declaration (``cxpulse_initiative_info``: kpi, treated, control; the
    investment and its currency; start and end) labels the row. Active: started before the week's
    end, not ended by its start. No series: "No initiatives declared".
    """
    from streams.initiatives.core import ROI_QUERIES, ROI_RULES, inline

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
                raise ReportError(f"{rule} is not a recording rule of streams.initiatives.core.ROI_RULES: the report "
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


# The recording rules of customer_rules() the report reads, written in full for grep.
CUSTOMER_SHARES: dict[str, tuple[str, str, str]] = {  # key -> (title, ratio rule, customers rule)
    "repeat_purchase": ("Repeat customers (2nd order within 90 days)",
                        "storefront:cxpulse_customer_repeat_purchase:ratio",
                        "storefront:cxpulse_customer_cohort_mature_customers:sum"),
    "post_support_conversion": ("Post-support conversion (order after a ticket)",
                                "storefront:cxpulse_customer_post_support_conversion:ratio",
                                "storefront:cxpulse_customer_post_support_mature_customers:sum"),
}
COHORT_LTV_RULE = "storefront_cohort_currency_horizon:cxpulse_customer_revenue_per_customer:ratio"
COHORT_CUSTOMERS_RULE = "storefront_cohort:cxpulse_customer_cohort_customers:sum"
NPS_LTV_RULE = "storefront_nps_category_purchases_currency_horizon:cxpulse_customer_nps_revenue_per_customer:ratio"
NPS_CUSTOMERS_RULE = "storefront_nps_category_purchases_horizon:cxpulse_customer_nps_customers:sum"
CSAT_LTV_RULE = "storefront_csat_band_purchases_currency_horizon:cxpulse_customer_csat_revenue_per_customer:ratio"
CSAT_CUSTOMERS_RULE = "storefront_csat_band_purchases_horizon:cxpulse_customer_csat_customers:sum"
RETENTION_RULE = "storefront_period_period_start:cxpulse_customer_retention:ratio"
RETENTION_CUSTOMERS_RULE = "storefront_period_period_start:cxpulse_customer_retention_customers:sum"
SUPPORT_REVENUE_RULE = "storefront_cohort_currency:cxpulse_customer_post_support_revenue:sum"
SUPPORT_ORDERS_RULE = "storefront_cohort_currency:cxpulse_customer_post_support_orders:sum"


@functools.cache
def customer_query(record: str) -> str:
    """A recording rule of ``rules.customer_rules()`` as a self-contained query over the raw
    ``cxpulse_customer_*`` gauges (``rules.customer_expr``), so the report works on a Prometheus
    without the rules and never keeps a second copy of a formula.

        >>> customer_query("storefront:cxpulse_customer_cohort_customers:sum")
        'sum by (storefront) (cxpulse_customer_cohort_customers)'
    """
    try:
        return customer_expr(record)
    except KeyError:
        raise ReportError(f"{record} is not a recording rule of streams.mixin.rules.customer_rules(): the report and "
                          "the rules disagree on its name") from None


CustomerRows = Callable[[str, int, tuple[str, ...]], dict[Key, float]]  # (rule, at_s, labels) -> key -> value


def customers_section(prom: Prometheus, week: Week, storefront: str | None) -> Customers:
    """The customer-level KPIs of docs/customers.md, per storefront (and currency), from the
    expressions of ``rules.customer_rules()`` evaluated at the week's end (and a week earlier):

    - repeat customers and post-support conversion, with their Wilson 95% intervals and customers;
    - LTV (30 / 90-day revenue per customer) of the latest mature first-order cohort;
    - LTV by NPS category and by CSAT band per purchase count, and promoters against detractors,
      satisfied against unsatisfied customers at the same counts;
    - retention and churn of the last complete period of each length;
    - revenue after support of the week's tickets and the week before's.
    """
    def rows(record: str, at_s: int, names: tuple[str, ...]) -> dict[Key, float]:
        found = _by_key(prom.instant(customer_query(record), at_s), names)
        return {k: v for k, v in found.items() if not storefront or dict(k).get("storefront") == storefront}

    shares, cohorts, nps = customer_shares(rows, week), cohort_ltv(rows, week), nps_ltv(rows, week)
    csat = nps_ltv(rows, week, CSAT_LTV_RULE, CSAT_CUSTOMERS_RULE, "csat_band", "satisfied", "unsatisfied")
    retention, support = customer_retention(rows, week), support_revenue(rows, week)
    note = "" if shares or cohorts or nps or csat or retention or support else (
        "No customer-level data at the week's end: no cxpulse_customer_* series"
        + (f' with storefront="{storefront}"' if storefront else "")
        + " (the customer stage exports them; docs/customers.md).")
    return Customers(shares, cohorts, nps, csat, retention, support, note)


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
    from streams.pipeline.customer_state import HORIZONS, MATURITY_MARGIN_MS

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
    from streams.pipeline.customer_state import HORIZONS

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
          now: datetime | None = None, progress: Callable[[str], None] = _progress) -> Report:
    """Query everything the report shows (charts are drawn by ``write``)."""
    sel = selector(storefront)
    progress(f"checking data for {week.label} ({week.start:%Y-%m-%d} to {week.end:%Y-%m-%d} UTC) in {prom.url}")
    notes = check_data(prom, week, sel, storefront)
    progress(f"headline KPIs: {len(KPIS)} KPIs, {week.label} and {week.previous().label}, daily values")
    figures = headline(prom, week, sel)
    progress("movers: " + ", ".join(f"{k} by {d}" for k, d in MOVER_KPIS + VOLUME_MOVERS))
    moved, volumes = movers(prom, week, sel), volume_movers(prom, week, sel)
    progress("customers: repeat customers, post-support conversion and revenue, cohort LTV, LTV by NPS category "
             "and CSAT band, retention")
    customers = customers_section(prom, week, storefront)
    progress("initiatives")
    initiatives = initiatives_section(prom, week)
    return Report(week, storefront, prom.url, now or datetime.now(timezone.utc), figures, moved, volumes,
                  initiatives, customers, notes)


# ------------------------------------------------------------------------ formatting
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


# ------------------------------------------------------------------------ the documents
def _tables(report: Report) -> list[tuple[str, str, list[str], list[list[str]], str]]:
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
    return tables


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


def markdown(report: Report) -> str:
    week, prev = report.week, report.week.previous()
    out = [f"# CX weekly report: {week.label} ({week.days()})", "",
           f"{scope(report).capitalize()}, compared with {prev.label} ({prev.days()}). Weeks run Monday to Sunday, "
           f"UTC. From Prometheus at {report.prometheus}, {report.generated:%Y-%m-%d %H:%M} UTC.", "",
           "## At a glance", ""]
    out += [f"- {line}" for line in glance(report)]
    moved_header = False
    for anchor, title, header, rows, caption in _tables(report):
        if anchor.startswith("movers-") and not moved_header:
            out += ["", "## What moved most", "", MOVERS_CAPTION]
            moved_header = True
        out += ["", f"{'##' if anchor == 'headline' else '###'} {title}", ""]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
        out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        if caption:
            out += ["", caption]
        if anchor == "headline" and "daily" in report.charts:
            out += ["", f"![Daily KPIs, {week.label} against {prev.label}]({report.charts['daily'].name})"]
    if "movers" in report.charts:
        out += ["", f"![Segments that moved most]({report.charts['movers'].name})"]
    out += _md_blocks(customer_blocks(report) + initiative_blocks(report), report)
    if report.notes:
        out += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(out) + "\n"


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
    if section.nps:
        out.append(Block("h3", "LTV by NPS category, at the same number of purchases"))
        out.append(Block("ul", items=tuple(nps_sentence(n) for n in section.nps)))
        rows = []
        for group in section.nps:
            for purchases, cats in group.strata.items():
                cells = [f"{fmt_money(cats[c][1], group.currency)} ({fmt_count(cats[c][0])})" if c in cats else "-"
                         for c in NPS_CATEGORIES]
                both = purchases in group.compared() and cats["detractor"][1] > 0
                vs = fmt_ratio_change(cats["promoter"][1] / cats["detractor"][1] - 1) if both else "-"
                rows.append([group.storefront, _horizon(group.horizon), purchases, *cells, vs])
        out += [_table(["storefront", "horizon", "purchases", "promoters", "passives", "detractors",
                        "promoters vs detractors"], rows, 3),
                Block("caption", NPS_CAPTION)]
    if section.csat:
        out.append(Block("h3", "LTV by CSAT band, at the same number of purchases"))
        out.append(Block("ul", items=tuple(nps_sentence(n) for n in section.csat)))
        rows = []
        for group in section.csat:
            for purchases, cats in group.strata.items():
                cells = [f"{fmt_money(cats[c][1], group.currency)} ({fmt_count(cats[c][0])})" if c in cats else "-"
                         for c in CSAT_BANDS]
                both = purchases in group.compared() and cats["unsatisfied"][1] > 0
                vs = fmt_ratio_change(cats["satisfied"][1] / cats["unsatisfied"][1] - 1) if both else "-"
                rows.append([group.storefront, _horizon(group.horizon), purchases, *cells, vs])
        out += [_table(["storefront", "horizon", "purchases", "satisfied", "neutral", "unsatisfied",
                        "satisfied vs unsatisfied"], rows, 3),
                Block("caption", CSAT_CAPTION)]
    if section.retention:
        rows = [[r.storefront, _horizon(r.period), r.period_start, fmt_count(r.customers),
                 "no data" if r.value is None else fmt_percent(r.value),
                 "-" if r.interval is None else f"{fmt_percent(r.interval[0])} to {fmt_percent(r.interval[1])}",
                 "no data" if r.churn is None else fmt_percent(r.churn)] for r in section.retention]
        out += [Block("h3", "Customer retention and churn"),
                _table(["storefront", "period", "from", "customers", "retention", "95% interval", "churn"], rows, 3),
                Block("caption", RETENTION_CAPTION)]
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


def _md_blocks(blocks: list[Block], report: Report) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if block.kind in ("h2", "h3"):
            out += ["", f"{'##' if block.kind == 'h2' else '###'} {block.text}", ""]
        elif block.kind in ("p", "caption"):
            out += ([""] if out and out[-1] else []) + [block.text]
        elif block.kind == "ul":
            out += ([""] if out and out[-1] else []) + [f"- {item}" for item in block.items]
        elif block.kind == "table":
            out += ([""] if out and out[-1] else [])
            out.append("| " + " | ".join(block.header) + " |")
            out.append("|" + "|".join("---" if i < block.left else "---:" for i in range(len(block.header))) + "|")
            out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in block.rows]
        elif block.kind == "chart":
            out += ["", f"![{block.text}]({report.charts[block.chart].name})"]
    return out


def _html_blocks(blocks: list[Block], report: Report) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if block.kind in ("h2", "h3", "p"):
            out.append(f"<{block.kind}>{html.escape(block.text)}</{block.kind}>")
        elif block.kind == "caption":
            out.append(f'<p style="{HTML_STYLE["caption"]}">{html.escape(block.text)}</p>')
        elif block.kind == "ul":
            out += ["<ul>"] + [f"<li>{html.escape(item)}</li>" for item in block.items] + ["</ul>"]
        elif block.kind == "table":
            out.append(_html_table(list(block.header), [list(r) for r in block.rows], block.left))
        elif block.kind == "chart":
            out.append(_img(report.charts[block.chart], block.text))
    return out


HTML_STYLE = {
    "body": "font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1f2328;max-width:1000px",
    "table": "border-collapse:collapse;font-size:14px;margin:8px 0",
    "th": "border-bottom:2px solid #d0d7de;padding:4px 10px;text-align:right;background:#f6f8fa",
    "td": "border-bottom:1px solid #eaeef2;padding:4px 10px;text-align:right",
    "caption": "font-size:12px;color:#57606a;max-width:900px",
    "better": "color:#1a7f37", "worse": "color:#cf222e",
}


def _html_table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    def cell(tag: str, text: str, first: bool) -> str:
        style = HTML_STYLE[tag] + (";text-align:left" if first else "")
        for word in ("better", "worse"):
            if text.endswith(f"({word})"):
                style += ";" + HTML_STYLE[word]
        return f'<{tag} style="{style}">{html.escape(text)}</{tag}>'

    head = "".join(cell("th", h, i < left) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", c, i < left) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table style="{HTML_STYLE["table"]}"><tr>{head}</tr>{body}</table>'


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" style="max-width:100%"></p>'


def html_document(report: Report) -> str:
    week, prev = report.week, report.week.previous()
    cap = HTML_STYLE["caption"]
    out = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8">',
           f"<title>CX weekly report {week.label}</title></head>", f'<body style="{HTML_STYLE["body"]}">',
           f"<h1>CX weekly report: {week.label} ({html.escape(week.days())})</h1>",
           f"<p>{html.escape(scope(report).capitalize())}, compared with {prev.label} ({html.escape(prev.days())}). "
           f"Weeks run Monday to Sunday, UTC. From Prometheus at {html.escape(report.prometheus)}, "
           f"{report.generated:%Y-%m-%d %H:%M} UTC.</p>", "<h2>At a glance</h2>", "<ul>"]
    out += [f"<li>{html.escape(line)}</li>" for line in glance(report)]
    out.append("</ul>")
    moved_header = False
    for anchor, title, header, rows, caption in _tables(report):
        if anchor.startswith("movers-") and not moved_header:
            out += ["<h2>What moved most</h2>", f'<p style="{cap}">{html.escape(MOVERS_CAPTION)}</p>']
            moved_header = True
        tag = "h2" if anchor == "headline" else "h3"
        out.append(f"<{tag}>{html.escape(title)}</{tag}>")
        out.append(_html_table(header, rows))
        if caption:
            out.append(f'<p style="{cap}">{html.escape(caption)}</p>')
        if anchor == "headline" and "daily" in report.charts:
            out.append(_img(report.charts["daily"], f"Daily KPIs, {week.label} against {prev.label}"))
    if "movers" in report.charts:
        out.append(_img(report.charts["movers"], "Segments that moved most"))
    out += _html_blocks(customer_blocks(report) + initiative_blocks(report), report)
    if report.notes:
        out += ["<h2>Notes</h2>", "<ul>"] + [f"<li>{html.escape(n)}</li>" for n in report.notes] + ["</ul>"]
    out += ["</body></html>"]
    return "\n".join(out) + "\n"


def figures_json(report: Report) -> dict[str, Any]:
    """The report's figures unrounded, for scripts (``report.json`` beside the document)."""
    def clean(value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None

    return {
        "week": report.week.label, "previous_week": report.week.previous().label,
        "start": report.week.start.isoformat(), "end": report.week.end.isoformat(),
        "storefront": report.storefront, "prometheus": report.prometheus,
        "kpis": [{"key": f.kpi.key, "name": f.name, "title": f.kpi.title, "unit": f.kpi.unit, "labels": f.labels,
                  "value": clean(f.value), "previous": clean(f.previous), "change": clean(f.change),
                  "change_unit": f.change_unit, "n": f.n, "n_previous": f.n_previous,
                  "denominator": sample_metric(f.kpi), "interval": f.interval,
                  "interval_previous": f.interval_previous, "daily": f.daily, "daily_previous": f.daily_previous}
                 for f in report.figures],
        "movers": [{"kpi": m.kpi.key, "dimension": m.dimension, "segment": m.segment, "value": m.value,
                    "previous": m.previous, "n": m.n, "n_previous": m.n_previous, "share": m.share,
                    "weighted": m.weighted} for moved in report.movers.values() for m in moved],
        "volume_movers": [{"metric": m.metric, "dimension": m.dimension, "segment": m.segment, "count": m.count,
                           "previous": m.previous} for m in report.volume_movers],
        "customers": {
            "shares": [{"key": c.key, "storefront": c.storefront, "value": c.value, "previous": c.previous,
                        "change": c.change, "n": c.n, "n_previous": c.n_previous, "interval": c.interval,
                        "interval_previous": c.interval_previous} for c in report.customers.shares],
            "cohort_ltv": [{"storefront": c.storefront, "currency": c.currency, "horizon": c.horizon,
                            "cohort": c.cohort, "ltv": c.ltv, "customers": c.customers,
                            "previous_cohort": c.previous_cohort, "previous_ltv": c.previous_ltv,
                            "previous_customers": c.previous_customers} for c in report.customers.cohorts],
            "nps_ltv": [{"storefront": n.storefront, "currency": n.currency, "horizon": n.horizon,
                         "strata": {b: {cat: {"customers": v[0], "ltv": v[1]} for cat, v in cats.items()}
                                    for b, cats in n.strata.items()},
                         "compared": n.compared(), "promoter_premium": n.promoter_premium}
                        for n in report.customers.nps],
            "csat_ltv": [{"storefront": n.storefront, "currency": n.currency, "horizon": n.horizon,
                          "strata": {b: {cat: {"customers": v[0], "ltv": v[1]} for cat, v in cats.items()}
                                     for b, cats in n.strata.items()},
                          "compared": n.compared(), "satisfied_premium": n.premium}
                         for n in report.customers.csat],
            "retention": [{"storefront": r.storefront, "period": r.period, "period_start": r.period_start,
                           "customers": r.customers, "value": r.value, "interval": r.interval, "churn": r.churn}
                          for r in report.customers.retention],
            "support_revenue": [{"storefront": r.storefront, "currency": r.currency, "cohort": r.cohort,
                                 "orders": r.orders, "revenue": r.revenue} for r in report.customers.support_revenue],
            "note": report.customers.note,
        },
        "initiatives": {row.name: {"kpi": row.kpi, "treated": row.treated, "control": row.control,
                                   "currency": row.currency, "investment": row.investment, "start": row.start_s,
                                   "end": row.end_s, **row.values, "arms": row.arms, "verdict": row.verdict}
                        for row in report.initiatives.rows},
        "initiatives_note": report.initiatives.note,
        "notes": report.notes,
        "charts": {name: path.name for name, path in report.charts.items()},
    }


# ------------------------------------------------------------------------------ charts
THIS_WEEK_COLOR, LAST_WEEK_COLOR = "#0969da", "#8c959f"
BETTER_COLOR, WORSE_COLOR, NEUTRAL_COLOR = "#1a7f37", "#cf222e", "#6e7781"


def _panel_scale(figure: Figure) -> tuple[float, str, Any]:
    """(divisor, unit for the title, tick formatter) of a daily panel: times in minutes or hours, so
    ticks fall on round numbers of the unit shown; shares as percentages."""
    from matplotlib.ticker import FuncFormatter, PercentFormatter, ScalarFormatter

    kpi = figure.kpi
    if kpi.unit == "ratio":
        return 1.0, "", PercentFormatter(xmax=1.0)
    if kpi.unit == "seconds":
        peak = max((v for v in figure.daily + figure.daily_previous if v is not None), default=0.0)
        return (3600.0, "hours", ScalarFormatter()) if peak >= 3 * 3600 else (60.0, "minutes", ScalarFormatter())
    if kpi.unit == "currency":
        return 1.0, figure.labels.get("currency", ""), FuncFormatter(lambda v, _: f"{v:,.2f}".rstrip("0").rstrip("."))
    if kpi.shape == "nps":
        return 1.0, "", FuncFormatter(lambda v, _: f"{v:+.0f}")
    return 1.0, "", ScalarFormatter()


def draw_daily(report: Report, path: Path) -> Path | None:
    """Small multiples: each chart KPI per UTC day, this week (solid) against last week (dashed)."""
    from matplotlib.figure import Figure as Canvas

    chosen = []
    for key in CHART_KPIS:
        candidates = [f for f in report.figures
                      if f.kpi.key == key and any(v is not None for v in f.daily + f.daily_previous)]
        if candidates:
            chosen.append(max(candidates, key=lambda f: f.n))  # money: the storefront with the most volume
    if not chosen:
        return None
    cols = 3
    rows = math.ceil(len(chosen) / cols)
    fig = Canvas(figsize=(12, 2.8 * rows + 0.8), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    this, last = report.week.label, report.week.previous().label
    for ax, figure in zip(axes.flat, chosen):
        divisor, unit, formatter = _panel_scale(figure)
        for values, label, style in (
                (figure.daily_previous, f"{last} (week before)",
                 dict(color=LAST_WEEK_COLOR, linestyle="--", linewidth=1.5, marker="o", markersize=3)),
                (figure.daily, f"{this} (report week)",
                 dict(color=THIS_WEEK_COLOR, linewidth=2.4, marker="o", markersize=4))):
            ax.plot(range(7), [math.nan if v is None else v / divisor for v in values], label=label, **style)
        title = figure.kpi.title + (f" in {unit}" if unit else "")
        if "storefront" in figure.labels and not report.storefront:
            title += f"\n{figure.labels['storefront']}"
        ax.set_title(title, fontsize=10.5, loc="left")
        ax.yaxis.set_major_formatter(formatter)
        ax.set_xticks(range(7), days, fontsize=9)
        ax.tick_params(axis="y", labelsize=9)
        ax.grid(axis="y", color="#eaeef2")
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.margins(x=0.04, y=0.12)
    for ax in list(axes.flat)[len(chosen):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles[::-1], labels[::-1], loc="outside upper right", ncols=2, frameon=False, fontsize=10)
    fig.suptitle(f"Daily KPIs, {this} against {last} ({scope(report)}, UTC days)", x=0.01, ha="left",
                 fontsize=13, fontweight="bold")
    fig.savefig(path, format="png")
    return path


def draw_movers(report: Report, path: Path) -> Path | None:
    """Horizontal bars: the movers' weighted changes per KPI, and the ticket-volume change."""
    from matplotlib.figure import Figure as Canvas

    last = report.week.previous().label
    # (title, bar names, values, colours, x-axis label, value label format)
    panels: list[tuple[str, list[str], list[float], list[str], str, Callable[[float], str]]] = []
    for moved in report.movers.values():
        if not moved:
            continue
        kpi, shown = moved[0].kpi, moved[:MOVERS_SHOWN]
        dims = " and ".join(dict.fromkeys(m.dimension.replace("_", " ") for m in moved))
        noun = NOUNS.get(sample_metric(kpi), "volume")
        if kpi.unit == "ratio":
            values = [100 * m.weighted for m in shown]
            axis, fmt = f"percentage points of the overall {kpi.title.split(' (')[0].lower()}", "{:+.2f} pp".format
        elif kpi.unit == "seconds":
            values = [m.weighted / 60 for m in shown]
            axis, fmt = "minutes", "{:+.1f} min".format
        else:
            values, axis, fmt = [m.weighted for m in shown], "", "{:+.2f}".format
        panels.append((f"{kpi.title} by {dims}: change x share of {noun}", [_bar_name(m) for m in shown], values,
                       [BETTER_COLOR if m.better else WORSE_COLOR for m in shown], axis, fmt))
    if report.volume_movers:
        shown = report.volume_movers[:MOVERS_SHOWN]
        panels.append((f"Tickets created by {shown[0].dimension.replace('_', ' ')}: change from {last}",
                       [_bar_name(m) for m in shown], [m.change for m in shown], [NEUTRAL_COLOR] * len(shown),
                       "tickets", "{:+,.0f}".format))
    if not panels:
        return None
    heights = [max(len(p[1]), 2) for p in panels]
    # tight, not constrained: one left margin for every panel, so the bars start on one line
    fig = Canvas(figsize=(12, 0.9 + sum(0.42 * h + 0.9 for h in heights)), dpi=100, layout="tight")
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (title, names, values, colors, axis, fmt) in zip(axes, panels):
        ys = list(range(len(names)))[::-1]
        ax.barh(ys, values, color=colors, height=0.6)
        ax.set_yticks(ys, names, fontsize=10)
        ax.axvline(0, color="#57606a", linewidth=0.8)
        ax.set_title(title, fontsize=11, loc="left")
        ax.set_xlabel(axis, fontsize=9)
        ax.tick_params(axis="x", labelsize=9)
        ax.grid(axis="x", color="#eaeef2")
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        low, high = min(0.0, *values), max(0.0, *values)
        pad = 0.25 * ((high - low) or 1.0)  # room for the value labels
        ax.set_xlim(low - (pad if low < 0 else 0.05 * pad), high + (pad if high > 0 else 0.05 * pad))
        for y, value in zip(ys, values):
            ax.annotate(fmt(value), (value, y), xytext=(4 if value >= 0 else -4, 0), textcoords="offset points",
                        ha="left" if value >= 0 else "right", va="center", fontsize=9)
    fig.suptitle(f"What moved most, {report.week.label} against {last} (green better, red worse)", x=0.01,
                 ha="left", fontsize=13, fontweight="bold")
    fig.savefig(path, format="png")
    return path


VERDICT_COLORS = {"pays off": BETTER_COLOR, "does not pay off": WORSE_COLOR,
                  "not enough evidence yet": NEUTRAL_COLOR}


def draw_initiatives(report: Report, path: Path) -> Path | None:
    """Horizontal bars: each active initiative's ROI to date, its 95% interval as an error bar,
    coloured by its verdict (green: the interval is above 0, red: below 0, grey: it includes 0)."""
    from matplotlib.figure import Figure as Canvas
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    rows = [r for r in report.initiatives.rows if {"roi", "roi_lower", "roi_upper"} <= set(r.values)]
    if not rows:
        return None
    names = [f"{r.name}\n{r.treated} vs {'before the start' if r.control == 'before' else r.control}"
             for r in rows]
    roi = [100 * r.values["roi"] for r in rows]
    lower = [100 * r.values["roi_lower"] for r in rows]
    upper = [100 * r.values["roi_upper"] for r in rows]
    ys = list(range(len(rows)))[::-1]
    fig = Canvas(figsize=(12, 1.9 + 0.75 * len(rows)), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.barh(ys, roi, color=[VERDICT_COLORS[r.verdict] for r in rows], height=0.5, alpha=0.85)
    ax.errorbar(roi, ys, xerr=[[v - lo for v, lo in zip(roi, lower)], [hi - v for v, hi in zip(roi, upper)]],
                fmt="none", ecolor="#1f2328", elinewidth=1.6, capsize=6)
    ax.axvline(0, color="#57606a", linewidth=1)
    ax.set_yticks(ys, names, fontsize=10)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+.0f}%" if v else "0%"))
    ax.tick_params(axis="x", labelsize=9)
    ax.set_xlabel("ROI to date = (incremental profit - investment) / investment; bar: estimate, whisker: "
                  "95% interval", fontsize=9)
    ax.grid(axis="x", color="#eaeef2")
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    low, high = min(0.0, *lower), max(0.0, *upper)
    pad = 0.05 * ((high - low) or 100.0)
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    for y, value, lo, hi in zip(ys, roi, lower, upper):
        # a column right of the plot: never on a bar or a whisker, whatever their signs
        ax.annotate(f"{value:+.0f}%  ({lo:+.0f}% to {hi:+.0f}%)", (1, y), xycoords=("axes fraction", "data"),
                    xytext=(10, 0), textcoords="offset points", ha="left", va="center", fontsize=10)
    ax.annotate("ROI  (95% interval)", (1, len(rows) - 0.3), xycoords=("axes fraction", "data"), xytext=(10, 0),
                textcoords="offset points", ha="left", va="bottom", fontsize=9, color="#57606a")
    shown = dict.fromkeys(r.verdict for r in rows)
    fig.legend(handles=[Patch(color=VERDICT_COLORS[v], label=v) for v in shown], loc="outside lower left",
               ncols=len(shown), frameon=False, fontsize=10)
    fig.suptitle(f"Initiatives active in {report.week.label}: ROI to date with its 95% interval", x=0.01,
                 ha="left", fontsize=13, fontweight="bold")
    fig.savefig(path, format="png")
    return path


def _bar_name(mover: Mover | VolumeMover) -> str:
    return f"{mover.dimension.replace('_', ' ')}: {mover.segment}"


def write(report: Report, out: Path, fmt: Format, progress: Callable[[str], None] = _progress) -> Path:
    """Draw the charts, then write ``report.md`` or ``report.html`` and ``report.json`` into ``out``."""
    import matplotlib

    matplotlib.use("Agg")  # no display; files only
    out.mkdir(parents=True, exist_ok=True)
    for name, draw in (("daily", draw_daily), ("movers", draw_movers), ("initiatives", draw_initiatives)):
        drawn = draw(report, out / f"{report.week.label}-{name}.png")
        if drawn:
            report.charts[name] = drawn
    progress(f"charts: {', '.join(str(p) for p in report.charts.values()) or 'none (no data to draw)'}")
    document = out / f"report.{fmt}"
    document.write_text(markdown(report) if fmt == "md" else html_document(report), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(figures_json(report), indent=2) + "\n", encoding="utf-8")
    return document


# ------------------------------------------------------------------------------ the CLI
def _week_arg(text: str) -> Week:
    try:
        return Week.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prometheus", required=True, metavar="URL",
                        help="base URL of the Prometheus that scrapes the workers, e.g. http://127.0.0.1:9090")
    parser.add_argument("--week", type=_week_arg, metavar="YYYY-Www",
                        help="ISO week to report, e.g. 2026-W47 (default: the last complete week, UTC)")
    parser.add_argument("--storefront", metavar="NAME", help="one storefront (default: all, pooled)")
    parser.add_argument("--format", choices=("md", "html"), default="md",
                        help="md: report.md with the PNGs beside it; html: one report.html with the charts embedded "
                             "(default md)")
    parser.add_argument("--out", type=Path, default=Path("."), metavar="DIR",
                        help="directory for the report, report.json and the PNG charts (default: .)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="per Prometheus query (default 30)")


def run(args: argparse.Namespace) -> int:
    now = datetime.now(timezone.utc)
    week: Week = args.week or Week.last_complete(now)
    try:
        if week.end > now:
            raise ReportError(f"{week.label} has not ended yet (it ends {week.end:%Y-%m-%d %H:%M} UTC); the last "
                              f"complete week is {Week.last_complete(now).label}")
        prom = Prometheus(args.prometheus, args.timeout)
        prom.ping()
        report = build(prom, week, args.storefront, now)
        document = write(report, args.out, args.format)
    except ReportError as exc:
        print(f"cxpulse report: error: {exc}", file=sys.stderr)
        return 1
    _progress(f"wrote {document} ({prom.queries} queries)")
    return 0
