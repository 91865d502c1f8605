"""The engine: a source's batches through the pipeline into the sink, and what survives faults.

One loop, the same for every source (the batch consumer of ``source.py``, or Faust):

    for records in source:                       # (topic, partition, offset, ts, value)
        outboxes = pipeline.plan(records)        # decode, dedupe, window, park: pure CPU
        results = sink.write(outboxes)           # one fenced transaction per partition
        written -> publish for scrapes, hand complete windows to the TSDB exporter
        fenced  -> the partition went to another worker: forget it, wait for the rebalance
        failed  -> the broker is gone or slow: forget it, recover it again, read it again

Ownership changes arrive from the source: an assigned partition is claimed in the sink
(fencing its earlier owners) *before* its state is read back, then read from the state's
own position, whatever offset the group committed. Between batches: partitions idle
for ``idle_partition_ms`` move their watermark on (``Pipeline.idle``), and acknowledged
exports are noted in the merge state.

Nothing here raises for a bad message or a lost broker: the worker stays up, says so
(``/ready`` 503, ``cxpulse_broker_up`` 0, one log line per event of note) and carries on
when the broker is back.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from bisect import bisect_left
from collections import defaultdict
from dataclasses import replace
from typing import Any, Iterable, Protocol

from confluent_kafka import KafkaException

from streams.config import Settings
from streams.contract import FAMILIES
from streams.errors import StateRecoveryError
from streams.pipeline.merge_state import MergeState
from streams.pipeline.plan import Outbox, Pipeline
from streams.pipeline.records import Key, Record, state_partition
from streams.runtime.changelog import ChangelogReader
from streams.runtime.published import FRESHNESS_BUCKETS, Publisher
from streams.runtime.remote_write import Exporter
from streams.runtime.sink import Sink

log = logging.getLogger("cxpulse.worker")

RETRY_S = 2.0  # between attempts to recover a partition while the broker is away
REFENCE_S = 15.0  # a fenced partition still assigned after this long is claimed again
HELD_READS = 2  # failed committed changelog reads before one read_uncommitted (ChangelogReader.read)
NUDGE_S = 10.0  # a merge or customer partition that reads nothing this long while records wait
# ... and one still held after this long is read read_uncommitted (Engine._read_held): longer than
# the sink's transaction timeout (60 s), after which Kafka's coordinator has aborted any open one.
HELD_STAGE_S = 75.0


class Source(Protocol):
    """What the engine needs of a source (``source.KafkaSource``, ``faust_engine.FaustSource``)."""

    def start(self, positions: dict[Key, int]) -> None: ...
    def seek(self, key: Key, offset: int) -> None: ...
    def pause(self, keys: set[Key]) -> None: ...
    def committed(self, keys: set[Key]) -> dict[Key, int | None]: ...
    def highwater(self, key: Key) -> int | None: ...
    def group_metadata(self) -> Any: ...
    def tp(self, key: Key, offset: int | None = None) -> Any: ...
    def commit(self, offsets: dict[Key, int]) -> None: ...


class Engine:
    def __init__(self, settings: Settings, publisher: Publisher, engine: str = "kafka") -> None:
        self.settings = settings
        self.publisher = publisher
        self.engine = engine
        self.worker = uuid.uuid4().hex[:12]
        self.pipeline = Pipeline(settings, self.worker)
        self.sink = Sink(settings, self.pipeline.topic_of)
        self.reader = ChangelogReader(settings)
        self.reader.on_stall = self._nudge
        self._stuck: dict[Key, tuple[int, float]] = {}  # key -> (position, since) of a still position
        self._still: dict[Key, tuple[int | None, float]] = {}  # key -> (position, since it has not moved)
        self.held_stages: set[Key] = set()  # merge/customer partitions read read_uncommitted
        self._next_nudge_check = 0.0
        self.nudges = 0
        self._held_reads = 0  # changelog reads in a row that made no progress
        self.exporter = Exporter(settings)
        publisher.exporter = self.exporter
        self.source: Source | None = None
        self.lock = threading.RLock()  # the Faust engine calls in from two threads
        self.assigned: set[Key] = set()
        self.to_recover: set[Key] = set()
        self._retry_at = 0.0
        self._fenced_at: dict[Key, float] = {}
        self._next_idle = 0.0
        self.freshness = [0] * (len(FRESHNESS_BUCKETS) + 1)
        self.freshness_sum = 0.0
        self.recovered_records = 0
        self.recovery_seconds = 0.0
        self.resets = 0
        self.position_corrections = 0
        self._parked_logged: dict[str, float] = {}
        self._check_gap: set[Key] = set()  # recovered partitions whose first batch a source may skip to

    # ------------------------------------------------------------- rebalance
    def on_assigned(self, keys: set[Key]) -> None:
        with self.lock:
            self.assigned |= keys
            self.to_recover |= keys
            self._retry_at = 0.0
            now = time.monotonic()
            for key in keys:
                # A stage partition stands still from its assignment: a recovery held up by the same
                # open transaction (event=recovery_deferred) counts toward HELD_STAGE_S.
                self._still[key] = (None, now)
            self._publish(set())
        log.info("event=partitions_assigned partitions=%s", describe(keys))

    def on_revoked(self, keys: set[Key], lost: bool = False) -> None:
        with self.lock:
            self.assigned -= keys
            self.to_recover -= keys
            for key in keys:
                self._fenced_at.pop(key, None)
                self._still.pop(key, None)  # a later owner's stand-still counts from its own start
            self.held_stages -= keys
            self.pipeline.release(keys)
            self.sink.release(keys)
            self._publish(set())
        log.info("event=partitions_%s partitions=%s", "lost" if lost else "revoked", describe(keys))

    # --------------------------------------------------------------- recover
    def recover(self) -> None:
        """Claim and recover every assigned partition that needs it; on trouble (the broker is
        gone) try again later, the partitions paused meanwhile."""
        with self.lock:
            now = time.monotonic()
            for key, when in list(self._fenced_at.items()):
                if now - when >= REFENCE_S and key in self.assigned:
                    del self._fenced_at[key]
                    self.to_recover.add(key)
            keys = set(self.to_recover)
            if not keys or now < self._retry_at:
                return
            try:
                self._recover(keys)
            except (StateRecoveryError, KafkaException) as exc:
                self._retry_at = time.monotonic() + RETRY_S
                log.warning("event=recovery_deferred partitions=%s retry_in_s=%.0f error=%r", describe(keys),
                            RETRY_S, str(exc)[:300])

    def _recover(self, keys: set[Key]) -> None:
        settings = self.settings
        began = time.monotonic()
        unclaimed = self.sink.claim(keys)  # fence earlier owners before reading their writes
        if unclaimed:
            raise StateRecoveryError(f"could not claim {describe(unclaimed)} (broker unreachable?)")
        jobs = self.pipeline.claim(keys)
        committed = self._held_reads < HELD_READS
        if not committed:
            log.warning("event=changelog_read_uncommitted partitions=%s attempts=%d reason=read_committed_end_held",
                        describe(keys), self._held_reads)
        try:
            read = self.reader.read({job.state_partition: job.start for job in jobs}, committed=committed)
        except (StateRecoveryError, KafkaException):
            self.pipeline.unclaim(jobs)  # a kept state still saves the next attempt a full read
            if self.publisher.broker_up:  # held by the broker's transactions, not by an outage
                self._held_reads += 1
            else:
                self._held_reads = 0
            raise
        self._held_reads = 0
        redo = []
        installed = {}
        for job in jobs:
            records, end = read[job.state_partition]
            state = self.pipeline.install(job, records, end)
            if state is None:
                if end <= job.start:  # the changelog ends before the state we kept had read it
                    log.warning("event=changelog_truncated family=%s partition=%d kept_end=%d changelog_end=%d "
                                "action=recover_from_scratch", job.key[0], job.key[1], job.start + 1, end)
                    self.resets += 1
                else:
                    log.warning("event=kept_state_not_ours family=%s partition=%d action=recover_from_scratch",
                                job.key[0], job.key[1])
                redo.append(job.key)
                continue
            installed[job.key] = (len(records), job.start, end, job.expect_writer is not None)
        if redo:
            self.pipeline.drop(redo)
            for job in self.pipeline.claim(redo):
                records, end = self.reader.read({job.state_partition: 0}, committed=committed)[job.state_partition]
                self.pipeline.install(job, records, end)
                installed[job.key] = (len(records), 0, end, False)
        source_topics = {key: self.pipeline.topic_of[key[0]] for key in keys}
        source_ends = self.reader.highwaters([(source_topics[key], key[1]) for key in keys])
        source_ids = self.reader.topic_ids(sorted(set(source_topics.values())))
        for key in sorted(keys):
            state = self.pipeline.states[key]
            source_end = source_ends[source_topics[key], key[1]]
            source_id = source_ids.get(source_topics[key])
            recreated = bool(state.meta.source_id and source_id and state.meta.source_id != source_id)
            if source_end < state.meta.through or recreated:
                # The source partition is not the one the state has read (a new topic id, or
                # fewer messages than the state's position): its new offsets would pass for
                # replays and be skipped. Start this partition over, and say so.
                log.warning("event=source_truncated family=%s partition=%d state_next_offset=%d source_end=%d "
                            "topic_recreated=%s action=reset_partition_state", key[0], key[1],
                            state.meta.through, source_end, recreated)
                tombstones = Outbox(key, state_partition(key[0], key[1], settings.partitions),
                                    changelog=state.tombstones())
                result = self.sink.write([tombstones])[key]
                if result.outcome != "written":
                    raise StateRecoveryError(f"could not reset {describe({key})}: {result.error}")
                state = self.pipeline.fresh(key)
                self.resets += 1
            state.meta.source_id = source_id  # persisted with the next batch's meta record
        committed = self.source.committed(keys) if self.source is not None else {}
        positions = {key: self.pipeline.states[key].meta.through for key in keys}
        for key, position in sorted(positions.items()):
            given = committed.get(key)
            if given is not None and given != position:
                self.position_corrections += 1
                log.info("event=position_from_state family=%s partition=%d committed=%d state=%d", key[0], key[1],
                         given, position)
        for key in keys:
            state = self.pipeline.states[key]
            if isinstance(state, MergeState):
                self.exporter.offer(key, state.pending_exports())
        if self.source is not None:
            self.source.start(positions)
            if self.engine != "kafka":
                self._check_gap |= keys
                # Faust delivered records of these partitions while they recovered (skipped: no state
                # yet) and moved on past them. Read them again now: were no more records to come for a
                # partition (the traffic paused), the gap check above would never see the gap, and
                # its idle watermark would close windows those records belong to.
                for key in sorted(keys & self.pipeline.skipped):
                    log.info("event=seek_after_recovery family=%s partition=%d offset=%d "
                             "reason=records_delivered_while_recovering", key[0], key[1], positions[key])
                    self.source.seek(key, positions[key])
            self.pipeline.skipped -= keys
        self.to_recover -= keys
        elapsed = time.monotonic() - began
        self.recovery_seconds = elapsed
        for key, (count, start, end, incremental) in sorted(installed.items()):
            self.recovered_records += count
            log.info("event=state_recovered family=%s partition=%d records=%d from_offset=%d to_offset=%d "
                     "incremental=%s next_source_offset=%d", key[0], key[1], count, start, end, incremental,
                     positions[key])
        log.info("event=recovery_done partitions=%s seconds=%.3f", describe(keys), elapsed)
        self._publish(keys)

    # ----------------------------------------------------------------- batch
    def process(self, records: list[Record]) -> None:
        """One batch: plan it, write it, publish it; plus the idle partitions' advances."""
        with self.lock:
            gaps = self._gaps(records)
            if gaps:
                records = [r for r in records if self.pipeline.key_of(r.topic, r.partition) not in gaps]
            outboxes = self.pipeline.plan(records)
            now = time.monotonic()
            if now >= self._next_idle:
                self._next_idle = now + 1.0
                outboxes += self.pipeline.idle(self._caught_up())
            if outboxes:
                self._write(outboxes)
            if now >= self._next_nudge_check:
                self._next_nudge_check = now + 1.0
                self._nudge_if_stuck(now)
                outboxes += self._read_held()
            for key, family, end in self.exporter.acked():
                state = self.pipeline.states.get(key)  # type: ignore[arg-type]
                if isinstance(state, MergeState):
                    state.mark_exported(family, end)
            self._publish({outbox.key for outbox in outboxes})

    def _gaps(self, records: list[Record]) -> set[Key]:
        """Partitions whose first record after a recovery lies past their state's position with
        data in between: a source that resumed from the group's committed offset rather than
        from the state (Faust seeks to committed offsets itself). Read them: seek back to the
        state's position. Offsets may have holes (transaction markers), so a gap counts only
        where the broker holds data in it. The batch source seeks at assignment: never here."""
        if not self._check_gap:
            return set()
        first: dict[tuple[str, int], int] = {}
        for record in records:
            if (record.topic, record.partition) not in first:
                first[record.topic, record.partition] = record.offset
        gaps = set()
        for (topic, partition), offset in first.items():
            key = self.pipeline.key_of(topic, partition)
            if key not in self._check_gap:
                continue
            state = self.pipeline.states.get(key)
            if state is None or offset <= state.meta.through or self.source is None:
                self._check_gap.discard(key)
                continue
            if not self.reader.has_data(topic, partition, state.meta.through, offset):
                self._check_gap.discard(key)  # only transaction markers or removed records between
                continue
            gaps.add(key)
            self.position_corrections += 1
            log.warning("event=position_gap family=%s partition=%d state=%d given=%d action=seek_to_state",
                        key[0], key[1], state.meta.through, offset)
            self.source.seek(key, state.meta.through)
        return gaps

    def _write(self, outboxes: list[Outbox]) -> None:
        source = self.source
        group = source.group_metadata() if source is not None else None
        results = self.sink.write(outboxes, lambda outbox: (
            source.tp(outbox.key, outbox.next_offset) if outbox.next_offset is not None else None), group)
        to_commit: dict[Key, int] = {}
        published_at = time.time()
        for outbox in outboxes:
            key = outbox.key
            result = results[key]
            if result.outcome == "written":
                self.pipeline.written(key, result.changelog_end)
                self.exporter.offer(key, outbox.exports)
                if group is None and outbox.next_offset is not None:
                    to_commit[key] = outbox.next_offset
                for timestamp_ms in outbox.timestamps_ms:
                    delay = max(0.0, published_at - timestamp_ms / 1000.0)
                    self.freshness[bisect_left(FRESHNESS_BUCKETS, delay)] += 1
                    self.freshness_sum += delay
                if outbox.parked:
                    self._log_parked(outbox)
                continue
            self.pipeline.drop([key])
            self.sink.release({key})
            if source is not None:
                source.pause({key})
            if result.outcome == "fenced":
                self._fenced_at[key] = time.monotonic()
                log.warning("event=partition_fenced family=%s partition=%d action=drop_state_wait_for_rebalance "
                            "error=%r", key[0], key[1], result.error)
            else:
                self.to_recover.add(key)
                self._retry_at = time.monotonic() + RETRY_S
                log.warning("event=write_failed family=%s partition=%d action=recover_and_replay error=%r",
                            key[0], key[1], result.error)
        if to_commit and source is not None:
            source.commit(to_commit)

    def _nudge(self) -> None:
        """Write ``[]`` to every partition of the windows, customer and dead-letter topics, the
        partitions the stages' transactions share (Sink.nudge)."""
        settings = self.settings
        targets = [(topic, m) for topic in (settings.topic_windows, settings.topic_customers, settings.topic_deadletter)
                   for m in range(settings.partitions)]
        if self.sink.nudge(targets):
            self.nudges += 1
            if self.nudges == 1 or self.nudges % 100 == 0:
                log.info("event=transactions_nudged count=%d reason=read_committed_end_held", self.nudges)

    def _nudge_if_stuck(self, now: float) -> None:
        """Nudge when a merge or customer partition of ours has stood still for NUDGE_S with
        records beyond it in the log (the log's end, not the read_committed one)."""
        stuck = False
        for key, state in self.pipeline.states.items():
            if key[0] not in ("merge", "customer") or key in self.to_recover or key in self.held_stages:
                continue
            position = state.meta.through
            still = self._still.get(key)
            if still is not None and still[0] is None:  # first look since its assignment
                self._still[key] = (position, still[1])
            elif still is None or still[0] != position:
                self._still[key] = (position, now)
            seen = self._stuck.get(key)
            if seen is None or seen[0] != position:
                self._stuck[key] = (position, now)
                continue
            if now - seen[1] < NUDGE_S:
                continue
            topic = self.pipeline.topic_of[key[0]]
            try:
                end = self.reader.log_end(topic, key[1])
            except KafkaException:
                continue
            if end - position >= 2:  # more than a transaction marker waits
                stuck = True
                held_s = now - self._still[key][1]
                if held_s >= HELD_STAGE_S and self.publisher.broker_up:
                    self.held_stages.add(key)
                    log.warning("event=stage_read_uncommitted family=%s partition=%d position=%d log_end=%d "
                                "held_s=%.0f reason=read_committed_end_held", key[0], key[1], position, end, held_s)
            self._stuck[key] = (position, now)
        if stuck:
            self._nudge()

    def _read_held(self) -> list[Outbox]:
        """Read the held merge and customer partitions read_uncommitted and apply what they hold;
        the outboxes written.

        A broker that never ends a transaction on these partitions holds their read_committed
        end for good (the Tansu test broker, after a worker died holding a producer whose
        transaction it lists as committed and open at once: docs/operations.md); nudges cannot
        release it. The two stages are idempotent by design (a window partial replaces its
        source partition's earlier one; a customer fact counts once per event id), so reading
        records of a transaction that is still open, or that aborted and was written again by
        a replay, changes nothing. Kafka ends or aborts every transaction within its timeout:
        there a partition is never held this long. The source still holds the partition at the
        old position; what it may deliver later lies below the state's position (a replay)."""
        out: list[Outbox] = []
        for key in sorted(self.held_stages):
            state = self.pipeline.states.get(key)
            if state is None or key in self.to_recover or key not in self.assigned:
                self.held_stages.discard(key)  # recovered or moved: read as usual until held again
                continue
            try:
                records = self.reader.read_held(self.pipeline.topic_of[key[0]], key[1], state.meta.through)
            except KafkaException:
                continue
            outboxes = self.pipeline.plan(records)
            log.debug("event=held_read family=%s partition=%d from_offset=%d records=%d outboxes=%d", key[0], key[1],
                      state.meta.through, len(records), len(outboxes))
            if outboxes:
                self._write(outboxes)
                out += outboxes
        return out

    def _caught_up(self) -> set[Key]:
        """Partitions whose state has read everything the last fetch said there was."""
        if self.source is None:
            return set()
        out = set()
        for key, state in self.pipeline.states.items():
            high = self.source.highwater(key)
            if high is not None and state.meta.through >= high:
                out.add(key)
        return out

    # --------------------------------------------------------------- publish
    def _publish(self, touched: set[Key]) -> None:
        previous = self.publisher.current
        states = self.pipeline.states
        snapshots = {key: snap for key, snap in previous.snapshots.items() if key in states}
        for key in touched:
            state = states.get(key)
            if state is not None:
                snapshots[key] = state.snapshot(previous.snapshots.get(key))
        for key, state in states.items():
            if key not in snapshots:
                snapshots[key] = state.snapshot(None)
        lag = {}
        if self.source is not None:
            for key, state in states.items():
                high = self.source.highwater(key)
                if high is not None:
                    lag[key] = max(0, high - state.meta.through)
        idle_ms = self.settings.idle_partition_ms
        now = time.monotonic()
        hold_s = self.settings.new_series_hold_ms / 1000
        born = {where: at for where, at in previous.born.items() if now - at < hold_s and where[0] in states}
        self.publisher.announced &= born.keys()
        for key in touched:
            before, after = previous.snapshots.get(key), snapshots.get(key)
            if before is not None and after is not None and hasattr(after, "totals"):
                for segment in after.totals.keys() - before.totals.keys():
                    born[key, segment] = now
        self.publisher.current = replace(
            previous,
            snapshots=snapshots,
            recovered=bool(self.assigned) and not self.to_recover and not self._fenced_at,
            consumer_lag=lag,
            freshness_counts=tuple(self.freshness),
            freshness_sum=self.freshness_sum,
            recovery_seconds=self.recovery_seconds,
            recovered_records=self.recovered_records,
            state_resets=self.resets,
            sink_failures=dict(self.sink.failures),
            position_corrections=self.position_corrections,
            idle=frozenset(key for key in states
                           if key[0] in FAMILIES and self.pipeline.idle_for(key) >= idle_ms / 1000),
            born=born,
            engine=self.engine,
        )

    def _log_parked(self, outbox: Outbox) -> None:
        """One log line per reason and partition at most every 10 s, with the count."""
        now = time.monotonic()
        for reason, count in outbox.parked.items():
            tag = f"{outbox.key}|{reason}"
            if now - self._parked_logged.get(tag, -math.inf) >= 10:
                self._parked_logged[tag] = now
                offset, detail = outbox.first_parked[reason]
                log.warning("event=parked family=%s partition=%d reason=%s count=%d first_offset=%d detail=%r",
                            outbox.key[0], outbox.key[1], reason, count, offset, detail)

    # ----------------------------------------------------------------- close
    def close(self, export_wait_s: float = 5.0) -> None:
        with self.lock:
            self.exporter.flush(export_wait_s)
            self.exporter.close()
            self.sink.close()
            self.reader.close()


def describe(keys: Iterable[Key]) -> str:
    """``session:0+1,order:2`` for a log line."""
    by_stage: dict[str, list[int]] = defaultdict(list)
    for stage, partition in sorted(keys):
        by_stage[stage].append(partition)
    return ",".join(f"{stage}:{'+'.join(map(str, parts))}" for stage, parts in by_stage.items()) or "none"


SETTLE_S = 20.0  # how long a stopping worker waits for a rebalance in progress to end


def run_loop(engine: Engine, source: Any, stop: threading.Event) -> None:
    """The batch engine's loop: poll, recover what was assigned, process; until ``stop``.

    A worker asked to stop while its group rebalances finishes the rebalance first (up to
    SETTLE_S), then leaves: a member that leaves in the middle of a rebalance can wedge the
    group on some brokers (measured on the test broker: the next member never got an
    assignment), and its partitions move sooner once it has them to give back."""
    settings = engine.settings
    engine.source = source

    def step() -> None:
        records = source.poll(settings.batch_max, settings.batch_wait_s)
        engine.recover()
        engine.process(records)

    while not stop.is_set():
        step()
    began = time.monotonic()  # a heartbeat interval first: a rebalance may be starting unnoticed
    while (time.monotonic() - began < 1.5 or source.rebalancing) and time.monotonic() - began < SETTLE_S:
        step()


class BrokerWatch:
    """Checks every second that a broker answers a metadata request, with a client of its own
    (a consumer busy in ``consume()`` answers other threads late); ``publisher.broker_up``
    follows within ~3 s of a loss (two failed checks, each bounded at 1 s) and at once on return."""

    def __init__(self, publisher: Publisher, settings: Settings, interval_s: float = 1.0) -> None:
        from confluent_kafka.admin import AdminClient

        from streams.runtime.kafka import client_config

        self.publisher = publisher
        self.admin = AdminClient(client_config(settings, **{"log_level": 2}))
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cxpulse-broker-watch", daemon=True)

    def start(self) -> "BrokerWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def reachable(self, timeout_s: float = 1.0) -> bool:
        try:
            self.admin.list_topics(timeout=timeout_s)
        except KafkaException:
            return False
        return True

    def _run(self) -> None:
        failures = 0
        while not self._stop.wait(self.interval_s):
            if self.reachable(1.0):
                if not self.publisher.broker_up:
                    log.info("event=broker_reachable")
                failures = 0
                self.publisher.broker_up = True
            else:
                failures += 1
                if failures == 2 and self.publisher.broker_up:
                    self.publisher.broker_up = False
                    log.warning("event=broker_unreachable action=not_ready_until_it_returns")
