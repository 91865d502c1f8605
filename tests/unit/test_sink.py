"""The sink's order of work when the broker is in trouble (a stand-in producer: the sink's own
logic, not the client's; the real client and broker are in tests/faults)."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException

from streams.config import Settings
from streams.pipeline.plan import Outbox
from streams.runtime.sink import Sink


class StandIn:
    """A transactional producer whose flush waits out its timeout, or succeeds."""

    def __init__(self, name: str, calls: list[str], hangs: bool = False, systemerror: bool = False) -> None:
        self.name, self.calls, self.hangs, self.systemerror = name, calls, hangs, systemerror
        self.queued = 0

    def begin_transaction(self) -> None:
        self.calls.append(f"{self.name} begin")

    def produce(self, topic, value, key, partition=None, headers=None, on_delivery=None) -> None:
        self.queued += 1
        if on_delivery is not None and not self.hangs:
            on_delivery(None, _Message(topic, self.queued))

    def flush(self, timeout: float) -> int:
        if self.systemerror:
            raise SystemError("_PyErr_SetObject: exception <class 'str'> is not a BaseException subclass")
        if self.hangs:
            self.calls.append(f"{self.name} flush waits {timeout:.1f}s")
            return self.queued
        return 0

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append(f"{self.name} commit")

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append(f"{self.name} abort")
        if self.hangs:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))


class _Message:
    def __init__(self, topic: str, offset: int) -> None:
        self._topic, self._offset = topic, offset

    def topic(self) -> str:
        return self._topic

    def offset(self) -> int:
        return self._offset


def sink_with(producers: dict) -> Sink:
    sink = Sink(Settings(), {"session": "cx.sessions", "merge": "cx.windows", "customer": "cx.customers"},
                timeout_s=0.05)
    sink.producers.update(producers)
    return sink


def outbox(partition: int) -> Outbox:
    return Outbox(key=("session", partition), state_partition=partition, changelog=[(b"k", b"v")])


def test_after_a_transaction_times_out_the_rest_of_the_batch_is_not_tried() -> None:
    calls: list[str] = []
    sink = sink_with({("session", p): StandIn(f"p{p}", calls, hangs=(p == 1)) for p in range(4)})
    began = time.monotonic()
    results = sink.write([outbox(p) for p in range(4)])
    assert [results["session", p].outcome for p in range(4)] == ["written", "failed", "failed", "failed"]
    assert "not tried after" in results["session", 3].error
    assert not any(call.startswith(("p2", "p3")) for call in calls), calls  # no second wait for the same broker
    assert time.monotonic() - began < 5


def test_a_systemerror_from_the_client_fails_the_write_instead_of_raising() -> None:
    calls: list[str] = []
    sink = sink_with({("session", 0): StandIn("p0", calls, systemerror=True)})
    result = sink.write([outbox(0)])["session", 0]
    assert result.outcome == "failed" and "BaseException" in result.error
    assert calls == ["p0 begin", "p0 abort"]  # aborted, not committed


def test_a_nudge_stops_once_the_broker_is_too_slow_and_the_next_starts_further_on() -> None:
    calls: list[str] = []
    sink = sink_with({("session", p): StandIn(f"p{p}", calls, hangs=True) for p in range(4)})
    sink.timeout_s = 0.05
    sink.nudge([("cx.windows", 0)])
    first = [c.split()[0] for c in calls if c.endswith("begin")]
    calls.clear()
    sink.nudge([("cx.windows", 0)])
    second = [c.split()[0] for c in calls if c.endswith("begin")]
    assert len(first) < 4 and len(second) < 4, (first, second)  # neither waited on every producer
    assert first[0] != second[0]
