"""A cardinality attack through a real worker: 100k distinct label values.

Sessions with 100,000 distinct storefronts and channels (device is an enum the
contract already bounds) go through the producer library to a worker with a
small budget. Every event is still counted (re-labelled `other`, never
dropped), every metric stays within segment_cap + 1 series per partition, the
overflow is counted, and the worker's memory stays bounded.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

from prometheus_client.parser import text_string_to_metric_families

from streams.producer import Producer
from streams.devtools.stack import WorkerProcess
from tests.helpers import metric_sum, wait_until

EVENTS = 100_000
LABEL_CAP, SEGMENT_CAP = 20, 60


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _events(start: int, stop: int, now: datetime) -> list[dict]:
    return [{"event_id": f"atk-{i}", "type": "session.started", "schema_version": 1,
             "occurred_at": (now - timedelta(seconds=30)).isoformat(), "storefront": f"s{i}",
             "session_id": f"ses-{i}", "visitor_id": f"v-{i}", "channel": f"c{i}", "device": "mobile"}
            for i in range(start, stop)]


def test_100k_distinct_label_values_stay_within_the_series_budget(make_settings, tmp_path) -> None:
    settings = make_settings(label_cap=LABEL_CAP, segment_cap=SEGMENT_CAP)
    worker = WorkerProcess(settings, log_path=tmp_path / "worker.log").start()
    try:
        worker.wait_ready(90)
        now = datetime.now(timezone.utc)

        def counted() -> int:
            return int(metric_sum(worker.scrape(), "cxpulse_events_total"))

        with Producer.from_settings(settings, batch_events=500) as producer:
            for event in _events(0, 1_000, now):
                producer.send(event)
        wait_until(lambda: counted() >= 1_000, 60, interval_s=0.5, what="the first 1,000 events")
        rss_before = _rss_mb(worker.process.pid)
        with Producer.from_settings(settings, batch_events=500) as producer:
            for start in range(1_000, EVENTS, 10_000):
                for event in _events(start, min(start + 10_000, EVENTS), now):
                    producer.send(event)
        wait_until(lambda: counted() >= EVENTS, 180, interval_s=1, what=f"{EVENTS:,} events counted")
        time.sleep(1)
        rss_after = _rss_mb(worker.process.pid)

        series: Counter[str] = Counter()
        storefronts: dict[str, set[str]] = defaultdict(set)
        sessions = overflow = 0
        for family in text_string_to_metric_families(worker.scrape()):
            for sample in family.samples:
                series[sample.name] += 1
                if sample.name == "cxpulse_sessions_started_total":
                    sessions += int(sample.value)
                    storefronts[sample.labels["partition"]].add(sample.labels["storefront"])
                if sample.name == "cxpulse_label_overflow_total":
                    overflow += int(sample.value)
        assert sessions == EVENTS, "overflow must re-label events, never drop them"
        budget = (SEGMENT_CAP + 1) * settings.partitions
        over = {name: n for name, n in series.items() if name.startswith("cxpulse_sessions") and n > budget}
        assert not over, f"series over the budget of {budget}: {over}"
        window_budget = budget * len(settings.views_ms) * 2  # closed and open, per view
        assert series["cxpulse_window_sessions_started"] <= window_budget
        assert all(len(values) <= LABEL_CAP + 1 for values in storefronts.values())
        assert overflow >= EVENTS - 2 * LABEL_CAP * settings.partitions
        print(f"\nseries of cxpulse_sessions_started_total: {series['cxpulse_sessions_started_total']} "
              f"(budget {budget}); RSS {rss_before:.0f} -> {rss_after:.0f} MB over {EVENTS:,} distinct values")
        # Bounded: label state is capped; what remains is the dedupe horizon's event ids.
        assert rss_after - rss_before < 120, f"RSS grew {rss_after - rss_before:.0f} MB"
    finally:
        worker.stop()
