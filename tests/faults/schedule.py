"""A randomized fault schedule: SIGKILL, SIGTERM, restarts and added workers while events flow.

Shared by ``tests/faults/test_schedule.py`` (2-3 seeds in CI) and ``bench/soak.py`` (N
minutes). Events are dated now with unique ids, so at the end every source partition's
``cxpulse_events_total``, summed over the live workers, must equal what was produced
to it: anything below is lost, anything above double-counted.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from streams.config import Settings
from streams.devtools.stack import WorkerProcess
from tests.faults.common import Sender, owners, per_partition


@dataclass
class Outcome:
    seed: int
    faults: Counter = field(default_factory=Counter)
    sent: Counter = field(default_factory=Counter)
    counted: Counter = field(default_factory=Counter)
    settled_s: float = 0.0
    clean_exits: int = 0
    unclean_exits: list[int] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return sum(max(0, self.sent[k] - self.counted[k]) for k in self.sent)

    @property
    def doubled(self) -> int:
        return sum(max(0, self.counted[k] - self.sent[k]) for k in self.counted)

    def summary(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        return (f"seed {self.seed}: faults [{faults}]; events sent {sum(self.sent.values()):,}, counted "
                f"{sum(self.counted.values()):,}; lost {self.lost}, double-counted {self.doubled}; "
                f"settled in {self.settled_s:.0f}s; SIGTERM exits 0: {self.clean_exits}, other: {self.unclean_exits}")


def run_schedule(settings: Settings, start: Callable[[Settings, int], WorkerProcess], seed: int, steps: int,
                 max_workers: int = 3, say: Callable[[str], None] = lambda _: None,
                 deadline_s: float | None = None, settle_timeout_s: float = 180.0) -> Outcome:
    """Run ``steps`` random faults (or until ``deadline_s`` of wall time), then let the group settle."""
    rng = random.Random(seed)
    outcome = Outcome(seed)
    sender = Sender(settings, seed=seed, batch=rng.choice([1, 20]))
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
            choices = ["sigkill", "sigterm"] if len(live) > 1 else []
            choices += ["add"] * bool(dead) + ["sigkill_restart"] * bool(live)
            action = rng.choice(choices)
            if action == "add":
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
        if last == outcome.sent and all(n == 1 for n in owners(texts).values()):
            break
        time.sleep(1)
    outcome.counted = last
    outcome.settled_s = time.monotonic() - settle_began
    for worker in live_workers:
        code = worker.stop(60)
        if code == 0:
            outcome.clean_exits += 1
        else:
            outcome.unclean_exits.append(code)
    return outcome
