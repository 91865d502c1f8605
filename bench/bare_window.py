"""cxpulse's window stage behind a bare loop: confluent-kafka consume(1000) ->
decode_message -> PartitionState.apply per source partition -> changelog records and
dead letters through a plain (not transactional) confluent-kafka producer,
acknowledged before the next batch -> snapshot for the scrape.

A floor for what the window stage costs per event with no engine around it. One
``cxpulse worker`` adds the rest of the product: one transaction per partition and
batch (fenced, offsets in it), the customer and merge stages and their topics,
publishing, scrapes and remote write. The garbage collector is set as the worker sets it
(``streams.runtime.worker.tune_gc``). Run as a child process by ``bench.run``; prints one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from dataclasses import replace

from confluent_kafka import Consumer, Producer

from streams.config import Settings
from streams.decode import decode_message
from streams.pipeline.records import Message, state_partition
from streams.pipeline.window_state import PartitionState
from streams.runtime.worker import tune_gc


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--settings", required=True, help="JSON of the Settings fields that differ from the defaults")
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--cap", type=float, default=30.0)
    p.add_argument("--no-changelog", action="store_true")
    a = p.parse_args()
    tune_gc()
    settings = replace(Settings(), **json.loads(a.settings))
    family_of = {topic: family for family, topic in settings.topics.items()}
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": settings.app_id,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         # Tansu answers JoinGroup after half the session timeout (ENVIRONMENT.md)
                         "session.timeout.ms": 10_000, "heartbeat.interval.ms": 1_000})
    consumer.subscribe(list(family_of))
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 1, "acks": "all"})
    states: dict[tuple[str, int], PartitionState] = {}
    snapshots: dict = {}
    counted = 0
    first = cpu0 = None
    deadline = time.monotonic() + 60 + a.cap
    while counted < a.events and time.monotonic() < deadline:
        batch = consumer.consume(1000, timeout=0.5)
        if not batch:
            continue
        if first is None:
            first, cpu0 = time.monotonic(), time.process_time()
            deadline = first + a.cap
        now_ms = int(time.time() * 1000)
        grouped: dict[tuple[str, int], list[Message]] = defaultdict(list)
        for msg in batch:
            if msg.error():
                continue
            family = family_of[msg.topic()]
            events, rejected = decode_message(msg.value(), family, max_bytes=settings.max_message_bytes,
                                              max_events=settings.max_batch_events,
                                              not_after_ms=now_ms + settings.max_clock_skew_ms,
                                              partition=msg.partition(), partitions=settings.partitions)
            grouped[(family, msg.partition())].append(Message(msg.offset(), events, rejected, msg.timestamp()[1]))
        for key, all_messages in grouped.items():
            state = states.get(key)
            if state is None:
                state = states[key] = PartitionState(key[0], key[1], settings)
            # At most batch_max messages per apply, as the worker's batches.
            for i in range(0, len(all_messages), settings.batch_max):
                applied = state.apply(all_messages[i:i + settings.batch_max])
                counted += applied.counted
                if not a.no_changelog:
                    target = state_partition(key[0], key[1], settings.partitions)
                    for record_key, value in applied.records:
                        producer.produce(settings.topic_state, value=value, key=record_key, partition=target)
                    for parked in applied.parked:
                        producer.produce(settings.topic_deadletter, value=parked.raw, partition=key[1])
            snapshots[key] = state.snapshot(snapshots.get(key))
        if not a.no_changelog:
            producer.flush(30)  # the broker has the state before the batch counts as done
        consumer.commit(asynchronous=True)
    elapsed = time.monotonic() - first if first else 0.0
    cpu = time.process_time() - cpu0 if cpu0 is not None else 0.0
    consumer.close()
    print(json.dumps({"events": counted, "seconds": elapsed, "cpu_s": cpu, "capped": counted < a.events}))


if __name__ == "__main__":
    main()
