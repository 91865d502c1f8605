"""Baseline: idiomatic Faust, a tumbling windowed table updated once per event.

``app.Table(...).tumbling(60)`` keyed by storefront, ``table[key] += 1`` per
event (a batched message is decoded and each of its events counted). Run as a
child process by ``bench.run``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta

import faust
import orjson


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topics", required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--cap", type=float, default=30.0)
    p.add_argument("--app-id", required=True)
    p.add_argument("--web-port", type=int, required=True)
    p.add_argument("--datadir", required=True)
    a = p.parse_args()
    os.makedirs(a.datadir, exist_ok=True)
    app = faust.App(
        a.app_id, broker=f"kafka://{a.bootstrap}", web_enabled=False, web_port=a.web_port, datadir=a.datadir,
        topic_partitions=4, consumer_auto_offset_reset="earliest", store="memory://",
        # Tansu answers JoinGroup after half the session timeout (ENVIRONMENT.md).
        broker_session_timeout=10, broker_heartbeat_interval=1, broker_rebalance_timeout=10,
    )
    counts = app.Table("counts", default=int, partitions=4).tumbling(60, expires=timedelta(hours=2))
    source = app.topic(*a.topics.split(","), value_serializer="raw", key_serializer="raw")
    seen = {"events": 0, "first": None, "cpu0": None}

    def finish() -> None:
        elapsed = time.monotonic() - seen["first"]
        print(json.dumps({"events": seen["events"], "seconds": elapsed,
                          "cpu_s": time.process_time() - seen["cpu0"], "capped": seen["events"] < a.events}),
              flush=True)
        os._exit(0)

    @app.agent(source)
    async def count(stream):
        async for value in stream:
            if seen["first"] is None:
                seen["first"], seen["cpu0"] = time.monotonic(), time.process_time()
            parsed = orjson.loads(value)
            for event in parsed if type(parsed) is list else (parsed,):
                counts[event["storefront"]] += 1
                seen["events"] += 1
            if seen["events"] >= a.events or time.monotonic() - seen["first"] > a.cap:
                finish()

    sys.argv = [sys.argv[0], "worker", "-l", "warning", "--without-web"]
    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
