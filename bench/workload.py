"""The fixed, seeded workloads every approach of a bench run reads.

Events come from the simulator (``streams.devtools.simulate.generate``) with a fixed
seed and start time, so a workload is byte-identical from run to run. Each
event goes to its family's topic and to the partition its key maps to
(``streams.contract.partition_for``), exactly as ``streams.producer.Producer``
places it. Two layouts:

- ``single``: one keyed JSON object per message (what kcat or a third-party
  producer sends);
- ``batched``: a JSON array of up to 100 events per message, per partition in
  send order (``Producer(batch_events=100)``, the producer library's default).

Loading uses confluent-kafka (the fastest producer here) so loading stays a
small part of the run; the bytes are the ones ``Producer`` would send. ``load``
produces a workload before any consumer starts (a backlog); ``Feeder`` produces
it at a paced rate while a worker runs, so the worker's lag, and the fetched
messages it buffers, stay small whatever the event count.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Iterator, Literal

import orjson

from streams.config import Settings
from streams.contract import EVENT_TYPES, message_key
from streams.contract import partition_for
from streams.producer import BATCH_HEADROOM_BYTES, pack_messages
from streams.devtools.simulate import STOREFRONTS, SimConfig, Storefront, generate

Layout = Literal["single", "batched"]
SEED = 20261123
BATCH_EVENTS = 100


@dataclass(frozen=True)
class Workload:
    layout: Layout
    events: int
    storefronts: int = 4  # up to 6 are the simulator's; more are synthetic ("store-NN")
    sim_rate_per_s: float = 200.0  # event-time rate: decides how many windows the events span

    @property
    def name(self) -> str:
        rate = "" if self.sim_rate_per_s == 200.0 else f"-r{self.sim_rate_per_s:g}"
        return f"{self.layout}-{self.events}-s{self.storefronts}{rate}"


def storefronts(n: int) -> tuple[Storefront, ...]:
    if n <= len(STOREFRONTS):
        return STOREFRONTS[:n]
    currencies = ("EUR", "GBP", "USD")
    return tuple(Storefront(f"store-{i:02d}", currencies[i % 3], 3_000 + 400 * i, 1.0) for i in range(n))


def namespace_settings(base: Settings, tag: str | None = None) -> Settings:
    """Settings whose topics (internal ones included), state topic and app id are this namespace's own."""
    prefix = f"b{tag or uuid.uuid4().hex[:8]}."
    d = Settings()
    return replace(
        base,
        topic_sessions=prefix + d.topic_sessions, topic_orders=prefix + d.topic_orders,
        topic_tickets=prefix + d.topic_tickets, topic_surveys=prefix + d.topic_surveys,
        topic_deadletter=prefix + d.topic_deadletter, topic_state=prefix + d.topic_state,
        topic_customers=prefix + d.topic_customers, topic_windows=prefix + d.topic_windows,
        topic_initiatives=prefix + d.topic_initiatives, app_id=prefix + d.app_id,
    )


def fresh_app(settings: Settings) -> Settings:
    """Same source topics; a new state, dead-letter, customer and window topic and app id
    (consumer group, and the prefix of the sink's transactional ids).

    The customer and window topics are internal (the app's window stage writes them, its
    customer and merge stages read them from the start): shared, a new app would also
    read every fact and closed window the apps before it wrote.
    """
    from streams.devtools.broker import create_topics

    tag = uuid.uuid4().hex[:6]
    fresh = replace(settings, topic_state=f"{settings.topic_state}.{tag}",
                    topic_deadletter=f"{settings.topic_deadletter}.{tag}",
                    topic_customers=f"{settings.topic_customers}.{tag}",
                    topic_windows=f"{settings.topic_windows}.{tag}", app_id=f"{settings.app_id}.{tag}")
    create_topics(fresh)  # explicit: an auto-created state topic would have 1 partition
    return fresh


def sim_config(workload: Workload) -> SimConfig:
    return SimConfig(seed=SEED, rate_per_s=workload.sim_rate_per_s, storefronts=storefronts(workload.storefronts))


def events_of(workload: Workload) -> Iterator[dict]:
    """The workload's events in send order (each time the same: the simulator is seeded)."""
    return itertools.islice(generate(sim_config(workload)), workload.events)


def messages(workload: Workload, settings: Settings,
             cells: dict[str, int] | None = None) -> list[tuple[str, int, bytes | None, bytes]]:
    """(topic, partition, key, value) in send order.

    ``cells``, when given, receives the events per storefront and minute of event
    time (``cell_of``): what a peer counting the workload must report.
    """
    topics = settings.topics
    out: list[tuple[str, int, bytes | None, bytes]] = []
    grouped: dict[tuple[str, int], list[bytes]] = defaultdict(list)
    for event in events_of(workload):
        if cells is not None:
            cell = cell_of(event)
            cells[cell] = cells.get(cell, 0) + 1
        key = message_key(event)
        topic = topics[EVENT_TYPES[event["type"]].family]
        partition = partition_for(key, settings.partitions)
        value = orjson.dumps(event)
        if workload.layout == "single":
            out.append((topic, partition, key.encode(), value))
        else:
            group = grouped[(topic, partition)]
            group.append(value)
            if len(group) == BATCH_EVENTS:
                out.append((topic, partition, None, b"[" + b",".join(group) + b"]"))
                group.clear()
    for (topic, partition), group in grouped.items():
        for value in pack_messages(group, BATCH_EVENTS, settings.max_message_bytes - BATCH_HEADROOM_BYTES):
            out.append((topic, partition, None, value))
    return out


def cell_of(event: dict) -> str:
    """An event's ``storefront|window start``: its 1-minute tumbling window on ``occurred_at`` (ISO-8601, UTC).

        >>> cell_of({"storefront": "harbor-tea", "occurred_at": "2024-05-14T12:03:59.995Z"})
        'harbor-tea|2024-05-14T12:03'
    """
    return f"{event['storefront']}|{event['occurred_at'][:16]}"


def load(workload: Workload, settings: Settings, cells: dict[str, int] | None = None) -> dict:
    """Create the namespace's topics and produce the workload; return what was loaded.

    ``cells``: as for ``messages``.
    """
    from streams.devtools.broker import create_topics

    create_topics(settings)
    began = time.monotonic()
    batch = messages(workload, settings, cells)
    generated_s = time.monotonic() - began
    return {"workload": workload.name, "events": workload.events, "generate_s": round(generated_s, 2),
            **produce(batch, settings, workload.name)}


def produce(batch: list[tuple[str, int, bytes | None, bytes]], settings: Settings, name: str = "") -> dict:
    """Produce ``batch`` (``messages``) to its topics, which must exist; how many and how fast."""
    from confluent_kafka import Producer as Confluent

    producer = Confluent({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 20, "acks": "all",
                          "batch.num.messages": 10_000, "queue.buffering.max.messages": 1_000_000,
                          "queue.buffering.max.kbytes": 1_048_576, "message.max.bytes": 2_000_000})
    errors: list[str] = []

    def delivered(err, msg) -> None:
        if err is not None:
            errors.append(str(err))

    began = time.monotonic()
    total_bytes = 0
    for topic, partition, key, value in batch:
        total_bytes += len(value)
        while True:
            try:
                producer.produce(topic, value=value, key=key, partition=partition, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(120)
    if left or errors:
        raise RuntimeError(f"loading {name}: {left} undelivered, errors {errors[:3]}")
    return {"messages": len(batch), "bytes": total_bytes, "load_s": round(time.monotonic() - began, 2)}


def events_in(value: bytes) -> int:
    """Events of one workload message (a JSON object, or an array of them)."""
    return value.count(b'"event_id":') if value[:1] == b"[" else 1


class Feeder:
    """Produces (topic, partition, key, value) messages in a thread, paced at ``per_s`` events/s.

    ``produced`` is the count of events handed to the producer so far; ``done`` is set
    once every message is acknowledged by the broker.
    """

    def __init__(self, batch: list[tuple[str, int, bytes | None, bytes]], settings: Settings, per_s: float) -> None:
        self.batch, self.settings, self.per_s = batch, settings, per_s
        self.produced = 0
        self.errors: list[str] = []
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-feeder")

    def start(self) -> "Feeder":
        self._thread.start()
        return self

    def _run(self) -> None:
        from confluent_kafka import Producer as Confluent

        producer = Confluent({"bootstrap.servers": self.settings.bootstrap_servers, "linger.ms": 5, "acks": "all",
                              "message.max.bytes": 2_000_000})

        def delivered(err, msg) -> None:
            if err is not None:
                self.errors.append(str(err))

        began = time.monotonic()
        for topic, partition, key, value in self.batch:
            while self.produced > (time.monotonic() - began) * self.per_s:
                time.sleep(0.002)
                producer.poll(0)
            producer.produce(topic, value=value, key=key, partition=partition, on_delivery=delivered)
            producer.poll(0)
            self.produced += events_in(value)
        producer.flush(120)
        self.done.set()

    def join(self, timeout_s: float = 120.0) -> None:
        self._thread.join(timeout_s)
