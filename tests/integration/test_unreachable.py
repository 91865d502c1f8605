"""Every command that talks to Kafka (except ``worker``, which waits with backoff by design)
or to Prometheus says it cannot reach it, in one line, within seconds, and exits 1.

Two kinds of unreachable: nothing listens on the port (refused at once), and something
accepts the connection but never answers (a firewall-like hang, or not a Kafka listener),
which used to hold a command for 30 s before a traceback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Iterator

import pytest

from streams.devtools.stack import ROOT
from tests.helpers import free_port

CONNECT_TIMEOUT_S = 1
BOUND_S = 15  # the connect timeout, a diagnosis of at most 2 s, and a Python start on a busy machine

KAFKA_COMMANDS = {
    "initiative declare": ["initiative", "declare", "chat", "--start", "2026-01-01", "--treated", "channel=app",
                           "--investment", "1000", "--currency", "USD", "--margin", "0.4"],
    "initiative list": ["initiative", "list"],
    "initiative delete": ["initiative", "delete", "chat"],
    "simulate": ["simulate", "--kafka", "--events", "10"],
    "topics": ["topics"],
    "topics --check": ["topics", "--check"],
}


@pytest.fixture
def silent_server() -> Iterator[str]:
    """host:port of a socket that accepts connections (the kernel does) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def cxpulse(*args: str, timeout_s: str | None = f"{CONNECT_TIMEOUT_S}s") -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_") or k == "CXPULSE_CI_RUN"}
    if timeout_s:
        env["CXPULSE_CONNECT_TIMEOUT"] = timeout_s
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=90)
    return done, time.monotonic() - began


def assert_one_line_failure(done: subprocess.CompletedProcess, elapsed_s: float, *expected: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    assert elapsed_s < BOUND_S, f"took {elapsed_s:.1f}s: {lines[0]}"


@pytest.mark.parametrize("command", KAFKA_COMMANDS, ids=str)
def test_a_kafka_command_against_a_closed_port_fails_in_one_line(command: str) -> None:
    server = f"127.0.0.1:{free_port()}"
    done, elapsed = cxpulse(*KAFKA_COMMANDS[command], "--bootstrap", server)

    assert_one_line_failure(done, elapsed, f"cannot reach Kafka at {server} (--bootstrap)", "refused")
    assert done.stderr.startswith(f"cxpulse {command.split()[0]}: error: ")


@pytest.mark.parametrize("command", KAFKA_COMMANDS, ids=str)
def test_a_kafka_command_against_a_silent_listener_fails_within_the_connect_timeout(command: str,
                                                                                   silent_server: str) -> None:
    done, elapsed = cxpulse(*KAFKA_COMMANDS[command], "--bootstrap", silent_server)

    assert_one_line_failure(done, elapsed, f"cannot reach Kafka at {silent_server}",
                            f"gave up after {CONNECT_TIMEOUT_S}s", "accepts connections, yet Kafka did not answer")


def test_the_default_connect_timeout_bounds_the_wait(silent_server: str) -> None:
    done, elapsed = cxpulse("simulate", "--kafka", "--events", "1", "--bootstrap", silent_server, timeout_s=None)

    assert_one_line_failure(done, elapsed, "gave up after 5s")


def test_an_unknown_host_is_named() -> None:
    done, elapsed = cxpulse("simulate", "--kafka", "--events", "1", "--bootstrap", "kafka.invalid:9092")

    assert_one_line_failure(done, elapsed, "cannot reach Kafka at kafka.invalid:9092", "unknown host")


def test_the_message_names_the_variable_when_the_servers_came_from_it() -> None:
    server = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_") or k == "CXPULSE_CI_RUN"}
    env.update(CXPULSE_BOOTSTRAP_SERVERS=server, CXPULSE_CONNECT_TIMEOUT=f"{CONNECT_TIMEOUT_S}s")
    done = subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--kafka", "--events", "1"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=90)

    assert done.returncode == 1, done.stderr
    assert f"cannot reach Kafka at {server} (CXPULSE_BOOTSTRAP_SERVERS)" in done.stderr, done.stderr


@pytest.mark.parametrize("kind", ["closed port", "silent listener"])
def test_report_against_an_unreachable_prometheus_fails_in_one_line(kind: str, silent_server: str,
                                                                    tmp_path) -> None:
    url = f"http://127.0.0.1:{free_port()}" if kind == "closed port" else f"http://{silent_server}"
    done, elapsed = cxpulse("report", "--prometheus", url, "--week", "2026-W47", "--out", str(tmp_path))

    assert_one_line_failure(done, elapsed, f"cannot reach Prometheus at {url} (--prometheus)")
    assert not list(tmp_path.iterdir())
