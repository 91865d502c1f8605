"""Baseline: a Quix Streams app counting the same events in a 60 s tumbling window.

Runs in the bench virtualenv (Quix pins its own confluent-kafka). One
dataframe per source topic; a batched message is expanded into its events
(``apply(..., expand=True)``); each dataframe counts per key in a tumbling
window with its changelog on (Quix's default). Quix's windows are per message
key and on the Kafka timestamp (its default extractor), not per storefront on
``occurred_at`` as the other peers' are: counting per storefront would take a
``group_by``, i.e. a repartition topic (one more Kafka hop per event).

The count is read from the windows' output (``.current()``: the updated count
of the event's window): the script keeps the latest count of every (partition,
key, window) and stops once they add up to ``--events``, so events a window
dropped (late) never complete the run. Timed from the first window update;
CPU is the process's. Prints one JSON line (events, seconds, cpu_s, capped,
counted); a run that reaches the time cap short of ``--events`` reports
``capped`` with the rate over what it counted, and one that overshoots exits
1 with an ``error``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from datetime import datetime, timedelta, timezone

from quixstreams import Application, message_context


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topics", required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--cap", type=float, default=30.0)
    p.add_argument("--group", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--lateness-s", type=float, default=86_400.0)
    a = p.parse_args()
    app = Application(broker_address=a.bootstrap, consumer_group=a.group, auto_offset_reset="earliest",
                      state_dir=a.state_dir, loglevel="WARNING",
                      # Tansu answers JoinGroup after half the session timeout (ENVIRONMENT.md);
                      # librdkafka's default 45 s would make every join take 22 s.
                      consumer_extra_config={"session.timeout.ms": 10_000, "heartbeat.interval.ms": 1_000})
    seen = {"events": 0, "first": None, "cpu0": None}
    latest: dict = {}  # (topic, partition, key, window start) -> the window's latest count (state is per partition)

    def report(error: str | None = None) -> None:
        elapsed = time.monotonic() - seen["first"]
        cells: dict[str, int] = {}
        for (_, _, storefront, start), n in latest.items():
            cell = f"{storefront}|{datetime.fromtimestamp(start / 1000, timezone.utc):%Y-%m-%dT%H:%M}"
            cells[cell] = cells.get(cell, 0) + n
        out = {"events": seen["events"], "seconds": elapsed, "cpu_s": time.process_time() - seen["cpu0"],
               "capped": seen["events"] < a.events, "counted": seen["events"], "cells": cells}
        if error:
            out["error"] = error
        print(json.dumps(out), flush=True)
        os._exit(1 if error else 0)

    def tally(topic: str):
        def update(window, key, timestamp, headers):
            if seen["first"] is None:
                seen["first"], seen["cpu0"] = time.monotonic(), time.process_time()
            cell = (topic, message_context().partition, key, window["start"])
            seen["events"] += window["value"] - latest.get(cell, 0)
            latest[cell] = window["value"]
            if seen["events"] > a.events:
                report(f"over-count: {seen['events']:,} events counted, the workload has {a.events:,}")
            if seen["events"] == a.events or time.monotonic() - seen["first"] > a.cap:
                report()
        return update

    for name in a.topics.split(","):
        topic = app.topic(name, value_deserializer="json", key_deserializer="bytes")
        sdf = app.dataframe(topic)
        sdf = sdf.apply(lambda v: v if isinstance(v, list) else [v], expand=True)
        sdf = sdf.set_timestamp(lambda v, key, ts, headers: int(datetime.fromisoformat(v["occurred_at"]).timestamp() * 1000))
        sdf = sdf.group_by("storefront")  # Quix windows by message key: re-key through a repartition topic
        sdf = sdf.tumbling_window(timedelta(seconds=60), grace_ms=int(a.lateness_s * 1000)).count().current()
        sdf.update(tally(name), metadata=True)
    logging.getLogger("quixstreams").setLevel(logging.WARNING)
    app.run()


if __name__ == "__main__":
    main()
