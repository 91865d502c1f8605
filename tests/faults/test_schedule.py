"""SIGKILL, SIGTERM, restarts, added workers, stalls past the session timeout, broker restarts
and poison messages in a random order, while events flow: counts stay exact.

Two seeds in CI, seed 1 on the default engine and seed 2 on the Faust engine, each covering
a stall, a broker restart and a poison message among its steps (``bench/soak.py`` and the slow test below run the same schedule for longer). At the
end, every source partition's ``cxpulse_events_total`` summed over the live workers equals
the events produced to it (since the last broker restart): nothing lost, nothing
double-counted; every poison message parked; no worker exited on its own.
"""

from __future__ import annotations

import pytest

from streams.devtools.broker import create_topics
from tests.faults.conftest import fault_settings
from tests.faults.schedule import run_schedule


NEW_FAULTS = ("sigstop", "broker_restart", "poison")


@pytest.mark.parametrize("seed,engine", [(1, "kafka"), (2, "faust")])
def test_random_fault_schedule_stays_exact(own_broker, fleet, seed: int, engine: str) -> None:
    own_broker.start()
    settings = fault_settings(own_broker, engine=engine)
    create_topics(settings)
    outcome = run_schedule(settings, fleet, seed=seed, steps=6, say=print, broker=own_broker, cover=NEW_FAULTS)
    print(outcome.summary())
    assert all(outcome.faults[f] for f in NEW_FAULTS), outcome.summary()
    assert (outcome.lost, outcome.doubled, outcome.windows_differ) == (0, 0, 0), outcome.summary()
    assert outcome.poison_parked == outcome.poison_sent, outcome.summary()
    assert not outcome.unclean_exits, outcome.summary()


@pytest.mark.slow
@pytest.mark.parametrize("seed,engine", [(3, "kafka"), (4, "faust"), (5, "kafka"), (6, "faust")])
def test_fault_soak_stays_exact(own_broker, fleet, seed: int, engine: str) -> None:
    own_broker.start()
    settings = fault_settings(own_broker, engine=engine)
    create_topics(settings)
    outcome = run_schedule(settings, fleet, seed=seed, steps=25, say=print, broker=own_broker, cover=NEW_FAULTS)
    print(outcome.summary())
    assert (outcome.lost, outcome.doubled, outcome.windows_differ) == (0, 0, 0), outcome.summary()
    assert outcome.poison_parked == outcome.poison_sent, outcome.summary()
    assert not outcome.unclean_exits, outcome.summary()
