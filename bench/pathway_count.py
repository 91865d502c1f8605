"""Peer: a Pathway pipeline counting events per storefront in 1-minute event-time tumbling windows.

Measures what Pathway (engine threads from ``PATHWAY_THREADS``; ``bench.run``
measures 1 and 2) costs for the work the Quix baseline does: read the four
source topics, expand a batched message (a JSON array) into its events,
``windowby(occurred_at, tumbling(1 min), instance=storefront)`` and
``reducers.count()``.

- Reading: ``pw.io.kafka.read`` with a list of topics reads only the first
  (ENVIRONMENT.md), so one reader per topic, concatenated
  (``Table.concat_reindex``). Each message is parsed natively as JSON into one
  ``pw.Json`` column (``json_field_paths={"data": ""}``, the whole document);
  objects pass as they are and arrays are ``flatten``ed, so single-event and
  batched topics (whose last message per partition can be a lone object) take
  the same path, with no Python per row.
- Event time: ``occurred_at`` parsed with ``dt.strptime``. Pathway's tumbling
  window keeps every window open and takes late events as updates (no
  ``behavior`` cut-off), so the replayed backlog loses nothing.
- Output: ``pw.io.subscribe`` on the windowed counts; the script keeps the
  current count of every ``storefront|window start`` cell (an update is a
  retraction plus an insertion) and stops once they add up to ``--events``.

Timing, from the first record as for the other approaches: Pathway's Kafka
readers run in Rust, and the process sees nothing until the engine outputs,
so the first record's moment is taken from the engine's own clock. A reader
commits what it read every ``autocommit_duration_ms`` (50 ms here; Pathway's
default, 1500, would put a small workload in one minibatch) as a minibatch
stamped with the wall-clock time of the commit. The timed span runs from the
stamp of the first minibatch that holds events (its first record was read at
most 50 ms before it: the span favours Pathway by that much at most) to the
moment the output counts add up to ``--events``. The consumer group joins
before it (~5 s on Tansu, which answers JoinGroup after half the session
timeout) are outside the span. CPU is the whole process's (every engine and
reader thread) over the same span: a thread samples the process CPU time
every 10 ms, interpolated at the span's start.

Prints one JSON line: ``events``, ``seconds``, ``cpu_s``, ``capped``,
``counted``, ``cells``; then exits. Counts that do not reach ``--events``
within ``--cap`` seconds (or overshoot it) exit 1 with an ``error``: a peer
that silently read part of the data must not get a rate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from datetime import timedelta

import pathway as pw

wall, process_time = time.time, time.process_time


class CpuClock:
    """The process CPU time (all threads) sampled every 10 ms, for the CPU time at a past wall-clock moment."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = [(wall(), process_time())]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(0.01)
            self.samples.append((wall(), process_time()))

    def at(self, when: float) -> float:
        samples = list(self.samples)
        before = [s for s in samples if s[0] <= when] or samples[:1]
        after = [s for s in samples if s[0] > when]
        (w0, c0) = before[-1]
        if not after:
            return c0
        w1, c1 = after[0]
        return c0 + (c1 - c0) * (when - w0) / (w1 - w0)


class Event(pw.Schema):
    storefront: str
    occurred_at: str


class Message(pw.Schema):
    data: pw.Json  # the whole message: an event object, or a JSON array of events


def events_of(table: pw.Table) -> pw.Table:
    single = pw.this.data.get("event_id").is_not_none()
    objects = table.filter(single)
    arrays = table.filter(~single).flatten(pw.this.data)
    both = pw.Table.concat_reindex(objects, arrays)
    return both.select(storefront=pw.this.data["storefront"].as_str(unwrap=True),
                       occurred_at=pw.this.data["occurred_at"].as_str(unwrap=True))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topics", required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--cap", type=float, default=60.0, help="seconds from the first output; then fail")
    p.add_argument("--layout", choices=("single", "batched"), required=True)
    p.add_argument("--commit-ms", type=int, default=50)
    a = p.parse_args()
    group = f"pathway-{uuid.uuid4().hex[:8]}"
    readers = []
    for i, topic in enumerate(a.topics.split(",")):
        settings = {"bootstrap.servers": a.bootstrap, "group.id": f"{group}-{i}", "auto.offset.reset": "earliest",
                    "enable.auto.commit": "false",
                    # Tansu answers JoinGroup after half the session timeout (ENVIRONMENT.md)
                    "session.timeout.ms": "10000", "heartbeat.interval.ms": "1000"}
        if a.layout == "single":  # every message one event object: Pathway parses the two fields natively
            readers.append(pw.io.kafka.read(settings, topic=topic, format="json", schema=Event,
                                            autocommit_duration_ms=a.commit_ms, name=f"kafka-{i}"))
        else:
            raw = pw.io.kafka.read(settings, topic=topic, format="json", schema=Message,
                                   json_field_paths={"data": ""}, autocommit_duration_ms=a.commit_ms, name=f"kafka-{i}")
            readers.append(events_of(raw))
    events = pw.Table.concat_reindex(*readers)
    events = events.select(pw.this.storefront, at=pw.this.occurred_at.dt.strptime("%Y-%m-%dT%H:%M:%S.%fZ"))
    counts = events.windowby(pw.this.at, window=pw.temporal.tumbling(duration=timedelta(minutes=1)),
                             instance=pw.this.storefront).reduce(
        storefront=pw.this._pw_instance, start=pw.this._pw_window_start, n=pw.reducers.count())

    cells: dict[str, int] = {}
    seen = {"counted": 0, "t0": None}
    lock = threading.Lock()

    def report(error: str | None = None) -> None:
        with lock:
            now, cpu = wall(), process_time()
            out = {"events": seen["counted"], "seconds": now - seen["t0"] if seen["t0"] else 0.0,
                   "cpu_s": cpu - clock.at(seen["t0"]) if seen["t0"] else 0.0,
                   "capped": seen["counted"] < a.events, "counted": seen["counted"],
                   "threads": int(os.environ.get("PATHWAY_THREADS", "1")),
                   "cells": {k: v for k, v in cells.items() if v}}
            if error:
                out["error"] = error
            print(json.dumps(out), flush=True)
            os._exit(1 if error else 0)

    def on_change(key, row, time, is_addition) -> None:
        n = row["n"] if is_addition else -row["n"]
        cell = f"{row['storefront']}|{row['start']:%Y-%m-%dT%H:%M}"
        cells[cell] = cells.get(cell, 0) + n
        seen["counted"] += n

    def on_time_end(time) -> None:
        # A minibatch's updates are complete only here (a retraction may precede its insertion);
        # ``time`` is its commit stamp, wall-clock milliseconds.
        if seen["counted"] and seen["t0"] is None:
            seen["t0"] = time / 1000
        if seen["counted"] == a.events:
            report()
        if seen["counted"] > a.events:
            report(f"over-count: {seen['counted']:,} events counted, the workload has {a.events:,}")

    def watchdog() -> None:
        started = wall()
        while True:
            time.sleep(0.5)
            if seen["t0"] is None and wall() - started > 60 + a.cap:
                report(f"no output {60 + a.cap:g} s after start ({seen['counted']:,} events counted)")
            if seen["t0"] is not None and wall() - seen["t0"] > a.cap:
                report(f"time cap: {seen['counted']:,} of {a.events:,} events counted {a.cap:g} s after the first output")

    pw.io.subscribe(counts, on_change=on_change, on_time_end=on_time_end)
    threading.Thread(target=watchdog, daemon=True).start()
    clock = CpuClock()
    pw.run(monitoring_level=pw.MonitoringLevel.NONE)
    report(f"stream ended with {seen['counted']:,} of {a.events:,} events counted")


if __name__ == "__main__":
    sys.exit(main())
