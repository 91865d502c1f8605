"""Fixtures: one Tansu broker per test module, and per-test settings with topics of their own.

Every test gets unique topic names (``t<8 hex>.`` before each default name,
dead-letter and state included), its own ``app_id`` and free metrics/web
ports, so the tests of a module share one broker without seeing each other's
records or consumer groups. A test that kills or restarts a broker starts its
own ``LocalBroker``: the module's broker keeps memory storage, and a restart
would wipe every other test's topics.

Per module, not per session: Tansu 0.6.0 keeps every transactional id it has seen
in one metadata record that each transactional request reads and rewrites, so a
broker slows down as workers come and go (a commit took 5 ms on a fresh broker,
60 ms after the benchmark's hour of about 1,400 transactional ids).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from streams.devtools.broker import LocalBroker, create_topics
from streams.config import Settings
from tests.helpers import free_port

__all__ = ["free_port"]  # importable from here too, as well as from tests.helpers


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A started Tansu broker on a free loopback port, stopped at the end of the module."""
    log_path: Path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with LocalBroker(log_path=log_path) as started:
        yield started


@pytest.fixture
def make_settings(broker: LocalBroker) -> Callable[..., Settings]:
    """A factory: ``make_settings(**overrides)`` -> Settings on the module's broker, topics created.

    Each call gets a fresh prefix; ``overrides`` win over the test defaults
    (``partitions=4``, unique topics and app_id, free ports). The environment's
    ``CXPULSE_*`` variables are ignored, so a developer's shell cannot change a test.
    """

    def make(**overrides: Any) -> Settings:
        prefix = f"t{uuid.uuid4().hex[:8]}."
        defaults = Settings()
        values: dict[str, Any] = {
            "bootstrap_servers": broker.bootstrap,
            "partitions": 4,
            "app_id": f"{prefix}{defaults.app_id}",
            "metrics_port": free_port(),
            "web_port": free_port(),
        }
        for name in ("topic_sessions", "topic_orders", "topic_tickets", "topic_surveys", "topic_deadletter", "topic_state",
                     "topic_customers", "topic_windows", "topic_initiatives"):
            values[name] = prefix + getattr(defaults, name)
        values.update(overrides)
        settings = Settings.from_env({}, **values)
        create_topics(settings)
        return settings

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Settings pointed at the module's broker, with this test's own topics (4 partitions) created."""
    return make_settings()


# Longest first: the test processes start on the multi-minute end-to-end and fault tests, and
# the many short tests fill the gaps, so the run does not end with one process alone on a
# five-minute test (pytest-xdist hands tests out in collection order).
_FIRST = ("tests/e2e/", "tests/faults/", "tests/fuzz/", "tests/rules/", "tests/integration/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid
        return next((i for i, prefix in enumerate(_FIRST) if path.startswith(prefix)), len(_FIRST))

    items.sort(key=rank)  # stable: a module's own order is kept
    _keep_xdist_groups(config, items)


def _keep_xdist_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put each ``xdist_group`` test's group into its node id, as pytest-xdist's loadgroup expects.

    pytest-xdist 3.8 writes the group to ``item._nodeid``; pytest 9 reads node ids from
    ``item._id``, so the group was lost and a group's tests went to both test processes: each
    set up the module's stack (the Prometheus e2e ran two simulators, brokers and Prometheus
    servers at once, and the report's backfill ran twice). Measured with a three-test group:
    two module setups before, one after."""
    from _pytest.nodeid import coerce_node_id

    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                        for mark in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(names)
        if names and not item.nodeid.endswith(suffix):
            item._id = coerce_node_id(item.nodeid + suffix)
