"""The shipped Alertmanager config, run: lag and broker alerts mute the KPI alerts they explain.

``deploy/compose/alertmanager.yml`` inhibits ``kind="kpi"`` alerts of a family while
CxpulseWindowsBehind fires for it (order-family KPI alerts also while sessions lag, as they
divide by sessions), and every KPI alert while a worker cannot reach Kafka. amtool cannot test
inhibitions, so this starts Alertmanager (Debian: prometheus-alertmanager, which ./dev setup
installs) with the file unchanged, posts alerts labelled as the shipped rules label them, and
reads back which are inhibited and by what.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from streams.mixin.rules import RULES_PATH
from tests.helpers import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "compose" / "alertmanager.yml"


def _binary() -> str:
    path = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("Alertmanager is not installed (apt-get install prometheus-alertmanager; ./dev setup does it)")
    pytest.skip("Alertmanager is not installed (apt-get install prometheus-alertmanager)")


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read() or b"null")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [_binary(), f"--config.file={CONFIG}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is not None or _ready(url), timeout_s=30, what="Alertmanager ready")
        assert process.poll() is None, (tmp_path / "alertmanager.log").read_text()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _rule_labels() -> dict[str, dict[str, str]]:
    rules = yaml.safe_load(RULES_PATH.read_text())
    return {r["alert"]: {"alertname": r["alert"], **r["labels"]} for g in rules["groups"] for r in g["rules"]
            if "alert" in r}


def _post(url: str, *alerts: dict[str, str], resolved: bool = False) -> None:
    """Fire the alerts for an hour, or resolve them (an end in the past), as Prometheus sends them."""
    now = datetime.now(timezone.utc)
    start, end = (now - timedelta(minutes=10), now - timedelta(seconds=1)) if resolved else (now, now + timedelta(hours=1))
    body = [{"labels": labels, "annotations": {"summary": labels["alertname"]},
             "startsAt": start.isoformat(), "endsAt": end.isoformat()} for labels in alerts]
    request = urllib.request.Request(f"{url}/api/v2/alerts", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def _state(url: str) -> dict[tuple[str, str], tuple[str, frozenset[str]]]:
    """(alertname, family or instance) -> (fingerprint, fingerprints of the alerts inhibiting it)."""
    out = {}
    for alert in _get(f"{url}/api/v2/alerts"):
        labels = alert["labels"]
        key = (labels["alertname"], labels.get("family") or labels.get("instance", ""))
        out[key] = (alert["fingerprint"], frozenset(alert["status"]["inhibitedBy"]))
    return out


def _state_when(url: str, ready, what: str) -> dict[tuple[str, str], tuple[str, frozenset[str]]]:
    """The state once ``ready(state)`` holds (Alertmanager's inhibitor sees new alerts a moment later)."""
    def check():
        state = _state(url)
        return state if ready(state) else None

    return wait_until(check, timeout_s=15, what=what)


def test_lag_and_broker_alerts_inhibit_the_kpi_alerts_of_their_family(alertmanager: str) -> None:
    shipped = _rule_labels()

    def alert(name: str, **labels: str) -> dict[str, str]:
        return {**shipped[name], **labels}  # as the rule labels it, plus what its expression keeps

    targets = [
        alert("CxpulseConversionDrop", storefront="shop"),                      # kind=kpi, family=order
        alert("CxpulseConversionCollapse", storefront="shop"),                  # kind=kpi, family=order
        alert("CxpulseRevenuePerVisitorDrop", storefront="shop", currency="EUR"),
        alert("CxpulseNpsDrop", storefront="shop"),                             # kind=kpi, family=survey
        alert("CxpulseFirstResponseSlow", storefront="shop"),                   # kind=kpi, family=ticket
        alert("CxpulseConsumerLagHigh", family="order"),                        # pipeline: never muted
    ]
    assert {t["family"] for t in targets if t.get("kind") == "kpi"} == {"order", "survey", "ticket"}
    _post(alertmanager, *targets)
    state = _state_when(alertmanager, lambda s: len(s) == len(targets), "the alerts in Alertmanager")
    assert all(not by for _, by in state.values()), state  # nothing mutes them yet

    order_kpi = [("CxpulseConversionDrop", "order"), ("CxpulseConversionCollapse", "order"),
                 ("CxpulseRevenuePerVisitorDrop", "order")]
    others = [("CxpulseNpsDrop", "survey"), ("CxpulseFirstResponseSlow", "ticket")]
    pipeline = ("CxpulseConsumerLagHigh", "order")
    # Alertmanager names one inhibiting alert (of the first inhibit rule that matches), so each source
    # is checked alone: posted, checked, then resolved before the next.

    # 1. The order family lags: its KPI alerts are muted by the lag alert, the others are not.
    order_lag = alert("CxpulseWindowsBehind", family="order")
    _post(alertmanager, order_lag)
    state = _state_when(alertmanager, lambda s: all(s[k][1] for k in order_kpi), "order KPI alerts inhibited")
    source = state["CxpulseWindowsBehind", "order"][0]
    for key in order_kpi:
        assert state[key][1] == {source}, key
    for key in (*others, pipeline, ("CxpulseWindowsBehind", "order")):
        assert state[key][1] == set(), key
    _post(alertmanager, order_lag, resolved=True)
    _state_when(alertmanager, lambda s: not any(s[k][1] for k in order_kpi), "the order lag resolved")

    # 2. Sessions lag: the order KPI alerts (they divide by sessions) are muted; survey and ticket ones not.
    _post(alertmanager, alert("CxpulseWindowsBehind", family="session"))
    state = _state_when(alertmanager, lambda s: all(s[k][1] for k in order_kpi),
                        "order KPI alerts inhibited by the session lag")
    source = state["CxpulseWindowsBehind", "session"][0]
    for key in order_kpi:
        assert state[key][1] == {source}, key
    for key in (*others, pipeline):
        assert state[key][1] == set(), key
    _post(alertmanager, alert("CxpulseWindowsBehind", family="session"), resolved=True)
    _state_when(alertmanager, lambda s: not any(s[k][1] for k in order_kpi), "the session lag resolved")

    # 3. A worker loses the broker: every KPI alert is muted, pipeline alerts are not.
    _post(alertmanager, alert("CxpulseBrokerUnreachable", instance="w1:9400"))
    state = _state_when(alertmanager, lambda s: all(s[k][1] for k in (*order_kpi, *others)),
                        "every KPI alert inhibited by the broker alert")
    source = state["CxpulseBrokerUnreachable", "w1:9400"][0]
    for key in (*order_kpi, *others):
        assert state[key][1] == {source}, key
    for key in (pipeline, ("CxpulseBrokerUnreachable", "w1:9400")):
        assert state[key][1] == set(), key
