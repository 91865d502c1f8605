"""``cxpulse worker``: one stream worker serving /metrics, /ready and /healthz.

Builds the registry here (never at import time), starts the HTTP server in a
thread, then runs the Faust worker until SIGTERM or Ctrl-C, which stop it
cleanly: the batch in hand finishes, its state is on the broker, offsets commit.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from streams.collector import CxCollector, Publisher
from streams.config import Settings

log = logging.getLogger("cxpulse.worker")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (CXPULSE_BOOTSTRAP_SERVERS)")
    parser.add_argument("--metrics-port", type=int, help="port of /metrics (CXPULSE_METRICS_PORT, default 9400)")
    parser.add_argument("--metrics-host", help="bind address of /metrics (CXPULSE_METRICS_HOST, default 127.0.0.1)")
    parser.add_argument("--web-port", type=int, help="Faust's internal web port (CXPULSE_WEB_PORT, default 6066)")
    parser.add_argument("--log-level", default="INFO", help="INFO, WARNING or DEBUG")


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {}
    for arg, name in (("bootstrap", "bootstrap_servers"), ("metrics_port", "metrics_port"),
                      ("metrics_host", "metrics_host"), ("web_port", "web_port")):
        if getattr(args, arg, None) is not None:
            overrides[name] = getattr(args, arg)
    return Settings.from_env(**overrides)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    for noisy in ("faust", "mode", "aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # one line per scrape is noise
        pass


def serve_metrics(settings: Settings, publisher: Publisher) -> ThreadingWSGIServer:
    """Serve /metrics, /ready (200 once ready, else 503) and /healthz in a thread."""
    registry = CollectorRegistry()
    registry.register(CxCollector(publisher, settings))
    metrics = make_wsgi_app(registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/ready":
            ready = publisher.current.ready
            start_response("200 OK" if ready else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ready\n" if ready else b"not ready: no partitions assigned or state still recovering\n"]
        return metrics(environ, start_response)

    server = make_server(settings.metrics_host, settings.metrics_port, app, ThreadingWSGIServer,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="cxpulse-metrics", daemon=True).start()
    return server


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    settings = settings_from_args(args)
    from streams.app import build_app  # Faust is heavy to import: only for this command

    publisher = Publisher()
    server = serve_metrics(settings, publisher)
    app, _ = build_app(settings, publisher)
    log.info("event=worker_starting bootstrap=%s metrics=http://%s:%d/metrics partitions=%d window=%dms grace=%dms",
             settings.bootstrap_servers, settings.metrics_host, settings.metrics_port, settings.partitions,
             settings.window_ms, settings.grace_ms)
    import faust

    # Our log format and levels stay (override_logging=False); no terminal spinner in logs.
    worker = faust.Worker(app, loglevel=args.log_level, quiet=True, redirect_stdouts=False, override_logging=False)
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    finally:
        server.shutdown()
        log.info("event=worker_stopped")
    return 0
