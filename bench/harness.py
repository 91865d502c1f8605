"""Process handles and measurements shared by the bench stages.

A ``cxpulse worker`` is started the way ``streams.devtools.stack.WorkerProcess`` starts
it (same command, same ``CXPULSE_*`` environment: ``CXPULSE_ENGINE`` picks the engine),
but with its working directory in the bench's scratch directory, so nothing a worker
writes lands in the repository. CPU time and peak RSS come from
``/proc/<pid>`` (utime + stime of every thread; ``VmHWM``).

Watching a worker costs what Prometheus would cost it, no more: progress is read several
times a second from the worker's health families only (``PROGRESS``, a ``name[]`` scrape:
a few dozen series), and the whole page, thousands of KPI series, is scraped every
``FULL_SCRAPE_S`` (the shipped Prometheus configuration's ``scrape_interval``), as a real
Prometheus would. Until 2026-12-03 the bench read progress from the whole page four times
a second (every 50 ms in the freshness stage); building it took the worker 120-320 ms of
GIL each time in the throughput runs, a load no deployment puts on it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from streams.devtools.broker import free_port
from streams.config import Settings
from streams.devtools.stack import settings_env

ROOT = Path(__file__).resolve().parent.parent
# The health samples the bench reads between full scrapes (``parse``, ``restart`` in run.py).
PROGRESS = ("cxpulse_worker_ready", "cxpulse_events_total", "cxpulse_event_freshness_seconds_bucket",
            "cxpulse_state_recovery_seconds", "cxpulse_state_recovered_records_total")
PROGRESS_QUERY = "?" + "&".join(f"name[]={name}" for name in PROGRESS)
FULL_SCRAPE_S = 15.0  # deploy/prometheus/prometheus.yml: scrape_interval
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def rss_bytes(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) in bytes."""
    now = peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            now = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return now, peak


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


@dataclass
class Scrape:
    at: float  # monotonic seconds
    ready: bool
    events: float
    values: dict[str, float]  # every other unlabelled / summed family: name -> sum over series
    freshness: list[tuple[float, float]]  # (le, cumulative count)
    seconds: float  # how long the scrape took


def parse(text: str, at: float, took: float) -> Scrape:
    values: dict[str, float] = {}
    freshness: list[tuple[float, float]] = []
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        v = float(value)
        if name == "cxpulse_event_freshness_seconds_bucket":
            le = name_labels.split('le="', 1)[1].split('"', 1)[0]
            freshness.append((math.inf if le == "+Inf" else float(le), v))
        values[name] = values.get(name, 0.0) + v
    return Scrape(at, values.get("cxpulse_worker_ready", 0.0) >= 1, values.get("cxpulse_events_total", 0.0),
                  values, freshness, took)


class Worker:
    """One ``cxpulse worker`` child process."""

    def __init__(self, settings: Settings, workdir: Path, name: str) -> None:
        self.settings = replace(settings, metrics_port=free_port(), web_port=free_port())
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> "Worker":
        env = {**os.environ, **settings_env(self.settings), "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
        level = os.environ.get("BENCH_WORKER_LOG_LEVEL", "WARNING")  # INFO to see recoveries and rebalances
        self.process = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--log-level", level],
                                        env=env, cwd=self.workdir, stdout=open(self.log_path, "ab"),
                                        stderr=subprocess.STDOUT)
        return self

    def scrape(self) -> Scrape | None:
        """Progress: the health samples of ``PROGRESS`` only."""
        began = time.monotonic()
        text = self.scrape_text(PROGRESS_QUERY)
        return None if text is None else parse(text, began, time.monotonic() - began)

    def scrape_text(self, query: str = "") -> str | None:
        """The whole page (or what ``query`` asks for)."""
        try:
            return http_get(f"http://127.0.0.1:{self.settings.metrics_port}/metrics{query}")
        except OSError:
            return None

    def full_scrape(self) -> float | None:
        """Seconds the whole page took, as Prometheus scrapes it (None: no answer)."""
        began = time.monotonic()
        return None if self.scrape_text() is None else time.monotonic() - began

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 30.0) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait()


class FullScrapes:
    """The whole page of each worker every ``FULL_SCRAPE_S``, as Prometheus scrapes it, from a
    thread of its own (so a slow page never delays a progress poll), from ``start`` to ``stop``
    (or in a ``with`` block); ``ms`` the mean time a whole page took."""

    def __init__(self, workers: list[Worker], every_s: float = FULL_SCRAPE_S) -> None:
        self.workers = workers
        self.every_s = every_s
        self.took: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.took += [t for t in (w.full_scrape() for w in self.workers) if t is not None]

    def start(self) -> "FullScrapes":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> "FullScrapes":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def ms(self) -> float | None:
        return 1000 * sum(self.took) / len(self.took) if self.took else None


def wait_ready(workers: list[Worker], timeout_s: float = 90.0, interval_s: float = 0.1) -> list[Scrape]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"worker exited; see {w.log_path}")
        scrapes = [w.scrape() for w in workers]
        if all(s is not None and s.ready for s in scrapes):
            return scrapes  # type: ignore[return-value]
        time.sleep(interval_s)
    raise TimeoutError(f"workers not ready after {timeout_s:.0f}s; see {[str(w.log_path) for w in workers]}")


def drive(workers: list[Worker], expected: int, cap_s: float, interval_s: float = 0.25, stall_s: float = 8.0,
          produced: Callable[[], int] | None = None, finish_s: float = 0.0) -> dict:
    """From the moment every worker is ready until ``expected`` events are counted (or ``cap_s``).

    Events/s is counted events / elapsed between the first ready scrape and the
    scrape that saw the last event; CPU is every worker's CPU time over that span.
    ``produced`` (events handed to a producer so far, when a ``Feeder`` loads the
    topics during the run) gives ``max_lag``: the most events produced but not yet
    counted at any poll. ``finish_s``: after a capped span, keep polling (untimed) for
    up to that long until the whole workload is counted, so its counts can be checked;
    ``finished`` is the count then.
    """
    first = wait_ready(workers, interval_s=0.1)
    t0 = max(s.at for s in first)
    count0 = sum(s.events for s in first)
    cpu0 = sum(cpu_seconds(w.pid) for w in workers)
    last_t, last_count, scrape_s, scrapes, max_lag = t0, count0, 0.0, 0, 0
    with FullScrapes(workers) as full:
        while True:
            time.sleep(interval_s)
            now = poll(workers)
            fed = produced() if produced is not None else 0  # read after the scrape: the lag is not understated
            count = sum(s.events for s in now)
            max_lag = max(max_lag, fed - int(count))
            scrape_s += sum(s.seconds for s in now)
            scrapes += 1
            at = max(s.at for s in now)
            if count > last_count:
                last_t, last_count = at, count
            if count >= expected or at - t0 > cap_s:
                stalled = False
                break
            if at - last_t > stall_s:
                stalled = True
                break
    cpu = sum(cpu_seconds(w.pid) for w in workers) - cpu0
    done = last_count - count0
    rss = [rss_bytes(w.pid) for w in workers]
    finished = last_count
    if finish_s and not stalled and finished < expected:
        deadline, progress_at = time.monotonic() + finish_s, time.monotonic()
        while finished < expected and time.monotonic() < deadline and time.monotonic() - progress_at < stall_s:
            time.sleep(interval_s)
            now = poll(workers)
            count = sum(s.events for s in now)
            if count > finished:
                finished, progress_at = count, time.monotonic()
    return {
        "events": done, "counted": last_count, "seconds": last_t - t0, "cpu_s": cpu,
        "capped": last_count < expected, "ready_s": t0 - min(w.started_at for w in workers),
        "counted_before_ready": count0, "rss": max(r[0] for r in rss), "rss_peak": max(r[1] for r in rss),
        "scrape_ms": 1000 * scrape_s / max(scrapes, 1), "full_scrape_ms": full.ms,
        "full_scrapes": len(full.took), "last": now, "finished": finished,
        "max_lag": max_lag if produced is not None else None,
        "stalled": stalled, "log_error": last_error(workers),
    }


def poll(workers: list[Worker]) -> list[Scrape]:
    now = [w.scrape() for w in workers]
    if any(s is None for s in now):
        raise RuntimeError(f"a worker stopped answering; see {[str(w.log_path) for w in workers]}")
    return now  # type: ignore[return-value]


def last_error(workers: list[Worker]) -> str | None:
    """The last line of the workers' logs that names an error (for the report's notes; a
    worker logs and carries on through a lost broker, so this alone fails nothing)."""
    for w in workers:
        lines = [l for l in w.log_path.read_text(errors="replace").splitlines() if "Error" in l and ":" in l]
        if lines:
            return lines[-1].strip()[:300]
    return None


def child_json(cmd: list[str], timeout_s: float, log_path: Path, cwd: Path | None = None,
               env: dict | None = None) -> dict:
    """Run a measuring child; its last stdout line is a JSON result."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, timeout=timeout_s, cwd=cwd,
                              env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    lines = [line for line in proc.stdout.decode().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{cmd[1:3]} gave no result (exit {proc.returncode}); see {log_path}")
    return json.loads(lines[-1])
