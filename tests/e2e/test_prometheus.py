"""A real Prometheus fed by a live pipeline: rules, dashboards and an alert, end to end.

One stack for the module: broker, two workers, the simulator replaying `checkout-broken` at a
paced rate, and Prometheus loaded with the rules, evaluating them every second, scraping the workers every 5 s and
receiving their merge stage's complete event-time windows by remote write (each stamped with
the window's end; ``PrometheusProcess`` runs the receiver and a 3h out-of-order window, the
workers get its ``write_url``). Before the workers start, the topics get ten months of repeat
customers' orders, tickets and NPS answers (``tests/customer_events.py``: live traffic spans
minutes, the 30- and 90-day cohorts need months) and two initiatives are declared with the CLI,
one running and one with an end.

The rules are the shipped ones rendered for the test's settings. The stack runs a 10 s grace
(production: 2 min) so that windows complete within the test, and the window rules read
``rules.DELAY`` = grace + idle partition + one window behind the evaluation: 210 s with the
shipped defaults, which ``cxpulse render`` takes from the environment it runs in. So the test
renders ``rules.rules_yaml()``, the function ``cxpulse render`` writes the shipped file with,
in a child process whose environment holds the test's settings: DELAY = 10 s + 30 s + 1 min
= 100 s. Groups, rule and alert names, ``for`` and labels are the shipped file's, and every
expression equals the shipped one but for that offset (checked when the stack starts).

Checked:

- every metric name the rules and dashboards use exists: scraped from a worker's /metrics, or
  remote-written (the event-time window series, and only they, are remote-written);
- every recording rule returns non-empty data with finite values, once the windows DELAY back
  are complete (a deadline on that condition);
- every dashboard panel query returns finite data: graphs as Grafana asks for them (a range at
  minute steps, where the window series have their samples), over the stack's life, for the
  ``$window`` values 5m and 1h; tables at the current time;
- every dashboard's annotations mark the declared initiatives' starts and ends;
- CxpulseConversionCollapse is quiet while every minute it reads is healthy, and fires when the
  incident's broken minutes are read (timing in its test's docstring).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streams.config import Settings, parse_duration_ms
from streams.devtools.stack import (DEMO_BUSINESS_HOURS, ROOT, RULES_FILE, PrometheusProcess, WorkerProcess, http_get,
                                    settings_env, worker_settings)
from tests.customer_events import DAY, customer_events
from tests.helpers import free_port
from tests.helpers import send_events as send

# Module-scoped fixtures: the whole module runs in one test process (pytest-xdist loadgroup); the
# CPU-bound promtool run of tests/rules/test_small_shops.py shares the group, so never runs beside it.
pytestmark = pytest.mark.xdist_group("test_prometheus")

RATE = 600
GRACE_MS = 10_000  # production keeps 2 minutes; this closes 1-minute windows within the test
INCIDENT_LEAD_S = 20  # at least this much healthy traffic before the incident (it starts on a minute boundary)
# Scrapes time out after their interval: every 1 s, a fifth of them failed under a CPU hog (median
# 0.6 s, p90 1.1 s for a worker's ~2,500 samples), and each failure made the workers' gauges stale,
# so a table's instant query could find no data. The window series arrive by remote write instead.
SCRAPE = "5s"
EVALUATION = "1s"  # the rules: the alert's firing time is read from evaluations 1 s apart
CURRENCY = "EUR"  # the first simulated store's (north-outfitters)
MINUTE_S = 60
WINDOW_VALUES = ("5m", "1h")  # `$window` of the dashboards: the test's 5m, and the dashboards' default


def declare_initiatives(settings: Settings, env: dict[str, str]) -> dict[str, dict[str, int]]:
    """Two initiatives from today (UTC), with the CLI a user runs: one running, one ending tomorrow.
    Returns the markers the dashboards must draw: annotation name -> {initiative: time in ms}."""
    today = datetime.now(timezone.utc).date()
    tomorrow = today + timedelta(days=1)
    declarations = {
        "live-chat": ["--treated", "channel=app", "--control", "channel=web"],
        "free-returns": ["--end", tomorrow.isoformat(), "--treated", "channel=social", "--control",
                         "channel=marketplace", "--kpi", "conversion"],
    }
    for name, options in declarations.items():
        done = subprocess.run(
            [sys.executable, "-m", "streams.cli", "initiative", "declare", name, "--start", today.isoformat(),
             *options, "--investment", "500", "--currency", CURRENCY, "--margin", "0.4"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    def ms(day) -> int:
        return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)

    return {"Initiative starts": {name: ms(today) for name in declarations},
            "Initiative ends": {"free-returns": ms(tomorrow)}}


def _without_settings(env: dict[str, str]) -> dict[str, str]:
    """``env`` without any variable that sets a cxpulse setting (a developer's shell cannot change the test)."""
    names = set(Settings.variables())
    return {k: v for k, v in env.items() if k not in names}


def render_rules(settings: Settings, path: Path) -> int:
    """Write the rules ``cxpulse render`` would write for ``settings`` to ``path``; return their DELAY in ms.

    ``rules.DELAY`` is computed from the environment's settings when ``streams.mixin.rules`` is
    imported, so the render runs in a child process whose environment holds ``settings``."""
    code = ("import json, sys\nfrom streams.mixin import rules\n"
            "json.dump({'delay': rules.DELAY, 'rules': rules.rules_yaml()}, sys.stdout)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**_without_settings(dict(os.environ)), **settings_env(settings)})
    assert done.returncode == 0, done.stderr
    rendered = orjson.loads(done.stdout)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rendered["rules"])
    return parse_duration_ms(rendered["delay"])


_OFFSET = re.compile(r"offset (1w)?[0-9]+s\b")


def _shape(text: str) -> list[tuple[Any, ...]]:
    """Each rule of a rules file: group, name, for, labels, and its expression with DELAY-based offsets masked."""
    return [(group["name"], rule.get("record") or rule.get("alert"), rule.get("for"), rule.get("labels"),
             _OFFSET.sub(lambda m: f"offset {m[1] or ''}DELAY", rule["expr"]))
            for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]


def assert_shipped_but_for_delay(rendered: str, delay_ms: int) -> None:
    """The rendered rules are the shipped ones but for DELAY: the offsets the window rules read at,
    and the CxpulseWindowsBehind threshold (DELAY + a margin)."""
    shipped = _shape(RULES_FILE.read_text())
    ours = _shape(rendered)
    assert [rule[:4] for rule in ours] == [rule[:4] for rule in shipped], "rendered rules differ in names or for"
    differ = [ours_rule[1] for ours_rule, shipped_rule in zip(ours, shipped) if ours_rule != shipped_rule]
    assert differ == ["CxpulseWindowsBehind"], differ
    assert f"offset {delay_ms // 1000}s" in rendered, "the window rules read DELAY back"


@pytest.fixture(scope="module")
def stack(broker, tmp_path_factory):
    from kafka import KafkaProducer

    from streams.devtools.broker import create_topics

    workdir = tmp_path_factory.mktemp("stack")
    prefix = f"p{os.getpid()}."
    defaults = Settings()
    prometheus_port = free_port()
    settings = Settings.from_env(
        {}, grace_ms=GRACE_MS, bootstrap_servers=broker.bootstrap, app_id=prefix + "cxpulse",
        metrics_port=free_port(), web_port=free_port(),
        remote_write_url=f"http://127.0.0.1:{prometheus_port}/api/v1/write",
        business_hours=DEMO_BUSINESS_HOURS,  # the business-hours panels and rules need a calendar
        **{name: prefix + getattr(defaults, name) for name in (
            "topic_sessions", "topic_orders", "topic_tickets", "topic_surveys", "topic_deadletter", "topic_state",
            "topic_customers", "topic_windows", "topic_initiatives")})
    rules_path = workdir / "rules" / "cxpulse.rules.yml"
    delay_ms = render_rules(settings, rules_path)
    assert_shipped_but_for_delay(rules_path.read_text(), delay_ms)
    prometheus = PrometheusProcess([], port=prometheus_port, scrape_interval=SCRAPE, rules=[rules_path],
                                   workdir=workdir / "prometheus", evaluation_interval=EVALUATION)
    assert prometheus.write_url == settings.remote_write_url
    create_topics(settings)
    # Months of customers before the live traffic, in time order: every cohort, LTV-by-NPS and
    # post-support panel needs customers whose first order is 30 / 90 days old.
    now_ms = int(time.time() * 1000)
    send(settings, customer_events(random.Random(1), customers=300, days=200, t0=now_ms - 330 * DAY))
    marks = declare_initiatives(settings, {**_without_settings(dict(os.environ)), **settings_env(settings)})
    workers = []
    for index in range(2):
        ws = dataclasses.replace(worker_settings(settings, 0), metrics_port=free_port(), web_port=free_port())
        workers.append(WorkerProcess(ws, index, workdir / f"worker-{index}.log"))
    prometheus.targets = [f"127.0.0.1:{w.metrics_port}" for w in workers]
    simulator = None
    try:
        prometheus.start()
        prometheus_started = time.time()
        for worker in workers:
            worker.start()
        # The simulator starts now, while the workers join (its events wait in Kafka): its event
        # time is the wall clock, and the incident starts on the first minute boundary
        # INCIDENT_LEAD_S on.
        start_ms = int(time.time() * 1000)
        incident_ms = -(-(start_ms + INCIDENT_LEAD_S * 1000) // 60_000) * 60_000
        simulator = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "simulate", "--kafka", "--bootstrap", broker.bootstrap,
             "--start", datetime.fromtimestamp(start_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
             "--rate", str(RATE), "--storefronts", "2", "--warmup", "900", "--scenario", "checkout-broken",
             "--incident-after", f"{(incident_ms - start_ms) / 1000:.3f}", "--duration", "900", "--seed", "4",
             # support replies and resolutions 20x sooner, so resolution panels fill within minutes
             "--support-time-scale", "0.05"],
            # agents around the clock: a run started in the calendar's closed quarter would see no reply
            # for up to 15 minutes (the workers measure business hours all the same)
            cwd=ROOT, env={**_without_settings(dict(os.environ)), **settings_env(settings), "CXPULSE_BUSINESS_HOURS": ""},
            stderr=open(workdir / "simulator.log", "ab"))
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        for payload in (b"{not json", b"[]", b"\xff\xfe"):  # the dead-letter rules need rejections
            producer.send(settings.topic_orders, value=payload)
        producer.flush()
        producer.close()
        for worker in workers:
            worker.wait_ready(90)
        yield {"workers": workers, "prometheus": prometheus, "settings": settings, "workdir": workdir,
               "marks": marks, "rules_path": rules_path, "delay_s": delay_ms / 1000,
               "prometheus_started": prometheus_started, "simulator_started": start_ms / 1000,
               "incident": incident_ms / 1000}
    finally:
        if simulator is not None:
            simulator.terminate()
            simulator.wait(15)
        # both asked at once: one stopped after the other would first sit out the rebalance its
        # leaving starts (a stopping worker finishes a rebalance in progress, engine.SETTLE_S)
        for worker in workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.stop()
        prometheus.stop()


# ------------------------------------------------------------------ Prometheus' HTTP API
def query(prometheus: PrometheusProcess, expr: str, at: float | None = None) -> list[dict]:
    params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
    status, body = http_get(f"{prometheus.url}/api/v1/query?{urllib.parse.urlencode(params)}", 30)
    answer = orjson.loads(body)
    assert status == 200 and answer["status"] == "success", f"{expr}: {body[:300]}"
    return answer["data"]["result"]


def query_range(prometheus: PrometheusProcess, expr: str, start: float, end: float, step: float) -> list[dict]:
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    status, body = http_get(f"{prometheus.url}/api/v1/query_range?{urllib.parse.urlencode(params)}", 60)
    answer = orjson.loads(body)
    assert status == 200 and answer["status"] == "success", f"{expr}: {body[:300]}"
    return answer["data"]["result"]


def _values(result: list[dict]) -> list[float]:
    """Every value of an instant (``value``) or range (``values``) answer."""
    out = []
    for series in result:
        out += [float(v) for _, v in series.get("values", [series.get("value")])]
    return out


def _rules(stack) -> list[dict]:
    return [rule for group in yaml.safe_load(stack["rules_path"].read_text())["groups"] for rule in group["rules"]]


def _this_week(expr: str, rules: list[dict]) -> str:
    """``expr`` as it reads on this week's data: a fresh Prometheus has no week of history, so
    every ``offset 1w`` is dropped, every ``*_offset1w`` recorded name becomes its live one, and a
    recorded name built on a last-week series is replaced by its own expression, treated alike
    (its label matchers dropped: the test's variables select everything)."""
    built_on_last_week = {rule["record"]: rule["expr"] for rule in rules
                          if "record" in rule and not rule["record"].endswith("_offset1w")
                          and ("_offset1w" in rule["expr"] or "offset 1w" in rule["expr"])}
    for name, body in built_on_last_week.items():
        expr = re.sub(re.escape(name) + r"(\{[^}]*\})?(?![\w:])", lambda _: f"({body})", expr)
    expr = re.sub(r" offset 1w(?![0-9])", "", expr.replace("_offset1w", ""))
    return expr.replace("offset 1w", "offset ")  # "offset 1w100s" (a week and the delay) -> "offset 100s"


def _exposed_names(stack) -> set[str]:
    names = set()
    for worker in stack["workers"]:
        for family in text_string_to_metric_families(worker.scrape()):
            # a family with no sample yet (no rejection so far) is still declared by the exporter
            names.add(family.name + ("_total" if family.type == "counter" else ""))
            names.update(sample.name for sample in family.samples)
    return names


def _remote_written_names(stack) -> set[str]:
    """Names of the series Prometheus holds without a scrape's ``job`` label and that no rule
    records (recorded names have colons): what arrived by remote write."""
    match = urllib.parse.quote('{__name__=~"cxpulse_.+", job=""}')
    status, body = http_get(f"{stack['prometheus'].url}/api/v1/label/__name__/values?match[]={match}", 30)
    assert status == 200, body[:300]
    return {name for name in orjson.loads(body)["data"] if ":" not in name}


def _complete_lag(stack) -> dict[str, float]:
    """How far behind now each family's windows are complete (the rules' own measure), by family."""
    return {r["metric"]["family"]: float(r["value"][1])
            for r in query(stack["prometheus"], "family:cxpulse_window_complete_lag_seconds:max")}


def _window_rule_ready(stack) -> bool:
    """True once the window rules read complete windows: every family's windows complete to within
    DELAY of now, and the rules that need the rarest events have data (resolutions per support
    channel in a 5m window; old customers applied by the customer stage; the initiatives read)."""
    lag = _complete_lag(stack)
    if len(lag) < 4 or max(lag.values()) > stack["delay_s"]:
        return False
    ready = ("storefront:cxpulse_conversion:ratio_window1h",
             "storefront_support_channel:cxpulse_resolution_p90:quantile_window5m",
             'storefront_nps_category_purchases_currency_horizon:cxpulse_customer_nps_revenue_per_customer:ratio'
             '{horizon="90d"}',
             "initiative:cxpulse_initiative_roi:ratio")
    return all(_values(query(stack["prometheus"], expr)) for expr in ready)


def _wait_for_windows(stack) -> None:
    """The first window with traffic ends within a minute of the simulator's start and is read
    DELAY after its end; resolutions need a few minutes more. Deadline: 4 minutes on top."""
    deadline = stack["simulator_started"] + 60 + stack["delay_s"] + 240
    while time.time() < deadline:
        if "ready_at" in stack or _window_rule_ready(stack):
            stack.setdefault("ready_at", time.time())
            return
        time.sleep(2)
    pytest.fail(f"window rules not ready {time.time() - stack['simulator_started']:.0f} s into the traffic: "
                f"complete lag by family {_complete_lag(stack)}, DELAY {stack['delay_s']:g} s; "
                f"logs in {stack['workdir']}")


# ------------------------------------------------------------------ the tests
def test_every_metric_the_rules_and_dashboards_use_exists(stack) -> None:
    from streams.mixin import dashboards, rules

    _wait_for_windows(stack)
    used: dict[str, set[str]] = {}  # name -> where it is used
    for rule in _rules(stack):
        for name in rules.series_names(rule["expr"]):
            used.setdefault(name, set()).add(f"rule {rule.get('record') or rule.get('alert')}")
    queries = [(d, t, e) for d, t, e in dashboards.panel_queries()] + dashboards.annotation_queries()
    for dashboard, title, raw in queries:
        for window in WINDOW_VALUES:
            for name in rules.series_names(dashboards.substitute(raw, {**dashboards.TEST_VARIABLES, "window": window})):
                used.setdefault(name, set()).add(f"dashboard {dashboard} / {title}")
    recorded = {rule["record"] for rule in _rules(stack) if "record" in rule}
    exposed = _exposed_names(stack)
    written = _remote_written_names(stack)
    missing = sorted(f"{name} (used by {sorted(where)[0]})" for name, where in used.items()
                     if name not in (recorded if ":" in name else exposed | written))
    assert not missing, "names no rule records, no worker exports and nobody remote-writes:\n" + "\n".join(missing)
    plain = {name for name in used if ":" not in name}
    by_write = plain & written
    # The event-time window series reach Prometheus only by remote write: a worker's /metrics has none.
    assert not by_write & exposed, f"window series also scraped: {sorted(by_write & exposed)}"
    assert by_write, "no name the rules and dashboards use came by remote write"
    print(f"{len(plain)} series names used: {len(plain & exposed)} scraped from the workers, {len(by_write)} "
          f"remote-written ({', '.join(sorted(by_write))}); {len(used) - len(plain)} recorded by the rules")


def test_every_recording_rule_returns_finite_data(stack) -> None:
    _wait_for_windows(stack)
    prometheus = stack["prometheus"]
    empty, not_finite = [], []
    rules = _rules(stack)
    for rule in rules:
        if "record" not in rule:
            continue
        name, expr = rule["record"], rule["record"]
        if "_offset1w" in name or "_offset1w" in rule["expr"] or "offset 1w" in rule["expr"]:
            # A fresh Prometheus has no week of history: run the same generated expression a week
            # later (on the live rules it builds on), which proves its names, labels and arithmetic.
            expr = _this_week(rule["expr"], rules)
        values = _values(query(prometheus, expr))
        if not values:
            empty.append(name)
        elif not any(math.isfinite(v) for v in values):
            not_finite.append(name)
        elif name.startswith("storefront:") and "quantile" not in name and not all(map(math.isfinite, values)):
            not_finite.append(name)  # storefront level has volume for every ratio: no 0/0
    assert not empty, f"recording rules with no data: {empty}"
    assert not not_finite, f"recording rules without finite values: {not_finite}"


def _dashboard_query(stack, expr: str, instant: bool, start: float, end: float) -> list[float]:
    """What Grafana would draw: an instant query now, or a range at minute steps (a graph's points
    on the window ends, where the window series have their samples)."""
    if instant:
        return _values(query(stack["prometheus"], expr))
    return _values(query_range(stack["prometheus"], expr, start, end, MINUTE_S))


def test_every_dashboard_panel_query_returns_data(stack) -> None:
    dashboards = pytest.importorskip("streams.mixin.dashboards", reason="dashboards not generated yet")
    _wait_for_windows(stack)
    # Grafana asks for points on whole minutes (a range's start and end are aligned to its step):
    # the stack's life, up to a minute boundary after the window rules had data.
    start = math.ceil(stack["prometheus_started"] / MINUTE_S) * MINUTE_S
    end = math.ceil(stack["ready_at"] / MINUTE_S) * MINUTE_S
    if time.time() < end + 2:  # past the boundary, and the evaluation at it done
        time.sleep(end + 2 - time.time())
    failed = []
    checked = 0
    rules = _rules(stack)
    for d in dashboards.dashboards().values():
        for panel in d.panels or []:
            for target in getattr(panel, "targets", None) or []:
                for window in WINDOW_VALUES:
                    expr = dashboards.substitute(target.expr, {**dashboards.TEST_VARIABLES, "window": window})
                    # same-time-last-week lines: a fresh Prometheus has no week of history; run the same
                    # expression on this week's windows (the recorded baselines get the same in the rule test)
                    expr = _this_week(expr, rules)
                    values = _dashboard_query(stack, expr, bool(target.instant), start, end)
                    checked += 1
                    if not values or not any(math.isfinite(v) for v in values):
                        failed.append((d.title, panel.title, window, expr))
    assert checked > 200, checked
    assert not failed, "panels with no finite data:\n" + "\n".join(map(str, failed))


def test_every_dashboard_marks_the_declared_initiatives(stack) -> None:
    from streams.mixin import dashboards

    _wait_for_windows(stack)
    prometheus = stack["prometheus"]
    for dashboard, name, raw in dashboards.annotation_queries():
        result = query(prometheus, dashboards.substitute(raw))
        # Grafana's useValueForTime: the value is the marker's time in ms
        marks = {r["metric"]["initiative"]: float(r["value"][1]) for r in result}
        assert marks == stack["marks"][name], (dashboard, name, result)
        treated = {r["metric"]["initiative"]: r["metric"]["treated"] for r in result}
        assert treated.get("live-chat", "channel=app") == "channel=app", (dashboard, name, result)


def test_checkout_incident_fires_the_conversion_collapse_alert(stack) -> None:
    """The incident starts at I, on a minute boundary (event time is the wall clock): from I on,
    4 in 5 orders fail, so the minute [I, I + 1m) is the first broken one. The alert (for: 1m)
    compares the newest two complete minutes with the 15 before them, reading the minutes that
    end DELAY (100 s here) before each evaluation. So:

    - quiet until I + 1m + DELAY: until then every minute it reads is healthy;
    - pending once both minutes read are broken, at I + 2m + DELAY, and firing its `for` later:
      I + 3m + DELAY = I + 4m40s here (docs/alerts.md: DELAY + 2 minutes after the end of the
      first broken minute), or up to one evaluation interval (1 s) later.

    The deadline adds 60 s to that for a loaded machine (windows that complete late, and rule
    evaluations that run late, hold the alert back; they never bring it forward). An alert found
    pending by then is on its way: it gets its `for` (1 m) from the evaluation that first had it
    pending, plus 30 s, and no more than 3 minutes past the deadline in all."""
    prometheus = stack["prometheus"]
    delay, incident = stack["delay_s"], stack["incident"]
    alert = 'ALERTS{alertname="CxpulseConversionCollapse"}'
    expected = incident + 3 * MINUTE_S + delay
    deadline = expected + 1 + 60
    pending_since = None
    firing: list[dict] = []
    while not firing:
        firing = query(prometheus, f'{alert[:-1]}, alertstate="firing"}}')
        if firing:
            break
        if time.time() >= deadline:
            pending = query_range(prometheus, f'{alert[:-1]}, alertstate="pending"}}', incident, time.time(), 1)
            pending_since = min((float(t) for s in pending for t, _ in s["values"]), default=None)
            if pending_since is None or time.time() >= min(pending_since + MINUTE_S + 30, deadline + 180):
                break
        time.sleep(2)
    fired_at = time.time()
    if not firing:
        cvr = query(prometheus, "storefront:cxpulse_conversion:ratio_window5m")
        late = "never pending" if pending_since is None else f"pending since I + {pending_since - incident:.0f} s"
        pytest.fail(f"CxpulseConversionCollapse did not fire by I + {fired_at - incident:.0f} s ({late}); "
                    f"pending={query(prometheus, alert)} cvr(5m, DELAY back)={cvr} "
                    f"complete lag={_complete_lag(stack)}; logs in {stack['workdir']}")
    assert {r["metric"]["storefront"] for r in firing} <= {"north-outfitters", "harbor-tea"}, firing
    # Quiet before: no evaluation from Prometheus' start until I + 1m + DELAY had it pending or firing.
    quiet_until = incident + MINUTE_S + delay
    history = query_range(prometheus, alert, stack["prometheus_started"], min(quiet_until, fired_at), 1)
    early = sorted({(float(t) - incident, s["metric"]["alertstate"]) for s in history for t, _ in s["values"]})
    assert not early, f"alert active before any broken minute was read (seconds after I, state): {early[:5]}"
    # When it fired, by the evaluations (1 s apart)
    # to a second past fired_at: the firing sample found can be stamped after the last whole step before it
    states = query_range(prometheus, f'{alert[:-1]}, alertstate="firing"}}', incident, fired_at + 1, 1)
    first = min(float(t) for s in states for t, _ in s["values"])
    print(f"CxpulseConversionCollapse fired at I + {first - incident:.0f} s (expected I + {expected - incident:.0f} s, "
          f"DELAY {delay:g} s) on {sorted(r['metric']['storefront'] for r in firing)}")
