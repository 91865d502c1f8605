"""Helpers of the fault tests and the soak: valid events, producing them, reading counters.

Events are dated *now* and carry unique ids, so nothing is late or a duplicate and
the expected count of ``cxpulse_events_total`` is simply what was produced, per
(family, partition). Produced with an explicit partition, one event per message or
small batches, by kafka-python; each event's key maps to the partition it is sent to
(the batching rule, docs/events.md).
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from streams.contract import FAMILIES, partition_for
from streams.pipeline.windows import window_start
from tests.reference import event_ms

STORES = ("north", "south")


def valid_body(rng: random.Random, family: str, now: datetime | None = None,
               partition: int | None = None, partitions: int = 1) -> dict[str, Any]:
    """One valid event of ``family``, dated ``now`` (default: the current time), with a unique id
    (and, given ``partition``, a key that Kafka's partitioner maps to it)."""
    now = now or datetime.now(timezone.utc)
    body: dict[str, Any] = {"event_id": uuid.UUID(int=rng.getrandbits(128)).hex, "schema_version": 1,
                            "occurred_at": now.isoformat(timespec="milliseconds"),
                            "storefront": rng.choice(STORES)}
    key = f"k{rng.getrandbits(40):x}"
    while partition is not None and partition_for(key, partitions) != partition:
        key = f"k{rng.getrandbits(40):x}"
    if family == "session":
        body.update(type="session.started", session_id=key, visitor_id=f"v{key}", channel=rng.choice(["web", "app"]),
                    device=rng.choice(["desktop", "mobile"]))
    elif family == "order":
        body.update(type="order.placed", order_id=key, customer_id=f"c{key}", total_minor=rng.randrange(100, 99_999),
                    currency="EUR", first_order=rng.random() < 0.3)
    elif family == "ticket":
        body.update(type="ticket.created", ticket_id=key, support_channel=rng.choice(["email", "chat"]))
    else:
        body.update(type="survey.answered", response_id=key, kind="nps", score=rng.randint(0, 10))
    return body


# The count a window of each family holds for the events valid_body makes.
FIELD = {"session": "sessions_started", "order": "orders_placed", "ticket": "tickets_created",
         "survey": "nps_responses"}


def recovered_windows(settings) -> Counter:
    """(family, partition, window start) -> events, in the windows a recovery rebuilds from the
    state changelog (read committed, as the workers read it)."""
    from tests.helpers import changelog_states

    found: Counter = Counter()
    for (family, partition), state in changelog_states(settings).items():
        for start, slot in state.windows.items():
            total = sum(cell.counts.get(FIELD[family], 0) for cell in slot.cells.values())
            if total:
                found[family, partition, start] = total
    return found


class Sender:
    """Produces valid events and remembers how many went to each (family, partition)."""

    def __init__(self, settings, seed: int = 0, batch: int = 1) -> None:
        from kafka import KafkaProducer

        self.settings = settings
        self.rng = random.Random(seed)
        self.batch = batch
        self.sent: Counter[tuple[str, int]] = Counter()
        self.windows: Counter[tuple[str, int, int]] = Counter()  # (family, partition, window start ms)
        self.producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5, acks="all",
                                      retries=5)

    def send(self, n: int) -> None:
        """Send ``n`` events (in messages of up to ``batch``) and wait for the broker to have them."""
        futures = []
        remaining = n
        while remaining > 0:
            family = self.rng.choice(FAMILIES)
            partition = self.rng.randrange(self.settings.partitions)
            size = min(remaining, self.rng.randint(1, self.batch))
            now = datetime.now(timezone.utc)
            items = [valid_body(self.rng, family, now, partition, self.settings.partitions) for _ in range(size)]
            value = orjson.dumps(items if self.batch > 1 else items[0])
            start = window_start(event_ms(items[0]["occurred_at"]), self.settings.window_ms)
            futures.append((family, partition, size, start,
                            self.producer.send(self.settings.topics[family], value=value, partition=partition)))
            remaining -= size
        self.producer.flush()
        for family, partition, size, start, future in futures:
            future.get(timeout=30)  # raises if the broker refused it: then it was not sent
            self.sent[family, partition] += size
            self.windows[family, partition, start] += size

    def close(self) -> None:
        self.producer.close(timeout=5)


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(s.labels), s.value) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name]


def metric_sum(text: str, name: str) -> float:
    return sum(value for _, value in samples(text, name))


def per_partition(texts: list[str], name: str = "cxpulse_events_total") -> Counter[tuple[str, int]]:
    """A counter per (family, partition), summed over the given scrapes (one per live worker)."""
    found: Counter[tuple[str, int]] = Counter()
    for text in texts:
        for labels, value in samples(text, name):
            if value:
                found[labels["family"], int(labels["partition"])] += int(value)
    return found


def owners(texts: list[str]) -> Counter[tuple[str, int]]:
    """How many of the scraped workers export each source partition (1 each when the group is settled)."""
    found: Counter[tuple[str, int]] = Counter()
    for text in texts:
        for labels, _ in samples(text, "cxpulse_events_total"):
            found[labels["family"], int(labels["partition"])] += 1
    return found
