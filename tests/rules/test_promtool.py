"""Run promtool over the shipped rules and the rule tests in this folder.

promtool is required (CI installs it with Prometheus): a missing promtool fails,
it never skips. Every alert of the rules file must have a test case where it
fires and one where it stays quiet, and every test file must pin the group
order (promtool otherwise evaluates groups in random order).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streams.catalog import COUNTERS, HISTOGRAMS, WINDOW_COMPLETE
from streams.mixin.rules import RULES_PATH, catalog_series, rules_yaml
from tests.rules.subset import names_read, shipped_rules_for, write_with_subset

# Module-scoped fixtures: the whole module runs in one test process (pytest-xdist loadgroup).
pytestmark = pytest.mark.xdist_group("test_promtool")

HERE = Path(__file__).resolve().parent
TEST_FILES = sorted(HERE.glob("*.test.yml"))


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: apt-get install -y prometheus (CI installs it)"
    return path


def test_rules_file_is_rendered():
    assert RULES_PATH.read_text() == rules_yaml(), "run `cxpulse render`"


def test_promtool_check_rules():
    result = subprocess.run([promtool(), "check", "rules", str(RULES_PATH)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def promtool_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, subprocess.CompletedProcess]:
    """`promtool test rules` of every file, run side by side (each is CPU-bound on its own), each
    over the shipped rules it reads (``subset.py``: the whole file costs minutes of CPU)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    workdir = tmp_path_factory.mktemp("promtool")

    def run(path: Path) -> subprocess.CompletedProcess:
        copy = write_with_subset(path, workdir)
        return subprocess.run([promtool(), "test", "rules", copy.name], cwd=workdir, capture_output=True, text=True,
                              timeout=600)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(zip(TEST_FILES, pool.map(run, TEST_FILES)))


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(path: Path, promtool_runs):
    result = promtool_runs[path]
    assert result.returncode == 0, result.stdout + result.stderr


def _cases() -> list[tuple[str, str, bool]]:
    """(file, alertname, fires) for every alert test case."""
    out = []
    for path in TEST_FILES:
        doc = yaml.safe_load(path.read_text())
        for group in doc["tests"]:
            for case in group.get("alert_rule_test", []):
                out.append((path.name, case["alertname"], bool(case.get("exp_alerts"))))
    return out


def test_every_alert_fires_and_stays_quiet_somewhere():
    rules = yaml.safe_load(RULES_PATH.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    cases = _cases()
    firing = {name for _, name, fires in cases if fires}
    quiet = {name for _, name, fires in cases if not fires}
    assert alerts - firing == set(), "alerts without a firing test case"
    assert alerts - quiet == set(), "alerts without a quiet test case"
    assert {name for _, name, _ in cases} <= alerts, "test for an alert that does not exist"


def test_every_test_file_pins_the_group_order():
    rules = yaml.safe_load(RULES_PATH.read_text())
    groups = [g["name"] for g in rules["groups"]]
    for path in TEST_FILES:
        doc = yaml.safe_load(path.read_text())
        assert doc.get("group_eval_order") == groups, path.name
        assert doc["rule_files"] == ["../../deploy/prometheus/rules/cxpulse.rules.yml"], path.name


def _window_labels() -> dict[str, set[str]]:
    """The labels of every series the merge stage remote-writes (streams/runtime/remote_write.py)."""
    out = {c.window_name: {*c.labels, "window"} for c in COUNTERS}
    for h in HISTOGRAMS:
        for summary, labels in ((h.window_name, h.window_labels), (h.window_storefront_name, ("storefront",)),
                                (h.window_reason_name, ("storefront", "reason"))):
            out[summary] = {*labels, "window", "quantile"}
            out[summary + "_count"] = out[summary + "_sum"] = {*labels, "window"}
    out[WINDOW_COMPLETE] = {"storefront", "family", "window"}
    return out


def test_input_series_are_series_cxpulse_writes_with_their_labels():
    # A misspelt metric or label makes a series no rule reads: a "stays quiet" case would pass for nothing.
    known = catalog_series() | {"up"}
    windows = _window_labels()
    for path in TEST_FILES:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for item in group.get("input_series", []):
                match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}", item["series"])
                assert match, (path.name, item["series"])
                name, labels = match.group(1), set(re.findall(r"([a-z_]+)=", match.group(2)))
                assert name in known, (path.name, name)
                if name in windows:
                    assert labels == windows[name], (path.name, item["series"])


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_each_file_reads_rules_the_shipped_file_has(path: Path):
    # The subset a file runs over holds every alert it tests and every recorded series it queries:
    # a name missing from the shipped rules would make its cases pass or fail on nothing.
    test = yaml.safe_load(path.read_text())
    kept = {r.get("record") or r["alert"] for g in shipped_rules_for(names_read(test))["groups"] for r in g["rules"]}
    read = {name for name in names_read(test) if ":" in name or name[:1].isupper()}
    assert read and read <= kept, (path.name, sorted(read - kept))
