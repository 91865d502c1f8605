"""``cxpulse worker``: one stream worker serving /metrics, /ready and /healthz.

Builds the registry here (never at import time), starts the HTTP server in a
thread, then runs the engine (``CXPULSE_ENGINE``: the batch consumer, or Faust)
until SIGTERM or Ctrl-C, which stop it cleanly: the batch in hand finishes, its
state is on the broker, its offsets are committed, the worker leaves the group.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import gc
import hmac
import logging
import os
import socket
import ssl
import sys
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from streams.runtime.collector import CxCollector
from streams.runtime.published import Publisher
from streams.config import Settings
from streams.errors import ConfigError

log = logging.getLogger("cxpulse.worker")

# CPython's cyclic garbage collector, set for a process whose heap is mostly long-lived window
# state. At the default (a young collection every 700 container allocations; the whole heap
# whenever a quarter more objects have survived), the pipeline in process traversed its whole
# state 25 times in 500k batched events: 5.5 s of 14 s CPU. At 10,000: twice, 0.35 s, at the same
# peak RSS (docs/benchmarks.md). Reference counting frees the state as before (what a batch drops
# is freed at once); only reference cycles wait longer for a collection.
GC_THRESHOLD = (10_000, 10, 10)


def tune_gc() -> None:
    """Once the engine's modules are loaded: what exists now (modules, settings, clients) moves
    to the permanent generation, never traversed again (``gc.freeze``), and the thresholds above."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (CXPULSE_BOOTSTRAP_SERVERS)")
    parser.add_argument("--metrics-port", type=int, help="port of /metrics (CXPULSE_METRICS_PORT, default 9400)")
    parser.add_argument("--metrics-host", help="bind address of /metrics (CXPULSE_METRICS_HOST, default 127.0.0.1)")
    parser.add_argument("--web-port", type=int, help="Faust's internal web port (CXPULSE_WEB_PORT, default 6066)")
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="DEBUG, INFO, WARNING or ERROR, any case (default INFO)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment and flags. A port nobody chose explicitly moves
    to the next free one, so a second local worker serves on 9401, a third on 9402."""
    overrides, flags = {}, {}
    for arg, name in (("bootstrap", "bootstrap_servers"), ("metrics_port", "metrics_port"),
                      ("metrics_host", "metrics_host"), ("web_port", "web_port")):
        if getattr(args, arg, None) is not None:
            overrides[name] = getattr(args, arg)
            flags[name] = "--" + arg.replace("_", "-")
    settings = Settings.from_env(flags=flags, **overrides)
    moved = {}
    if "metrics_port" not in overrides and "CXPULSE_METRICS_PORT" not in os.environ:
        moved["metrics_port"] = free_port_from(settings.metrics_host, settings.metrics_port)
    if "web_port" not in overrides and "CXPULSE_WEB_PORT" not in os.environ:
        moved["web_port"] = free_port_from("127.0.0.1", settings.web_port)
    return dataclasses.replace(settings, **moved) if moved else settings


class RepeatFilter(logging.Filter):
    """One line per ``every_s`` for each message of the named libraries' loggers: aiokafka logs
    every reconnect attempt (10 a second) while a broker is down. The next line it lets through
    says how many it held back.

        >>> f = RepeatFilter(("aiokafka",), every_s=30)
        >>> line = lambda: logging.LogRecord("aiokafka", logging.ERROR, "", 0, "Unable connect to %s", ("n1",), None)
        >>> [f.filter(line()), f.filter(line()), f.filter(line())]
        [True, False, False]
    """

    def __init__(self, prefixes: tuple[str, ...], every_s: float = 30.0) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.every_s = every_s
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        seen = self._last.get(key)
        if seen is not None and now - seen[0] < self.every_s:
            self._last[key] = (seen[0], seen[1] + 1)
            return False
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} (and {seen[1]} more like it in the last {now - seen[0]:.0f}s)"
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = (now, 0)
        return True


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    for noisy in ("faust", "mode", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter(("faust", "mode", "aiokafka")))
    # kafka-python (the initiatives reader) logs every failed reconnect at ERROR while a broker
    # is down; the worker's broker check says it once (event=broker_unreachable)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)


class OnePageAtATime:
    """Concurrent scrapes share page builds instead of racing for the GIL.

    Building the page holds the GIL for its whole length; sixteen scrapers at once would leave
    the stream loop and the /ready probe a sixteenth of the interpreter each. Here one thread
    builds while the others wait on a lock (waiting costs no GIL), and a scrape that waited is
    answered with the page built after it arrived, so no answer is older than its request.
    Pages are kept per (Accept, Accept-Encoding, query) so OpenMetrics, gzip and ``name[]``
    filtering keep working; at most ``keep`` variants are kept.

        >>> calls = []
        >>> def app(environ, start_response):
        ...     calls.append(1)
        ...     start_response("200 OK", [("Content-Type", "text/plain")])
        ...     return [b"page"]
        >>> shared = OnePageAtATime(app)
        >>> shared({}, lambda status, headers: None), len(calls)
        ([b'page'], 1)
    """

    def __init__(self, app, keep: int = 16) -> None:
        self.app = app
        self.keep = keep
        self._lock = threading.Lock()
        self._pages: dict[tuple[str, str, str], tuple[float, str, list, bytes]] = {}

    def __call__(self, environ, start_response):
        key = (environ.get("HTTP_ACCEPT", ""), environ.get("HTTP_ACCEPT_ENCODING", ""),
               environ.get("QUERY_STRING", ""))
        asked = time.monotonic()
        with self._lock:
            page = self._pages.get(key)
            if page is None or page[0] < asked:
                began = time.monotonic()
                answer: list = []
                body = b"".join(self.app(environ, lambda status, headers, exc_info=None:
                                         answer.extend((status, headers))))
                page = (began, answer[0], answer[1], body)
                if len(self._pages) >= self.keep and key not in self._pages:
                    self._pages.clear()
                self._pages[key] = page
        start_response(page[1], list(page[2]))
        return [page[3]]


class _MetricsServer(ThreadingWSGIServer):
    # socketserver listens with a backlog of 5: with a few scrapers reconnecting at once the
    # kernel drops a probe's SYN and the client retries a second later, past a 1 s probe timeout
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # one line per scrape is noise
        pass


def serve_metrics(settings: Settings, publisher: Publisher, initiatives=None) -> ThreadingWSGIServer:
    """Serve /metrics, /ready (200 once ready, else 503) and /healthz in a thread.

    TLS and basic auth protect /metrics when configured (Prometheus scrapes with
    ``scheme: https``, ``tls_config`` and ``basic_auth``); the probes stay open.
    """
    registry = CollectorRegistry()
    # Two parts: a probe or a progress check that asks for health families only (``name[]``)
    # does not pay for the thousands of KPI series (CxCollector's docstring).
    for part in ("health", "kpis"):
        registry.register(CxCollector(publisher, settings, initiatives, part=part))  # type: ignore[arg-type]
    metrics = OnePageAtATime(make_wsgi_app(registry))
    expected = None
    if settings.metrics_basic_auth_username:
        token = f"{settings.metrics_basic_auth_username}:{settings.metrics_basic_auth_password}".encode()
        expected = b"Basic " + base64.b64encode(token)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/ready":
            if publisher.ready:
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ready\n"]
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            why = (b"not ready: the Kafka broker is unreachable\n" if not publisher.broker_up else
                   b"not ready: no partitions assigned, or a partition's state is recovering\n")
            return [why]
        if expected is not None:
            given = environ.get("HTTP_AUTHORIZATION", "").encode()
            if not hmac.compare_digest(given, expected):
                start_response("401 Unauthorized", [("Content-Type", "text/plain"),
                                                    ("WWW-Authenticate", 'Basic realm="cxpulse"')])
                return [b"unauthorized\n"]
        return metrics(environ, start_response)

    try:
        server = make_server(settings.metrics_host, settings.metrics_port, app, _MetricsServer,
                             handler_class=_QuietHandler)
    except OSError as exc:  # in use, or an address this machine does not have
        raise ConfigError(f"cannot serve /metrics on {settings.metrics_host}:{settings.metrics_port} "
                          f"({exc.strerror or exc}): set CXPULSE_METRICS_PORT (or --metrics-port) to a free port, "
                          "or CXPULSE_METRICS_HOST to an address of this machine") from None
    if settings.metrics_certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(settings.metrics_certfile, settings.metrics_keyfile)
        if settings.metrics_client_cafile:
            context.load_verify_locations(cafile=settings.metrics_client_cafile)
            context.verify_mode = ssl.CERT_REQUIRED
        # The handshake happens on first read, in the request's own thread: a client
        # that connects and stays silent cannot hold up the accept loop.
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    threading.Thread(target=server.serve_forever, name="cxpulse-metrics", daemon=True).start()
    return server


def wait_for_broker(settings: Settings, publisher: Publisher, max_wait_s: float = 30.0) -> bool:
    """Block until a bootstrap server accepts a connection, retrying with backoff (1 s,
    doubling, at most ``max_wait_s``); /metrics serves meanwhile with cxpulse_broker_up 0.
    False if interrupted. Faust takes over from there (and reconnects by itself later)."""
    import time

    servers = [server.strip().rsplit(":", 1) for server in settings.bootstrap_servers.split(",")]
    publisher.broker_up = False
    delay, attempt = 1.0, 0
    while True:
        attempt += 1
        errors = []
        for host, port in servers:
            try:
                socket.create_connection((host, int(port)), timeout=3).close()
            except OSError as exc:
                errors.append(f"{host}:{port} {exc.strerror or exc}")
                continue
            publisher.broker_up = True
            if attempt > 1:
                log.info("event=broker_available bootstrap=%s attempts=%d", settings.bootstrap_servers, attempt)
            return True
        log.warning("event=broker_unavailable bootstrap=%s attempt=%d retry_in_s=%.0f errors=%r",
                    settings.bootstrap_servers, attempt, delay, "; ".join(errors))
        try:
            time.sleep(delay)
        except KeyboardInterrupt:
            return False
        delay = min(delay * 2, max_wait_s)


def check_topics(settings: Settings, max_wait_s: float | None = None) -> None:
    """Wait for the topics to exist (logged, with backoff; ``max_wait_s`` bounds the
    backoff for tests), and fail at start-up when their partition counts disagree with
    CXPULSE_PARTITIONS: state is kept per source partition in changelog partition
    family x N + p, so the counts must match."""
    from kafka import KafkaConsumer

    import time

    wanted = {name: settings.partitions
              for name in (*settings.topics.values(), settings.topic_customers, settings.topic_windows)}
    wanted[settings.topic_state] = settings.state_partitions
    hint = (f" (CXPULSE_PARTITIONS={settings.partitions}; the state topic needs 6 x that; `cxpulse broker` "
            "and deploy/ create them; see docs/deploy.md)")
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers.split(","), **settings.kafka_security())
    delay = 1.0
    try:
        while True:
            topics = consumer.topics()
            missing = sorted(name for name in wanted if name not in topics)
            wrong = [f"topic {name} has {len(consumer.partitions_for_topic(name) or ())} partitions, expected "
                     f"{count}" for name, count in wanted.items()
                     if name in topics and len(consumer.partitions_for_topic(name) or ()) != count]
            if wrong:
                raise ConfigError("; ".join(wrong) + hint)
            if not missing:
                return
            if max_wait_s is not None and delay > max_wait_s:
                raise ConfigError(f"topics {', '.join(missing)} do not exist" + hint)
            log.warning("event=topics_missing topics=%s retry_in_s=%.0f", ",".join(missing), delay)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
            consumer.close()
            consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers.split(","),
                                     **settings.kafka_security())
    finally:
        consumer.close()


def free_port_from(host: str, port: int, tries: int = 16) -> int:
    """The first port from ``port`` on that can be bound: local workers take the next ports."""
    for candidate in range(port, port + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, candidate))
            except OSError:
                continue
            return candidate
    raise ConfigError(f"ports {port}-{port + tries - 1} on {host} are all in use: set CXPULSE_METRICS_PORT / "
                      "CXPULSE_WEB_PORT (or --metrics-port / --web-port) to free ones")


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    settings = settings_from_args(args)
    from streams.initiatives.reader import Registry

    publisher = Publisher()
    initiatives = Registry(settings)
    server = serve_metrics(settings, publisher, initiatives)
    if not wait_for_broker(settings, publisher):
        server.shutdown()
        return 1
    check_topics(settings)
    initiatives.start()
    log.info("event=worker_starting engine=%s bootstrap=%s metrics=http://%s:%d/metrics partitions=%d window=%dms "
             "grace=%dms remote_write=%s", settings.engine, settings.bootstrap_servers, settings.metrics_host,
             settings.metrics_port, settings.partitions, settings.window_ms, settings.grace_ms,
             settings.remote_write_url or "off")
    start_over = False
    try:
        if settings.engine == "faust":
            from streams.runtime.faust_engine import run_faust  # Faust is heavy to import: only for it

            tune_gc()
            start_over = run_faust(settings, publisher, args.log_level)
        else:
            _run_batch_engine(settings, publisher)
    finally:
        initiatives.stop()
        server.shutdown()
        log.info("event=worker_stopped")
    if start_over and wait_for_broker(settings, publisher):
        # The same process (pid, command line, environment) from the start: a fresh Faust.
        logging.shutdown()
        os.execv(sys.executable, sys.orig_argv)
    return 0


def _run_batch_engine(settings: Settings, publisher: Publisher) -> None:
    """The default engine: the confluent-kafka batch consumer, until SIGTERM or Ctrl-C."""
    import signal

    from streams.runtime.engine import BrokerWatch, Engine, run_loop
    from streams.runtime.source import KafkaSource

    engine = Engine(settings, publisher, "kafka")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    source = KafkaSource(settings, {topic: engine.pipeline.stage_of(topic) for topic in engine.pipeline.topics()},
                         engine.on_assigned, engine.on_revoked)
    watch = BrokerWatch(publisher, settings).start()
    tune_gc()
    try:
        run_loop(engine, source, stop)
    except Exception:
        # A bug, not a bad message or a lost broker (those never raise): a visible crash
        # and a restart beat silently wrong metrics. Nothing uncommitted is lost: the next
        # owner reads from the state's position.
        log.critical("event=engine_failed action=exit_process", exc_info=True)
        logging.shutdown()
        os._exit(70)
    finally:
        watch.stop()
        log.info("event=worker_stopping action=leave_group")
        engine.close()
        source.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
