"""End to end: the ROI article's worked example, from events to a Prometheus query.

The article: 40% gross margin, $10,000 of monthly incremental profit sustained for six
months, $30,000 invested -> ROI = (60,000 - 30,000) / 30,000 = 100%. Here the same figures
come from events: over six months, 1,000 sessions a month on the treated channel (app) and
on the control channel (web), 10% of each converting; treated orders are worth $350 and
control orders $100. So RPV is $35 vs $10, the uplift $25 per session, the incremental
revenue 6,000 x $25 = $150,000 a.k.a. $25,000 a month, the incremental profit 40% of it =
$10,000 a month. Events outside the six months, or on another channel, must not count.

The initiative is declared with the CLI a user runs; a worker is SIGKILLed mid-stream and
another takes over; a real Prometheus scrapes it and evaluates the recording rules of
``streams.initiatives.rules``. The interval is checked against the textbook formula written here.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import orjson
import yaml

from streams.config import Settings
from streams.initiatives.rules import ROI_RULES
from streams.devtools.stack import ROOT, PrometheusProcess, settings_env
from tests.e2e.test_exact import JOIN_S, scrape
from tests.helpers import free_port, send_events, wait_until

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
END = datetime(2026, 7, 1, tzinfo=timezone.utc)


def article_events() -> list[dict]:
    """Sessions and orders of both arms, one month at a time, plus noise that must not count."""
    events: list[dict] = []
    n = 0

    def add(kind: str, at: datetime, **fields) -> None:
        nonlocal n
        n += 1
        events.append({"event_id": f"e{n}", "type": kind, "schema_version": 1,
                       "occurred_at": at.isoformat().replace("+00:00", "Z"), "storefront": "demo-shop", **fields})

    for month in range(6):
        first = START.replace(month=1 + month)
        for channel, value_minor in (("app", 35_000), ("web", 10_000)):
            for i in range(1000):
                at = first + timedelta(days=i % 28, minutes=i)
                add("session.started", at, session_id=f"s{n}", visitor_id=f"v{n}", channel=channel, device="mobile")
                if i % 10 == 0:
                    add("order.placed", at + timedelta(minutes=3), order_id=f"o{n}", customer_id=f"c{n}",
                        total_minor=value_minor, currency="USD", first_order=True, channel=channel, device="mobile")
    for at in (START - timedelta(days=2), END + timedelta(days=1)):  # outside the initiative's days
        add("session.started", at, session_id=f"s{n}", visitor_id="v", channel="app", device="mobile")
        add("order.placed", at, order_id=f"o{n}", customer_id="c", total_minor=999_999, currency="USD",
            first_order=False, channel="app", device="mobile")
    add("order.placed", START + timedelta(days=3), order_id="o-social", customer_id="c", total_minor=999_999,
        currency="USD", first_order=False, channel="social", device="mobile")  # another channel
    add("order.placed", START + timedelta(days=3), order_id="o-eur", customer_id="c", total_minor=999_999,
        currency="EUR", first_order=False, channel="app", device="mobile")  # another currency
    events.sort(key=lambda e: e["occurred_at"])
    return events


def query(prometheus: PrometheusProcess, expr: str) -> dict[str, float]:
    from urllib.parse import urlencode
    from urllib.request import urlopen

    with urlopen(f"{prometheus.url}/api/v1/query?{urlencode({'query': expr})}", timeout=10) as response:
        body = orjson.loads(response.read())
    assert body["status"] == "success", body
    return {r["metric"].get("initiative", ""): float(r["value"][1]) for r in body["data"]["result"]}


def test_article_example_roi_is_100_percent_after_a_sigkill(make_settings: Callable[..., Settings], workers,
                                                             tmp_path: Path) -> None:
    settings = make_settings()
    declare = [sys.executable, "-m", "streams.cli", "initiative", "declare", "live-chat", "--start", "2026-01-01",
               "--end", "2026-07-01", "--treated", "channel=app", "--control", "channel=web",
               "--investment", "30000", "--currency", "USD", "--margin", "0.4"]
    env = {**os.environ, **settings_env(settings)}
    done = subprocess.run(declare, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "declared live-chat" in done.stderr
    listed = subprocess.run([sys.executable, "-m", "streams.cli", "initiative", "list"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and listed.stdout.startswith("live-chat\trevenue_per_visitor"), listed

    first = workers(settings, 0)
    first.wait_ready(JOIN_S)
    events = article_events()
    sender = threading.Thread(target=send_events, args=(settings, events, 500, 0.3), daemon=True)
    sender.start()

    def counted(worker) -> float:
        try:
            return sum(v for n, _, v in scrape(worker) if n == "cxpulse_events_total")
        except OSError:
            return 0.0

    wait_until(lambda: counted(first) > 2000, timeout_s=60, what="the worker counting the first events")
    assert sender.is_alive(), "every event was sent before the crash: the crash tests nothing"
    first.kill()
    second = workers(settings, 1)
    second.wait_ready(JOIN_S)
    sender.join(120)
    wait_until(lambda: counted(second) >= len(events) - 0.5 or False, timeout_s=90,
               what="the second worker counting every event")

    rules = tmp_path / "initiatives.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "initiatives", "rules": [
        {"record": name, "expr": expr} for name, expr in ROI_RULES]}]}, sort_keys=False))
    prometheus = PrometheusProcess([f"127.0.0.1:{second.metrics_port}"], port=free_port(), scrape_interval="1s",
                                   rules=[rules], workdir=tmp_path / "prometheus").start()
    try:
        wait_until(lambda: query(prometheus, "initiative:cxpulse_initiative_roi:ratio"), timeout_s=60,
                   what="Prometheus recording the ROI")
        roi = query(prometheus, "initiative:cxpulse_initiative_roi:ratio")
        profit = query(prometheus, "initiative:cxpulse_initiative_incremental_profit:estimate")
        uplift = query(prometheus, "initiative:cxpulse_initiative_uplift:diff")
        lower = query(prometheus, "initiative:cxpulse_initiative_roi:ratio_lower")
        upper = query(prometheus, "initiative:cxpulse_initiative_roi:ratio_upper")
    finally:
        prometheus.stop()
    assert math.isclose(uplift["live-chat"], 25.0, rel_tol=1e-9)  # $35 - $10 per session
    assert math.isclose(profit["live-chat"], 60_000.0, rel_tol=1e-9)  # $10,000 a month for six months
    assert math.isclose(roi["live-chat"], 1.0, rel_tol=1e-9)  # the article's 100%

    # 95% interval, by hand: per-session revenue is $350 (app) / $100 (web) for 10% of sessions, else 0.
    var_t, var_c = 0.1 * 350**2 - 35.0**2, 0.1 * 100**2 - 10.0**2
    se_revenue = 6000 * math.sqrt(var_t / 6000 + var_c / 6000)
    half = 1.959964 * 0.4 * se_revenue / 30_000
    assert math.isclose(lower["live-chat"], 1.0 - half, rel_tol=1e-6), (lower, 1.0 - half)
    assert math.isclose(upper["live-chat"], 1.0 + half, rel_tol=1e-6), (upper, 1.0 + half)
