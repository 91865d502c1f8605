"""The shipped rules a promtool test reads, and nothing else: the same rules, unchanged and in
their order, left out only where no alert or query of the test depends on them.

promtool evaluates every rule of its file at every step: the whole file (~350 rules) over a
week of 1-minute steps costs minutes of CPU, although a test reads a handful. A rule's value
depends only on the series it reads, and evaluation order is kept (groups and rules within
them), so what the test reads is the same as with the whole file.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from streams.mixin.rules import RULES_PATH, series_names

ALERTNAME = re.compile(r'alertname\s*=~?\s*"([^"]+)"')


def rules_needed(names: set[str], groups: list[dict[str, Any]]) -> dict[str, Any]:
    """The shipped groups with only the rules ``names`` are or read (in their expressions or
    annotation templates), transitively."""
    # an alert's annotations query series too ({{ query "..." }}): read the whole rule
    exprs = {rule.get("record") or rule["alert"]: json.dumps(rule)
             for group in groups for rule in group["rules"]}
    needed, todo = set(), [name for name in names if name in exprs]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo += [n for n in series_names(exprs[name]) if n in exprs]
    kept = [{**group, "rules": [r for r in group["rules"] if (r.get("record") or r["alert"]) in needed]}
            for group in groups]
    return {"groups": [group for group in kept if group["rules"]]}


@lru_cache(maxsize=1)
def _shipped_groups() -> list[dict[str, Any]]:
    return yaml.safe_load(RULES_PATH.read_text())["groups"]


def shipped_rules_for(names: tuple[str, ...] | set[str]) -> dict[str, Any]:
    return rules_needed(set(names), _shipped_groups())


def names_read(test: dict[str, Any]) -> set[str]:
    """Every alert and recorded series a promtool test file reads: its alert cases' names, the
    series of its queries, and the alerts its queries name (``ALERTS{alertname=...}``, regex
    alternatives spelt out; an ``ALERTS`` without a name reads them all)."""
    every_alert = {rule["alert"] for group in _shipped_groups() for rule in group["rules"] if "alert" in rule}
    out: set[str] = set()
    for case in test["tests"]:
        out.update(item["alertname"] for item in case.get("alert_rule_test", []))
        for item in case.get("promql_expr_test", []):
            expr = item["expr"]
            out |= series_names(expr)
            if "ALERTS" in expr:
                named = ALERTNAME.findall(expr)
                out |= {a for a in every_alert if any(re.fullmatch(p, a) for p in named)} if named else every_alert
    return out


def write_with_subset(path: Path, workdir: Path) -> Path:
    """A copy of the promtool test file ``path`` in ``workdir`` that reads the shipped rules it needs
    (``rules.yml`` beside it), with the group order of those rules; its input series and
    expectations are the file's own."""
    test = yaml.safe_load(path.read_text())
    rules = shipped_rules_for(names_read(test))
    rules_file = workdir / f"{path.stem}.rules.yml"
    rules_file.write_text(yaml.safe_dump(rules, sort_keys=False, width=1_000_000))
    test["rule_files"] = [rules_file.name]
    test["group_eval_order"] = [group["name"] for group in rules["groups"]]
    out = workdir / path.name
    out.write_text(yaml.safe_dump(test, sort_keys=False, width=1_000_000))
    return out
