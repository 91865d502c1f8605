"""The Grafana dashboards: valid against Grafana's model, described, reading only known series, up to date."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.models import dashboard as dm

from streams.mixin import dashboards
from streams.mixin.rules import alerts, catalog_series, recorded_names, series_names

FILES = sorted(dashboards.DASHBOARD_DIR.glob("*.json"))
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
    for mark in doc["annotations"]["list"]:
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
    assert _metric_names('label_replace(vector(0), "alertname", "X", "", "") or storefront:cxpulse_nps:ratio_rate5m'
                         ) == {"storefront:cxpulse_nps:ratio_rate5m"}


def test_alert_panels_name_real_alerts():
    names = {a.name for a in alerts()}
    for dashboard, title, expr in dashboards.panel_queries():
        for match in re.findall(r'alertname=~"([^"]+)"', expr):
            assert set(match.split("|")) <= names, f"{dashboard} / {title}"


def test_every_dashboard_marks_initiative_starts_and_ends():
    for slug, dashboard in dashboards.dashboards().items():
        marks = {a.name: a for a in dashboard.annotations.list_val or []}
        assert set(marks) == {"Initiative starts", "Initiative ends"}, slug
        for name, metric in (("Initiative starts", "cxpulse_initiative_start_timestamp_seconds"),
                             ("Initiative ends", "cxpulse_initiative_end_timestamp_seconds")):
            mark = marks[name]
            assert mark.enable and mark.datasource.uid == "prometheus" and mark.datasource.type_val == "prometheus"
            # the value is the time: seconds -> ms
            assert metric in mark.expr and mark.expr.endswith("* 1000") and mark.use_value_for_time, slug
            assert mark.title_format.startswith("{{initiative}} "), slug


def test_annotation_queries_read_known_series_and_defined_variables():
    known = catalog_series() | recorded_names()
    for path in FILES:
        doc = _load(path)
        defined = {v["name"] for v in doc["templating"]["list"]}
        for mark in doc["annotations"]["list"]:
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
    assert all(mark["expr"].count('initiative=~"$initiative"') == 2 for mark in marks)


def test_every_dashboard_shows_alert_state():
    for dashboard in dashboards.dashboards().values():
        assert any("ALERTS{" in expr for d, _, expr in dashboards.panel_queries() if d == dashboard.title)


def test_prefers_recording_rules_for_kpis():
    # a KPI is read from its recording rule, never recomputed from the counters it divides
    for _, title, expr in dashboards.panel_queries():
        assert "rate(cxpulse_sessions_started_total" not in expr or "device" in expr, title


def test_panel_and_annotation_queries_are_valid_promql(tmp_path: Path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    queries = dashboards.panel_queries() + dashboards.annotation_queries()
    rules = [{"record": f"dashboard:query_{i}:check", "expr": dashboards.substitute(expr)}
             for i, (_, _, expr) in enumerate(queries)]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_substitute_fills_every_variable_form():
    assert dashboards.substitute('x:ratio_rate${window}_offset1w{a=~"$storefront"}[$__rate_interval]') == (
        'x:ratio_rate5m_offset1w{a=~".*"}[1m]')


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


def test_every_share_and_the_nps_is_drawn_with_its_band_and_sample_size():
    from streams.mixin import rules

    drawn = set()
    for path in FILES:
        for panel, _ in _bands(_load(path)):
            exprs = " ".join(t["expr"] for t in panel["targets"])
            for key in rules.INTERVAL_KPIS:
                kpi = rules._kpi(key)
                level = rules.kpi_levels(kpi)[0]
                if all(name in exprs for name in (
                        rules.bound_rule(kpi, level, "${window}", "lower"),
                        rules.bound_rule(kpi, level, "${window}", "upper"),
                        rules.denominator_rule(kpi, level, "${window}"))):
                    drawn.add(key)
    assert drawn == set(rules.INTERVAL_KPIS)


def test_the_overview_draws_last_weeks_band_for_each_alerting_kpi():
    doc = _load(dashboards.DASHBOARD_DIR / "cx-overview.json")
    exprs = [" ".join(t["expr"] for t in panel["targets"]) for panel, _ in _bands(doc)]
    for key in ("conversion", "csat", "nps"):
        assert any(f"storefront:cxpulse_{key}:ratio_rate${{window}}_upper_offset1w" in e for e in exprs), key
