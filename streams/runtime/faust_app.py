"""Faust wiring: the app, the source topics, one agent, and rebalance hooks.

Faust does what it is good at here: the consumer group, partition assignment,
the agent loop and offset commits. State is ours (``state.py``), written to a
changelog topic we read back to the Fetch high-water mark (``changelog.py``),
because Faust's tables route a changelog record by the partition of the event
being processed and recover to ListOffsets' end (wrong on Tansu), and its
windowed tables expire by wall clock (ENVIRONMENT.md).

The agent works per batch, and the batch reads like the flow:

    decode every message -> group by source partition -> apply to window state
    -> write dead letters and customer facts, wait for the broker
    -> write changelog records, wait for the broker -> publish

Faust acks a ``take_events`` batch only after this loop body returns, so no
offset is committed before the state that holds its effect is on the broker.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import ssl
import time
from bisect import bisect_left
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import faust
from faust.types import TP

import orjson

from streams.runtime.changelog import ChangelogReader
from streams.runtime.collector import FRESHNESS_BUCKETS, Published, Publisher
from streams.config import Settings
from streams.pipeline.customer_state import CustomerState, decode_facts
from streams.decode import Rejection, decode_message
from streams.producer import partition_for
from streams.pipeline.window_state import Message, PartitionState, state_partition

log = logging.getLogger("cxpulse.worker")

Key = tuple[str, int]  # (event family or "customer", partition)
FACTS_PER_MESSAGE = 2000  # facts of one customer-topic message (~100 bytes each)


@dataclass
class Kept:
    """State of a partition we no longer own, kept in case it comes back."""

    state: PartitionState | CustomerState
    changelog_end: int  # the changelog offset after our last write or read


class Runtime:
    """The worker's partitions, their state, and what it publishes to scrapes."""

    def __init__(self, app: faust.App, settings: Settings, publisher: Publisher) -> None:
        self.app = app
        self.settings = settings
        self.publisher = publisher
        # What the agent reads: the event topics, and the customer topic the window stage writes.
        self.sources: dict[str, str] = {**settings.topics, "customer": settings.topic_customers}
        self.topic_family: dict[str, str] = {name: family for family, name in self.sources.items()}
        self.states: dict[Key, PartitionState | CustomerState] = {}
        self.changelog_end: dict[Key, int] = {}
        self.kept: dict[Key, Kept] = {}
        self.recovering: dict[Key, asyncio.Future] = {}
        self.assigned: set[Key] = set()
        self.lock = asyncio.Lock()
        self.reader = ChangelogReader(settings)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxpulse-recovery")
        self.freshness = [0] * (len(FRESHNESS_BUCKETS) + 1)
        self.freshness_sum = 0.0
        self.recovered_records = 0
        self.recovery_seconds = 0.0
        self.resets = 0  # partitions whose source was truncated or recreated

    # ------------------------------------------------------------ rebalance
    def _keys(self, tps) -> set[Key]:
        return {(self.topic_family[tp.topic], tp.partition) for tp in tps if tp.topic in self.topic_family}

    async def on_assigned(self, sender, assigned: set[TP], **_) -> None:
        keys = self._keys(assigned)
        async with self.lock:
            self.assigned = keys
            self._start_recovery(keys)
            self._publish(set())
        log.info("event=partitions_assigned partitions=%s", _describe(keys))

    async def on_revoked(self, sender, revoked: set[TP], **_) -> None:
        keys = self._keys(revoked)
        async with self.lock:
            for key in keys:
                state = self.states.pop(key, None)
                if state is not None:
                    self.kept[key] = Kept(state, self.changelog_end.pop(key))
                self.recovering.pop(key, None)
            self.assigned -= keys
            self._publish(set())
        log.info("event=partitions_revoked partitions=%s", _describe(keys))

    def _start_recovery(self, keys: set[Key]) -> None:
        """Recover every key not yet recovered, in one pass over the changelog."""
        wanted = {k for k in keys if k not in self.states and k not in self.recovering}
        if wanted:
            future = asyncio.ensure_future(self._recover(wanted))
            for key in wanted:
                self.recovering[key] = future

    async def _recover(self, keys: set[Key]) -> None:
        settings = self.settings
        starting: dict[Key, tuple[PartitionState, int, bool]] = {}
        for key in keys:
            kept = self.kept.pop(key, None)
            state = kept.state if kept else self._new_state(key)
            starting[key] = (state, kept.changelog_end if kept else 0, kept is not None)
        began = time.monotonic()
        loop = asyncio.get_running_loop()
        partition_of = {key: state_partition(key[0], key[1], settings.partitions) for key in keys}
        changelog_ends = await loop.run_in_executor(
            self.executor, self.reader.highwaters, [(settings.topic_state, partition_of[k]) for k in keys])
        for key in keys:
            state, start, incremental = starting[key]
            if incremental and changelog_ends[settings.topic_state, partition_of[key]] < start:
                # The changelog is shorter than what we wrote: the broker lost it (a memory
                # broker restarted, a topic was recreated). What we kept describes a past.
                log.warning("event=changelog_truncated family=%s partition=%d kept_end=%d broker_end=%d "
                            "action=recover_from_scratch", key[0], key[1], start,
                            changelog_ends[settings.topic_state, partition_of[key]])
                starting[key] = (self._new_state(key), 0, False)
        read = await loop.run_in_executor(
            self.executor, self.reader.read, {partition_of[k]: starting[k][1] for k in keys})
        source_ends = await loop.run_in_executor(
            self.executor, self.reader.highwaters, [(self.sources[k[0]], k[1]) for k in keys])
        source_ids = await loop.run_in_executor(
            self.executor, self.reader.topic_ids, sorted({self.sources[k[0]] for k in keys}))
        elapsed = time.monotonic() - began
        for key in sorted(keys):
            if self.recovering.get(key) is None:
                continue  # revoked while we read: keep nothing half-done
            state, start, incremental = starting[key]
            records, end = read[partition_of[key]]
            state.restore(records)
            source_end = source_ends[self.sources[key[0]], key[1]]
            source_id = source_ids.get(self.sources[key[0]])
            recreated = bool(state.meta.source_id and source_id and state.meta.source_id != source_id)
            if source_end < state.meta.through or recreated:
                # The source partition is not the one the state has read (a new topic id, or
                # fewer messages than the state's position): its new offsets would pass for
                # replays and be skipped. Start this partition over, and say so.
                log.warning("event=source_truncated family=%s partition=%d state_next_offset=%d source_end=%d "
                            "topic_recreated=%s action=reset_partition_state", key[0], key[1],
                            state.meta.through, source_end, recreated)
                for record_key, value in state.tombstones():
                    metadata = await (await self.app.producer.send(
                        settings.topic_state, record_key, value, partition_of[key], None, None))
                    end = max(end, metadata.offset + 1)
                state = self._new_state(key)
                self.resets += 1
            state.meta.source_id = source_id  # persisted with the next batch's meta record
            self.states[key] = state
            self.changelog_end[key] = end
            del self.recovering[key]
            self.recovered_records += len(records)
            log.info("event=state_recovered family=%s partition=%d records=%d from_offset=%d to_offset=%d "
                     "incremental=%s next_source_offset=%d source_end=%d", key[0], key[1], len(records), start,
                     end, incremental, state.meta.through, source_end)
        self.recovery_seconds = elapsed
        self._publish(set(keys) & set(self.states))
        log.info("event=recovery_done partitions=%s seconds=%.3f", _describe(keys), elapsed)

    def _new_state(self, key: Key) -> PartitionState | CustomerState:
        if key[0] == "customer":
            return CustomerState(key[1], self.settings)
        return PartitionState(key[0], key[1], self.settings)  # type: ignore[arg-type]

    async def _state(self, key: Key) -> PartitionState | CustomerState:
        state = self.states.get(key)
        if state is not None:
            return state
        self._start_recovery({key})
        await self.recovering[key]
        return self.states[key]

    # ---------------------------------------------------------------- batch
    async def process(self, events) -> None:
        settings = self.settings
        now_ms = int(time.time() * 1000)
        not_after = now_ms + settings.max_clock_skew_ms
        async with self.lock:
            batches: dict[Key, list[Message]] = defaultdict(list)
            sources: dict[Key, str] = {}
            for event in events:
                message = event.message
                family = self.topic_family[message.topic]
                key = (family, message.partition)
                if key not in self.assigned:
                    continue  # buffered before a revoke: its new owner reads it again
                if family == "customer":
                    decoded, rejected = _facts(message.value)
                else:
                    decoded, rejected = decode_message(
                        message.value, family, max_bytes=settings.max_message_bytes,
                        max_events=settings.max_batch_events, not_after_ms=not_after)
                batches[key].append(Message(message.offset, decoded, rejected, int(message.timestamp * 1000),
                                            message.value or b""))
                sources[key] = message.topic
            producer = self.app.producer
            results = [(key, (await self._state(key)).apply(messages)) for key, messages in batches.items()]
            # Order on the broker: what leaves the batch (dead letters, facts for the customer
            # stage) is acknowledged before the state records that say the batch is done, so a
            # crash in between replays the batch and sends them again rather than losing them.
            outgoing: list[asyncio.Future] = []
            facts: dict[int, list[list]] = defaultdict(list)  # customer-topic partition -> facts
            for (family, partition), applied in results:
                for fact in applied.facts:
                    facts[partition_for(fact[2], settings.partitions)].append(fact)
                for parked in applied.parked:
                    headers = [
                        ("cx-reason", parked.reason.encode()), ("cx-detail", parked.detail.encode()),
                        ("cx-source-topic", sources[family, partition].encode()),
                        ("cx-source-partition", str(partition).encode()),
                        ("cx-source-offset", str(parked.offset).encode()),
                        ("cx-batch-index", b"" if parked.index is None else str(parked.index).encode()),
                    ]
                    outgoing.append(await producer.send(settings.topic_deadletter, None, parked.raw, partition,
                                                        None, headers))
                if applied.parked:
                    _log_parked(family, partition, applied.parked)
            for target, items in sorted(facts.items()):
                # The one re-keying hop (customers.py): a resent fact is ignored by the customer stage.
                for i in range(0, len(items), FACTS_PER_MESSAGE):
                    value = orjson.dumps(items[i:i + FACTS_PER_MESSAGE])
                    outgoing.append(await producer.send(settings.topic_customers, None, value, target, None, None))
            for future in outgoing:
                await future
            pending: list[tuple[Key, asyncio.Future]] = []
            for key, applied in results:
                target = state_partition(key[0], key[1], settings.partitions)
                for record_key, value in applied.records:
                    pending.append((key, await producer.send(settings.topic_state, record_key, value, target, None,
                                                             None)))
            for key, future in pending:
                metadata = await future  # the broker has it: only now may Faust ack the batch
                self.changelog_end[key] = max(self.changelog_end.get(key, 0), metadata.offset + 1)
            self._publish(set(batches))
            published_at = time.time()
            for messages in batches.values():
                for message in messages:
                    delay = max(0.0, published_at - message.timestamp_ms / 1000.0)
                    self.freshness[bisect_left(FRESHNESS_BUCKETS, delay)] += 1
                    self.freshness_sum += delay

    # -------------------------------------------------------------- publish
    def _publish(self, touched: set[Key]) -> None:
        previous = self.publisher.current
        snapshots = {key: snap for key, snap in previous.snapshots.items() if key in self.states}
        for key in touched:
            state = self.states.get(key)
            if state is not None:
                snapshots[key] = state.snapshot(previous.snapshots.get(key))
        lag = {}
        consumer = self.app.consumer if self.app.consumer is not None else None
        for key, state in self.states.items():
            family, partition = key
            try:
                highwater = consumer.highwater(TP(self.sources[family], partition)) if consumer else None
            except Exception:  # noqa: BLE001 - lag is best effort before the first fetch
                highwater = None
            if highwater is not None:
                lag[key] = max(0, highwater - state.meta.through)
        self.publisher.current = replace(
            previous,
            snapshots=snapshots,
            ready=bool(self.assigned) and all(key in self.states for key in self.assigned),
            consumer_lag=lag,
            freshness_counts=tuple(self.freshness),
            freshness_sum=self.freshness_sum,
            recovery_seconds=self.recovery_seconds,
            recovered_records=self.recovered_records,
            state_resets=self.resets,
        )


_parked_logged: dict[str, float] = {}


def _log_parked(family: str, partition: int, parked) -> None:
    """One log line per reason and partition at most every 10 s, with the count."""
    counts: dict[str, int] = defaultdict(int)
    for item in parked:
        counts[item.reason] += 1
    now = time.monotonic()
    for reason, n in counts.items():
        key = f"{family}|{partition}|{reason}"
        if now - _parked_logged.get(key, -math.inf) >= 10:
            _parked_logged[key] = now
            first = next(p for p in parked if p.reason == reason)
            log.warning("event=parked family=%s partition=%d reason=%s count=%d first_offset=%d detail=%r",
                        family, partition, reason, n, first.offset, first.detail)


def _facts(value: bytes | None) -> tuple[list, list[Rejection]]:
    """A customer-topic message; only the window stage writes it, so a bad one is a bug or foreign data."""
    try:
        return decode_facts(value), []
    except ValueError as error:  # orjson.JSONDecodeError is a ValueError
        return [], [Rejection("malformed_json", f"not a customer-fact message: {error}", None, value or b"")]


def _describe(keys: set[Key]) -> str:
    by_family: dict[str, list[int]] = defaultdict(list)
    for family, partition in sorted(keys):
        by_family[family].append(partition)
    return ",".join(f"{family}:{'+'.join(map(str, parts))}" for family, parts in by_family.items()) or "none"


def _limit_fetch_wait(wait_ms: int) -> None:
    """Cap the fetch wait of the consumer Faust creates (it hard-codes 1500 ms).

    Faust offers no setting for it, so the aiokafka consumer class its driver uses is
    replaced, in this process only, by one that caps ``fetch_max_wait_ms``.
    """
    from faust.transport.drivers import aiokafka as driver

    original = driver.aiokafka.AIOKafkaConsumer
    base = getattr(original, "_cxpulse_original", original)

    class CappedFetchWait(base):  # type: ignore[misc, valid-type]
        _cxpulse_original = base

        def __init__(self, *args, **kwargs):
            kwargs["fetch_max_wait_ms"] = min(kwargs.get("fetch_max_wait_ms", wait_ms), wait_ms)
            super().__init__(*args, **kwargs)

    driver.aiokafka.AIOKafkaConsumer = CappedFetchWait


def build_app(settings: Settings, publisher: Publisher) -> tuple[faust.App, Runtime]:
    """The Faust app with its one agent; nothing runs until a worker starts it."""
    _limit_fetch_wait(settings.fetch_wait_ms)
    options = dict(
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        web_enabled=False,
        web_port=settings.web_port,
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        # Tansu answers JoinGroup after half the session timeout (ENVIRONMENT.md).
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=10,
        broker_commit_interval=1.0,
        producer_acks=-1,
        stream_buffer_maxsize=max(4096, settings.batch_max * 2),
        table_standby_replicas=0,
    )
    credentials = _credentials(settings)
    if credentials is not None:
        options["broker_credentials"] = credentials
    app = faust.App(settings.app_id, **options)
    runtime = Runtime(app, settings, publisher)
    source = app.topic(*settings.topics.values(), settings.topic_customers, value_serializer="raw",
                       key_serializer="raw")

    @app.agent(source, name="cxpulse.windows")
    async def windows(stream):
        try:
            async for events in stream.take_events(settings.batch_max, within=settings.batch_wait_s):
                await runtime.process(events)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Faust would restart the agent with the failed batch consumed but never applied,
            # behind a worker that still looks ready. A visible crash is better: the batch's
            # offsets are not committed, so the restarted worker reads it again.
            log.critical("event=agent_failed action=exit_process", exc_info=True)
            publisher.current = replace(publisher.current, ready=False)
            logging.shutdown()
            os._exit(70)

    app.on_partitions_assigned.connect(runtime.on_assigned)
    app.on_partitions_revoked.connect(runtime.on_revoked)
    return app, runtime


def _credentials(settings: Settings):
    context = None
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=settings.ssl_cafile)
        if settings.ssl_certfile:
            context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username, password=settings.sasl_password,
            mechanism=settings.sasl_mechanism, ssl_context=context)
    if context is not None:
        return faust.SSLCredentials(context)
    return None
