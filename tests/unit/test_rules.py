"""The rules file: only known series, every alert documented and annotated."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from streams.mixin.rules import RULES_PATH, alerts, catalog_series, recorded_names, series_names

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
            "CxpulseEventsSilent", "CxpulseWorkerDown", "CxpulseNoWorkerReady")
        assert ann["runbook_url"].endswith("docs/alerts.md#" + name.lower())
        assert name.lower() in anchors, f"docs/alerts.md has no section {name}"


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
            for range_ in rules.RANGES:
                assert rules.denominator_rule(kpi, level, range_) in names
                for side in ("lower", "upper"):
                    assert rules.bound_rule(kpi, level, range_, side) in names
        if key in rules.BASELINE_KPIS:
            for range_ in rules.RANGES:
                for side in ("lower", "upper"):
                    assert rules.bound_rule(kpi, rules.kpi_levels(kpi)[0], range_, side, offset=True) in names


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
        apart = f"storefront:cxpulse_{key}:ratio_rate1h_upper\n  < storefront:cxpulse_{key}:ratio_rate1h_lower_offset1w"
        assert apart in exprs[name], name
    assert "_upper" not in exprs["CxpulseRevenuePerVisitorDrop"]
