"""Each image's install, made the way the Dockerfile makes it, runs every ``cxpulse`` command.

For each target of the Dockerfile (``worker``, the default, and ``report``), a fresh venv receives
exactly what that target's build stages copy and run: their COPY lines, then their RUN of
``deploy/install.sh IMAGE`` with PYTHON pointing at the venv, so the image's lock and cxpulse
without dependencies of its own. A module that a runtime path imports but only the dev extra
installs (PyYAML for ``cxpulse report``, confluent-kafka for the default engine) fails here, not in
production. From outside the checkout, every command then runs once: ``--help``, or the one-line
"needs pip install 'cxpulse[...]'" of a command whose extra the image leaves out; and a real run
where none needs a broker (``simulate`` to a file, ``topics --dry-run``, a refused ``initiative
declare``; in the worker image ``worker`` serving /metrics while no broker answers, and
``report`` refused in one line for want of the report extra; in the report image ``report``
against a small stand-in Prometheus), then an import of every module the image's extras cover.
The worker image holds no matplotlib and no numpy. A third venv holds the base install alone, as
a storefront service installs it: the producer imports without Faust, numpy or matplotlib, none
of them installed, and the worker and the report say which extra they need. Needs the package
index, as ``./dev setup`` does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from streams.cli import COMMAND_EXTRAS, COMMANDS
from tests.helpers import free_port
from tests.images import dockerfile_stages, install_images, stage_chain

# Module-scoped fixtures: the whole module runs in one test process (pytest-xdist loadgroup).
pytestmark = pytest.mark.xdist_group("test_install")

ROOT = Path(__file__).resolve().parents[2]
IMAGES = install_images()
TARGETS = ("worker", "report")  # the Dockerfile's targets, each the image of that name in deploy/install.sh
INSTALL_TIMEOUT_S = 900


def _env() -> dict[str, str]:
    """This process's environment (the CI run's marker included), without the dev venv's traces."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def _build_stage(target: str, src: Path) -> str:
    """Copy into ``src`` what the build stages behind Dockerfile target ``target`` copy (the stage
    it copies /opt/cxpulse from, and the stages that one is built on); their RUN of deploy/install.sh."""
    stages = dockerfile_stages()
    built = stages[target].copied_from("/opt/cxpulse")
    assert built, f"Dockerfile target {target} copies no /opt/cxpulse"
    chain = stage_chain(stages, built)
    for stage in chain:
        for args in stage.args("COPY"):
            if args.startswith("--from"):
                continue
            *sources, dest = args.split()
            for source in sources:
                path = src / dest / Path(source).name if dest.endswith("/") else src / dest
                path.parent.mkdir(parents=True, exist_ok=True)
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, path, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(ROOT / source, path)
    runs = [f"RUN {run}" for stage in chain for run in stage.args("RUN") if "deploy/install.sh" in run]
    assert len(runs) == 1, runs
    return runs[0]


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    return path / "bin" / "python"


def _install_image(target: str, base: Path) -> Path:
    """A venv installed as the Dockerfile's ``target`` installs /opt/cxpulse: the python of that venv."""
    src = base / "src"
    run = _build_stage(target, src)
    python = _venv(base / "venv")
    match = re.fullmatch(rf"RUN PYTHON=(\S+) (sh deploy/install\.sh {target})", run)
    assert match, f"the Dockerfile's install step for {target} changed shape: {run}"
    subprocess.run(match[2], shell=True, cwd=src, env={**_env(), "PYTHON": str(python)}, check=True,
                   timeout=INSTALL_TIMEOUT_S, stdout=subprocess.DEVNULL)
    return python


@pytest.fixture(scope="module")
def worker_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The worker image's venv (``docker build .``): the python of that venv."""
    return _install_image("worker", tmp_path_factory.mktemp("worker-image"))


@pytest.fixture(scope="module")
def report_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report image's venv (``docker build --target report .``): the python of that venv."""
    return _install_image("report", tmp_path_factory.mktemp("report-image"))


@pytest.fixture(params=TARGETS)
def image(request: pytest.FixtureRequest) -> tuple[str, Path]:
    """Each image in turn: its name and the python of its venv."""
    return request.param, request.getfixturevalue(f"{request.param}_image")


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the base install alone (the worker lock's pins, no extra): the python of that venv."""
    base = tmp_path_factory.mktemp("light")
    src = base / "src"
    _build_stage("worker", src)
    python = _venv(base / "venv")
    subprocess.run([str(python), "-m", "pip", "install", "--no-cache-dir", "-c", IMAGES["worker"].lock, "."], cwd=src,
                   env=_env(), check=True, timeout=INSTALL_TIMEOUT_S, stdout=subprocess.DEVNULL)
    return python


def cxpulse(python: Path, *args: str, cwd: Path, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python.parent / "cxpulse"), *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=timeout_s)


# ----------------------------------------------------------------------------- both images
def test_the_image_install_is_the_installed_package_not_the_checkout(image: tuple[str, Path], tmp_path: Path) -> None:
    _, python = image
    done = subprocess.run([str(python), "-c", "import streams; print(streams.__file__)"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, check=True, timeout=300)
    assert Path(done.stdout.strip()).is_relative_to(python.parent.parent), done.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_helps_or_names_its_extra(image: tuple[str, Path], tmp_path: Path, command: str) -> None:
    name, python = image
    done = cxpulse(python, command, "--help", cwd=tmp_path)
    missing = sorted(set(COMMAND_EXTRAS.get(command, ())) - set(IMAGES[name].extras))
    if missing:
        assert done.returncode == 1, done
        assert f"pip install 'cxpulse[{','.join(missing)}]'" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    else:
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"usage: cxpulse {command}"), done.stdout


def test_the_top_level_help_lists_every_command(image: tuple[str, Path], tmp_path: Path) -> None:
    done = cxpulse(image[1], "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert all(name in done.stdout for name in COMMANDS)


def test_simulate_writes_events_to_a_file(image: tuple[str, Path], tmp_path: Path) -> None:
    done = cxpulse(image[1], "simulate", "--events", "200", "--out", "events.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(lines) == 200 and all(json.loads(line)["event_id"] for line in lines)


def test_topics_dry_run_prints_the_plan(image: tuple[str, Path], tmp_path: Path) -> None:
    done = cxpulse(image[1], "topics", "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--topic cx.orders" in done.stdout


def test_initiative_refuses_a_bad_declaration_before_connecting(image: tuple[str, Path], tmp_path: Path) -> None:
    done = cxpulse(image[1], "initiative", "declare", "chat", "--start", "2026-03-02", "--treated", "channel=app",
                   "--investment", "1000", "--currency", "EUR", "--margin", "1.5", "--bootstrap", "127.0.0.1:1",
                   cwd=tmp_path)
    assert done.returncode == 2, done
    assert "gross margin 1.5" in done.stderr and "Traceback" not in done.stderr


# Per image: the modules that need an extra the image leaves out, and the module they miss.
OUTSIDE_THE_IMAGE = {
    "worker": {
        "streams.mixin.dashboards": "grafana_foundation_sdk",
        "streams.mixin.rules": "yaml",  # the rules as YAML: the report's and the render's
        "streams.report.build": "yaml",
        "streams.report.charts": "matplotlib",
        "streams.report.cli": "yaml",
        "streams.report.document": "yaml",
        "streams.report.figures": "yaml",
        "streams.report.html": "yaml",
        "streams.report.markdown": "yaml",
        "streams.report.queries": "yaml",
    },
    "report": {
        "streams.mixin.dashboards": "grafana_foundation_sdk",
        "streams.runtime.changelog": "confluent_kafka",
        "streams.runtime.collector": "prometheus_client",
        "streams.runtime.engine": "confluent_kafka",
        "streams.runtime.faust_engine": "faust",
        "streams.runtime.sink": "confluent_kafka",
        "streams.runtime.source": "confluent_kafka",
        "streams.runtime.worker": "prometheus_client",
    },
}


def test_every_module_the_image_covers_imports(image: tuple[str, Path], tmp_path: Path) -> None:
    """Lazy imports hide from --help (the default engine imports confluent-kafka only once the
    broker answers): import every module of the installed package instead."""
    name, python = image
    code = """
import importlib, json, pkgutil, streams
failed = {}
for info in pkgutil.walk_packages(streams.__path__, "streams."):
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as exc:
        failed[info.name] = exc.name
print(json.dumps(failed))
"""
    done = subprocess.run([str(python), "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == OUTSIDE_THE_IMAGE[name]


# ------------------------------------------------------------------------------ the worker image
def test_the_worker_image_has_no_matplotlib_and_no_numpy(worker_image: Path, tmp_path: Path) -> None:
    code = ("import importlib.metadata, importlib.util, json; "
            "print(json.dumps({m: [importlib.util.find_spec(m) is not None, "
            "any(d.metadata['Name'].lower() == m for d in importlib.metadata.distributions())] "
            "for m in ('matplotlib', 'numpy')}))")
    done = subprocess.run([str(worker_image), "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"matplotlib": [False, False], "numpy": [False, False]}


def test_the_worker_image_refuses_the_report_in_one_line(worker_image: Path, tmp_path: Path) -> None:
    done = cxpulse(worker_image, "report", "--prometheus", "http://127.0.0.1:1", "--out", "out", cwd=tmp_path)
    assert done.returncode == 1, done
    assert done.stderr.count("\n") == 1 and done.stdout == "", done.stderr
    assert re.fullmatch(r"cxpulse report: error: this command needs `pip install 'cxpulse\[report\]'` "
                        r"\(not installed: matplotlib(, yaml)?\)\n", done.stderr), done.stderr
    assert not (tmp_path / "out").exists()


def test_the_worker_image_serves_metrics_while_no_broker_answers(worker_image: Path, tmp_path: Path) -> None:
    port, closed = free_port(), free_port()
    worker = subprocess.Popen([str(worker_image.parent / "cxpulse"), "worker", "--bootstrap", f"127.0.0.1:{closed}",
                               "--metrics-port", str(port)], cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline, page = time.monotonic() + 60, ""
        while time.monotonic() < deadline and worker.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    page = response.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert re.search(r"^cxpulse_broker_up 0\.0$", page, re.M), page[:2000] or worker.poll()
    finally:
        worker.send_signal(signal.SIGINT)  # it is waiting for the broker: stops there
        try:
            _, stderr = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            _, stderr = worker.communicate()
    assert "Traceback" not in stderr, stderr


# ------------------------------------------------------------------------------ the report image
class _OneEverywhere(BaseHTTPRequestHandler):
    """A stand-in Prometheus: every query has one series without labels, of value 1 (a range query:
    at every step). Enough for the report to find data, compute every section and draw a chart."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        if self.path.endswith("/query_range"):
            start, end, step = (float(form[k][0]) for k in ("start", "end", "step"))
            points = [[start + i * step, "1"] for i in range(int((end - start) // step) + 1)]
            data = {"resultType": "matrix", "result": [{"metric": {}, "values": points}]}
        else:
            data = {"resultType": "vector", "result": [{"metric": {}, "value": [float(form.get("time", [time.time()])[0]), "1"]}]}
        body = json.dumps({"status": "success", "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stand_in_prometheus() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OneEverywhere)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_the_report_image_writes_the_document_and_draws_charts(report_image: Path, tmp_path: Path,
                                                               stand_in_prometheus: str, fmt: str) -> None:
    done = cxpulse(report_image, "report", "--prometheus", stand_in_prometheus, "--week", "2026-W47", "--format", fmt,
                   "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    assert json.loads((out / "report.json").read_text())["week"] == "2026-W47"
    assert (out / "2026-W47-daily.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    document = (out / f"report.{fmt}").read_text()
    assert "CX weekly report: 2026-W47" in document
    assert ("data:image/png;base64," if fmt == "html" else "(2026-W47-daily.png)") in document


# ------------------------------------------------------------------------- the base install
def test_the_producer_installs_and_imports_without_faust_numpy_or_matplotlib(light: Path, tmp_path: Path) -> None:
    heavy = ("faust", "numpy", "matplotlib", "confluent_kafka", "prometheus_client", "yaml")
    code = (f"import importlib.util, json, sys, streams.producer; "
            f"print(json.dumps([[m, importlib.util.find_spec(m) is not None, m in sys.modules] for m in {heavy!r}]))")
    done = subprocess.run([str(light), "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert [m for m, installed, loaded in json.loads(done.stdout) if installed or loaded] == []


@pytest.mark.parametrize("command", ["worker", "report", "render"])
def test_a_command_of_an_extra_names_it_in_the_base_install(light: Path, tmp_path: Path, command: str) -> None:
    done = cxpulse(light, command, "--help", cwd=tmp_path)
    assert done.returncode == 1, done
    assert done.stderr.startswith(f"cxpulse {command}: error: this command needs `pip install 'cxpulse[{command}]'`")
    assert "Traceback" not in done.stderr


def test_the_base_install_runs_the_kafka_commands(light: Path, tmp_path: Path) -> None:
    assert cxpulse(light, "topics", "--dry-run", cwd=tmp_path).returncode == 0
    assert cxpulse(light, "simulate", "--events", "20", "--out", "e.jsonl", cwd=tmp_path).returncode == 0
    assert cxpulse(light, "initiative", "--help", cwd=tmp_path).returncode == 0
