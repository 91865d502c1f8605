"""``cxpulse report``: the weekly CX report, read from Prometheus, as Markdown or HTML with PNG charts.

At the end of the flow, beside the dashboards: it reads what Prometheus recorded
from the workers' ``/metrics`` and writes the report the guide's contributors
send every week ("is it up or is it down?"): each KPI of ``catalog.KPIS`` for one
ISO week (Monday 00:00 to Monday 00:00 UTC) against the week before, with its
sample size and a 95% interval; the segments that moved most; the declared
initiatives and their ROI; a daily chart and a movers chart.

Figures come from the cumulative counters, not from ``increase()``: the count of a
week is the counter summed over partitions at the week's end minus the same sum a
week earlier (a segment with no series then counts from 0). The counters never
reset (state is recovered on restart, a partition moving to another worker keeps
its total), so that difference is exactly the events counted in the week, while
``increase()`` extrapolates to the range's edges and loses what a series that
starts inside the range (a moved partition, a new segment) had at its first
sample. The KPI formulas are the recording rules' own (``rules._kpi_expr``), fed
with that difference instead of a rate:

    week = Week.parse("2026-W47")
    report = build(Prometheus("http://127.0.0.1:9090"), week, storefront=None)
    write(report, Path("out"), "md")   # out/report.md, out/report.json, out/*.png
"""

from __future__ import annotations

import argparse
import base64
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
from streams.errors import CxpulseError
from streams.intervals import Z95, nps_interval, wilson
from streams.rules import FAMILY_ARRIVALS, JOB, PROPORTION_KPIS, Level, _kpi_expr, component_level

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
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.queries = 0

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


@dataclass
class Initiatives:
    """Initiatives active in the week: name -> its ``ROI_QUERIES`` values and its declaration's labels."""

    rows: list[tuple[str, dict[str, float], dict[str, str]]]
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
    """95% interval from the week's counts: Wilson for a share, adjusted Wald for NPS (streams.intervals)."""
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


def initiatives_section(prom: Prometheus, week: Week) -> Initiatives:
    """Initiatives active during the week and their ROI so far, at the week's end.

    The hook for ``streams.initiatives``: every ``ROI_QUERIES`` expression (name -> PromQL over the
    raw initiative gauges, one series per ``initiative``) is evaluated at the week's end; the
    declaration (``cxpulse_initiative_info``: kpi, treated, control; the investment's currency)
    labels the row. Active: started before the week's end, not ended before its start. No module,
    or no series: "No initiatives declared".
    """
    none = Initiatives([], "No initiatives declared.")
    try:
        from streams.initiatives import ROI_QUERIES
    except ImportError:
        return none
    at = week.end_s

    def by_initiative(expr: str) -> dict[str, tuple[dict[str, str], float]]:
        return {labels["initiative"]: (labels, value) for labels, value in prom.instant(expr, at)
                if "initiative" in labels}

    about = {name: labels for name, (labels, _) in by_initiative(
        "max by (initiative, kpi, treated, control) (cxpulse_initiative_info)").items()}
    for name, (labels, _) in by_initiative("max by (initiative, currency) (cxpulse_initiative_investment)").items():
        about.setdefault(name, {})["currency"] = labels.get("currency", "")
    starts = {n: v for n, (_, v) in by_initiative(
        "max by (initiative) (cxpulse_initiative_start_timestamp_seconds)").items()}
    ends = {n: v for n, (_, v) in by_initiative(
        "max by (initiative) (cxpulse_initiative_end_timestamp_seconds)").items()}
    start_s = week.end_s - WEEK_S
    rows: dict[str, dict[str, float]] = {}
    for column, expr in ROI_QUERIES.items():
        for name, (_, value) in by_initiative(expr).items():
            if starts.get(name, 0) < at and ends.get(name, math.inf) > start_s and math.isfinite(value):
                rows.setdefault(name, {})[column] = value
    if not rows:
        return Initiatives([], f"No declared initiative was active in {week.label}.") if about else none
    return Initiatives([(name, values, about.get(name, {})) for name, values in sorted(rows.items())])


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
    progress("initiatives")
    initiatives = initiatives_section(prom, week)
    return Report(week, storefront, prom.url, now or datetime.now(timezone.utc), figures, moved, volumes,
                  initiatives, notes)


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
    out += ["", "## Initiatives", ""]
    out += _initiatives_md(report.initiatives)
    if report.notes:
        out += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(out) + "\n"


INITIATIVES_CAPTION = ("From each initiative's start to the week's end, treated against control (docs/report.md). "
                       "ROI = (incremental profit - investment) / investment, with its 95% interval.")


def _initiative_table(section: Initiatives) -> tuple[list[str], list[list[str]]]:
    header = ["initiative", "KPI", "treated vs control", "uplift", "incremental revenue", "incremental profit",
              "ROI (95% interval)"]
    rows = []
    for name, values, about in section.rows:
        kpi = next((k for k in KPIS if k.key == about.get("kpi")), None)
        currency = about.get("currency", "")
        uplift = values.get("uplift")
        if uplift is not None and kpi is not None:
            shown = fmt_value(kpi, abs(uplift), {"currency": currency})
            size = f"{100 * abs(uplift):.2f} pp" if kpi.unit == "ratio" else shown
            uplift_text = ("-" if uplift < 0 else "+") + size
            if values.get("uplift_ratio") is not None:
                uplift_text += f" ({100 * values['uplift_ratio']:+.1f}%)"
        else:
            uplift_text = "-"

        def money(key: str) -> str:
            return f"{values[key]:+,.2f} {currency}".rstrip() if key in values else "-"

        roi = "-"
        if "roi" in values:
            roi = f"{100 * values['roi']:+.0f}%"
            if "roi_lower" in values and "roi_upper" in values:
                roi += f" ({100 * values['roi_lower']:+.0f}% to {100 * values['roi_upper']:+.0f}%)"
        rows.append([name, kpi.title if kpi else about.get("kpi", "-"),
                     _arms(about.get("treated"), about.get("control")),
                     uplift_text, money("incremental_revenue"), money("incremental_profit"), roi])
    return header, rows


def _arms(treated: str | None, control: str | None) -> str:
    if not treated:
        return "-"
    return f"{treated} vs {'the same, before' if control == 'before' else control or '?'}"


def _initiatives_md(section: Initiatives) -> list[str]:
    if not section.rows:
        return [section.note]
    header, rows = _initiative_table(section)
    out = ["| " + " | ".join(header) + " |", "|---|---|---|" + "---:|" * (len(header) - 3)]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return out + ["", INITIATIVES_CAPTION]


HTML_STYLE = {
    "body": "font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1f2328;max-width:1000px",
    "table": "border-collapse:collapse;font-size:14px;margin:8px 0",
    "th": "border-bottom:2px solid #d0d7de;padding:4px 10px;text-align:right;background:#f6f8fa",
    "td": "border-bottom:1px solid #eaeef2;padding:4px 10px;text-align:right",
    "caption": "font-size:12px;color:#57606a;max-width:900px",
    "better": "color:#1a7f37", "worse": "color:#cf222e",
}


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(tag: str, text: str, first: bool) -> str:
        style = HTML_STYLE[tag] + (";text-align:left" if first else "")
        for word in ("better", "worse"):
            if text.endswith(f"({word})"):
                style += ";" + HTML_STYLE[word]
        return f'<{tag} style="{style}">{html.escape(text)}</{tag}>'

    head = "".join(cell("th", h, i == 0) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", c, i == 0) for i, c in enumerate(row)) + "</tr>" for row in rows)
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
    out.append("<h2>Initiatives</h2>")
    section = report.initiatives
    if section.rows:
        out.append(_html_table(*_initiative_table(section)))
        out.append(f'<p style="{cap}">{html.escape(INITIATIVES_CAPTION)}</p>')
    else:
        out.append(f"<p>{html.escape(section.note)}</p>")
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
        "initiatives": {name: {**values, **about} for name, values, about in report.initiatives.rows},
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


def _bar_name(mover: Mover | VolumeMover) -> str:
    return f"{mover.dimension.replace('_', ' ')}: {mover.segment}"


def write(report: Report, out: Path, fmt: Format, progress: Callable[[str], None] = _progress) -> Path:
    """Draw the charts, then write ``report.md`` or ``report.html`` and ``report.json`` into ``out``."""
    import matplotlib

    matplotlib.use("Agg")  # no display; files only
    out.mkdir(parents=True, exist_ok=True)
    for name, draw in (("daily", draw_daily), ("movers", draw_movers)):
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
        report = build(prom, week, args.storefront, now)
        document = write(report, args.out, args.format)
    except ReportError as exc:
        print(f"cxpulse report: error: {exc}", file=sys.stderr)
        return 1
    _progress(f"wrote {document} ({prom.queries} queries)")
    return 0
