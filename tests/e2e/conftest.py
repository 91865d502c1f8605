"""Fixtures of the end-to-end exactness tests: simulated traffic on the real broker, and workers.

``traffic`` sends simulator runs (``cxpulse simulate --kafka --no-pace --out``) one after another
in a background thread, so a test can crash or add workers while events are still being produced;
the JSON-lines files, concatenated, are exactly what was sent, in order. ``workers`` starts
``cxpulse worker`` processes and stops whatever is left at the end of the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson
import pytest

from streams.config import Settings
from streams.devtools.stack import ROOT, WorkerProcess, settings_env, worker_settings


@dataclass
class Traffic:
    """Simulator runs sent back to back: chunk k starts where chunk k-1's event time ended."""

    settings: Settings
    workdir: Path
    chunks: int = 1
    events: int = 6000
    rate: float = 10.0
    pause_s: float = 0.0
    start: datetime = field(default_factory=lambda: datetime.now(timezone.utc) - timedelta(minutes=50))
    options: tuple[str, ...] = ("--ooo-share", "0.05", "--late-share", "0.02", "--late-delay", "200", "--dup-share", "0.03",
                                "--support-time-scale", "0.1")
    sent_chunks: int = 0
    error: str | None = None
    thread: threading.Thread | None = None

    def start_sending(self) -> "Traffic":
        self.thread = threading.Thread(target=self._send_all, daemon=True)
        self.thread.start()
        return self

    def _send_all(self) -> None:
        span = timedelta(seconds=self.events / self.rate)
        for k in range(self.chunks):
            start = (self.start + k * span).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            command = [sys.executable, "-m", "streams.cli", "simulate", "--kafka", "--bootstrap",
                       self.settings.bootstrap_servers, "--no-pace", "--start", start, "--events", str(self.events),
                       "--rate", str(self.rate), "--seed", str(11 + k), "--out", str(self.workdir / f"sent-{k}.jsonl"),
                       *self.options]
            done = subprocess.run(command, env={**os.environ, **settings_env(self.settings)}, cwd=ROOT,
                                  capture_output=True, text=True, timeout=120)
            if done.returncode:
                self.error = f"simulator chunk {k} exited {done.returncode}: {done.stderr[-2000:]}"
                return
            self.sent_chunks = k + 1
            if k + 1 < self.chunks:
                time.sleep(self.pause_s)

    def wait(self, timeout_s: float = 120.0) -> list[dict[str, Any]]:
        """Wait for every chunk to be sent; return all sent events in send order."""
        assert self.thread is not None, "start_sending() first"
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), f"simulator still sending after {timeout_s}s"
        assert self.error is None, self.error
        return self.events_sent()

    def events_sent(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for k in range(self.sent_chunks):
            with open(self.workdir / f"sent-{k}.jsonl", "rb") as lines:
                events.extend(orjson.loads(line) for line in lines if line.strip())
        return events

    @property
    def sending(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


@pytest.fixture
def make_traffic(tmp_path: Path) -> Callable[..., Traffic]:
    def make(settings: Settings, **options: Any) -> Traffic:
        return Traffic(settings, tmp_path, **options)

    return make


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[[Settings, int], WorkerProcess]]:
    """``start(settings, index)`` -> a started worker (own ports, log in tmp_path); all stopped at the end."""
    started: list[WorkerProcess] = []

    def start(settings: Settings, index: int) -> WorkerProcess:
        worker = WorkerProcess(worker_settings(settings, index), index, tmp_path / f"worker-{index}.log").start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()
