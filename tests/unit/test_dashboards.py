"""The Grafana dashboards: valid against Grafana's model, described, reading only known series, up to date,
every number on a named clock, and the event-time queries right when Prometheus runs them (promtool)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.models import dashboard as dm

from streams.catalog import (COUNTERS, CUSTOMER, HISTOGRAMS, WINDOW_COMPLETE, WINDOW_QUANTILES,
                             WINDOW_STOREFRONT_VISITORS, WINDOW_VISITORS)
from streams.mixin import dashboards, rules
from streams.mixin.rules import alerts, catalog_series, recorded_names, series_names

# Module-scoped fixtures: the whole module runs in one test process (pytest-xdist loadgroup).
pytestmark = pytest.mark.xdist_group("test_dashboards")

FILES = sorted(dashboards.DASHBOARD_DIR.glob("*.json"))
# The dashboards of KPIs on event-time windows (the other three show pipeline, customer and initiative state).
KPI_FILES = [dashboards.DASHBOARD_DIR / f"{slug}.json"
             for slug in ("cx-overview", "revenue-funnel", "support", "voice-of-customer")]
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool",
}


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _panels(doc: dict) -> list[dict]:
    return [p for p in doc["panels"] if p["type"] != "row"]


def test_every_dashboard_is_rendered():
    assert {p.name for p in FILES} == {f"{slug}.json" for slug in dashboards.DASHBOARDS}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_round_trips_through_grafanas_dashboard_model(path: Path):
    # from_json keeps only the keys Grafana's schema knows: a misspelt or unknown key is lost on the way back.
    text = path.read_text(encoding="utf-8")
    assert dashboards.dashboard_json(dashboards.load(json.loads(text))) == text


# The options Grafana's Prometheus datasource reads from an annotation query besides the fields every
# annotation has (public/app/plugins/datasource/prometheus/annotations.ts: processEvents); the SDK for
# Grafana 11.6 does not model them, so `dashboards.PrometheusAnnotation` adds these and nothing else.
PROMETHEUS_ANNOTATION_OPTIONS = {"titleFormat": str, "textFormat": str, "tagKeys": str, "useValueForTime": bool}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_only_the_prometheus_annotation_options_are_outside_the_sdk_model(path: Path):
    doc = _load(path)
    plain = json.loads(dashboards.dashboard_json(dm.Dashboard.from_json(doc)))
    prometheus = [mark for mark in doc["annotations"]["list"] if mark["datasource"]["type"] == "prometheus"]
    assert prometheus, path.stem
    for mark in prometheus:
        for key, kind in PROMETHEUS_ANNOTATION_OPTIONS.items():
            assert isinstance(mark.pop(key), kind), (mark["name"], key)
    assert plain == doc


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_panels_have_the_required_structure(path: Path):
    doc = _load(path)
    assert doc["uid"] == path.stem and doc["title"] and doc["description"].startswith(dashboards.GENERATED)
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in _panels(doc):
        where = f"{path.stem}: {panel.get('title')}"
        assert panel["type"] and panel["title"], where
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, where
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys(), where
        assert panel["targets"], where
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], where
            assert target["datasource"]["uid"] == "prometheus", where


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_panels_do_not_overlap(path: Path):
    cells: dict[tuple[int, int], str] = {}
    for panel in _load(path)["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[x, y]}"
                cells[x, y] = panel["title"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_panel_says_what_its_number_means(path: Path):
    for panel in _panels(_load(path)):
        assert len(panel.get("description", "").strip()) >= 40, panel["title"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_queries_use_only_the_dashboards_variables(path: Path):
    doc = _load(path)
    defined = {v["name"] for v in doc["templating"]["list"]} | {"__rate_interval", "__interval", "__range"}
    for panel in _panels(doc):
        for target in panel["targets"]:
            used = {a or b for a, b in re.findall(r"\$\{(\w+)\}|\$(\w+)", target["expr"])}
            assert used <= defined, f"{panel['title']}: {used - defined}"
            assert used <= dashboards.TEST_VARIABLES.keys(), f"{panel['title']}: no test value for {used}"


def _metric_names(expr: str) -> set[str]:
    """Every series name a PromQL expression selects (cxpulse or not)."""
    text = re.sub(r'"[^"]*"', '""', expr)  # string literals: regexes, label_replace arguments
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b\d+(ms|[smhdwy])\b", " ", text)  # offsets
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        rest = text[match.end():].lstrip()
        word = match.group()
        if rest.startswith("(") or word in PROMQL_WORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def test_queries_read_only_catalog_series_recorded_rules_or_prometheus_series():
    known = catalog_series() | recorded_names()
    for dashboard, title, expr in dashboards.panel_queries():
        query = dashboards.substitute(expr)
        unknown = series_names(query) - known
        assert not unknown, f"{dashboard} / {title}: {unknown}"
        unknown = _metric_names(query) - known - dashboards.PROMETHEUS_SERIES
        assert not unknown, f"{dashboard} / {title}: {unknown}"


def test_the_name_parser_sees_what_it_must():
    assert _metric_names('sum by (storefront) (rate(cxpulse_orders_placed_total{x="a b"}[5m])) / up') == {
        "cxpulse_orders_placed_total", "up"}
    assert _metric_names('label_replace(vector(0), "alertname", "X", "", "") or storefront:cxpulse_nps:ratio_window5m'
                         ) == {"storefront:cxpulse_nps:ratio_window5m"}
    assert _metric_names("sum_over_time(cxpulse_window_complete[59s] offset 1w) / x offset 210s") == {
        "cxpulse_window_complete", "x"}


def test_alert_panels_name_real_alerts():
    names = {a.name for a in alerts()}
    for dashboard, title, expr in dashboards.panel_queries():
        for match in re.findall(r'alertname=~"([^"]+)"', expr):
            assert set(match.split("|")) <= names, f"{dashboard} / {title}"


def test_every_dashboard_marks_initiative_starts_and_ends():
    for slug, dashboard in dashboards.dashboards().items():
        marks = {a.name: a for a in dashboard.annotations.list_val or [] if a.datasource.type_val == "prometheus"}
        assert set(marks) == {"Initiative starts", "Initiative ends"}, slug
        for name, metric in (("Initiative starts", "cxpulse_initiative_start_timestamp_seconds"),
                             ("Initiative ends", "cxpulse_initiative_end_timestamp_seconds")):
            mark = marks[name]
            assert mark.enable and mark.datasource.uid == "prometheus"
            # the value is the time: seconds -> ms
            assert metric in mark.expr and mark.expr.endswith("* 1000") and mark.use_value_for_time, slug
            assert mark.title_format.startswith("{{initiative}} "), slug


def test_every_dashboard_marks_deploys_and_incidents():
    # Grafana's own annotations, found by tag across the organisation (docs/dashboards.md)
    for path in FILES:
        marks = {m["name"]: m for m in _load(path)["annotations"]["list"]}
        for name, tag in (("Deploys", "deploy"), ("Incidents", "incident")):
            mark = marks[name]
            assert mark["datasource"] == {"type": "grafana", "uid": "-- Grafana --"}, (path.stem, name)
            assert mark["enable"] and not mark["hide"], (path.stem, name)
            assert mark["target"]["type"] == "tags" and mark["target"]["tags"] == [tag], (path.stem, name)
            # every annotation carrying the tag (it may have more), not those carrying any tag
            assert mark["target"]["matchAny"] is False and mark["target"]["limit"] > 0, (path.stem, name)


def test_annotation_queries_read_known_series_and_defined_variables():
    known = catalog_series() | recorded_names()
    for path in FILES:
        doc = _load(path)
        defined = {v["name"] for v in doc["templating"]["list"]}
        for mark in doc["annotations"]["list"]:
            if mark["datasource"]["type"] != "prometheus":
                continue
            query = dashboards.substitute(mark["expr"])
            assert not _metric_names(query) - known, (path.stem, mark["name"])
            used = {a or b for a, b in re.findall(r"\$\{(\w+)\}|\$(\w+)", mark["expr"])}
            assert used <= defined, (path.stem, mark["name"], used)
            # the labels the title and text name are the ones the query keeps
            kept = set(re.search(r"max by \(([^)]*)\)", mark["expr"]).group(1).replace(" ", "").split(","))
            shown = set(re.findall(r"\{\{(\w+)\}\}", mark["titleFormat"] + mark["textFormat"]))
            assert shown <= kept and mark["tagKeys"] in kept, (path.stem, mark["name"])


def test_the_initiatives_dashboard_marks_only_the_selected_initiatives():
    marks = _load(dashboards.DASHBOARD_DIR / "cx-initiatives.json")["annotations"]["list"]
    assert all(mark["expr"].count('initiative=~"$initiative"') == 2 for mark in marks if "expr" in mark)


def test_every_dashboard_shows_alert_state():
    for dashboard in dashboards.dashboards().values():
        assert any("ALERTS{" in expr for d, _, expr in dashboards.panel_queries() if d == dashboard.title)


def test_kpis_never_come_from_arrival_time_counters():
    # A KPI is counted by event time: from the merge stage's windows or the rules over them. The
    # workers' counters (rate(), arrival time) only feed the labelled "live" throughput panels,
    # through the arrival recording rules.
    counters = {c.name for c in COUNTERS} | {h.name + s for h in HISTOGRAMS for s in ("_bucket", "_count", "_sum")}
    for dashboard, title, expr in dashboards.panel_queries():
        assert not series_names(expr) & counters, f"{dashboard} / {title}"


def test_tiles_read_the_recording_rules_the_alerts_read():
    # a tile of the last complete window shows the number an alert fires on, never a recomputation
    for path in KPI_FILES:
        for panel in _panels(_load(path)):
            if panel["type"] != "stat":
                continue
            for target in panel["targets"]:
                assert series_names(dashboards.substitute(target["expr"])) <= recorded_names(), panel["title"]


def test_panel_and_annotation_queries_are_valid_promql(tmp_path: Path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    queries = dashboards.panel_queries() + dashboards.annotation_queries()
    rules = [{"record": f"dashboard:query_{i}:check", "expr": dashboards.substitute(expr)}
             for i, (_, _, expr) in enumerate(queries)]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_substitute_fills_every_variable_form():
    assert dashboards.substitute('x:ratio_window${window}_offset1w{a=~"$storefront"}[$__rate_interval]') == (
        'x:ratio_window5m_offset1w{a=~".*"}[1m]')


def test_regeneration_changes_nothing():
    for path, text in dashboards.outputs().items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: run `cxpulse render`"


# ------------------------------------------------------------------ intervals
def _bands(doc: dict) -> list[tuple[dict, dict | None]]:
    """(panel, the row above it) for every panel that fills one series down to another."""
    out, row = [], None
    for panel in doc["panels"]:
        if panel["type"] == "row":
            row = panel
            continue
        fills = [p for o in panel.get("fieldConfig", {}).get("overrides", []) for p in o["properties"]
                 if p["id"] == "custom.fillBelowTo"]
        if fills:
            out.append((panel, row))
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_bands_fill_between_series_of_their_own_panel_one_storefront_at_a_time(path: Path):
    for panel, row in _bands(_load(path)):
        legends = {t["legendFormat"] for t in panel["targets"]}
        for override in panel["fieldConfig"]["overrides"]:
            fill = [p["value"] for p in override["properties"] if p["id"] == "custom.fillBelowTo"]
            if fill:
                assert override["matcher"] == {"id": "byName", "options": override["matcher"]["options"]}
                assert {override["matcher"]["options"], *fill} <= legends, panel["title"]
        # fillBelowTo pairs series by a fixed name: one storefront (or initiative) per panel, so the row repeats
        assert row is not None and row.get("repeat") in ("storefront", "initiative"), panel["title"]
        assert all(f'=~"${row["repeat"]}"' in t["expr"] for t in panel["targets"]), panel["title"]
        assert all("{{" not in legend for legend in legends), panel["title"]


def _band_exprs(doc: dict) -> list[set[str]]:
    return [{t["expr"] for t in panel["targets"]} for panel, _ in _bands(doc)]


def test_every_share_and_the_nps_is_drawn_with_its_band_and_sample_size():
    drawn = set()
    for path in FILES:
        for exprs in _band_exprs(_load(path)):
            for key in rules.INTERVAL_KPIS:
                band, n = dashboards.window_band(key, {"storefront": "$storefront"})
                if {band.value[0], band.lower[0], band.upper[0], n} <= exprs:
                    drawn.add(key)
    assert drawn == set(rules.INTERVAL_KPIS)


def test_the_overview_draws_last_weeks_band_for_each_alerting_kpi():
    exprs = _band_exprs(_load(dashboards.DASHBOARD_DIR / "cx-overview.json"))
    for key in ("conversion", "csat", "nps"):
        last_week = dashboards.window_band(key, {"storefront": "$storefront"}, offset="1w")[0]
        assert any({last_week.value[0], last_week.lower[0], last_week.upper[0]} <= e for e in exprs), key


# ------------------------------------------------------------------ clocks, windows, tiles
CLOCK = re.compile(r"\bby (event|arrival) time\b", re.IGNORECASE)
W = "${window}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_panel_says_which_clock_it_counts_by_and_what_the_grace_period_costs(path: Path):
    for panel in _panels(_load(path)):
        assert CLOCK.search(panel["description"]), (path.stem, panel["title"])
        assert "grace period" in panel["description"], (path.stem, panel["title"])


# The series the merge stage writes by remote write, one sample per window at its end.
WINDOW_SERIES = ({c.window_name for c in COUNTERS} | {WINDOW_COMPLETE, WINDOW_VISITORS, WINDOW_STOREFRONT_VISITORS}
                 | {name + suffix for h in HISTOGRAMS
                    for name in (h.window_name, h.window_storefront_name, h.window_reason_name)
                    for suffix in ("", "_count", "_sum")})


def _raw_window_exprs(panel: dict) -> list[str]:
    """The panel's queries that read the merge stage's window series themselves (not rules)."""
    return [t["expr"] for t in panel["targets"] if series_names(t["expr"]) & WINDOW_SERIES]


def test_event_time_panels_step_by_whole_windows_at_their_ends():
    seen = 0
    for path in FILES:
        for panel in _panels(_load(path)):
            raw = _raw_window_exprs(panel)
            if not raw:
                continue
            seen += 1
            where = (path.stem, panel["title"])
            assert "By event time" in panel["description"], where
            # a graph: one point per whole window; the funnel's bars: the newest of the trailing
            # windows that end every minute
            assert panel["interval"] == (W if panel["type"] == "timeseries" else "1m"), where
            assert panel["maxDataPoints"] == dashboards.MAX_POINTS, where
            for expr in raw:
                selectors = re.findall(r'cxpulse_window_\w+\{(?:[^{}"]|"[^"]*")*\}\[[^\]]*\]', expr)
                assert selectors and all(s.endswith(f"[{dashboards.LOOKBACK}]") for s in selectors), where
                assert all('storefront=~"$storefront"' in s for s in selectors), where
    assert seen >= 40


def test_every_kpi_dashboard_offers_the_same_windows_with_the_same_default():
    for path in FILES:
        variables = {v["name"]: v for v in _load(path)["templating"]["list"]}
        if path not in KPI_FILES and "window" not in variables:
            continue
        window = variables["window"]
        assert [o["value"] for o in window["options"]] == list(rules.WINDOWS), path.stem
        assert window["current"]["value"] == dashboards.WINDOW_DEFAULT, path.stem
        assert [o["value"] for o in window["options"] if o["selected"]] == [dashboards.WINDOW_DEFAULT], path.stem
    # the default is the window the KPI alerts judge, so a tile shows what an alert sees
    assert "ratio_window" + dashboards.WINDOW_DEFAULT in next(a.expr for a in alerts() if a.name == "CxpulseNpsDrop")


_KPI_RULE = re.compile(r"(\w+):cxpulse_(\w+):(?:ratio|quantile)_window\$\{window\}(?!_)")


def _tile_kpis(panel: dict) -> set[tuple[str, str]]:
    """(level, KPI key) of the KPI rules a tile reads (not their samples, bounds or baselines)."""
    keys = {k.key for k in rules.KPIS}
    return {(lvl, key) for t in panel["targets"] for lvl, key in _KPI_RULE.findall(t["expr"]) if key in keys}


def _sample_rule(key: str, level: str) -> str:
    kpi = rules._kpi(key)
    if kpi.shape == "quantile":
        return rules.rule_name(level, rules.base(kpi.histogram + "_count"), f"window{W}")
    return rules.denominator_rule(kpi, level, W)


HEADLINE_KPIS = ("conversion", "average_order_value", "revenue_per_visitor", "cart_abandonment", "refund_return_rate",
                 "first_response_p50", "first_response_p90", "resolution_p50", "resolution_p90",
                 "first_contact_resolution", "ticket_to_order", "nps", "csat", "ces",
                 "nps_response_rate", "csat_response_rate", "ces_response_rate")


def test_every_headline_kpi_has_a_tile_of_the_last_complete_window_with_its_sample_size():
    shown = set()
    for path in KPI_FILES:
        stats = [p for p in _panels(_load(path)) if p["type"] == "stat"]
        everything = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in stats}
        for panel in stats:
            if not panel["title"].endswith("· last complete $window"):
                continue
            assert "last complete $window window" in panel["description"] and " ago" in panel["description"]
            for level, key in _tile_kpis(panel):
                # the sample n beside the KPI, or in the overview's own sample tile
                name = panel["title"].removesuffix("· last complete $window")
                sample = everything[panel["title"]] + everything.get(f"{name}· sample n", "")
                assert _sample_rule(key, level) in sample, (path.stem, panel["title"])
                shown.add(key)
    assert set(HEADLINE_KPIS) <= shown


def test_change_tiles_and_the_csat_fcr_and_aov_tiles_are_coloured():
    coloured = set()
    for path in KPI_FILES:
        for panel in _panels(_load(path)):
            if panel["type"] != "stat":
                continue
            keys = {key for _, key in _tile_kpis(panel)}
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            colours = {s["color"] for s in steps}
            if panel["title"].endswith("· vs last week"):
                # every change is coloured at its alert's threshold
                assert {"red", "green"} <= colours, (path.stem, panel["title"])
                if "average_order_value" in keys:
                    assert -rules.RPV_DROP in [s["value"] for s in steps], panel["title"]
                    coloured.add("average_order_value")
            elif keys & {"csat", "first_contact_resolution"} and panel["title"].endswith("last complete $window"):
                assert {"red", "yellow", "green"} <= colours and len(steps) == 3, (path.stem, panel["title"])
                coloured |= keys & {"csat", "first_contact_resolution"}
    assert coloured == {"csat", "first_contact_resolution", "average_order_value"}


# Series in money: the money counters and their windows, the money KPIs (not their samples),
# customer LTV, initiative revenue and profit (the arm bands and the uplift keep a plain unit:
# a band pairs series by fixed names, and the uplift's unit follows the initiative's KPI).
MONEY = re.compile(
    r"cxpulse_(window_)?(order_revenue|refund_amount|return_amount)\b|"
    r":cxpulse_(average_order_value|revenue_per_visitor):ratio|"
    r":cxpulse_customer_(nps_|csat_)?revenue_per_customer:|:cxpulse_customer_post_support_revenue:|"
    r"cxpulse_initiative_incremental_(revenue|profit):estimate|cxpulse_initiative_investment\b")


def _display_name(legend: str, currency: str) -> str:
    return re.sub(r"\{\{(\w+)\}\}", lambda m: currency if m.group(1) == "currency" else "x", legend)


def _unit_of(panel: dict, name: str) -> str:
    """The unit Grafana gives a series of that display name: the last matching override wins."""
    unit = panel["fieldConfig"]["defaults"].get("unit", "")
    for override in panel["fieldConfig"]["overrides"]:
        matcher = override["matcher"]
        if (matcher["id"] == "byRegexp" and re.fullmatch(matcher["options"], name)) or (
                matcher["id"] == "byName" and matcher["options"] == name):
            unit = next((p["value"] for p in override["properties"] if p["id"] == "unit"), unit)
    return unit


NOT_MONEY = {("cx-customers", "Promoter / detractor LTV, 90 days"),  # LTV / LTV: a multiple, "x"
             ("cx-customers", "Satisfied / unsatisfied LTV, 90 days")}


def test_money_panels_give_each_currency_its_unit():
    money_panels = set()
    for path in FILES:
        for panel in _panels(_load(path)):
            if panel["type"] == "table" or (path.stem, panel["title"]) in NOT_MONEY:
                continue  # a table's currency is a column beside the amount
            for target in panel["targets"]:
                # a sample size ("n ...") reads the money KPI only to count the same segments
                money = bool(MONEY.search(target["expr"])) and not target["legendFormat"].startswith("n ")
                for code, unit in dashboards.CURRENCY_UNITS.items():
                    name = _display_name(target["legendFormat"], code)
                    if money:
                        assert target["legendFormat"].endswith(dashboards.CURRENCY_LEGEND), (path.stem, panel["title"])
                        assert _unit_of(panel, name) == unit, (path.stem, panel["title"], name)
                        money_panels.add((path.stem, panel["title"]))
                    else:  # a count beside money (orders, sessions) keeps its own unit
                        assert not _unit_of(panel, name).startswith("currency"), (path.stem, panel["title"], name)
    assert {"cx-overview", "revenue-funnel", "cx-customers", "cx-initiatives"} == {slug for slug, _ in money_panels}
    assert len(money_panels) >= 12


# ------------------------------------------------------------------ the queries in Prometheus (promtool)
@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is installed by ./dev setup (Debian package prometheus)"
    return path


def _promtool_test(promtool: str, tmp_path: Path, test: dict, rule_files: list[str] | None = None,
                   extra_rules: list[dict] | None = None) -> None:
    files = list(rule_files or [])
    if extra_rules:
        (tmp_path / "dashboard.rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": extra_rules}]}))
        files.append("dashboard.rules.yml")
    doc = {"rule_files": files, "evaluation_interval": "1m", "tests": [test]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(doc, sort_keys=False, width=1_000_000))
    result = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True,
                            check=False, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    return {"series": name + "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}", "values": values}


def _query(dashboard: str, title: str, ref: str = "A", **variables: str) -> str:
    doc = _load(dashboards.DASHBOARD_DIR / f"{dashboard}.json")
    panel = next(p for p in _panels(doc) if p["title"] == title)
    expr = next(t["expr"] for t in panel["targets"] if t["refId"] == ref)
    return dashboards.substitute(expr, {**dashboards.TEST_VARIABLES, **variables})


def test_a_graph_point_is_exactly_the_window_ending_there(promtool: str, tmp_path: Path):
    # Grafana puts a graph's points on multiples of its step: minute boundaries, where the merge
    # stage stamps each window. The orders of the window ending at minute m are m, so a point that
    # also summed the window a minute earlier (a `[1m]` range on Prometheus 2.x) reads 0.095, not 0.1.
    # At 12m the order family's window is not complete yet (nothing written): no point, not a partial one.
    sessions = {"storefront": "a", "channel": "web", "device": "app", "window": "5m"}
    complete = {"storefront": "a", "window": "5m"}
    inputs = [_series("cxpulse_window_sessions_started", sessions, "100x20"),
              _series("cxpulse_window_orders_placed", {**sessions, "currency": "EUR"}, "0+1x11 _ 13+1x7"),
              _series("cxpulse_window_complete", {**complete, "family": "session"}, "1x20"),
              _series("cxpulse_window_complete", {**complete, "family": "order"}, "1x11 _ 1x7")]
    cvr = _query("revenue-funnel", "CVR by channel")
    first_step = _query("revenue-funnel", "Funnel per $window window")  # sessions, gated on both families
    a_web = '{storefront="a", channel="web"}'
    _promtool_test(promtool, tmp_path, {"interval": "1m", "input_series": inputs, "promql_expr_test": [
        {"expr": cvr, "eval_time": "10m", "exp_samples": [{"labels": a_web, "value": 0.1}]},
        {"expr": cvr, "eval_time": "13m", "exp_samples": [{"labels": a_web, "value": 0.13}]},
        {"expr": cvr, "eval_time": "12m", "exp_samples": []},
        {"expr": first_step, "eval_time": "10m", "exp_samples": [{"labels": "{}", "value": 100}]},
        {"expr": first_step, "eval_time": "12m", "exp_samples": []},
    ]})


# Two storefronts' windows, the same every minute, as the merge stage writes them. Storefront b
# has 4x the sessions and 2x the orders of a; values are powers of two so sums are exact.
VOLUME = {"sessions_started": 1024, "product_views": 3072, "carts_added": 512, "checkouts_started": 128,
          "sessions_viewed": 512, "sessions_carted": 256, "sessions_checked_out": 128,
          "orders_placed": 32, "order_revenue": 2048, "orders_first": 16, "refunds": 2, "refund_amount": 64,
          "returns": 2, "return_amount": 32, "tickets_created": 16, "tickets_resolved_one_touch": 8,
          "tickets_reopened": 1, "tickets_resolved_unmatched": 1, "nps_responses": 64, "nps_promoters": 32,
          "nps_detractors": 8, "nps_score_points": 512, "csat_responses": 32, "csat_satisfied": 24,
          "csat_score_points": 128, "ces_responses": 16, "ces_score_points": 48, "nps_surveys_sent": 256,
          "csat_surveys_sent": 64, "ces_surveys_sent": 64}
SEGMENT = {"channel": "web", "device": "app", "currency": "EUR", "support_channel": "email", "reason": "shipping"}


def _two_storefronts(minutes: int = 20) -> list[dict[str, str]]:
    out = []
    for window in rules.WINDOWS:
        for storefront, scale, orders in (("a", 1, 1), ("b", 4, 2)):
            def labels(names: tuple[str, ...]) -> dict[str, str]:
                return {"storefront": storefront, **{n: SEGMENT[n] for n in names if n != "storefront"},
                        "window": window}

            for counter in COUNTERS:
                key = counter.window_name.removeprefix("cxpulse_window_")
                value = VOLUME[key] * (orders if key == "orders_placed" else scale)
                out.append(_series(counter.window_name, labels(counter.labels), f"{value}x{minutes}"))
            for hist in HISTOGRAMS:
                for name, names in ((hist.window_name, hist.window_labels),
                                    (hist.window_storefront_name, ("storefront",)),
                                    (hist.window_reason_name, ("storefront", "reason"))):
                    for q in WINDOW_QUANTILES:  # a's p90 is 600 s, b's 1200 s
                        seconds = (60 if q == 0.5 else 600) * orders
                        out.append(_series(name, {**labels(names), "quantile": repr(q)}, f"{seconds}x{minutes}"))
                    out.append(_series(name + "_count", labels(names), f"{8 * scale}x{minutes}"))
                    out.append(_series(name + "_sum", labels(names), f"{800 * scale}x{minutes}"))
            for family in ("session", "order", "ticket", "survey"):
                out.append(_series(WINDOW_COMPLETE, {"storefront": storefront, "family": family, "window": window},
                                   f"1x{minutes}"))
    return out


CUSTOMER_LABELS = {"cohort": ("2026-W40",), "currency": ("EUR",), "horizon": ("30d", "90d"),
                   "nps_category": ("promoter", "passive", "detractor"), "purchases": ("1", "2"),
                   "csat_band": ("satisfied", "neutral", "unsatisfied"), "period": ("30d",),
                   "period_start": ("2026-10-05",), "channel": ("web",), "device": ("mobile",),
                   "day": ("2026-10-05",)}


def _customer_gauges(minutes: int = 20) -> list[dict[str, str]]:
    """The customer stage's gauges for the same two storefronts, every label value combination."""
    out = []
    for name, labels, _ in CUSTOMER.values():
        combos: list[dict[str, str]] = [{}]
        for label in labels:
            combos = [{**c, label: v} for c in combos for v in CUSTOMER_LABELS[label]]
        for storefront, scale in (("a", 1), ("b", 4)):
            # a fourth of the customers repeat, convert or are retained; revenue is any positive amount
            value = (16 if any(word in name for word in ("repeat", "converted", "revenue", "retained", "abandoned"))
                     else 64) * scale
            out += [_series(name, {"storefront": storefront, **combo}, f"{value}x{minutes}") for combo in combos]
    return out


def test_tiles_pool_the_selected_storefronts_into_one_number(promtool: str, tmp_path: Path):
    # The real recording rules over two storefronts' windows; every tile of a KPI dashboard with
    # storefront "All" must return one number (one per currency: here only EUR). A fresh TSDB has
    # no week of history, so the "vs last week" tiles read this week's rules in its place.
    checks = []
    for path in [*KPI_FILES, dashboards.DASHBOARD_DIR / "cx-customers.json"]:
        for panel in _panels(_load(path)):
            if panel["type"] != "stat":
                continue
            for target in panel["targets"]:
                for window in rules.WINDOWS:
                    expr = dashboards.substitute(target["expr"], {**dashboards.TEST_VARIABLES, "window": window})
                    checks.append(expr.replace("_offset1w", ""))
    assert len(checks) > 80
    alerts_ = [{"alert": f"OneNumber{i}", "expr": f"count(\n{expr}\n) == 1"} for i, expr in enumerate(checks)]
    cvr = _query("cx-overview", "CVR · last complete $window", window="1h")
    cvr_n = _query("cx-overview", "CVR · sample n", window="1h")
    rpv = _query("revenue-funnel", "RPV in $currency · last complete $window", window="5m")
    aov = _query("revenue-funnel", "AOV in $currency · last complete $window", window="5m")
    frt = _query("support", "FRT p90 · last complete $window", window="1h")
    repeat = _query("cx-customers", "Repeat purchase rate")
    csat_rate = _query("voice-of-customer", "CSAT response rate · last complete $window", window="1h")
    csat_sent = _query("voice-of-customer", "CSAT response rate · last complete $window", "B", window="1h")
    _promtool_test(promtool, tmp_path, {
        "interval": "1m", "input_series": _two_storefronts() + _customer_gauges(),
        "alert_rule_test": [{"eval_time": "12m", "alertname": a["alert"], "exp_alerts": [{"exp_labels": {}}]}
                            for a in alerts_],
        "promql_expr_test": [
            # (32 + 64) orders / (1024 + 4096) sessions, not the mean of 3.125% and 1.5625%
            {"expr": cvr, "eval_time": "12m", "exp_samples": [{"labels": "{}", "value": 96 / 5120}]},
            {"expr": cvr_n, "eval_time": "12m", "exp_samples": [{"labels": "{}", "value": 5120}]},
            {"expr": rpv, "eval_time": "12m", "exp_samples": [{"labels": '{currency="EUR"}', "value": 10240 / 5120}]},
            {"expr": aov, "eval_time": "12m", "exp_samples": [{"labels": '{currency="EUR"}', "value": 10240 / 96}]},
            {"expr": frt, "eval_time": "12m", "exp_samples": [{"labels": "{}", "value": 1200}]},  # the slowest
            # (16 + 64) repeat customers / (64 + 256) customers
            {"expr": repeat, "eval_time": "12m", "exp_samples": [{"labels": "{}", "value": 80 / 320}]},
            # (32 + 128) CSAT answers / (64 + 256) CSAT surveys sent, with those surveys as n
            {"expr": csat_rate, "eval_time": "12m", "exp_samples": [{"labels": "{}", "value": 160 / 320}]},
            {"expr": csat_sent, "eval_time": "12m", "exp_samples": [{"labels": "{}", "value": 320}]},
        ]}, rule_files=[str(rules.RULES_PATH)], extra_rules=alerts_)


def test_window_bands_are_the_recorded_intervals(promtool: str, tmp_path: Path):
    # A graph's band per window is the interval the drop alerts compare: the same formula over the
    # same window. With windows equal every minute, the recorded bound (window ending DELAY ago)
    # and the graph's (window ending at the point) must agree for both storefronts.
    tests = []
    for key in rules.INTERVAL_KPIS:
        kpi = rules._kpi(key)
        band, n = dashboards.window_band(key, {"storefront": ".*"})
        for (expr, _), side in ((band.lower, "lower"), (band.upper, "upper")):
            recorded = rules.bound_rule(kpi, ("storefront",), "1h", side)
            graph = dashboards.substitute(expr, {**dashboards.TEST_VARIABLES, "window": "1h"})
            tests.append({"expr": f"count(abs(\n{graph}\n- on (storefront) {recorded}\n) < 1e-9)", "eval_time": "12m",
                          "exp_samples": [{"labels": "{}", "value": 2}]})
        sample = dashboards.substitute(n, {**dashboards.TEST_VARIABLES, "window": "1h"})
        recorded_n = rules.denominator_rule(kpi, ("storefront",), "1h")
        tests.append({"expr": f"count(\n{sample}\n== on (storefront) {recorded_n}\n)", "eval_time": "12m",
                      "exp_samples": [{"labels": "{}", "value": 2}]})
    _promtool_test(promtool, tmp_path, {"interval": "1m", "input_series": _two_storefronts(),
                                        "promql_expr_test": tests}, rule_files=[str(rules.RULES_PATH)])


@pytest.mark.parametrize("label, noun, summary", [("reason", "reason", "reason"),
                                                  ("product_category", "product category", "category")])
def test_support_shows_every_ticket_kpi_by_reason_and_by_product_category_with_its_sample_size(label, noun, summary):
    doc = _load(dashboards.DASHBOARD_DIR / "support.json")
    by_title = {panel["title"]: panel for panel in _panels(doc)}
    # the tickets: per reason, the segment's own counter; per category, its breakdown series (rule 17)
    created = "cxpulse_window_tickets_created" if label == "reason" else "cxpulse_window_category_tickets_created"
    variable = next(v for v in doc["templating"]["list"] if v["name"] == label)
    values_of = "cxpulse_tickets_created_total" if label == "reason" else created
    assert values_of in json.dumps(variable["query"]), variable["query"]
    one_touch = created.replace("tickets_created", "tickets_resolved_one_touch")
    wanted = {
        f"Tickets created per $window window by {noun}": [created],
        f"Ticket-to-order rate by {noun}": [created, "cxpulse_window_orders_placed"],
        f"First-response time p90 by {noun}": [f"cxpulse_window_{summary}_ticket_first_response_seconds{{"],
        f"Resolution time p90 by {noun}": [f"cxpulse_window_{summary}_ticket_resolution_seconds{{"],
        f"FCR by {noun}": [one_touch, f"cxpulse_window_{summary}_ticket_resolution_seconds_count"],
        f"Sample size by {noun}: tickets, first responses and resolutions per $window window": [
            created, f"cxpulse_window_{summary}_ticket_first_response_seconds_count",
            f"cxpulse_window_{summary}_ticket_resolution_seconds_count"],
    }
    for title, series in wanted.items():
        panel = by_title[title]
        exprs = " ".join(target["expr"] for target in panel["targets"])
        assert f"by (storefront, {label})" in exprs, title
        assert f'{label}=~"${label}"' in exprs, title
        for name in series:
            assert name in exprs, (title, name)
        assert "event time" in panel["description"], title

