"""A randomized fault schedule while events flow: SIGKILL, SIGTERM, restarts, added workers,
stalls past the session timeout (SIGSTOP ... SIGCONT: a zombie), the broker killed and
restarted, and poison messages (5 MB, a 1 MB label) at the shipped limits.

Shared by ``tests/faults/test_schedule.py`` (seeds in CI) and ``bench/soak.py`` (N
minutes). Events are dated now with unique ids, so at the end every source partition's
``cxpulse_events_total``, summed over the live workers, must equal what was produced
to it: anything below is lost, anything above double-counted. The test broker keeps
everything in memory, so a broker restart starts the count over: what must be counted is
what was produced after the last restart (and the workers start those partitions over).
Poison messages must all be parked and counted as rejected, with no worker exit. After
the workers stop, the windows rebuilt from the state changelog (what the next start
recovers) must hold every event produced since the last restart, each once.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from streams.config import Settings
from streams.devtools.stack import WorkerProcess
from tests.faults.common import Sender, metric_sum, owners, per_partition, recovered_windows

STALL_S = (15.0, 25.0)  # a SIGSTOP lasts this long: past the 10 s session timeout


@dataclass
class Outcome:
    seed: int
    faults: Counter = field(default_factory=Counter)
    sent: Counter = field(default_factory=Counter)
    counted: Counter = field(default_factory=Counter)
    settled_s: float = 0.0
    clean_exits: int = 0
    unclean_exits: list[int] = field(default_factory=list)
    poison_sent: int = 0  # since the last broker restart
    poison_parked: int = 0
    windows_sent: Counter = field(default_factory=Counter)  # (family, partition, window start) -> events
    windows_recovered: Counter = field(default_factory=Counter)  # the same, rebuilt from the changelog

    @property
    def lost(self) -> int:
        return sum(max(0, self.sent[k] - self.counted[k]) for k in self.sent)

    @property
    def doubled(self) -> int:
        return sum(max(0, self.counted[k] - self.sent[k]) for k in self.counted)

    @property
    def windows_differ(self) -> int:
        """Events missing from or extra in the windows a restart recovers, over all windows."""
        return sum(((self.windows_sent - self.windows_recovered) + (self.windows_recovered - self.windows_sent)).values())

    def summary(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        return (f"seed {self.seed}: faults [{faults}]; events sent {sum(self.sent.values()):,}, counted "
                f"{sum(self.counted.values()):,}; lost {self.lost}, double-counted {self.doubled}; poison "
                f"{self.poison_parked} of {self.poison_sent} parked; recovered windows {len(self.windows_recovered)}, "
                f"events differing in them {self.windows_differ}; "
                f"settled in {self.settled_s:.0f}s; SIGTERM exits 0: {self.clean_exits}, other: {self.unclean_exits}"
                + (f"; partitions that differ (sent, counted): {self.differences()}" if self.lost or self.doubled else ""))

    def differences(self) -> dict[str, tuple[int, int]]:
        return {f"{family}:{partition}": (self.sent[family, partition], self.counted[family, partition])
                for family, partition in sorted(set(self.sent) | set(self.counted))
                if self.sent[family, partition] != self.counted[family, partition]}


def _poison(settings: Settings, rng: random.Random) -> None:
    """One message the worker must park at the shipped limits: 5 MB, or a 1 MB label."""
    from datetime import datetime, timezone

    import orjson
    from kafka import KafkaProducer

    from tests.faults.common import valid_body

    family = rng.choice(("session", "order", "ticket", "survey"))
    partition = rng.randrange(settings.partitions)
    if rng.random() < 0.5:
        value = b'{"pad": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    else:
        body = valid_body(rng, family, datetime.now(timezone.utc), partition, settings.partitions)
        body["storefront"] = "s" * 1_000_000
        value = orjson.dumps(body)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, max_request_size=16 * 1024 * 1024)
    try:
        producer.send(settings.topics[family], value=value, partition=partition).get(timeout=30)
    finally:
        producer.close(timeout=5)


def run_schedule(settings: Settings, start: Callable[[Settings, int], WorkerProcess], seed: int, steps: int,
                 max_workers: int = 3, say: Callable[[str], None] = lambda _: None,
                 deadline_s: float | None = None, settle_timeout_s: float = 180.0, broker=None,
                 cover: tuple[str, ...] = ()) -> Outcome:
    """Run ``steps`` random faults (or until ``deadline_s`` of wall time), then let the group settle.
    ``broker`` (a LocalBroker) adds broker restarts to the faults; ``cover``: faults that must
    each happen once, at random steps among the first ones."""
    import os
    import signal

    from streams.devtools.broker import create_topics

    rng = random.Random(seed)
    outcome = Outcome(seed)
    pending = list(cover)
    rng.shuffle(pending)
    batch = rng.choice([1, 20])
    sender = Sender(settings, seed=seed, batch=batch)
    slots: dict[int, WorkerProcess | None] = {i: None for i in range(max_workers)}
    slots[0] = start(settings, 0).wait_ready(120)
    began = time.monotonic()
    try:
        step = 0
        while (deadline_s is None and step < steps) or (deadline_s is not None and time.monotonic() - began < deadline_s):
            step += 1
            sender.send(rng.randint(100, 1500))
            live = [i for i, w in slots.items() if w is not None and w.process.poll() is None]
            dead = [i for i in slots if i not in live]
            choices = ["sigkill", "sigterm", "sigstop"] if len(live) > 1 else []
            choices += ["add"] * bool(dead) + ["sigkill_restart"] * bool(live) + ["poison"]
            choices += ["broker_restart"] * (broker is not None)
            wanted = [a for a in pending if a in choices]
            if "sigstop" in pending and "sigstop" not in choices and "add" in choices:
                wanted.insert(0, "add")  # a stall needs another worker to take over
            # A fault still to cover comes first whenever it can happen now (which faults can
            # depends on how many workers are alive: timing): every covered fault happens.
            action = wanted[0] if wanted else rng.choice(choices)
            if action in pending:
                pending.remove(action)
            index = -1
            if action == "poison":
                _poison(settings, rng)
                outcome.poison_sent += 1
            elif action == "broker_restart":
                sender.close()
                broker.kill()
                time.sleep(rng.uniform(2, 8))
                broker.start()
                create_topics(settings)
                sender = Sender(settings, seed=rng.randrange(2**32), batch=batch)  # counts start over
                outcome.poison_sent = 0
            elif action == "sigstop":
                index = rng.choice(live)
                worker = slots[index]
                assert worker is not None
                os.kill(worker.process.pid, signal.SIGSTOP)  # another worker takes its partitions
                sender.send(rng.randint(100, 500))  # events while it is stalled
                time.sleep(rng.uniform(*STALL_S))
                os.kill(worker.process.pid, signal.SIGCONT)  # it wakes up a zombie: it must write nothing
            elif action == "add":
                index = rng.choice(dead)
                slots[index] = start(settings, index)
            else:
                index = rng.choice(live)
                worker = slots[index]
                assert worker is not None
                if action == "sigterm":
                    code = worker.stop(60)
                    if code == 0:
                        outcome.clean_exits += 1
                    else:
                        outcome.unclean_exits.append(code)
                else:
                    worker.kill()
                if action == "sigkill_restart":
                    time.sleep(rng.uniform(0, 2))
                    slots[index] = start(settings, index)
                else:
                    slots[index] = None
            outcome.faults[action] += 1
            say(f"step {step}: {action} worker {index}; sent {sum(sender.sent.values()):,} so far; "
                f"live {[i for i, w in slots.items() if w is not None and w.process.poll() is None]}")
            time.sleep(rng.uniform(0, 4))
        sender.send(rng.randint(100, 500))  # events after the last fault too
        outcome.sent = Counter(sender.sent)
        outcome.windows_sent = Counter(sender.windows)
    finally:
        sender.close()
    settle_began = time.monotonic()
    live_workers = [w for w in slots.values() if w is not None and w.process.poll() is None]
    last: Counter = Counter()
    while time.monotonic() - settle_began < settle_timeout_s:
        texts = []
        for worker in live_workers:
            try:
                texts.append(worker.scrape())
            except OSError:
                pass
        last = per_partition(texts)
        outcome.poison_parked = int(sum(metric_sum(text, "cxpulse_events_rejected_total") for text in texts))
        if (last == outcome.sent and all(n == 1 for n in owners(texts).values())
                and outcome.poison_parked == outcome.poison_sent):
            break
        time.sleep(1)
    outcome.counted = last
    outcome.settled_s = time.monotonic() - settle_began
    for worker in live_workers:  # one after the other, as a deploy does
        code = worker.stop(60)
        if code == 0:
            outcome.clean_exits += 1
        else:
            outcome.unclean_exits.append(code)
    outcome.windows_recovered = recovered_windows(settings)  # what the next start would recover
    return outcome
