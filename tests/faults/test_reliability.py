"""Exactly-once under what production does beyond SIGKILL: a stalled worker, a poison message,
a lost broker. Real broker process, real worker processes, shipped defaults.

* **Zombie**: a worker is SIGSTOPped past the session timeout while events flow, another
  takes its partitions, then the stalled one is SIGCONTed. Its transactional producers were
  fenced when the new owner claimed the partitions, so it writes nothing for them. The
  counters, and the windows a full restart recovers from the changelog, equal what was sent.
* **Poison**: a 5 MB message, a 1 MB label and messages at the 1 MiB boundary are parked and
  counted by reason with the default limits; the worker stays up and counts the rest.
* **Broker loss**: /ready answers 503 within seconds of losing the broker and 200 after it
  returns, the worker never exits, and what the restarted broker holds is counted exactly.

Every guarantee is checked on both engines cxpulse ships (the zombie with one seed each).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
import time
from collections import Counter

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer

from streams.devtools.broker import create_topics
from streams.devtools.stack import http_get
from streams.pipeline.windows import window_start
from tests.faults.common import Sender, metric_sum, owners, per_partition, recovered_windows, samples, valid_body
from tests.faults.conftest import fault_settings
from tests.helpers import wait_until
from tests.reference import event_ms


ENGINES = ("kafka", "faust")


def ready_status(worker) -> int | None:
    try:
        return http_get(f"http://127.0.0.1:{worker.metrics_port}/ready", 1.0)[0]
    except OSError:
        return None


def _scrape_all(workers) -> list[str]:
    texts = []
    for worker in workers:
        if worker.process.poll() is None:
            try:
                texts.append(worker.scrape())
            except OSError:
                pass
    return texts


class FlowingSender(Sender):
    """A sender that remembers every event (for the window check) and keeps sparse families sparse."""

    def __init__(self, settings, seed: int) -> None:
        super().__init__(settings, seed=seed, batch=1)
        self.events: list[tuple[str, int, dict]] = []

    def send(self, n: int) -> None:
        from datetime import datetime, timezone

        futures = []
        for _ in range(n):
            family = self.rng.choices(("session", "order", "ticket", "survey"), (70, 10, 10, 10))[0]
            partition = self.rng.randrange(self.settings.partitions)
            body = valid_body(self.rng, family, datetime.now(timezone.utc), partition, self.settings.partitions)
            futures.append((family, partition, body,
                            self.producer.send(self.settings.topics[family], value=orjson.dumps(body),
                                               partition=partition)))
        self.producer.flush()
        for family, partition, body, future in futures:
            future.get(timeout=30)
            self.sent[family, partition] += 1
            self.events.append((family, partition, body))


@pytest.mark.parametrize("seed,engine", [(1, "kafka"), (2, "faust")])
def test_zombie_worker_stalled_past_the_session_timeout_loses_and_doubles_nothing(own_broker, fleet, seed,
                                                                                    engine) -> None:
    own_broker.start()
    settings = fault_settings(own_broker, engine=engine)
    create_topics(settings)
    a = fleet(settings, 0).wait_ready(120)
    b = fleet(settings, 1).wait_ready(120)
    wait_until(lambda: len(owners(_scrape_all([a, b]))) == 4 * settings.partitions, 90, 0.5,
               what="both workers share the partitions")
    sender = FlowingSender(settings, seed)
    stop = threading.Event()

    def flow() -> None:  # ~100 events a second while the zombie sleeps and wakes
        while not stop.is_set():
            sender.send(20)
            time.sleep(0.2)

    thread = threading.Thread(target=flow, daemon=True)
    try:
        sender.send(1000)
        wait_until(lambda: per_partition(_scrape_all([a, b])) == sender.sent, 60, 0.5, what="the first events")
        thread.start()
        time.sleep(1)
        os.kill(a.process.pid, signal.SIGSTOP)  # a long GC, a VM pause: past the 10 s session timeout
        wait_until(lambda: len(owners(_scrape_all([b]))) == 4 * settings.partitions, 90, 0.5,
                   what="the other worker owns every partition")
        time.sleep(30 - 10)
        os.kill(a.process.pid, signal.SIGCONT)  # the zombie wakes with a batch in hand
        time.sleep(15)
    finally:
        stop.set()
        thread.join(30)
    sender.send(500)
    sender.close()
    assert a.process.poll() is None and b.process.poll() is None, "no worker may exit"

    def settled() -> bool:
        texts = _scrape_all([a, b])
        return per_partition(texts) == sender.sent and all(n == 1 for n in owners(texts).values())

    try:
        wait_until(settled, 120, 1, what="every event counted once, each partition owned once")
    except AssertionError:
        got = per_partition(_scrape_all([a, b]))
        raise AssertionError(f"lost {sum((sender.sent - got).values())}, doubled {sum((got - sender.sent).values())}:"
                             f" sent {dict(sender.sent)} counted {dict(got)}") from None
    # Restart everyone, one after the other as a deploy does (the test broker wedges a group a
    # member leaves in the middle of a rebalance): what they recover is the truth about every window.
    assert a.stop(60) == 0
    wait_until(lambda: len(owners(_scrape_all([b]))) == 4 * settings.partitions, 90, 0.5,
               what="the last worker owns every partition")
    assert b.stop(60) == 0
    expected: dict[tuple[str, int, int], int] = Counter()
    for family, partition, body in sender.events:
        expected[family, partition, window_start(event_ms(body["occurred_at"]), settings.window_ms)] += 1
    got_windows = recovered_windows(settings)
    assert got_windows == expected, (
        f"recovered windows differ from what was sent: missing {dict(expected - got_windows)}, "
        f"extra {dict(got_windows - expected)}")
    c = fleet(settings, 2).wait_ready(120)
    try:
        wait_until(lambda: per_partition(_scrape_all([c])) == sender.sent, 90, 1,
                   what="a fresh worker recovers counters equal to what was sent")
    except AssertionError:
        got = per_partition(_scrape_all([c]))
        raise AssertionError(f"the fresh worker's counters: missing {dict(sender.sent - got)}, "
                             f"extra {dict(got - sender.sent)} (per family and partition)") from None


def _dead_letters(settings, want: int, timeout_s: float = 60) -> list[dict[str, bytes]]:
    consumer = KafkaConsumer(settings.topic_deadletter, bootstrap_servers=settings.bootstrap_servers,
                             group_id=None, auto_offset_reset="earliest", consumer_timeout_ms=1000,
                             max_partition_fetch_bytes=16 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    found: list[dict[str, bytes]] = []
    deadline = time.monotonic() + timeout_s
    while len(found) < want and time.monotonic() < deadline:
        for record in consumer:
            headers = dict(record.headers)
            if "cx-nudge" not in headers:  # a worker's write that only finishes transactions
                found.append({**headers, "value": record.value})
    consumer.close()
    return found


@pytest.mark.parametrize("engine", ENGINES)
def test_poison_messages_at_the_shipped_limits_are_parked_and_the_worker_stays_up(own_broker, fleet, engine) -> None:
    own_broker.start()
    settings = fault_settings(own_broker, partitions=2, engine=engine)  # the shipped limits: nothing overridden
    assert settings.max_message_bytes == 1_048_576
    create_topics(settings)
    worker = fleet(settings, 0).wait_ready(120)
    rng = random.Random(9)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, max_request_size=16 * 1024 * 1024,
                             acks="all")
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    big = b'{"pad": "' + b"x" * (5 * 1024 * 1024) + b'"}'  # 5 MB: oversized
    label = valid_body(rng, "session", now, 0, 2)
    label["channel"] = "c" * 1_000_000  # a 1 MB label, under the 1 MiB acceptance limit
    label_value = orjson.dumps(label)
    assert len(label_value) < settings.max_message_bytes
    edge_ok = valid_body(rng, "session", now, 0, 2)
    edge_ok["pad"] = ""
    edge_ok["pad"] = "y" * (settings.max_message_bytes - len(orjson.dumps(edge_ok)))
    at_limit = orjson.dumps(edge_ok)  # exactly 1 MiB, valid: counted
    assert len(at_limit) == settings.max_message_bytes
    over = orjson.dumps({**edge_ok, "pad": edge_ok["pad"] + "y"})  # one byte more: oversized
    poisons = [(big, "oversized"), (label_value, "bad_value"), (over, "oversized")]
    valid = messages = 0
    for value, _ in [(at_limit, None), *poisons]:
        for _ in range(3):  # a valid neighbour before and after each
            producer.send(settings.topic_sessions, value=orjson.dumps(valid_body(rng, "session", now, 0, 2)),
                          partition=0)
            valid += 1
            messages += 1
        producer.send(settings.topic_sessions, value=value, partition=0).get(timeout=30)
        messages += 1
    valid += 1  # the one at the limit
    producer.flush()
    producer.close()
    wait_until(lambda: metric_sum(worker.scrape(), "cxpulse_messages_total") == messages, 120, 0.5,
               what="every message read")
    text = worker.scrape()
    assert metric_sum(text, "cxpulse_events_total") == valid, "valid events around the poison are all counted"
    rejected = Counter()
    for labels, value in samples(text, "cxpulse_events_rejected_total"):
        rejected[labels["reason"]] += int(value)
    assert +rejected == Counter({"oversized": 2, "bad_value": 1})
    letters = _dead_letters(settings, len(poisons))
    by_offset = {int(letter["cx-source-offset"]): letter for letter in letters}
    assert len(by_offset) == len(poisons), f"parked {len(letters)} of {len(poisons)}"
    for letter in letters:
        if "cx-truncated" in letter:
            size = int(letter["cx-original-bytes"])
            assert size > settings.deadletter_max_bytes and len(letter["value"]) == settings.deadletter_max_bytes
            assert len(letter["cx-sha256"]) == 64
    digests = {letter["cx-sha256"].decode() for letter in letters if "cx-sha256" in letter}
    assert hashlib.sha256(big).hexdigest() in digests, "the 5 MB message is parked truncated with its digest"
    assert worker.process.poll() is None, "a message stopped the worker"
    assert ready_status(worker) == 200


@pytest.mark.parametrize("engine", ENGINES)
def test_broker_loss_turns_ready_off_and_on_and_the_worker_never_exits(own_broker, fleet, engine) -> None:
    own_broker.start()
    settings = fault_settings(own_broker, partitions=2, engine=engine)
    create_topics(settings)
    worker = fleet(settings, 0).wait_ready(120)
    before = Sender(settings, seed=17)
    before.send(400)
    before.close()
    wait_until(lambda: per_partition([worker.scrape()]) == before.sent, 60, 0.5, what="events counted")
    own_broker.kill()
    lost_at = time.monotonic()
    wait_until(lambda: ready_status(worker) == 503 and "cxpulse_broker_up 0.0" in worker.scrape(), 15, 0.2,
               what="/ready 503 and cxpulse_broker_up 0 after the broker is lost")
    noticed = time.monotonic() - lost_at
    time.sleep(20)  # an outage: the worker keeps trying, never exits, stays 503
    assert worker.process.poll() is None, f"the worker exited with {worker.process.returncode}"
    assert ready_status(worker) == 503
    own_broker.start()
    create_topics(settings)
    wait_until(lambda: ready_status(worker) == 200, 120, 0.5, what="/ready 200 after the broker returns")
    assert "cxpulse_broker_up 1.0" in worker.scrape()
    after = Sender(settings, seed=18)
    after.send(1000)
    after.close()
    # the memory broker lost everything: the worker started its partitions over and counts
    # exactly what the restarted broker holds
    wait_until(lambda: per_partition([worker.scrape()]) == after.sent, 90, 0.5,
               what="every event the restarted broker holds counted once")
    assert worker.process.poll() is None, "the worker needed a restart"
    print(f"/ready turned 503 {noticed:.1f}s after the broker was killed")
