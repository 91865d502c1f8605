"""Peer: a Bytewax dataflow counting events per storefront in 1-minute event-time tumbling windows.

Measures what Bytewax (1 worker, ``bytewax.run.cli_main``) costs for the work
the Quix baseline does: read the four source topics with Bytewax's own
``KafkaSource`` (one confluent-kafka consumer per partition, assigned, no
consumer group), expand a batched message (a JSON array) into its events,
``count_window`` keyed by ``storefront`` with an ``EventClock`` on the event's
``occurred_at`` and a 60 s ``TumblingWindower``.

Runs in the bench virtualenv (bench/requirements.txt), as a child of
``bench.run``. The source does not tail (``tail=False``): it stops at each
partition's end (librdkafka's partition EOF, from the Fetch high-water mark),
and EOF closes every window, so the counts Bytewax emits cover the whole
workload. Bytewax emits a window's count only when the window closes; the
backlog of 16 partitions is read batch by batch, so one partition's event
time runs far ahead of another's and the clock's lateness allowance must
cover that spread (``--lateness-s``, default one day), or events are dropped
as late. Late events are counted and fail the run.

Timed from the first message the dataflow sees to the moment the emitted
window counts add up to ``--events``; CPU is the whole process's (every
thread, librdkafka's included) over that span. Prints one JSON line:
``events, seconds, cpu_s, capped, counted, late, cells`` (``cells``: count per
``storefront|window start``, which ``bench.run`` checks against the workload),
then exits. Counts that never reach ``--events`` (or overshoot it) exit 1
with an ``error``: a peer that silently read part of the data must not get a
rate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone

import orjson
from bytewax import operators as op
from bytewax.connectors.kafka import KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower, count_window
from bytewax.run import cli_main

ALIGN = datetime(2020, 1, 1, tzinfo=timezone.utc)  # any minute boundary: windows start on whole minutes


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topics", required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--cap", type=float, default=60.0, help="seconds from the first message; then fail")
    p.add_argument("--lateness-s", type=float, default=86_400.0)
    a = p.parse_args()
    seen = {"first": None, "cpu0": None, "counted": 0, "late": 0}
    cells: dict[str, int] = {}

    def report(error: str | None = None) -> None:
        now = time.monotonic()
        elapsed = now - seen["first"] if seen["first"] is not None else 0.0
        out = {"events": seen["counted"], "seconds": elapsed,
               "cpu_s": time.process_time() - seen["cpu0"] if seen["cpu0"] is not None else 0.0,
               "capped": seen["counted"] < a.events, "counted": seen["counted"], "late": seen["late"],
               "cells": cells}
        if error:
            out["error"] = error
        print(json.dumps(out), flush=True)
        os._exit(1 if error else 0)

    def expand(msg):
        if seen["first"] is None:
            seen["first"], seen["cpu0"] = time.monotonic(), time.process_time()
        elif time.monotonic() - seen["first"] > a.cap:
            report(f"time cap: {seen['counted']:,} of {a.events:,} events counted after {a.cap:g} s")
        value = orjson.loads(msg.value)
        return value if type(value) is list else [value]

    def tally(step_id, item) -> None:
        storefront, (window_id, count) = item
        start = ALIGN + timedelta(minutes=window_id)
        cell = f"{storefront}|{start:%Y-%m-%dT%H:%M}"
        cells[cell] = cells.get(cell, 0) + count
        seen["counted"] += count
        if seen["counted"] == a.events and not seen["late"]:
            report()
        if seen["counted"] > a.events:
            report(f"over-count: {seen['counted']:,} events counted, the workload has {a.events:,}")

    def late(step_id, item) -> None:
        seen["late"] += 1

    flow = Dataflow("cxpulse_bench_count")
    source = KafkaSource([a.bootstrap], a.topics.split(","), tail=False,
                         # Tansu answers JoinGroup after half the session timeout (ENVIRONMENT.md);
                         # the source assigns partitions, but keep the setting the other peers use.
                         add_config={"session.timeout.ms": "10000"})
    messages = op.input("kafka", flow, source)
    events = op.flat_map("expand", messages, expand)
    clock = EventClock(ts_getter=lambda e: datetime.fromisoformat(e["occurred_at"]),
                       wait_for_system_duration=timedelta(seconds=a.lateness_s))
    windows = count_window("count", events, clock, TumblingWindower(length=timedelta(minutes=1), align_to=ALIGN),
                           key=lambda e: e["storefront"])
    op.inspect("tally", windows.down, tally)
    op.inspect("late", windows.late, late)
    cli_main(flow, workers_per_process=1)
    # The source reached every partition's end and every window closed, yet the counts fall short.
    report(f"stream ended with {seen['counted']:,} of {a.events:,} events counted ({seen['late']:,} dropped as late)")


if __name__ == "__main__":
    sys.exit(main())
