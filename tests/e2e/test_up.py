"""``cxpulse up`` as a developer runs it: the demo initiative's ROI shows in Prometheus.

One real ``cxpulse up`` process (its own Tansu broker, two worker processes, the simulator and
Prometheus with the shipped rules, all on free ports) is polled, with a deadline, until
Prometheus records a positive ROI for the demo initiative ``cxpulse up`` declared, from the
uplift the simulator gives its treated store. Nothing is declared or sent by the test itself.

The stack runs at 600 events/s instead of the default 200: the same traffic, three times as
many sessions a second, so the incremental profit passes the investment about three times
sooner (tens of seconds instead of a minute or two).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Iterator

import orjson
import pytest

from streams.config import Settings
from streams.devtools.stack import ROOT, DemoInitiative, http_get
from tests.helpers import free_port, wait_until

RATE = 600
ROI = "initiative:cxpulse_initiative_roi:ratio"


def free_port_pair() -> int:
    """A port p with p and p + 1 free: ``cxpulse up`` gives worker i the metrics (and web) port base + i."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports on loopback")


def stack_env(metrics_port: int, web_port: int) -> dict[str, str]:
    """This process's environment without any CXPULSE_* setting from a developer's shell (other
    variables, such as a CI run's marker, pass through), plus the workers' ports."""
    names = set()
    for f in dataclasses.fields(Settings):
        names |= {f"CXPULSE_{f.name.upper()}", f"CXPULSE_{f.name.upper().removesuffix('_MS')}"}
    env = {k: v for k, v in os.environ.items() if k not in names}
    return {**env, "CXPULSE_METRICS_PORT": str(metrics_port), "CXPULSE_WEB_PORT": str(web_port),
            "PYTHONUNBUFFERED": "1"}


@dataclasses.dataclass
class Up:
    process: subprocess.Popen
    prometheus_url: str
    output: Path  # its stdout and stderr
    started_day: date  # UTC day when it was started


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    """A running ``cxpulse up``; stopped at the end as Ctrl-C would."""
    started_day = datetime.now(timezone.utc).date()
    prometheus_port = free_port()
    output = tmp_path / "up.out"
    command = [sys.executable, "-m", "streams.cli", "up", "--broker-port", str(free_port()),
               "--prometheus-port", str(prometheus_port), "--rate", str(RATE), "--workdir", str(tmp_path / "run")]
    with open(output, "wb") as out:
        # Its own session, so that if it ever fails to stop its children, the test can end them all.
        process = subprocess.Popen(command, cwd=ROOT, env=stack_env(free_port_pair(), free_port_pair()),
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield Up(process, f"http://127.0.0.1:{prometheus_port}", output, started_day)
    finally:
        process.send_signal(signal.SIGTERM)  # `cxpulse up` stops the simulator, workers, Prometheus, broker
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def query(prometheus_url: str, expr: str) -> list[dict]:
    """The instant query's result; empty while Prometheus is not up yet."""
    try:
        status, body = http_get(f"{prometheus_url}/api/v1/query?query={urllib.parse.quote(expr)}", 5)
    except OSError:
        return []
    return orjson.loads(body)["data"]["result"] if status == 200 else []


def test_up_declares_a_demo_initiative_whose_roi_turns_positive(up: Up) -> None:
    demo = DemoInitiative()
    began = time.monotonic()

    def positive_roi() -> float | None:
        assert up.process.poll() is None, (f"cxpulse up exited with {up.process.returncode}:\n"
                                           f"{up.output.read_text()[-3000:]}")
        values = [float(r["value"][1]) for r in query(up.prometheus_url, f'{ROI}{{initiative="{demo.name}"}}')]
        return values[0] if values and values[0] > 0 else None

    # Start-up takes 15-40 s on a busy 2-core machine; then the ROI turns positive within about
    # 10-90 s of traffic at 600 events/s (a spread measured over seeds and hours of the day).
    value = wait_until(positive_roi, timeout_s=240, interval_s=2, what="a positive ROI of the demo initiative")
    elapsed = time.monotonic() - began

    text = up.output.read_text()
    # declared through the CLI's code path, which confirms it on stderr
    assert f"declared {demo.name}: treated {demo.treated}" in text, text
    # the summary says what it is, where to look and how to skip it
    summary = next((line for line in text.splitlines() if line.startswith("[up] initiative")), "")
    assert all(part in summary for part in (demo.name, demo.treated, demo.control, "--no-demo-initiative")), text
    # From the day it was started (UTC): the ROI counts day totals from the start day on, so the
    # start day is what lets the traffic of the last minutes count at all.
    starts = {float(r["value"][1]) for r in query(
        up.prometheus_url, f'cxpulse_initiative_start_timestamp_seconds{{initiative="{demo.name}"}}')}
    start = datetime.fromtimestamp(starts.pop(), timezone.utc)
    assert not starts and start.time() == datetime.min.time(), start
    assert up.started_day <= start.date() <= datetime.now(timezone.utc).date(), start
    assert f"{demo.name} from {start.date().isoformat()}" in summary, summary
    labels = {(r["metric"]["kpi"], r["metric"]["treated"], r["metric"]["control"]) for r in query(
        up.prometheus_url, f'cxpulse_initiative_info{{initiative="{demo.name}"}}')}
    assert labels == {(demo.kpi, demo.treated, demo.control)}, labels
    print(f"positive demo ROI {value:.2f} after {elapsed:.0f} s")
