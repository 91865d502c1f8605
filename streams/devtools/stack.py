"""``cxpulse up``: the local stack, and the process handles the tests share.

Starts the embedded broker, N workers (metrics on consecutive ports from 9400),
the traffic simulator and Prometheus loaded with the project's rules; declares a
demo CX initiative whose treated arm the simulator gives a real conversion uplift,
so its ROI shows within minutes; prints the URLs; shows progress; Ctrl-C stops
everything, workers first so their last batch is committed. The e2e tests drive
the same classes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from streams.config import Settings, format_duration, parse_duration_ms
from streams.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "deploy" / "prometheus" / "rules" / "cxpulse.rules.yml"


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process see ``settings``."""
    env = {}
    for name, value in ((f.name, getattr(settings, f.name)) for f in dataclasses.fields(settings)):
        if value is None:
            continue
        var = f"CXPULSE_{name.upper()}"
        if name in ("views_ms", "retention_periods_ms"):
            env[var] = ",".join(f"{v}ms" for v in value)
        else:
            env[var] = str(value)
    return env


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


@dataclass
class WorkerProcess:
    """One ``cxpulse worker`` child process."""

    settings: Settings
    index: int = 0
    log_path: Path | None = None
    process: subprocess.Popen | None = None

    @property
    def metrics_port(self) -> int:
        return self.settings.metrics_port

    @property
    def metrics_url(self) -> str:
        return f"http://{self.settings.metrics_host}:{self.settings.metrics_port}/metrics"

    def start(self) -> "WorkerProcess":
        env = {**os.environ, **settings_env(self.settings), "PYTHONUNBUFFERED": "1"}
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, cwd=ROOT,
                                        stdout=out, stderr=subprocess.STDOUT)
        return self

    def ready(self) -> bool:
        try:
            status, _ = http_get(f"http://{self.settings.metrics_host}:{self.settings.metrics_port}/ready", 1.0)
        except OSError:
            return False
        return status == 200

    def wait_ready(self, timeout_s: float = 60.0) -> "WorkerProcess":
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker {self.index} exited with {self.process.returncode}; see {self.log_path}")
            if self.ready():
                return self
            time.sleep(0.25)
        raise TimeoutError(f"worker {self.index} not ready after {timeout_s:.0f}s; see {self.log_path}")

    def scrape(self) -> str:
        return http_get(self.metrics_url, 5.0)[1]

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait: the worker finishes its batch and commits."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        """SIGKILL: no flush, no commit (a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# The support calendar `cxpulse up` gives every storefront unless CXPULSE_BUSINESS_HOURS sets one: open 45
# minutes of every hour, so within minutes the business-hours times on the Support dashboard differ from
# the calendar-time ones. The workers measure with it; the simulator's agents keep working around the
# clock (a demo started in a closed quarter would show no reply for up to 15 minutes). A calendar the
# user sets reaches the simulator too, whose agents then keep its hours.
DEMO_BUSINESS_HOURS = ('{"*": {"timezone": "UTC", "hours": {"mon-sun": "'
                       + ",".join(f"{hour:02}:00-{hour:02}:45" for hour in range(24)) + '"}}}')


def worker_settings(settings: Settings, index: int) -> Settings:
    """Settings of the index-th local worker: the next metrics and web ports."""
    from dataclasses import replace

    return replace(settings, metrics_port=settings.metrics_port + index, web_port=settings.web_port + index)


# How old a remote-written window may be and still be accepted: the workers keep windows for
# CXPULSE_RETENTION (2h) and write any they had not written after a restart; an hour more.
OUT_OF_ORDER_WINDOW = "3h"


@dataclass
class PrometheusProcess:
    """A real Prometheus on loopback scraping the given targets, with our rules."""

    targets: list[str]
    port: int = 9090
    scrape_interval: str = "5s"
    rules: list[Path] = field(default_factory=lambda: [RULES_FILE])
    workdir: Path | None = None
    process: subprocess.Popen | None = None
    evaluation_interval: str | None = None  # the scrape interval unless set

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def write_url(self) -> str:
        """Where workers write complete event-time windows (CXPULSE_REMOTE_WRITE_URL)."""
        return f"{self.url}/api/v1/write"

    def config(self) -> str:
        rules = "".join(f"\n  - {path}" for path in self.rules if path.exists())
        targets = ", ".join(f"'{t}'" for t in self.targets)
        return (
            f"global:\n  scrape_interval: {self.scrape_interval}\n"
            f"  evaluation_interval: {self.evaluation_interval or self.scrape_interval}\n"
            # complete event-time windows arrive by remote write, stamped with their end: older
            # than the newest sample of a series when a worker catches up or a partition moves
            f"storage:\n  tsdb:\n    out_of_order_time_window: {OUT_OF_ORDER_WINDOW}\n"
            f"rule_files:{rules or ' []'}\n"
            "scrape_configs:\n  - job_name: cxpulse\n"
            f"    static_configs:\n      - targets: [{targets}]\n"
        )

    def start(self) -> "PrometheusProcess":
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed: run ./dev setup (Debian: apt-get install prometheus)")
        self.workdir = self.workdir or Path(tempfile.mkdtemp(prefix="cxpulse-prometheus-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(self.config())
        log = open(self.workdir / "prometheus.log", "ab")
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
             "--web.enable-remote-write-receiver"],
            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if http_get(f"{self.url}/-/ready", 1.0)[0] == 200:
                    return self
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited; see {self.workdir / 'prometheus.log'}")
            time.sleep(0.2)
        raise TimeoutError("prometheus not ready after 30s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


# ----------------------------------------------------------- the demo initiative
@dataclass(frozen=True)
class DemoInitiative:
    """The initiative ``cxpulse up`` declares, and the effect the simulator gives its treated arm.

    A better checkout at one store, with another store of the same currency held out as
    control. Stores differ in the simulator only in traffic share, currency and order value,
    never in the funnel, so the holdout converts as the treated store would without the
    initiative: the conversion uplift measured is the one simulated, nothing else. (A channel
    control would not do: the app already converts better than the web.) Its KPI is
    conversion because the two stores' order values differ. Investment and margin are sized
    so that at the default 200 events/s the incremental profit passes the investment within
    a few minutes, i.e. the ROI turns positive while you watch.
    """

    name: str = "demo"
    treated: str = "storefront=north-outfitters"
    control: str = "storefront=fern-and-field"
    kpi: str = "conversion"
    conversion_uplift: float = 0.3  # checkout converts 1.3 times as often in the treated store
    investment: float = 500.0
    currency: str = "EUR"  # both stores sell in EUR; revenue in other currencies is not counted
    margin: float = 0.4

    def declare_argv(self, start_day: str, bootstrap: str) -> list[str]:
        """The ``cxpulse initiative`` command line that declares it."""
        return ["declare", self.name, "--start", start_day, "--treated", self.treated, "--control", self.control,
                "--kpi", self.kpi, "--investment", f"{self.investment:g}", "--currency", self.currency,
                "--margin", f"{self.margin:g}", "--bootstrap", bootstrap]

    def simulate_argv(self) -> list[str]:
        """The ``cxpulse simulate`` options that give the treated arm its uplift."""
        return ["--treated", self.treated, "--conversion-uplift", f"{self.conversion_uplift:g}"]


def declare_initiative(argv: list[str]) -> int:
    """Run ``cxpulse initiative <argv>`` in this process: the parser and the code path of the CLI."""
    from streams.initiatives import cli

    parser = argparse.ArgumentParser(prog="cxpulse initiative")
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def demo_initiative(args: argparse.Namespace) -> DemoInitiative | None:
    """The demo initiative the command line asks for, or None with ``--no-demo-initiative``."""
    if args.no_demo_initiative:
        return None
    demo = DemoInitiative(conversion_uplift=args.demo_uplift)
    # Refuse an impossible uplift now, naming the option, rather than a simulator that exits later.
    from streams.devtools.simulate import SimConfig
    from streams.initiatives.model import parse_segment

    try:
        SimConfig(treated=parse_segment(demo.treated), conversion_uplift=demo.conversion_uplift).validate()
    except ConfigError as error:
        raise ConfigError(f"--demo-uplift {args.demo_uplift:g} is not valid: {error}") from None
    return demo


def simulator_command(args: argparse.Namespace, bootstrap: str, demo: DemoInitiative | None) -> list[str]:
    """The ``cxpulse simulate`` process of the stack."""
    return [sys.executable, "-m", "streams.cli", "simulate", "--kafka", "--bootstrap", bootstrap,
            "--rate", str(args.rate), "--seed", str(args.seed), "--scenario", args.scenario,
            "--incident-after", str(args.incident_after),
            # start in steady state: orders come minutes after their sessions, so a cold start
            # converts almost nothing at first (and the demo initiative's ROI would wait for it)
            "--warmup", "900",
            # support answers 10x sooner than in a real shop, so the Support panels fill in a demo
            "--support-time-scale", "0.1",
            *(demo.simulate_argv() if demo else [])]


# ------------------------------------------------------------------ cxpulse up
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--rate", type=float, default=200.0, help="simulated events per second (default 200)")
    parser.add_argument("--scenario", default="none",
                        choices=["none", "checkout-broken", "support-understaffed", "survey-fatigue",
                                 "shipping-delay", "product-defect"],
                        help="replay an incident so an alert fires (or, survey-fatigue, a response rate falls; "
                             "shipping-delay, shipping contacts surge; product-defect, returns about one product "
                             "category surge) within minutes")
    parser.add_argument("--incident-after", type=float, default=180, metavar="SECONDS",
                        help="when the --scenario incident starts (default 180)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--broker-port", type=int, default=9092)
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus")
    parser.add_argument("--no-demo-initiative", action="store_true",
                        help=f"declare no demo initiative and simulate no uplift (by default `{DemoInitiative.name}` "
                             f"is declared from today: treated {DemoInitiative.treated}, control "
                             f"{DemoInitiative.control})")
    parser.add_argument("--demo-uplift", type=float, default=DemoInitiative.conversion_uplift, metavar="F",
                        help="the demo initiative's simulated conversion uplift in its treated store "
                             f"(default {DemoInitiative.conversion_uplift:g}: conversion "
                             f"x{1 + DemoInitiative.conversion_uplift:g}; 0 shows an initiative that does nothing; at most 0.4)")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: until Ctrl-C)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "run", help="logs and Prometheus data (default ./run)")


def run(args: argparse.Namespace) -> int:
    from streams.devtools.broker import LocalBroker, create_topics

    args.workdir.mkdir(parents=True, exist_ok=True)
    base = Settings.from_env()
    say = lambda text: print(f"[up] {text}", flush=True)  # noqa: E731
    broker = LocalBroker(port=args.broker_port, log_path=args.workdir / "broker.log")
    workers: list[WorkerProcess] = []
    prometheus = None
    simulator = None
    stopping = False
    demo = demo_initiative(args)

    def stop_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop_signal)
    try:
        broker.start()
        settings = Settings.from_env(bootstrap_servers=broker.bootstrap)
        if not args.no_prometheus:  # complete event-time windows go to the local Prometheus
            settings = dataclasses.replace(settings,
                                           remote_write_url=f"http://127.0.0.1:{args.prometheus_port}/api/v1/write")
        if not settings.business_hours:  # so the business-hours panels differ from calendar time within minutes
            settings = dataclasses.replace(settings, business_hours=DEMO_BUSINESS_HOURS)
        create_topics(settings)
        say(f"broker      {broker.bootstrap} (Tansu, in memory: a restart starts empty)")
        # From today (UTC): the ROI adds up the arms' day totals from the start day on, so a
        # start of today counts every event the simulator sends (its event time is now).
        today = time.strftime("%Y-%m-%d", time.gmtime())
        if demo is not None:
            # Before the workers start: they read the initiatives topic from the beginning,
            # so the first scrape already carries the declaration.
            declare_initiative(demo.declare_argv(today, broker.bootstrap))
        for index in range(args.workers):
            worker = WorkerProcess(worker_settings(settings, index), index,
                                   args.workdir / f"worker-{index}.log").start()
            workers.append(worker)
        if not args.no_prometheus:
            targets = [f"127.0.0.1:{w.metrics_port}" for w in workers]
            prometheus = PrometheusProcess(targets, port=args.prometheus_port, scrape_interval="5s",
                                           workdir=args.workdir / "prometheus")
            shutil.rmtree(prometheus.workdir / "data", ignore_errors=True)
            prometheus.start()
        simulator = subprocess.Popen(simulator_command(args, broker.bootstrap, demo), cwd=ROOT, env=dict(os.environ),
                                     stderr=open(args.workdir / "simulator.log", "ab"))
        say("waiting for the workers to join and recover (about 10 s on the test broker)...")
        for worker in workers:
            worker.wait_ready(90)
        for worker in workers:
            say(f"worker {worker.index}    {worker.metrics_url}  (log {worker.log_path})")
        if prometheus:
            say(f"prometheus  {prometheus.url}  (rules: {RULES_FILE.relative_to(ROOT)}; alerts: {prometheus.url}/alerts)")
        say(f"simulator   {args.rate:g} events/s, scenario {args.scenario} (log {args.workdir / 'simulator.log'})")
        if args.scenario == "survey-fatigue" and prometheus:
            rate = "storefront:cxpulse_nps_response_rate:ratio_window5m"
            say(f"incident    {args.scenario} in {args.incident_after:g} s: customers answer surveys 30% as often; "
                f"watch {prometheus.url}/graph?g0.expr={urllib.parse.quote(rate)} fall while "
                "storefront:cxpulse_nps:ratio_window5m holds (no alert judges response rates)")
        elif args.scenario == "shipping-delay" and prometheus:
            rate = 'storefront_reason:cxpulse_ticket_to_order:ratio_window5m{reason="shipping"}'
            say(f"incident    {args.scenario} in {args.incident_after:g} s: a carrier's delay sends 4x the shipping "
                f"tickets after orders; watch {prometheus.url}/graph?g0.expr={urllib.parse.quote(rate)} rise while "
                "the other reasons hold (the Support dashboard's reason row)")
        elif args.scenario == "product-defect" and prometheus:
            rate = ('storefront_product_category:cxpulse_ticket_to_order:ratio_window5m'
                    '{product_category="electronics"}')
            say(f"incident    {args.scenario} in {args.incident_after:g} s: a faulty batch sends 5x the returns "
                f"tickets about electronics; watch {prometheus.url}/graph?g0.expr={urllib.parse.quote(rate)} rise "
                "while the other categories hold (the Support dashboard's category row)")
        elif args.scenario != "none" and prometheus:
            alert = {"checkout-broken": "CxpulseConversionCollapse",
                     "support-understaffed": "CxpulseFirstResponseSlow"}[args.scenario]
            if alert == "CxpulseConversionCollapse":
                from streams.mixin.rules import COLLAPSE_PAGE_AFTER

                # it pages COLLAPSE_PAGE_AFTER after the end of the first whole broken minute
                soonest = parse_duration_ms(COLLAPSE_PAGE_AFTER) + 60_000
                when = (f" (it fires {format_duration(soonest)} to {format_duration(soonest + 60_000)} after the "
                        "incident starts: docs/alerts.md)")
            else:
                when = " (it compares with last week: a fresh stack shows the FRT rise on the Support dashboard instead)"
            say(f"incident    {args.scenario} in {args.incident_after:g} s; watch {prometheus.url}/alerts "
                f"for {alert}{when}")
        if demo is not None:
            roi = "initiative:cxpulse_initiative_roi:ratio"
            where = (f"{prometheus.url}/graph?g0.expr={urllib.parse.quote(roi)}" if prometheus else roi)
            say(f"initiative  {demo.name} from {today}: treated {demo.treated} (the simulator raises its "
                f"conversion by {demo.conversion_uplift:.0%}), control {demo.control}, "
                f"{demo.investment:g} {demo.currency} invested; ROI within minutes: {where}  "
                f"(--no-demo-initiative skips it)")
        else:
            command = shlex.join(["cxpulse", "initiative", *DemoInitiative().declare_argv(today, broker.bootstrap)])
            say(f"initiative  none (--no-demo-initiative); declare one to see its ROI live: {command}  "
                "(docs/initiatives.md)")
        say("Ctrl-C stops everything.")
        began = time.monotonic()
        while not stopping and (args.duration <= 0 or time.monotonic() - began < args.duration):
            time.sleep(5)
            say(_progress(workers))
            if simulator.poll() is not None:
                say(f"simulator exited with {simulator.returncode}; see {args.workdir / 'simulator.log'}")
                break
    except KeyboardInterrupt:
        pass
    finally:
        say("stopping: simulator, workers (flush and commit), Prometheus, broker")
        if simulator is not None and simulator.poll() is None:
            simulator.terminate()
            simulator.wait(15)
        for worker in workers:
            worker.stop()
        if prometheus:
            prometheus.stop()
        broker.stop()
        say("stopped")
    return 0


def _progress(workers: list[WorkerProcess]) -> str:
    events = late = rejected = 0.0
    ready = 0
    for worker in workers:
        try:
            text = worker.scrape()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("cxpulse_events_total{"):
                events += float(line.rsplit(" ", 1)[1])
            elif line.startswith("cxpulse_events_late_total{"):
                late += float(line.rsplit(" ", 1)[1])
            elif line.startswith("cxpulse_events_rejected_total{"):
                rejected += float(line.rsplit(" ", 1)[1])
            elif line.startswith("cxpulse_worker_ready "):
                ready += float(line.rsplit(" ", 1)[1])
    return f"events counted {events:,.0f}  late {late:,.0f}  rejected {rejected:,.0f}  workers ready {ready:.0f}/{len(workers)}"
