"""The live exposition passes `promtool check metrics` with nothing to report.

A worker counts simulated traffic with out-of-order, late and duplicate events
and a few malformed messages, so every metric family has samples; then its
/metrics goes through promtool's linter (names, units, suffixes, label use).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from kafka import KafkaProducer

from streams.devtools.stack import ROOT, WorkerProcess
from tests.helpers import wait_until


def test_promtool_check_metrics_reports_nothing(make_settings, tmp_path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by ./dev setup (Debian package prometheus)"
    settings = make_settings()
    worker = WorkerProcess(settings, log_path=tmp_path / "worker.log").start()
    try:
        worker.wait_ready(90)
        env_topics = [f"--bootstrap={settings.bootstrap_servers}"]
        subprocess.run(
            [sys.executable, "-m", "streams.cli", "simulate", "--kafka", *env_topics, "--events", "20000",
             "--no-pace", "--warmup", "900", "--ooo-share", "0.02", "--late-share", "0.01", "--late-delay", "200",
             "--dup-share", "0.01", "--seed", "5"],
            check=True, capture_output=True, cwd=ROOT,
            env={**__import__("os").environ, "CXPULSE_TOPIC_SESSIONS": settings.topic_sessions,
                 "CXPULSE_TOPIC_ORDERS": settings.topic_orders, "CXPULSE_TOPIC_TICKETS": settings.topic_tickets,
                 "CXPULSE_TOPIC_SURVEYS": settings.topic_surveys}, timeout=300)
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
        producer.send(settings.topic_orders, value=b"{oops").get(timeout=10)
        producer.close()

        def settled() -> str | None:
            text = worker.scrape()
            families = {"cxpulse_events_rejected_total{", "cxpulse_ticket_first_response_seconds_bucket{",
                        "cxpulse_events_late_total{", "cxpulse_orders_placed_total{",
                        "cxpulse_window_closed_until_timestamp_seconds{"}
            return text if all(name in text for name in families) else None

        text = wait_until(settled, 60, interval_s=1, what="every metric family with samples")
        result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                                timeout=120)
        problems = (result.stdout + result.stderr).strip()
        assert result.returncode == 0 and not problems, f"promtool check metrics:\n{problems[:3000]}"
    finally:
        worker.stop()
