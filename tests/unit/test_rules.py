"""The rules file: only known series, every alert documented and annotated."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from streams.catalog import COUNTERS
from streams.mixin.rules import (LINKS, RULES_PATH, Links, alerts, catalog_series, recorded_names, rules_yaml,
                                 series_names)

ROOT = Path(__file__).resolve().parents[2]


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES_PATH.read_text())["groups"] for r in g["rules"]]


def test_rules_read_only_catalog_series_or_recording_rules():
    known = catalog_series() | recorded_names()
    for rule in _rules():
        unknown = series_names(rule["expr"]) - known
        assert not unknown, f"{rule.get('record') or rule.get('alert')}: {unknown}"


def test_recording_rule_names_follow_level_metric_operation():
    for name in recorded_names():
        level, metric, operation = name.split(":")
        assert re.fullmatch(r"[a-z_]+", level) and metric.startswith("cxpulse_") and operation, name


def test_counters_are_always_summed():
    # one series per partition per worker: a bare rate() of a counter would not add up
    for rule in _rules():
        for match in re.finditer(r"(rate|increase)\((cxpulse_\w+)", rule["expr"]):
            before = rule["expr"][: match.start()].rstrip()
            assert before.endswith("(") and "sum by (" in before[-120:], (rule.get("record") or rule.get("alert"))


def test_every_alert_is_annotated_and_has_a_runbook_section():
    doc = (ROOT / "docs" / "alerts.md").read_text()
    anchors = {re.sub(r"[^a-z0-9]", "", h.lower()) for h in re.findall(r"^## (.+)$", doc, re.M)}
    for rule in (r for r in _rules() if "alert" in r):
        name = rule["alert"]
        assert re.fullmatch(r"Cxpulse[A-Z][A-Za-z]+", name)
        assert rule["labels"]["severity"] in ("critical", "warning")
        ann = rule["annotations"]
        assert ann["summary"] and "$value" in ann["summary"] + ann["description"] or name in (
            "CxpulseEventsSilent", "CxpulseWorkerDown", "CxpulseNoWorkerReady", "CxpulseBrokerUnreachable")
        assert ann["runbook_url"] == f"{LINKS.runbook_base}#{name.lower()}"
        assert name.lower() in anchors, f"docs/alerts.md has no section {name}"


def _is_absolute(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and "." in parts.netloc


def test_rendered_alert_links_are_absolute_and_open_a_shipped_dashboard():
    # Alertmanager, PagerDuty and Slack show annotations as they are: a relative path links nowhere
    uids = {json.loads(path.read_text())["uid"] for path in (ROOT / "grafana" / "dashboards").glob("*.json")}
    for rule in (r for r in _rules() if "alert" in r):
        ann = rule["annotations"]
        assert _is_absolute(ann["runbook_url"]), ann["runbook_url"]
        dashboard = ann["dashboard_url"]
        assert _is_absolute(dashboard), dashboard
        match = re.fullmatch(re.escape(LINKS.grafana_url) + r"/d/([a-z0-9-]+)(\{\{.*\}\})?", dashboard)
        assert match and match.group(1) in uids, (rule["alert"], dashboard)


def test_render_takes_the_link_bases_from_its_options_then_the_environment():
    from streams.mixin import render

    parser = argparse.ArgumentParser()
    render.add_arguments(parser)
    env = {"CXPULSE_RUNBOOK_BASE": "https://wiki.example.org/cx/alerts", "CXPULSE_GRAFANA_URL": "https://g.example.org/"}
    assert render.links_from_args(parser.parse_args([]), env={}) == LINKS
    from_env = render.links_from_args(parser.parse_args([]), env=env)
    assert from_env == Links("https://wiki.example.org/cx/alerts", "https://g.example.org")
    args = parser.parse_args(["--runbook-base", "https://runbooks.example.net/alerts.md",
                              "--grafana-url", "https://grafana.example.net/sub/path"])
    links = render.links_from_args(args, env=env)
    text = rules_yaml(links)
    for rule in (r for g in yaml.safe_load(text)["groups"] for r in g["rules"] if "alert" in r):
        ann = rule["annotations"]
        assert ann["runbook_url"] == "https://runbooks.example.net/alerts.md#" + rule["alert"].lower()
        assert ann["dashboard_url"].startswith("https://grafana.example.net/sub/path/d/")
    # the committed file holds the placeholders, whatever the environment of the test run
    assert "https://runbooks.example.net" not in RULES_PATH.read_text()


@pytest.mark.parametrize("base", ["docs/alerts.md", "/docs/alerts.md", "cxpulse.example.com/docs", "ftp://x.example/a",
                                  "https://example.com/alerts.md#top"])
def test_a_relative_or_odd_link_base_is_refused(base: str):
    from streams.errors import ConfigError

    with pytest.raises(ConfigError, match="runbook base"):
        Links(runbook_base=base)
    with pytest.raises(ConfigError, match="Grafana URL"):
        Links(grafana_url=base)


def test_kpi_alerts_say_their_family_and_pipeline_alerts_are_not_kpi_alerts():
    # Alertmanager's inhibition (deploy/compose/alertmanager.yml) mutes kind="kpi" alerts of a family
    # whose windows lag: a KPI alert without its family, or a pipeline alert marked kpi, would break it
    families = {c.family for c in COUNTERS}
    for alert in alerts():
        if alert.dashboard in ("cx-overview", "support"):
            assert alert.labels.get("kind") == "kpi" and alert.labels.get("family") in families, alert.name
        else:
            assert "kind" not in alert.labels, alert.name


def test_alert_list_matches_the_rules_file():
    assert [a.name for a in alerts()] == [r["alert"] for r in _rules() if "alert" in r]


# ------------------------------------------------------------- uncertainty
def test_every_ratio_kpi_is_a_share_with_an_interval_or_said_not_to_be():
    # a new ratio KPI must decide: a share of trials (Wilson interval) or not (rules.NOT_PROPORTIONS)
    from streams.catalog import KPIS
    from streams.mixin import rules

    ratios = {k.key for k in KPIS if k.unit == "ratio" and k.shape in ("ratio", "one_minus")}
    assert ratios == set(rules.PROPORTION_KPIS) | set(rules.NOT_PROPORTIONS)
    assert not set(rules.PROPORTION_KPIS) & set(rules.NOT_PROPORTIONS)


def test_every_interval_kpi_records_n_and_both_bounds_at_every_level_and_range():
    from streams.mixin import rules

    names = recorded_names()
    for key in rules.INTERVAL_KPIS:
        kpi = rules._kpi(key)
        for level in rules.kpi_levels(kpi):
            for window in rules.WINDOWS:
                assert rules.denominator_rule(kpi, level, window) in names
                for side in ("lower", "upper"):
                    assert rules.bound_rule(kpi, level, window, side) in names
        if key in rules.BASELINE_KPIS:
            for window in rules.WINDOWS:
                for side in ("lower", "upper"):
                    assert rules.bound_rule(kpi, rules.kpi_levels(kpi)[0], window, side, offset=True) in names


def test_rules_read_only_rules_evaluated_before_them():
    # promtool evaluates groups in the pinned order and a group's rules one after the other: a rule
    # that read a later one would see the previous evaluation's value (or none in a rule test)
    groups = yaml.safe_load(RULES_PATH.read_text())["groups"]
    later = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    for group in groups:
        for rule in group["rules"]:
            assert not series_names(rule["expr"]) & later, f"{group['name']}: {rule.get('record') or rule['alert']}"
            later.discard(rule.get("record"))


def test_share_and_nps_drop_alerts_need_the_bands_apart_and_rpv_does_not():
    exprs = {a.name: a.expr for a in alerts()}
    for name, key in (("CxpulseConversionDrop", "conversion"), ("CxpulseCsatDrop", "csat"),
                      ("CxpulseNpsDrop", "nps")):
        apart = f"storefront:cxpulse_{key}:ratio_window1h_upper\n  < storefront:cxpulse_{key}:ratio_window1h_lower_offset1w"
        assert apart in exprs[name], name
    assert "_upper" not in exprs["CxpulseRevenuePerVisitorDrop"]


def test_docs_alerts_name_only_recorded_series_and_list_every_alert_as_shipped():
    doc = (ROOT / "docs" / "alerts.md").read_text()
    # a renamed recording rule must not survive in a runbook
    named = set(re.findall(r"\b[a-z_]+:cxpulse_[a-z0-9_]+:[a-z0-9_]+\b", doc))
    assert named and named <= recorded_names(), named - recorded_names()
    # the table at the top: every alert with its severity and `for`
    rows = {m[0]: (m[1], m[2]) for m in re.findall(r"^\| \[(Cxpulse\w+)\]\(#\w+\) \| (\w+) \| (\w+) \|", doc, re.M)}
    assert rows == {a.name: (a.severity, a.for_) for a in alerts()}


def test_every_customer_kpi_of_the_catalog_is_recorded_with_its_sample_and_its_interval():
    from streams.catalog import CUSTOMER_KPIS
    from streams.mixin.rules import customer_rules

    recorded = {r["record"] for r in customer_rules()}
    for kpi in CUSTOMER_KPIS:
        assert {kpi.record, kpi.sample} <= recorded, kpi.title
        bounds = {f"{kpi.record}_lower", f"{kpi.record}_upper"}
        assert (bounds <= recorded) is kpi.interval, kpi.title
