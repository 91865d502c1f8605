"""Fixtures of the fault tests: a broker of the test's own (it gets killed), and worker processes.

Never the session broker: killing or restarting it would wipe every other test's topics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from streams.devtools.broker import LocalBroker, create_topics
from streams.config import Settings
from streams.devtools.stack import WorkerProcess, worker_settings
from tests.helpers import free_port


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker object on a free port, not started: the test decides when (and how often)."""
    broker = LocalBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    yield broker
    broker.close()


def fault_settings(broker: LocalBroker, partitions: int = 4, **overrides) -> Settings:
    return Settings.from_env({}, bootstrap_servers=broker.bootstrap, partitions=partitions, app_id="cxfault",
                             metrics_port=free_port(), web_port=free_port(), **overrides)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[[Settings, int], WorkerProcess]]:
    """``start(settings, index)`` -> a started worker with its own ports and log; all killed at the end."""
    started: list[WorkerProcess] = []

    def start(settings: Settings, index: int) -> WorkerProcess:
        worker = WorkerProcess(worker_settings(settings, index * 2), index,
                               tmp_path / f"worker-{index}-{len(started)}.log").start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


__all__ = ["create_topics", "fault_settings"]
