"""The sink: outboxes onto the broker, one transaction per partition, fenced.

Each pipeline partition this worker owns gets its own transactional producer, with the
transactional id ``<app_id>.<stage>.<partition>``. Claiming a partition initialises
that id, which (as Kafka defines it) bumps its epoch and fences every earlier producer
with the same id: a worker that lost the partition while it was stopped (SIGSTOP, a
long GC, a VM pause) can no longer write a dead letter, a fact, a changelog record or
an offset for it, however long it slept. The broker refuses its writes; the sink
reports the partition as fenced and the engine drops its state. That is the guarantee:
after the new owner's claim returns, and so before it reads the changelog, nothing
from an older owner of the partition reaches the broker.

An outbox is written in one transaction, in this order: dead letters and messages for
the re-keyed stages, acknowledged; then the changelog records (meta last), acknowledged;
then, where the source is a consumer group, the source offset (``send_offsets_to_
transaction``); then commit. On a broker that honours read_committed (Kafka, Redpanda,
MSK) the whole outbox appears at once or never; on one that does not (the Tansu test
broker shows aborted records), the order still makes any visible prefix safe, as the
per-record ``through`` offsets of the state rely on.

A write that fails for any other reason (the broker is gone, a timeout) is aborted and
reported as failed: the engine drops the partition's state and recovers it from the
changelog, so the batch is replayed, never half-applied, and the worker keeps running.

A worker writes its partitions' transactions one after the other, not side by side: the
stages' transactions share partitions (windows, customer facts, dead letters), and a
transaction coordinator that finishes a transaction only once no overlapping one is open
(the Tansu test broker) held the read_committed ends of a worker writing two dozen at once
for minutes (recoveries waited, the merge stage stood still). Measured: with side-by-side
writes the rebalance and customer e2e tests failed in most full-suite runs; one at a time
they pass, also under load. The cost in throughput is in docs/benchmarks.md once measured.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from streams.config import Settings
from streams.pipeline.plan import Outbox
from streams.pipeline.records import Key
from streams.runtime.kafka import client_config

log = logging.getLogger("cxpulse.sink")

Outcome = Literal["written", "fenced", "failed"]


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    changelog_end: int = 0  # offset after the last changelog record written
    error: str = ""


class Sink:
    """Transactional producers, one per owned partition; see the module docstring."""

    def __init__(self, settings: Settings, topic_of: dict[str, str], timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.topic_of = topic_of  # stage -> topic (customer, merge, and each family's source topic)
        self.timeout_s = timeout_s
        self.producers: dict[Key, Producer] = {}
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="cxpulse-sink")
        self.failures: dict[str, int] = {"fenced": 0, "failed": 0}
        self._nudges = 0

    def _producer(self, key: Key) -> Producer:
        stage, partition = key
        settings = self.settings
        return Producer(client_config(settings, **{
            "transactional.id": f"{settings.app_id}.{stage}.{partition}",
            "transaction.timeout.ms": 60_000,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "queue.buffering.max.messages": 1_000_000,
            "message.max.bytes": max(1_000_000, settings.deadletter_max_bytes + 64 * 1024),
            "message.timeout.ms": int(self.timeout_s * 1000),
            "error_cb": lambda error: _log_client_error(key, error),
        }))

    # ------------------------------------------------------------ ownership
    def claim(self, keys: set[Key]) -> set[Key]:
        """Initialise the transactional producer of each partition (fencing earlier owners);
        the keys that could not be claimed (broker unreachable) are returned, to retry."""
        wanted = [key for key in keys if key not in self.producers]
        failed: set[Key] = set()

        def claim_one(key: Key) -> tuple[Key, Producer | None]:
            producer = self._producer(key)
            try:
                producer.init_transactions(self.timeout_s)
            except KafkaException as exc:
                log.warning("event=claim_failed stage=%s partition=%d error=%s", key[0], key[1], exc.args[0])
                return key, None
            return key, producer

        for key, producer in self._pool.map(claim_one, wanted):
            if producer is None:
                failed.add(key)
            else:
                self.producers[key] = producer
        return failed

    def release(self, keys: set[Key]) -> None:
        """Close the producers of partitions this worker no longer owns (or must claim again)."""
        for key in keys:
            producer = self.producers.pop(key, None)
            if producer is not None:
                self._pool.submit(_close, producer)

    # ---------------------------------------------------------------- write
    def write(self, outboxes: list[Outbox], offsets_for: Any = None, group: Any = None) -> dict[Key, Result]:
        """Write every outbox in its own transaction, side by side. ``offsets_for(outbox)``
        gives the TopicPartition to commit in the transaction with consumer-group metadata
        ``group`` (None: the source commits by itself, after)."""
        failed: list[str] = []  # the first failure's error, once one transaction failed

        def write_one(outbox: Outbox) -> tuple[Key, Result]:
            producer = self.producers.get(outbox.key)
            if producer is None:
                return outbox.key, Result("failed", error="no producer: partition not claimed")
            if failed:
                # A failure other than fencing is the broker's (gone, restarted, timing out): the
                # next transaction would wait out the same timeouts, and a batch of two dozen
                # partitions would hold the worker (and a SIGTERM) for minutes. The rest are
                # replayed with the failed one, after the retry delay.
                return outbox.key, Result("failed", error=f"not tried after: {failed[0]}")
            offset = offsets_for(outbox) if offsets_for is not None and group is not None else None
            result = self._transaction(producer, outbox, offset, group)
            if result.outcome == "failed":
                failed.append(result.error)
            return outbox.key, result

        return dict(map(write_one, outboxes))  # one at a time: see the module docstring

    def _transaction(self, producer: Producer, outbox: Outbox, offset: TopicPartition | None, group: Any) -> Result:
        settings = self.settings
        ends: list[int] = []
        errors: list[KafkaError] = []

        def delivered(error: KafkaError | None, message: Any) -> None:
            if error is not None:
                errors.append(error)
            elif message.topic() == settings.topic_state:
                ends.append(message.offset() + 1)

        try:
            producer.begin_transaction()
            source_partition = outbox.key[1]
            for value, headers in outbox.dead_letters:
                _produce(producer, settings.topic_deadletter, value, None, source_partition, headers, delivered)
            for stage, partition, value in outbox.sends:
                _produce(producer, self.topic_of[stage], value, None, partition, None, delivered)
            if outbox.dead_letters or outbox.sends:
                _flush(producer, self.timeout_s)
                if errors:
                    raise KafkaException(errors[0])
            for key, value in outbox.changelog:
                _produce(producer, settings.topic_state, value, key, outbox.state_partition, None, delivered)
            _flush(producer, self.timeout_s)
            if errors:
                raise KafkaException(errors[0])
            if offset is not None:
                producer.send_offsets_to_transaction([offset], group, self.timeout_s)
            producer.commit_transaction(self.timeout_s)
        except (KafkaException, BufferError, TimeoutError, SystemError) as exc:
            # A fatal error (fenced) can surface from inside a delivery callback during flush():
            # confluent-kafka then raises SystemError, with the KafkaException as its cause or
            # (2.16, after a broker restart under load) with none ("exception <class 'str'> is
            # not a BaseException subclass"). Either way the transaction did not commit.
            cause = exc.__cause__ if isinstance(exc, SystemError) else exc
            error = (cause.args[0] if isinstance(cause, KafkaException) and cause.args
                     and isinstance(cause.args[0], KafkaError) else None)
            fenced = error is not None and (error.fatal() or error.code() in _FENCED)
            if not fenced:
                try:
                    producer.abort_transaction(self.timeout_s)
                except KafkaException as abort:
                    # a producer the abort finds fatal can write no more: treat it as fenced
                    # (the engine drops the state; a rebalance or the next claim starts afresh)
                    fenced = bool(abort.args) and isinstance(abort.args[0], KafkaError) and abort.args[0].fatal()
                except SystemError:
                    pass
            outcome: Outcome = "fenced" if fenced else "failed"
            self.failures[outcome] += 1
            return Result(outcome, error=str(error or exc))
        return Result("written", max(ends, default=0))

    def nudge(self, targets: list[tuple[str, int]]) -> bool:
        """Write an empty item list (``[]``, which the merge and customer stages read as
        nothing; on the dead-letter topic it carries the header ``cx-nudge: 1``) to each
        (topic, partition), in one transaction of each producer this worker holds.

        A broker's transaction coordinator that leaves a committed transaction "prepared" until
        a later transaction on the same partitions ends (the Tansu test broker, measured: its
        overlap check looks one way only) holds the read_committed end of every partition the
        transaction wrote: the state changelog cannot be recovered and the merge stage cannot
        read, until someone writes there again. This is that write. Every producer writes, not
        one: the same broker can also leave one producer's transaction marked committed while
        it still lists the partitions it wrote (seen under load: a race between two producers'
        transaction ends), and then holds every later transaction on those partitions prepared
        until that producer itself ends another transaction. On Kafka it is never needed; if it
        happens, the stages read ``[]`` and move on. True if at least one producer wrote."""
        wrote = False
        deadline = time.monotonic() + self.timeout_s
        producers = list(self.producers.values()) if targets else []
        # each nudge starts one producer further on: one that keeps timing out cannot starve the rest
        self._nudges += 1
        start = self._nudges % len(producers) if producers else 0
        for producer in producers[start:] + producers[:start]:
            if time.monotonic() > deadline:
                break  # a broker this slow is in trouble: the next nudge goes on (nothing is lost)
            try:
                producer.begin_transaction()
                for topic, partition in targets:
                    _produce(producer, topic, b"[]", None, partition, NUDGE_HEADERS, None)
                _flush(producer, self.timeout_s)
                producer.commit_transaction(self.timeout_s)
                wrote = True
            except (KafkaException, BufferError, TimeoutError, SystemError) as exc:
                log.warning("event=nudge_failed error=%s", exc)
                try:
                    producer.abort_transaction(self.timeout_s)
                except KafkaException:
                    pass
        return wrote

    def close(self) -> None:
        self.release(set(self.producers))
        self._pool.shutdown(wait=True)


NUDGE_HEADERS = [("cx-nudge", b"1")]  # on a dead-letter record: not a parked message, skip it
_FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
           KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}


def _produce(producer: Producer, topic: str, value: bytes | None, key: bytes | None, partition: int,
             headers: Any, delivered: Any) -> None:
    """produce(), waiting for room when the local queue is full (a batch can park many events)."""
    while True:
        try:
            if delivered is None:
                producer.produce(topic, value, key, partition=partition, headers=headers)
            else:
                producer.produce(topic, value, key, partition=partition, headers=headers, on_delivery=delivered)
            return
        except BufferError:
            producer.poll(0.05)


def _flush(producer: Producer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while producer.flush(max(0.0, deadline - time.monotonic())) > 0:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"messages not acknowledged within {timeout_s:.0f}s")


def _close(producer: Producer) -> None:
    try:
        producer.flush(1.0)
    except KafkaException:
        pass


def _log_client_error(key: Key, error: KafkaError) -> None:
    if error.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
        return  # the worker's broker check says it once, not every producer
    log.warning("event=producer_error stage=%s partition=%d error=%s", key[0], key[1], error)
