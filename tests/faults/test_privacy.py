"""No id leaves the worker: a simulated run's /metrics and worker log hold none of its ids.

Simulator -> real broker -> worker process (with a bad-event burst, so the parked-event
log lines are exercised too). Every id the simulator wrote to its ``--out`` file
(event, session, visitor, customer, order, ticket, response and product ids) is
searched for in the exposition and in the worker's log: labels are bounded sets only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import orjson
from kafka import KafkaProducer

from streams.devtools.stack import ROOT, WorkerProcess, settings_env
from tests.faults.common import metric_sum
from tests.helpers import wait_until

ID_FIELDS = ("event_id", "session_id", "visitor_id", "customer_id", "order_id", "ticket_id", "response_id",
             "product_id")


def test_no_simulated_id_in_metrics_or_logs(make_settings, tmp_path) -> None:
    settings = make_settings()
    worker = WorkerProcess(settings, log_path=tmp_path / "worker.log").start()
    try:
        worker.wait_ready(90)
        out = tmp_path / "sent.jsonl"
        subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--kafka", "--bootstrap",
                        settings.bootstrap_servers, "--no-pace", "--events", "3000", "--rate", "50", "--seed", "4",
                        "--dup-share", "0.02", "--late-share", "0.02", "--late-delay", "600", "--out", str(out)],
                       env={**os.environ, **settings_env(settings)}, cwd=ROOT, check=True, timeout=120,
                       capture_output=True)
        sent = [orjson.loads(line) for line in out.read_bytes().splitlines() if line.strip()]
        # bad events carrying ids, so the dead-letter path and its log lines see ids too
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
        for event in sent[:50]:
            producer.send(settings.topic_orders if not event["type"].startswith("order") else settings.topic_sessions,
                          orjson.dumps(event))
        producer.flush()
        producer.close()
        wait_until(lambda: metric_sum(worker.scrape(), "cxpulse_events_rejected_total") >= 50, 60, 0.5,
                   what="the wrong-topic burst parked")
        exposition = worker.scrape()
        log = worker.log_path.read_text(errors="replace")
        ids = {str(event[name]) for event in sent for name in ID_FIELDS if event.get(name)}
        assert len(ids) > 1000
        token = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]*")
        seen_in_metrics = ids & set(token.findall(exposition))
        seen_in_log = ids & set(token.findall(log))
        assert not seen_in_metrics, f"ids in /metrics: {sorted(seen_in_metrics)[:10]}"
        assert not seen_in_log, f"ids in the worker log: {sorted(seen_in_log)[:10]}"
    finally:
        worker.stop()
