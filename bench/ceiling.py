"""Ceiling: the bare confluent-kafka loop, consume(1000) + orjson + a dict increment per event.

Run as a child process by ``bench.run``; prints one JSON line with events, seconds and CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import orjson
from confluent_kafka import Consumer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topics", required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--cap", type=float, default=30.0)
    a = p.parse_args()
    consumer = Consumer({"bootstrap.servers": a.bootstrap, "group.id": f"ceiling-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         # Tansu answers JoinGroup after half the session timeout (ENVIRONMENT.md)
                         "session.timeout.ms": 10_000, "heartbeat.interval.ms": 1_000})
    consumer.subscribe(a.topics.split(","))
    counts: Counter = Counter()
    events = 0
    first = cpu0 = None
    deadline = time.monotonic() + 60 + a.cap
    while events < a.events and time.monotonic() < deadline:
        batch = consumer.consume(1000, timeout=0.5)
        if not batch:
            continue
        if first is None:
            first, cpu0 = time.monotonic(), time.process_time()
            deadline = first + a.cap
        for msg in batch:
            if msg.error():
                continue
            value = orjson.loads(msg.value())
            if type(value) is list:
                for event in value:
                    counts[event["type"]] += 1
                events += len(value)
            else:
                counts[value["type"]] += 1
                events += 1
    elapsed = time.monotonic() - first if first else 0.0
    cpu = time.process_time() - cpu0 if cpu0 is not None else 0.0
    consumer.close()
    print(json.dumps({"events": events, "seconds": elapsed, "cpu_s": cpu, "capped": events < a.events}))


if __name__ == "__main__":
    main()
