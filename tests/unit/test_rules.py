"""The rules file: only known series, every alert documented and annotated."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from streams.rules import RULES_PATH, alerts, catalog_series, recorded_names, series_names

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
