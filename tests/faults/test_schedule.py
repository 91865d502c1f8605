"""SIGKILL, SIGTERM, restarts and added workers in a random order, while events flow: counts stay exact.

Two seeds in CI (``bench/soak.py`` runs the same schedule for as long as you like).
At the end, every source partition's ``cxpulse_events_total`` summed over the live
workers equals the events produced to it: nothing lost, nothing double-counted.
"""

from __future__ import annotations

import pytest

from streams.devtools.broker import create_topics
from tests.faults.conftest import fault_settings
from tests.faults.schedule import run_schedule


@pytest.mark.parametrize("seed", [1, 2])
def test_random_fault_schedule_stays_exact(own_broker, fleet, seed: int) -> None:
    own_broker.start()
    settings = fault_settings(own_broker)
    create_topics(settings)
    outcome = run_schedule(settings, fleet, seed=seed, steps=5, say=print)
    print(outcome.summary())
    assert (outcome.lost, outcome.doubled) == (0, 0), outcome.summary()
    assert not outcome.unclean_exits, outcome.summary()
