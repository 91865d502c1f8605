"""The worker's HTTP endpoint: probes always open, /metrics behind TLS and basic auth when configured."""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from streams.runtime.published import Published, Publisher
from streams.config import Settings
from streams.errors import ConfigError
from streams.runtime.worker import free_port_from, serve_metrics
from tests.helpers import free_port


def _get(url: str, auth: str | None = None, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_basic_auth_guards_metrics_but_not_probes() -> None:
    settings = Settings(metrics_port=free_port(), metrics_basic_auth_username="prom",
                        metrics_basic_auth_password="s3cret-for-tests")
    publisher = Publisher()
    server = serve_metrics(settings, publisher)
    base = f"http://127.0.0.1:{settings.metrics_port}"
    try:
        assert _get(f"{base}/metrics")[0] == 401
        assert _get(f"{base}/metrics", "prom:wrong")[0] == 401
        status, body = _get(f"{base}/metrics", "prom:s3cret-for-tests")
        assert status == 200 and "cxpulse_worker_ready 0.0" in body
        assert _get(f"{base}/healthz")[0] == 200
        assert _get(f"{base}/ready")[0] == 503
        publisher.current = Published(recovered=True)
        assert _get(f"{base}/ready")[0] == 200
    finally:
        server.shutdown()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[str, str]:
    assert shutil.which("openssl"), "openssl is part of the base system"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True, timeout=300)
    return str(cert), str(key)


def test_tls_serves_metrics_over_https(certificate: tuple[str, str]) -> None:
    cert, key = certificate
    settings = Settings(metrics_port=free_port(), metrics_certfile=cert, metrics_keyfile=key)
    server = serve_metrics(settings, Publisher())
    try:
        context = ssl.create_default_context(cafile=cert)
        status, body = _get(f"https://127.0.0.1:{settings.metrics_port}/metrics", context=context)
        assert status == 200 and "cxpulse_worker_ready" in body
        with pytest.raises(OSError):  # plain HTTP is refused
            urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=5)
    finally:
        server.shutdown()


def test_a_silent_tls_client_does_not_block_other_scrapes(certificate: tuple[str, str]) -> None:
    import socket

    cert, key = certificate
    settings = Settings(metrics_port=free_port(), metrics_certfile=cert, metrics_keyfile=key)
    server = serve_metrics(settings, Publisher())
    silent = socket.create_connection(("127.0.0.1", settings.metrics_port))  # connects, never says hello
    try:
        context = ssl.create_default_context(cafile=cert)
        assert _get(f"https://127.0.0.1:{settings.metrics_port}/healthz", context=context)[0] == 200
    finally:
        silent.close()
        server.shutdown()


@pytest.mark.parametrize(("overrides", "names"), [
    ({"CXPULSE_METRICS_CERTFILE": "/etc/hostname"}, "CXPULSE_METRICS_KEYFILE"),
    ({"CXPULSE_METRICS_BASIC_AUTH_USERNAME": "prom"}, "CXPULSE_METRICS_BASIC_AUTH_PASSWORD"),
    ({"CXPULSE_METRICS_CLIENT_CAFILE": "/etc/hostname"}, "CXPULSE_METRICS_CERTFILE"),
    ({"CXPULSE_METRICS_CERTFILE": "/nope.pem", "CXPULSE_METRICS_KEYFILE": "/nope.pem"}, "CXPULSE_METRICS_CERTFILE"),
])
def test_bad_metrics_security_settings_fail_at_start_up(overrides: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        Settings.from_env(overrides)


def test_a_second_local_worker_takes_the_next_port() -> None:
    first = free_port()
    server = serve_metrics(Settings(metrics_port=first), Publisher())
    try:
        assert free_port_from("127.0.0.1", first) > first
    finally:
        server.shutdown()


def test_a_worker_refuses_topics_that_disagree_with_its_partition_count(make_settings) -> None:
    from dataclasses import replace

    from streams.runtime.worker import check_topics

    settings = make_settings()  # topics with 4 partitions
    check_topics(settings)
    with pytest.raises(ConfigError, match="has 4 partitions, expected 8"):
        check_topics(replace(settings, partitions=8))
    with pytest.raises(ConfigError, match="do not exist"):
        check_topics(replace(settings, topic_orders=settings.topic_orders + ".missing"), max_wait_s=2)


def test_a_worker_whose_metrics_port_is_taken_says_so_in_one_line(tmp_path: Path) -> None:
    import os
    import socket
    import sys

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "CXPULSE_METRICS_PORT": str(port), "CXPULSE_BOOTSTRAP_SERVERS": "127.0.0.1:9",
               "CXPULSE_WEB_PORT": str(free_port())}
        done = subprocess.run([sys.executable, "-m", "streams.cli", "worker"], env=env, capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "configuration error" in line]
    assert len(lines) == 1 and "CXPULSE_METRICS_PORT" in lines[0] and str(port) in lines[0], done.stderr


def test_a_health_only_scrape_serves_health_and_builds_no_kpi_series(monkeypatch: pytest.MonkeyPatch) -> None:
    """``name[]`` asking for health families (a progress check, a lag panel) gets them, and the worker
    builds none of its KPI series for it; the whole page still has both (docs/operations.md)."""
    import random

    from streams.runtime.collector import CxCollector
    from tests.unit.test_collector import counted, events

    built: list[int] = []
    whole = CxCollector._cumulative_all
    monkeypatch.setattr(CxCollector, "_cumulative_all",
                        lambda self, view: built.append(1) or whole(self, view))
    publisher = Publisher()
    publisher.current = counted(events(random.Random(5), 100))
    settings = Settings(metrics_port=free_port())
    server = serve_metrics(settings, publisher)
    base = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    try:
        status, body = _get(f"{base}?name[]=cxpulse_events_total&name[]=cxpulse_worker_ready")
        names = {line.split("{")[0].split(" ")[0] for line in body.splitlines() if line and line[0] != "#"}
        assert status == 200 and names == {"cxpulse_events_total", "cxpulse_worker_ready"}
        assert built == []
        status, body = _get(base)
        assert status == 200 and "cxpulse_orders_placed_total{" in body and "cxpulse_events_total{" in body
        assert built == [1]
    finally:
        server.shutdown()
