"""What Prometheus returns for every event-time window equals the analyst's number.

One run of about 15 minutes of event time, sent paced at 10x real time into a stack of a
real broker, cxpulse workers writing complete windows to a real Prometheus (remote write,
its out-of-order window on), and the shipped recording rules. The traffic carries what
production does to numbers:

* out-of-order events (within grace), duplicates, and late session starts (beyond grace);
* a storefront and a channel that first appear mid-run;
* the order family 3 minutes behind the others from minute 4 to the end (a slow producer);
* a quiet partition: ticket partition 3 gets nothing for minutes 3 to 10;
* a worker SIGKILLed mid-run and replaced by a new one.

Then, for **every** complete 1-minute window and every 5-minute window ending at a minute
boundary, per storefront and per storefront x channel, every headline KPI that Prometheus
computes with the expressions the rules and dashboards use (``rules.window_kpi_expr``)
must equal ``tests/reference.py`` computed from the events as sent: counts and money
exactly, quantiles within the merge stage's stated 1%.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import orjson
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from streams.catalog import KPIS
from streams.config import Settings
from streams.contract import EVENT_TYPES, FAMILY_KEY, message_key
from streams.devtools.simulate import CHANNELS, STOREFRONTS, SimConfig, generate
from streams.devtools.stack import PrometheusProcess, WorkerProcess, http_get, worker_settings
from streams.mixin import rules
from tests.helpers import BUSINESS_HOURS, free_port, metric_sum, wait_until
from tests.reference import Params, Reference, event_ms, partition_of

MINUTE = 60_000
SPAN_MS = 15 * MINUTE
SPEEDUP = 10.0  # event time per wall time while sending
RATE = 30.0  # events per second of event time (about 200 sessions a minute per storefront)
QUIET = ("ticket", 3, 3 * MINUTE, 10 * MINUTE)  # family, partition, from, to (offsets into the run)
ORDERS_LAG_MS = 3 * MINUTE
ORDERS_LAG_FROM = 4 * MINUTE
NEW_FROM = 6 * MINUTE  # the new storefront and the new channel start here
QUANTILE_ERROR = 0.01  # docs/metrics.md: the merge stage's sketches, 1% relative


def _traffic(start_ms: int) -> list[tuple[int, dict[str, Any]]]:
    """(send time in event ms, event), sorted by send time: the run described above."""
    base = SimConfig(seed=21, start_ms=start_ms, rate_per_s=RATE, storefronts=STOREFRONTS[:3], warmup_ms=15 * MINUTE,
                     ooo_share=0.03, dup_share=0.02, support_time_scale=0.1)
    channels = {**CHANNELS, "tiktok": CHANNELS["social"]}
    newcomer = replace(base, seed=22, start_ms=start_ms + NEW_FROM, rate_per_s=RATE / 4,
                       storefronts=STOREFRONTS[3:4], channels=channels)
    out: list[tuple[int, dict[str, Any]]] = []
    for cfg in (base, newcomer):
        step = 1000 / cfg.rate_per_s
        for i, event in enumerate(generate(cfg)):
            sent = int(cfg.start_ms + i * step)
            if sent >= start_ms + SPAN_MS:
                break
            out.append((sent, event))
    messy = []
    for n, (sent, event) in enumerate(out):
        family = EVENT_TYPES[event["type"]].family
        offset = sent - start_ms
        if (family, partition_of(event[FAMILY_KEY[family]], 4)) == QUIET[:2] and QUIET[2] <= offset < QUIET[3]:
            continue  # the quiet partition: these never happened
        if family == "order" and offset >= ORDERS_LAG_FROM:
            sent += ORDERS_LAG_MS  # a slow producer: orders reach Kafka 3 minutes behind
        elif event["type"] == "session.started" and n % 50 == 0 and offset > 2 * MINUTE:
            sent += 4 * MINUTE  # a late session start: beyond the 2-minute grace of its partition
        messy.append((sent, event))
    messy.sort(key=lambda item: item[0])
    return messy


def _send(settings: Settings, traffic: list[tuple[int, dict]], wall_start: float, event_start: int) -> None:
    """Send each event when its send time comes, at SPEEDUP x real time, keyed as producers do."""
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=20)
    try:
        for sent, event in traffic:
            due = wall_start + (sent - event_start) / 1000 / SPEEDUP
            delay = due - time.monotonic()
            if delay > 0.05:
                producer.flush()
                time.sleep(delay)
            topic = settings.topics[EVENT_TYPES[event["type"]].family]
            producer.send(topic, key=message_key(event).encode(), value=orjson.dumps(event))
    finally:
        producer.flush()
        producer.close()


def _query_range(prometheus: PrometheusProcess, expr: str, start_s: float, end_s: float) -> dict[tuple, dict[int, float]]:
    """Prometheus' answer at every minute from start to end: {labels: {t_ms: value}}."""
    params = urllib.parse.urlencode({"query": expr, "start": start_s, "end": end_s, "step": 60})
    status, body = http_get(f"{prometheus.url}/api/v1/query_range?{params}", 30.0)
    assert status == 200, body[:500]
    out: dict[tuple, dict[int, float]] = {}
    for series in json.loads(body)["data"]["result"]:
        out[tuple(sorted(series["metric"].items()))] = {int(float(t) * 1000): float(v) for t, v in series["values"]}
    return out


def _same(kpi_key: str, got: float, want: Any) -> bool:
    if kpi_key.endswith(("_p50", "_p90")):
        return abs(got - want) <= QUANTILE_ERROR * abs(want) + 1e-9
    want = float(want) if isinstance(want, Decimal) else want
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)


def test_every_window_prometheus_returns_equals_the_reference(make_settings, tmp_path) -> None:
    port = free_port()
    prometheus_port = free_port()
    settings = make_settings(remote_write_url=f"http://127.0.0.1:{prometheus_port}/api/v1/write",
                             metrics_port=port, business_hours=BUSINESS_HOURS)
    workers: list[WorkerProcess] = []
    prometheus = None
    try:
        for index in range(2):
            workers.append(WorkerProcess(worker_settings(settings, index), index,
                                         tmp_path / f"worker-{index}.log").start())
        prometheus = PrometheusProcess([f"127.0.0.1:{port + i}" for i in range(3)], port=prometheus_port,
                                       workdir=tmp_path / "prometheus").start()
        for worker in workers:
            worker.wait_ready(120)
        # event time: the last 15 minutes before now + the send time at 10x
        now_ms = int(time.time() * 1000)
        start_ms = now_ms - now_ms % MINUTE - 20 * MINUTE
        traffic = _traffic(start_ms)
        wall_start = time.monotonic()
        half = len(traffic) // 2
        _send(settings, traffic[:half], wall_start, start_ms)
        workers[1].kill()  # SIGKILL mid-run: no flush, no commit
        workers.append(WorkerProcess(worker_settings(settings, 2), 2, tmp_path / "worker-2.log").start())
        _send(settings, traffic[half:], wall_start, start_ms)
        last_event = max(event_ms(e["occurred_at"]) for _, e in traffic)

        # every window up to the end of the traffic minus grace and idleness is complete
        target = last_event - settings.grace_ms - settings.idle_partition_ms - 2 * MINUTE
        live = [w for w in workers if w.process.poll() is None]

        def complete_until() -> float:
            """The earliest complete-until mark over every family and merge partition, in ms."""
            marks: dict[tuple[str, str], float] = {}
            for worker in live:
                for family in text_string_to_metric_families(worker.scrape()):
                    for sample in family.samples:
                        if sample.name == "cxpulse_window_complete_until_timestamp_seconds":
                            marks[sample.labels["family"], sample.labels["partition"]] = sample.value * 1000
            return min(marks.values()) if len(marks) == 4 * settings.partitions else 0

        print(f"sent {len(traffic)} events in {time.monotonic() - wall_start:.0f}s")
        # The mark as the wait saw it: every window up to it was complete then, and the export wait
        # below has them written. Read again later, a partition between owners (the restarted
        # worker joining late under load) has no mark and the minimum would say 0.
        until = int(wait_until(lambda: (mark := complete_until()) >= target and mark, 240, interval_s=2,
                               what="windows complete up to the end"))
        wait_until(lambda: all(metric_sum(w.scrape(), "cxpulse_window_export_queued") == 0 for w in live), 120,
                   interval_s=1, what="every complete window written to Prometheus")
        print(f"windows complete and written {time.monotonic() - wall_start:.0f}s after the first event")
        assert until <= last_event, "complete-until cannot pass the events sent"

        reference = Reference.compute((e for _, e in traffic), Params.of(settings))
        first_end = start_ms + MINUTE
        checked = mismatches = by_category = 0
        problems: list[str] = []
        for view_ms, view in ((MINUTE, "1m"), (5 * MINUTE, "5m")):
            ends = list(range(first_end + view_ms - MINUTE, until + 1, MINUTE))
            expected = {end: (reference.window_kpis(end, view_ms), reference.window_kpis(end, view_ms, "channel"),
                              reference.window_kpis(end, view_ms, "reason"),
                              reference.window_kpis(end, view_ms, "product_category"))
                        for end in ends}
            for kpi in KPIS:
                for level in rules.kpi_levels(kpi):
                    answer = _query_range(prometheus, rules.window_kpi_expr(kpi, level, view),
                                          ends[0] / 1000, ends[-1] / 1000)
                    by_channel = len(level) > 1 and level[1] in ("channel", "support_channel")
                    breakdown = level[1] if len(level) > 1 else None
                    which = {"reason": 2, "product_category": 3}.get(breakdown, 1 if by_channel else 0)
                    got: dict[tuple[int, tuple], float] = {}
                    for labels, values in answer.items():
                        names = dict(labels)
                        group = tuple(names[label] for label in level)
                        for end, value in values.items():
                            got[end, group] = value
                    for end in ends:
                        want = {group: value for (key, group), value in expected[end][which].items()
                                if key == kpi.key}
                        have = {group: value for (t, group), value in got.items() if t == end}
                        for group in set(want) | set(have):
                            checked += 1
                            by_category += breakdown == "product_category" and group in want
                            if group not in have or group not in want or not _same(kpi.key, have[group], want[group]):
                                mismatches += 1
                                if len(problems) < 30:
                                    problems.append(f"{view} window ending {datetime.fromtimestamp(end / 1000, timezone.utc):%H:%M} "
                                                    f"{kpi.key} {level} {group}: prometheus {have.get(group)} "
                                                    f"reference {want.get(group)}")
        # rule 16: distinct visitors per segment and storefront, and conversion per visitor, every window
        before_visitors, returning = checked, 0
        for view_ms, view in ((MINUTE, "1m"), (5 * MINUTE, "5m")):
            ends = list(range(first_end + view_ms - MINUTE, until + 1, MINUTE))
            answers = {
                "segment": _query_range(prometheus, f'last_over_time(cxpulse_window_visitors{{window="{view}"}}'
                                                    f"[{rules.WINDOW_RANGE}])", ends[0] / 1000, ends[-1] / 1000),
                "storefront": _query_range(prometheus, f'last_over_time(cxpulse_window_storefront_visitors'
                                                       f'{{window="{view}"}}[{rules.WINDOW_RANGE}])',
                                           ends[0] / 1000, ends[-1] / 1000),
                "conversion": _query_range(prometheus, rules.visitor_conversion_expr(view),
                                           ends[0] / 1000, ends[-1] / 1000)}
            got: dict[tuple[str, int, tuple], float] = {}
            for kind, answer in answers.items():
                names = ("storefront", "channel", "device") if kind == "segment" else ("storefront",)
                for labels, values in answer.items():
                    group = tuple(dict(labels)[label] for label in names)
                    for end, value in values.items():
                        got[kind, end, group] = value
            for end in ends:
                want: dict[tuple[str, int, tuple], float] = {
                    (kind, end, group): n for (kind, group), n in reference.window_visitors(end, view_ms).items()}
                sessions = reference.field_totals("session", "sessions_started", start_ms=end - view_ms, end_ms=end)
                returning += sum(sessions.values()) > sum(n for (kind, _, _), n in want.items() if kind == "segment")
                orders: dict[str, int] = defaultdict(int)
                for segment, n in reference.field_totals("order", "orders_placed", start_ms=end - view_ms,
                                                         end_ms=end).items():
                    orders[dict(segment)["storefront"]] += n
                for (kind, _, group), n in list(want.items()):
                    if kind == "storefront" and n:
                        want["conversion", end, group] = orders.get(group[0], 0) / n
                have = {key: value for key, value in got.items() if key[1] == end}
                # a segment without a visitor in the window (sessions of its other events only) reads 0
                have = {key: value for key, value in have.items() if value or key in want}
                for key in set(want) | set(have):
                    checked += 1
                    if key not in have or key not in want or not math.isclose(have[key], want[key], rel_tol=1e-9):
                        mismatches += 1
                        if len(problems) < 30:
                            problems.append(f"{view} window ending {datetime.fromtimestamp(end / 1000, timezone.utc):%H:%M} "
                                            f"visitors {key[0]} {key[2]}: prometheus {have.get(key)} "
                                            f"reference {want.get(key)}")
        assert not problems, f"{mismatches} of {checked} values differ:\n" + "\n".join(problems)
        assert checked - before_visitors > 500 and returning > 10, \
            "too few visitor windows, or none with a returning visitor: rule 16 was not tested"
        # and the check covered the run: most of its minutes, thousands of values
        assert until - start_ms >= 11 * MINUTE, f"windows complete only {(until - start_ms) / MINUTE:.1f} minutes in"
        assert checked > 3000, f"only {checked} values checked: the run did not produce what it should"
        assert by_category > 300, f"only {by_category} values by product category: rule 17 was not tested"
        print(f"{checked} window values equal the reference ({by_category} by product category; "
              f"{(until - start_ms) // MINUTE} minutes of event time)")
    finally:
        for worker in workers:
            worker.stop()
        if prometheus is not None:
            prometheus.stop()
