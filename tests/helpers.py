"""Small helpers shared by the integration and e2e tests (no fixtures here: see conftest.py)."""

from __future__ import annotations

import json
import time
from typing import Callable, TypeVar

from streams.devtools.broker import free_port

__all__ = ["BUSINESS_HOURS", "free_port", "wait_until"]

T = TypeVar("T")


def _all_day(*ranges: tuple[int, int]) -> str:
    return ",".join(f"{hour:02}:{opens:02}-{hour:02}:{closes:02}" for hour in range(24) for opens, closes in ranges)


# Support calendars of the e2e runs (CXPULSE_BUSINESS_HOURS): opening hours that change every few minutes,
# so the minutes of simulated traffic cross many openings and closings; one storefront in a half-hour
# zone with a different pattern at the weekend; the other storefronts have no calendar.
BUSINESS_HOURS = json.dumps({
    "north-outfitters": {"timezone": "Europe/Berlin", "hours": {"mon-sun": _all_day((5, 17), (29, 41), (50, 58))}},
    "harbor-tea": {"timezone": "Asia/Kolkata", "hours": {"mon-fri": _all_day((0, 12), (20, 45)),
                                                         "sat-sun": _all_day((10, 50))}},
})


def wait_until(check: Callable[[], T], timeout_s: float = 10.0, interval_s: float = 0.05, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; return it, or fail after ``timeout_s``.

        wait_until(lambda: broker.running, timeout_s=2, what="broker up")
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last value: {value!r})")
        time.sleep(interval_s)


def metric_sum(text: str, name: str, by: str | None = None, **match: str) -> "float | dict[str, float]":
    """Sum the samples called ``name`` in a /metrics text whose labels match ``match``;
    grouped by the label ``by`` when given.

        metric_sum(worker.scrape(), "cxpulse_events_total", by="family")
    """
    from collections import defaultdict

    from prometheus_client.parser import text_string_to_metric_families

    total: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in match.items()):
                total[sample.labels.get(by, "") if by else ""] += sample.value
    return dict(total) if by else total[""]


def send_events(settings, events: list[dict], pause_every: int = 0, pause_s: float = 0.0) -> None:
    """Send events as one JSON object per message, keyed and routed as any producer would
    (kafka-python, murmur2), flushing and pausing every ``pause_every`` events."""
    import time

    import orjson
    from kafka import KafkaProducer

    from streams.contract import EVENT_TYPES, message_key

    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5)
    try:
        for i, event in enumerate(events, 1):
            topic = settings.topics[EVENT_TYPES[event["type"]].family]
            producer.send(topic, key=message_key(event).encode(), value=orjson.dumps(event))
            if pause_every and i % pause_every == 0:
                producer.flush()
                time.sleep(pause_s)
    finally:
        producer.flush()
        producer.close()


def apply_with_crashes(new_state, messages: list, rng, crashes: int, hide_aborted: bool = False):
    """Apply ``messages`` to ``new_state()`` in random batches, crashing ``crashes`` times: at a
    crash a random prefix of the batch's changelog records reaches the broker, a fresh state is
    restored from the changelog and the consumer restarts at its last commit, which lags behind
    the persisted state by a random amount. Returns (state, changelog).

    ``hide_aborted``: the crashed batch's transaction aborted, and the state that replays it
    restores without its records (the test broker hides a transaction's records from
    read_committed readers while it is pending); after the replay's first batch a fresh state
    is restored from the whole log, those records included (the broker shows aborted records
    once they are settled, and the read_uncommitted fallback reads them), and goes on from the
    last commit; from then on they stay visible."""
    changelog: list = []
    hidden: set[int] = set()  # positions in the changelog of aborted records no reader has seen yet
    state = new_state()
    committed = 0  # the consumer's committed offset: never past a fully persisted batch
    position = 0
    crash_points = set(rng.sample(range(len(messages)), k=min(crashes, len(messages))))
    reread = False
    while position < len(messages):
        size = rng.randint(1, 9)
        batch = messages[position:position + size]
        applied = state.apply(batch)
        if any(m.offset in crash_points for m in batch):
            crash_points -= {m.offset for m in batch}
            start = len(changelog)
            changelog.extend(applied.records[:rng.randint(0, len(applied.records))])
            if hide_aborted:
                hidden.update(range(start, len(changelog)))
                reread = True
            state = new_state()
            state.restore([record for i, record in enumerate(changelog) if i not in hidden])
            position = committed
            continue
        changelog.extend(applied.records)
        position += size
        committed = rng.randint(committed, position)
        if reread:
            reread = False
            hidden.clear()
            state = new_state()
            state.restore(changelog)
            position = committed
    return state, changelog


def facts_of(applied) -> list:
    """The customer facts a window-state batch sends to the customer stage, decoded."""
    from streams.pipeline.exchange import decode_facts

    return [fact for stage, _, value in applied.sends if stage == "customer" for fact in decode_facts(value)]


def read_topic(settings, topic: str, stall_s: float = 60.0) -> list[tuple[bytes, bytes]]:
    """Every committed (key, value) of ``topic``, read up to the end offsets it had when asked.

    Reads until each partition's position reaches that end, not until the broker goes quiet for
    a moment: on a busy machine a fetch can take seconds, and stopping early would read an
    older version of a state. Fails if no record arrives for ``stall_s``.

    Read uncommitted: the test broker holds a committed transaction "prepared" until a later
    one on the same partitions ends, and a read_committed end stops there; a recovering worker
    writes that later transaction (docs/operations.md, Tansu quirks), a test reading after
    every worker stopped cannot. The test broker shows aborted records to read_committed
    readers as well, so on it both levels read the same records."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                             auto_offset_reset="earliest", isolation_level="read_uncommitted",
                             enable_auto_commit=False, max_partition_fetch_bytes=16 * 1024 * 1024)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert parts, f"topic {topic} has no partitions"
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        records: list[tuple[bytes, bytes]] = []
        last_progress = time.monotonic()
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            batch = consumer.poll(timeout_ms=1000)
            if batch:
                last_progress = time.monotonic()
            for tp_records in batch.values():
                records.extend((r.key, r.value) for r in tp_records)
            behind = {tp.partition: (consumer.position(tp), ends[tp]) for tp in parts
                      if consumer.position(tp) < ends[tp]}
            assert time.monotonic() - last_progress < stall_s, (
                f"reading {topic}: nothing for {stall_s:.0f} s; partitions behind (position, end): {behind}")
        return records
    finally:
        consumer.close()


def changelog_states(settings) -> dict:
    """Every window-stage partition state as a recovery rebuilds it from the state changelog."""
    from kafka import KafkaConsumer

    from streams.contract import FAMILIES
    from streams.pipeline.window_state import PartitionState

    records = read_topic(settings, settings.topic_state)
    states = {}
    for family in FAMILIES:
        for partition in range(settings.partitions):
            state = PartitionState(family, partition, settings)
            state.restore(records)
            states[family, partition] = state
    return states
