"""The Faust engine (``CXPULSE_ENGINE=faust``): Faust's consumer as the source, nothing else of it.

Faust does the consumer group, partition assignment, the agent loop and offset
commits; everything else is the engine every source shares (``engine.py``): the
pipeline, the fenced transactional sink, recovery, the exporter. So the exactness
and fencing guarantees are the same as the batch engine's, built once. What
differs: Faust hands the agent messages one by one (``take_events`` collects them
into a batch), which costs ~250 µs of CPU per message in its own machinery
(docs/benchmarks.md); and Faust seeks to the group's committed offsets when it
resumes after a rebalance, so the engine repairs a gap it finds between a state's
position and the first record it is given by seeking back (``Engine.process``).

Faust's producer is not used: aiokafka's transactions do not work on the test
broker, and the sink's producers fence zombies on any broker.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import shutil
import ssl
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
from faust.types import TP

from streams.config import Settings
from streams.pipeline.records import Key, Record
from streams.runtime.engine import BrokerWatch, Engine
from streams.runtime.published import Publisher

log = logging.getLogger("cxpulse.worker")


class FaustSource:
    """The engine's view of Faust's consumer (see ``engine.Source``)."""

    def __init__(self, app: faust.App, engine: Engine) -> None:
        self.app = app
        self.engine = engine
        self.loop: asyncio.AbstractEventLoop | None = None
        self.running = False  # Faust started: its timer ticked

    def tp(self, key: Key, offset: int | None = None) -> TP:
        return TP(self.engine.pipeline.topic_of[key[0]], key[1])

    def _soon(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on Faust's event loop (awaited there, if it is a coroutine function:
        Faust's ``seek`` is one)."""
        assert self.loop is not None
        if asyncio.iscoroutinefunction(fn):
            asyncio.run_coroutine_threadsafe(fn(*args), self.loop)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def start(self, positions: dict[Key, int]) -> None:
        """Nothing: Faust fetches from the group's committed offset. Records below a state's
        position are skipped as replays, and a gap above it is sought back when it shows
        (``Engine._gaps``), or right after the recovery where Faust delivered records while the
        partition recovered (``Pipeline.skipped``). Seeking every partition here would have Faust
        deliver what it had already fetched a second time."""

    def seek(self, key: Key, offset: int) -> None:
        # seek_wait, not seek: Faust's seek moves aiokafka's position from the event loop while
        # the consumer thread fetches, and the fetcher then crashed the worker (KeyError in
        # fetched_records, seen after a broker restart); seek_wait runs on the consumer's thread.
        self._soon(self._seek_on_consumer_thread, self.tp(key), offset)

    async def _seek_on_consumer_thread(self, tp: TP, offset: int) -> None:
        try:
            await self.app.consumer.seek_wait({tp: offset})
        except Exception as exc:  # noqa: BLE001 - revoked meanwhile, or the broker is away: the gap shows again
            log.warning("event=seek_failed topic=%s partition=%d offset=%d error=%r", tp.topic, tp.partition,
                        offset, exc)

    def pause(self, keys: set[Key]) -> None:
        if keys:
            self._soon(self.app.consumer.pause_partitions, {self.tp(key) for key in keys})

    def committed(self, keys: set[Key]) -> dict[Key, int | None]:
        return {}  # Faust keeps them; a gap is found and repaired when the records arrive

    def highwater(self, key: Key) -> int | None:
        try:
            return self.app.consumer.highwater(self.tp(key))
        except Exception:  # noqa: BLE001 - unknown before the first fetch
            return None

    def group_metadata(self) -> Any:
        return None  # Faust commits the offsets of what the agent acknowledged

    def commit(self, offsets: dict[Key, int]) -> None:
        pass


# A revocation must be followed by an assignment (empty, in a group with more members than
# partitions) within this long while the broker answers; else the worker starts over.
REJOIN_S = 60.0


class RejoinWatch:
    """Restarts the worker process when Faust's group membership died after a revocation.

    Seen beside a CPU hog: a worker resumed after a stall past the session timeout had its
    partitions revoked (aiokafka: "Heartbeat session expired", UnknownMemberId), and then Faust
    never rejoined: no assignment for minutes, the worker alive, ready and counting nothing.
    Starting over (the same process image, ``os.execv``) is a crash and restart, which the
    pipeline recovers from exactly (state from the changelog, producers fenced)."""

    def __init__(self, engine: Engine, limit_s: float = REJOIN_S) -> None:
        self.engine = engine
        self.limit_s = limit_s
        self._revoked_at: float | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def revoked(self) -> None:
        with self._lock:
            self._revoked_at = time.monotonic()
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="cxpulse-rejoin-watch", daemon=True)
            self._thread.start()

    def assigned(self) -> None:
        with self._lock:
            self._revoked_at = None

    def overdue(self, now: float) -> float | None:
        """Seconds since an unanswered revocation, once past the limit with the broker up."""
        with self._lock:
            if self._revoked_at is None:
                return None
            if not self.engine.publisher.broker_up:
                self._revoked_at = now  # the broker is away: the wait counts from its return
                return None
            waited = now - self._revoked_at
        return waited if waited >= self.limit_s else None

    def _watch(self) -> None:
        while True:
            time.sleep(1.0)
            waited = self.overdue(time.monotonic())
            if waited is not None:
                log.critical("event=group_rejoin_stalled waited_s=%.0f action=restart_process", waited)
                logging.shutdown()
                os.execv(sys.executable, sys.orig_argv)


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


def _never_auto_create_topics() -> None:
    """Have every aiokafka client in this process ask for metadata with auto-creation off.

    aiokafka's client sends Metadata v4+ with ``allow_auto_topic_creation`` true and has no
    setting for it. A worker asking for its topics while they are missing (a cluster being
    set up, a broker that came back empty, a deleted topic) would then create them with the
    broker's defaults (wrong partition count, no retention or compaction), and cxpulse refuses
    to start on such a topic. With it off, a missing topic stays missing until ``cxpulse
    topics`` creates it; the batch engine's confluent-kafka consumer never auto-creates either.
    """
    from aiokafka import client
    from aiokafka.protocol.metadata import MetadataRequest

    original = getattr(client.MetadataRequest, "_cxpulse_original", client.MetadataRequest)

    class NoAutoCreate(original):  # type: ignore[misc, valid-type]
        _cxpulse_original = original

        def __init__(self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = None) -> None:
            super().__init__(topics, False)

    assert issubclass(NoAutoCreate, MetadataRequest)
    client.MetadataRequest = NoAutoCreate


def _scratch_dir() -> str:
    path = tempfile.mkdtemp(prefix="cxpulse-faust-")
    atexit.register(shutil.rmtree, path, True)
    return path


def build_app(settings: Settings, engine: Engine) -> faust.App:
    """The Faust app with its one agent and a tick; nothing runs until a worker starts it."""
    _limit_fetch_wait(settings.fetch_wait_ms)
    _never_auto_create_topics()
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
        stream_buffer_maxsize=max(4096, settings.batch_max * 2),
        table_standby_replicas=0,
        # Faust makes a table directory even with no table: in a temporary directory, not the
        # worker's working directory (the state lives in the changelog topics).
        datadir=_scratch_dir(),
    )
    credentials = _credentials(settings)
    if credentials is not None:
        options["broker_credentials"] = credentials
    app = faust.App(settings.app_id, **options)
    source = FaustSource(app, engine)
    engine.source = source
    # One thread for the engine: it is not re-entrant, and its Kafka calls block.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxpulse-engine")
    topic = app.topic(*engine.pipeline.topics(), value_serializer="raw", key_serializer="raw")
    stage_of = engine.pipeline.key_of

    async def run(fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        source.loop = loop
        return await loop.run_in_executor(executor, fn, *args)

    def step(records: list[Record]) -> None:
        engine.recover()
        engine.process(records)

    @app.agent(topic, name="cxpulse.windows")
    async def windows(stream):
        try:
            async for events in stream.take_events(settings.batch_max, within=settings.batch_wait_s):
                records = [Record(m.topic, m.partition, m.offset, int(m.timestamp * 1000), m.value)
                           for m in (event.message for event in events)]
                await run(step, records)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug, not a bad message or a lost broker (the engine handles those): a
            # visible crash beats a worker that looks ready and counts nothing.
            log.critical("event=agent_failed action=exit_process", exc_info=True)
            logging.shutdown()
            os._exit(70)

    @app.timer(1.0)
    async def tick() -> None:  # idle partitions and retries also move when no message comes
        source.running = True
        await run(step, [])

    async def on_assigned(sender: Any, assigned: set[TP], **_: Any) -> None:
        rejoin.assigned()
        keys = {key for key in (stage_of(tp.topic, tp.partition) for tp in assigned) if key is not None}
        await run(engine.on_assigned, keys - engine.assigned)
        await run(engine.recover)

    async def on_revoked(sender: Any, revoked: set[TP], **_: Any) -> None:
        rejoin.revoked()
        keys = {key for key in (stage_of(tp.topic, tp.partition) for tp in revoked) if key is not None}
        await run(engine.on_revoked, keys, False)

    rejoin = RejoinWatch(engine)
    app.on_partitions_assigned.connect(on_assigned)
    app.on_partitions_revoked.connect(on_revoked)
    return app


def run_faust(settings: Settings, publisher: Publisher, log_level: str) -> bool:
    """Run the Faust worker until SIGTERM or Ctrl-C (Faust handles both). True when Faust gave
    up before it ran because the broker went away while it started (its producer could not
    bootstrap): the caller waits for the broker and starts over, as for a broker that was
    down from the start."""
    engine = Engine(settings, publisher, "faust")
    app = build_app(settings, engine)
    watch = BrokerWatch(publisher, settings).start()
    # Our log format and levels stay (override_logging=False); no terminal spinner in logs.
    worker = faust.Worker(app, loglevel=log_level, quiet=True, redirect_stdouts=False, override_logging=False)
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code in (0, None) or engine.source.running:
            raise
        log.warning("event=broker_lost_during_start action=start_over_when_it_returns")
        return True
    finally:
        watch.stop()
        engine.close()
    return False


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
