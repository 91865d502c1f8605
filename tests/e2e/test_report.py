"""``cxpulse report`` against a real Prometheus holding two simulated weeks, checked three ways.

Fifteen days of simulator events (2026-11-08 to 2026-11-23, two storefronts, two partitions), the
last week changed on purpose: the app converts better, support is understaffed from Thursday, NPS
slips. The reference calculator tallies them; ``tests/backfill.py`` writes the counters a 5-minute
scrape would have read (partition 1 moves to the other worker mid-week, as in a rebalance), builds
TSDB blocks with promtool and serves them from ``prometheus``. Then ``cxpulse report`` runs as a
user runs it, for 2026-W47, and every headline figure must equal

- the same KPI computed here from direct PromQL sums of the raw counters at the two week ends, and
- the same KPI tallied here from the events of the week,

with the same sample sizes, week-over-week changes and 95% intervals; the Markdown must show them;
the charts must be real PNGs, embedded in the HTML.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import math
import re
import struct
import subprocess
import sys
import urllib.parse
from collections import defaultdict
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.catalog import COUNTERS, HISTOGRAMS, KPIS
from streams.intervals import nps_interval, wilson
from streams.report import Week
from streams.simulate import CHANNELS, STOREFRONTS, SimConfig, generate
from streams.stack import ROOT, http_get
from tests.backfill import BackfilledPrometheus, openmetrics
from tests.helpers import free_port
from tests.reference import BUCKETS_S, Params, Reference, major

WEEK = Week.parse("2026-W47")
DAY_MS = 86_400_000
WEEK_END_MS = int(WEEK.end.timestamp() * 1000)
WEEK_START_MS = WEEK_END_MS - 7 * DAY_MS
FIRST_MS = WEEK_START_MS - 8 * DAY_MS  # a day before last week, so both weeks start with history
MOVE_MS = WEEK_START_MS + 2 * DAY_MS + 12 * 3_600_000  # partition 1 moves to worker 0 (Wednesday noon)
RATE = 0.1  # events per second of event time: ~21k sessions and ~800 orders a week
PARTITIONS = 2
STEP_MS = 300_000  # the scrape interval the backfill imitates
REL = 1e-9  # float rounding: Prometheus sums float64 series, the tally sums integers


# ------------------------------------------------------------------------- the data
def simulated_events() -> list[dict[str, Any]]:
    """Eight ordinary days, then the report week with three things changed (a new run: its warm-up
    starts the funnels in steady state)."""
    before = SimConfig(seed=21, start_ms=FIRST_MS, rate_per_s=RATE, storefronts=STOREFRONTS[:2],
                       warmup_ms=6 * 3_600_000,
                       # fewer segments keep the backfill small: 2 channels, 3 support channels
                       channels={name: CHANNELS[name] for name in ("web", "app")},
                       support_mix=(("email", 0.45), ("chat", 0.35), ("phone", 0.20)))
    week = replace(before, seed=22, start_ms=WEEK_START_MS,
                   channels={"web": CHANNELS["web"], "app": replace(CHANNELS["app"], cvr=0.056)},
                   scenario="support-understaffed", incident_after_ms=3 * DAY_MS, understaffed_factor=3.0,
                   nps_mix=(0.45, 0.30, 0.25))
    events = list(itertools.islice(generate(before), int((WEEK_START_MS - FIRST_MS) // 1000 * RATE)))
    events += itertools.islice(generate(week), int((WEEK_END_MS - WEEK_START_MS) // 1000 * RATE))
    return events


def instance_of(family: str, partition: int, ts_ms: int) -> str:
    return "worker-0:9400" if partition == 0 or ts_ms >= MOVE_MS else "worker-1:9400"


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("report")
    ref = Reference.compute(simulated_events(), Params(partitions=PARTITIONS))
    tallies = Tallies(ref)
    prometheus = BackfilledPrometheus.build(openmetrics(ref, FIRST_MS, WEEK_END_MS, STEP_MS, instance_of), workdir)
    yield tallies, prometheus
    prometheus.stop()


def cxpulse_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", "report", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def reported(backfilled, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    _, prometheus = backfilled
    out = {}
    for fmt in ("md", "html"):
        directory = tmp_path_factory.mktemp(f"report-{fmt}")
        done = cxpulse_report("--prometheus", prometheus.url, "--week", WEEK.label, "--format", fmt,
                              "--out", str(directory))
        assert done.returncode == 0, done.stderr
        out[fmt] = directory
        out[f"{fmt}_stderr"] = done.stderr
    out["json"] = json.loads((out["md"] / "report.json").read_text())
    return out


# ------------------------------------------------------------ what the week should show
Counts = dict[str, float]  # field -> count (money in major units) for one group and one week


class Tallies:
    """The reference's base windows indexed by field, for quick sums over any span of event time."""

    def __init__(self, ref: Reference) -> None:
        self.components: dict[str, list[tuple[int, dict[str, str], int]]] = defaultdict(list)
        self.samples: dict[str, list[tuple[int, dict[str, str], list[float]]]] = defaultdict(list)
        for (_, _, window, seg, field), value in ref.components.items():
            self.components[field].append((window, dict(seg), value))
        for (_, _, window, seg, field), values in ref.samples.items():
            self.samples[field].append((window, dict(seg), values))


def _keeps(labels: dict[str, str], keep: dict[str, str] | None) -> bool:
    return not keep or all(labels.get(k, v) == v for k, v in keep.items())


def tally(tallies: Tallies, start_ms: int, end_ms: int, keep: dict[str, str] | None = None,
          money_currency: str | None = None) -> Counts:
    """Sum of every catalog counter field over the events of [start, end), in segments matching ``keep``;
    with ``money_currency``, order counters of that currency only (money in its major units)."""
    counts: Counts = defaultdict(float)
    for counter in COUNTERS:
        for window, labels, value in tallies.components[counter.field]:
            if not start_ms <= window < end_ms or not _keeps(labels, keep):
                continue
            if money_currency and labels.get("currency", money_currency) != money_currency:
                continue
            counts[counter.field] += float(major(value, labels["currency"])) if counter.money else value
    for histogram in HISTOGRAMS:
        values = [v for window, labels, found in tallies.samples[histogram.field]
                  if start_ms <= window < end_ms and _keeps(labels, keep) for v in found]
        counts[histogram.field + "_count"] = len(values)
        for le in BUCKETS_S:
            counts[f"{histogram.field}_le_{le}"] = sum(1 for v in values if v <= le)
    return counts


@functools.cache
def query(url: str, expr: str, at_ms: int) -> list[tuple[dict[str, str], float]]:
    status, body = http_get(f"{url}/api/v1/query?query={urllib.parse.quote(expr)}&time={at_ms / 1000}", 10)
    answer = json.loads(body)
    assert status == 200 and answer["status"] == "success", body[:300]
    return [(r["metric"], float(r["value"][1])) for r in answer["data"]["result"]]


def promql_counts(url: str, start_ms: int, end_ms: int, keep: dict[str, str] | None = None,
                  money_currency: str | None = None) -> Counts:
    """The same counts from Prometheus: raw counters summed over series at the week's end minus at its start."""
    counts: Counts = defaultdict(float)

    def matching(result: list[tuple[dict[str, str], float]]) -> float:
        return sum(value for labels, value in result
                   if all(labels.get(k, v) == v for k, v in (keep or {}).items())
                   and (money_currency is None or labels.get("currency", money_currency) == money_currency))

    for counter in COUNTERS:
        by = "storefront, currency" if counter.family == "order" else "storefront"
        expr = f'sum by ({by}) ({counter.name}{{job="cxpulse"}})'
        counts[counter.field] = matching(query(url, expr, end_ms)) - matching(query(url, expr, start_ms))
    for histogram in HISTOGRAMS:
        expr = f'sum by (storefront) ({histogram.name}_count{{job="cxpulse"}})'
        counts[f"{histogram.field}_count"] = matching(query(url, expr, end_ms)) - matching(query(url, expr, start_ms))
        expr = f'sum by (storefront, le) ({histogram.name}_bucket{{job="cxpulse"}})'
        for le in BUCKETS_S:
            def bucket(result: list[tuple[dict[str, str], float]], le: float = le) -> float:
                return matching([(labels, v) for labels, v in result if labels["le"] == str(float(le))])

            counts[f"{histogram.field}_le_{le}"] = bucket(query(url, expr, end_ms)) - bucket(query(url, expr, start_ms))
    return counts


def histogram_quantile(q: float, counts: Counts, field: str) -> float:
    """Prometheus's histogram_quantile: linear within the bucket holding rank q x count."""
    total = counts[f"{field}_count"]
    if total == 0:
        return math.nan
    rank, below, lower = q * total, 0.0, 0.0
    for le in BUCKETS_S:
        cumulative = counts[f"{field}_le_{le}"]
        if cumulative >= rank:
            return lower + (le - lower) * (rank - below) / (cumulative - below)
        below, lower = cumulative, le
    return float(BUCKETS_S[-1])  # in +Inf: the largest finite bound


def kpi_figures(c: Counts, sessions_of_storefront: float | None = None) -> dict[str, tuple[float, float, Any]]:
    """key -> (value, sample size, interval) from one week's counts; written from the brief's formulas."""
    def share(successes: float, n: float) -> tuple[float, float, Any]:
        return (successes / n, n, wilson(successes, n)) if n else (math.nan, n, None)

    def mean(total: float, n: float) -> tuple[float, float, Any]:
        return (total / n if n else math.nan, n, None)

    resolutions = c["resolution_count"]
    out = {
        "conversion": share(c["orders_placed"], c["sessions_started"]),
        "cart_abandonment": share(c["checkouts_started"] - c["orders_placed"], c["checkouts_started"]),
        "refund_return_rate": share(c["refunds"] + c["returns"], c["orders_placed"]),
        "repeat_purchase": share(c["orders_placed"] - c["first_orders"], c["orders_placed"]),
        "ticket_to_order": mean(c["tickets_created"], c["orders_placed"]),
        "first_contact_resolution": share(c["tickets_resolved_one_touch"], resolutions),
        "nps": (100 * (c["nps_promoters"] - c["nps_detractors"]) / c["nps_responses"], c["nps_responses"],
                nps_interval(c["nps_promoters"], c["nps_detractors"], c["nps_responses"])),
        "csat": share(c["csat_satisfied"], c["csat_responses"]),
        "csat_mean": mean(c["csat_score_sum"], c["csat_responses"]),
        "ces": mean(c["ces_score_sum"], c["ces_responses"]),
        "average_order_value": mean(c["revenue_minor"], c["orders_placed"]),
    }
    if sessions_of_storefront is not None:
        out["revenue_per_visitor"] = mean(c["revenue_minor"], sessions_of_storefront)
    for key, field, q in (("first_response_p50", "first_response", 0.5), ("first_response_p90", "first_response", 0.9),
                          ("resolution_p50", "resolution", 0.5), ("resolution_p90", "resolution", 0.9)):
        out[key] = (histogram_quantile(q, c, field), c[f"{field}_count"], None)
    return out


def expected(tallies: Tallies, url: str, labels: dict[str, str], source: str, week_end_ms: int) -> dict[str, tuple]:
    """KPI figures of the week ending at ``week_end_ms`` for a report row's labels, from the events
    (source="tally") or from direct PromQL (source="promql")."""
    start = week_end_ms - 7 * DAY_MS
    count = (lambda **kw: tally(tallies, start, week_end_ms, **kw)) if source == "tally" else (
        lambda **kw: promql_counts(url, start, week_end_ms, **kw))
    if "currency" in labels:
        money = count(keep={"storefront": labels["storefront"]}, money_currency=labels["currency"])
        sessions = count(keep={"storefront": labels["storefront"]})["sessions_started"]
        return kpi_figures(money, sessions)
    return kpi_figures(count())


def change(unit: str, value: float, previous: float) -> float:
    return {"pp": 100 * (value - previous), "pts": value - previous, "%": 100 * (value / previous - 1)}[unit]


# --------------------------------------------------------------------------- the tests
def test_every_headline_figure_equals_promql_and_the_events(backfilled, reported) -> None:
    tallies, prometheus = backfilled
    rows = reported["json"]["kpis"]
    assert {row["key"] for row in rows} == {k.key for k in KPIS}, "a KPI of the catalog is missing from the report"
    cache: dict[tuple, dict[str, tuple]] = {}
    checked = 0
    for row in rows:
        labels = row["labels"]
        for source in ("tally", "promql"):
            for end, value_key, n_key, interval_key in (
                    (WEEK_END_MS, "value", "n", "interval"),
                    (WEEK_END_MS - 7 * DAY_MS, "previous", "n_previous", "interval_previous")):
                key = (tuple(sorted(labels.items())), source, end)
                if key not in cache:
                    cache[key] = expected(tallies, prometheus.url, labels, source, end)
                assert row["key"] in cache[key], f"no formula in this test for the KPI {row['key']}"
                value, n, interval = cache[key][row["key"]]
                where = f"{row['key']} {labels} {value_key} vs {source}"
                assert row[value_key] == pytest.approx(value, rel=REL), where
                assert row[n_key] == pytest.approx(n, rel=REL), where
                if interval is None:
                    assert row[interval_key] is None, where
                else:
                    assert row[interval_key] == pytest.approx(list(interval), rel=REL, abs=1e-12), where
                checked += 1
        assert row["change"] == pytest.approx(change(row["change_unit"], row["value"], row["previous"]), rel=REL)
    money = [row for row in rows if row["labels"]]
    assert {tuple(sorted(r["labels"].items())) for r in money} == {
        (("currency", "EUR"), ("storefront", "north-outfitters")), (("currency", "GBP"), ("storefront", "harbor-tea"))}
    assert checked == 4 * len(rows)


def test_the_simulated_changes_show(reported) -> None:
    """The week was changed on purpose: the report must say so (and the movers must name the app)."""
    rows = {(r["key"], r["labels"].get("currency")): r for r in reported["json"]["kpis"]}
    assert rows["conversion", None]["change"] > 0
    assert rows["first_response_p90", None]["change"] > 25  # percent: understaffed from Thursday
    assert rows["nps", None]["change"] < 0
    conversion_movers = [m for m in reported["json"]["movers"] if m["kpi"] == "conversion"]
    assert conversion_movers[0]["segment"] in ("app", "mobile")


def test_the_markdown_shows_the_figures(reported) -> None:
    text = (reported["md"] / "report.md").read_text()
    assert text.startswith(f"# CX weekly report: {WEEK.label} (16-22 Nov 2026)")
    table = text.split("## Headline KPIs", 1)[1].split("\n\n")[1].splitlines()
    header, cells = table[0], [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    assert header == "| KPI | W47 | 95% interval | W46 | change | sample W47 / W46 |"
    by_name = {row["name"]: row for row in reported["json"]["kpis"]}
    assert [c[0] for c in cells] == [row["name"] for row in reported["json"]["kpis"]]
    for name, now, interval, before, moved, sample in cells:
        row = by_name[name]
        for shown, value in ((now, row["value"]), (before, row["previous"])):
            parsed, half = displayed(shown)
            assert abs(parsed - value) <= half + 1e-12, f"{name}: shows {shown}, the figure is {value}"
        counts = re.fullmatch(r"([\d,]+) / ([\d,]+)(?: [a-z ]+)?", sample)
        assert counts, sample
        assert (int(counts[1].replace(",", "")), int(counts[2].replace(",", ""))) == (row["n"], row["n_previous"])
        number = re.match(r"[+-][\d.]+", moved)[0]
        assert abs(float(number) - row["change"]) <= 0.5 * 10 ** -len(number.partition(".")[2]) + 1e-9, (name, moved)
        assert (interval == "-") == (row["interval"] is None), name
    assert "![Daily KPIs" in text and "(2026-W47-daily.png)" in text and "(2026-W47-movers.png)" in text
    assert "## Initiatives\n\nNo initiatives declared." in text


def displayed(text: str) -> tuple[float, float]:
    """A value as the report prints it -> (number in the KPI's unit, half its last digit)."""
    def half(digits: str) -> float:
        return 0.5 * 10 ** -len(digits.partition(".")[2])

    if m := re.fullmatch(r"([+-]?[\d.]+)%", text):
        return float(m[1]) / 100, half(m[1]) / 100
    if m := re.fullmatch(r"([\d,.]+) [A-Z]{3}", text):
        return float(m[1].replace(",", "")), half(m[1])
    if m := re.fullmatch(r"([\d.]+) (s|min|h|d)", text):
        factor = {"s": 1, "min": 60, "h": 3600, "d": 86400}[m[2]]
        return float(m[1]) * factor, half(m[1]) * factor
    m = re.fullmatch(r"[+-]?[\d.]+", text)
    assert m, f"cannot read the value {text!r}"
    return float(text), half(text)


def test_daily_points_equal_the_events_of_each_day(backfilled, reported) -> None:
    tallies, _ = backfilled
    row = next(r for r in reported["json"]["kpis"] if r["key"] == "conversion")
    for points, first_ms in ((row["daily"], WEEK_START_MS), (row["daily_previous"], WEEK_START_MS - 7 * DAY_MS)):
        for day, point in enumerate(points):
            c = tally(tallies, first_ms + day * DAY_MS, first_ms + (day + 1) * DAY_MS)
            assert point == pytest.approx(c["orders_placed"] / c["sessions_started"], rel=REL), (first_ms, day)


def test_movers_equal_the_events_and_are_ranked_by_weighted_change(backfilled, reported) -> None:
    tallies, _ = backfilled
    movers = [m for m in reported["json"]["movers"] if m["kpi"] == "conversion"]
    assert movers, "no conversion movers"
    totals = {"channel": 0.0, "device": 0.0}
    now_of, before_of = {}, {}
    for dimension in totals:
        for end, into in ((WEEK_END_MS, now_of), (WEEK_END_MS - 7 * DAY_MS, before_of)):
            for field in ("sessions_started", "orders_placed"):
                for window, labels, value in tallies.components[field]:
                    if end - 7 * DAY_MS <= window < end:
                        key = (dimension, labels[dimension], field)
                        into[key] = into.get(key, 0) + value
    for m in movers:
        d, s = m["dimension"], m["segment"]
        assert m["value"] == pytest.approx(now_of[d, s, "orders_placed"] / now_of[d, s, "sessions_started"], rel=REL)
        assert m["previous"] == pytest.approx(before_of[d, s, "orders_placed"] / before_of[d, s, "sessions_started"],
                                              rel=REL)
        assert m["n"] == now_of[d, s, "sessions_started"]
        total = sum(v for (dim, _, f), v in now_of.items() if dim == d and f == "sessions_started")
        assert m["weighted"] == pytest.approx((m["value"] - m["previous"]) * m["n"] / total, rel=REL)
    weights = [abs(m["weighted"]) for m in movers]
    assert weights == sorted(weights, reverse=True)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_charts_are_pngs_and_the_html_embeds_them(reported) -> None:
    charts = reported["json"]["charts"]
    assert set(charts) == {"daily", "movers"}
    page = (reported["html"] / "report.html").read_text()
    for name in charts.values():
        data = (reported["md"] / name).read_bytes()
        width, height = png_size(data)
        assert 800 <= width <= 2000 and 400 <= height <= 2000, (name, width, height)
        assert 20_000 < len(data) < 2_000_000, (name, len(data))
        embedded = base64.b64encode((reported["html"] / name).read_bytes()).decode()
        assert f'src="data:image/png;base64,{embedded}"' in page, f"{name} is not embedded in report.html"
    assert page.count("data:image/png;base64,") == 2
    assert '<img alt="Daily KPIs' in page and "No initiatives declared." in page


def test_progress_is_one_line_per_step(reported) -> None:
    lines = reported["md_stderr"].strip().splitlines()
    assert all(line.startswith("cxpulse report: ") for line in lines), lines
    assert 5 <= len(lines) <= 8 and lines[-1].startswith("cxpulse report: wrote "), lines


def test_one_storefront(backfilled, tmp_path: Path) -> None:
    tallies, prometheus = backfilled
    done = cxpulse_report("--prometheus", prometheus.url, "--week", WEEK.label, "--storefront", "harbor-tea",
                          "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = {r["key"]: r for r in json.loads((tmp_path / "report.json").read_text())["kpis"]}
    c = tally(tallies, WEEK_START_MS, WEEK_END_MS, keep={"storefront": "harbor-tea"})
    assert rows["conversion"]["value"] == pytest.approx(c["orders_placed"] / c["sessions_started"], rel=REL)
    assert rows["revenue_per_visitor"]["labels"] == {"storefront": "harbor-tea", "currency": "GBP"}
    assert "Storefront harbor-tea, compared with 2026-W46" in (tmp_path / "report.md").read_text()


def test_clear_errors(backfilled, tmp_path: Path) -> None:
    _, prometheus = backfilled
    nothing = f"http://127.0.0.1:{free_port()}"
    done = cxpulse_report("--prometheus", nothing, "--week", WEEK.label, "--out", str(tmp_path))
    assert done.returncode == 1 and f"cannot reach Prometheus at {nothing}" in done.stderr, done.stderr

    done = cxpulse_report("--prometheus", prometheus.url, "--week", WEEK.label, "--storefront", "no-such-shop",
                          "--out", str(tmp_path))
    assert done.returncode == 1, done.stderr
    assert "no data for 2026-W47" in done.stderr and "cxpulse_sessions_started_total" in done.stderr
    assert "storefront" in done.stderr and "retention" in done.stderr

    done = cxpulse_report("--prometheus", prometheus.url, "--week", "2026-W60", "--out", str(tmp_path))
    assert done.returncode == 2 and "not an ISO week: write YYYY-Www, e.g. 2026-W47" in done.stderr, done.stderr

    done = cxpulse_report("--prometheus", prometheus.url, "--week", "2099-W01", "--out", str(tmp_path))
    assert done.returncode == 1 and "has not ended yet" in done.stderr, done.stderr
    assert not list(tmp_path.iterdir()), "a failed report wrote files"


def test_the_default_week_is_the_last_complete_one() -> None:
    from datetime import datetime, timezone

    monday = datetime(2026, 11, 23, 0, 0, tzinfo=timezone.utc)
    assert Week.last_complete(monday).label == "2026-W47"
    assert Week.last_complete(monday - timedelta(seconds=1)).label == "2026-W46"
    assert Week.last_complete(datetime(2027, 1, 4, 9, tzinfo=timezone.utc)).label == "2026-W53"
