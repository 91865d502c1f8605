"""Baseline: a Quix Streams app counting the same events in a 60 s tumbling window.

Runs in the bench virtualenv (Quix pins its own confluent-kafka). One
dataframe per source topic; a batched message is expanded into its events
(``apply(..., expand=True)``); each dataframe counts per key in a tumbling
window with its changelog on (Quix's default). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from datetime import timedelta

from quixstreams import Application


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topics", required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--cap", type=float, default=30.0)
    p.add_argument("--group", required=True)
    p.add_argument("--state-dir", required=True)
    a = p.parse_args()
    app = Application(broker_address=a.bootstrap, consumer_group=a.group, auto_offset_reset="earliest",
                      state_dir=a.state_dir, loglevel="WARNING",
                      # Tansu answers JoinGroup after half the session timeout (ENVIRONMENT.md);
                      # librdkafka's default 45 s would make every join take 22 s.
                      consumer_extra_config={"session.timeout.ms": 10_000, "heartbeat.interval.ms": 1_000})
    seen = {"events": 0, "first": None, "cpu0": None}

    def tick(value):
        if seen["first"] is None:
            seen["first"], seen["cpu0"] = time.monotonic(), time.process_time()
        seen["events"] += 1
        if seen["events"] >= a.events or time.monotonic() - seen["first"] > a.cap:
            elapsed = time.monotonic() - seen["first"]
            print(json.dumps({"events": seen["events"], "seconds": elapsed,
                              "cpu_s": time.process_time() - seen["cpu0"], "capped": seen["events"] < a.events}),
                  flush=True)
            os._exit(0)
        return value

    for name in a.topics.split(","):
        topic = app.topic(name, value_deserializer="json", key_deserializer="bytes")
        sdf = app.dataframe(topic)
        sdf = sdf.apply(lambda v: v if isinstance(v, list) else [v], expand=True)
        sdf = sdf.update(tick)
        sdf.tumbling_window(timedelta(seconds=60)).count().current()
    logging.getLogger("quixstreams").setLevel(logging.WARNING)
    app.run()


if __name__ == "__main__":
    main()
