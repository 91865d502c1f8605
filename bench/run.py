"""``python -m bench run [--quick]``: every figure of docs/benchmarks.md in one run.

Starts its own Tansu broker on a free port, loads the seeded workloads
(``bench.workload``), then measures, repetition by repetition so that ratios
come from the same run: the bare confluent-kafka ceiling, idiomatic Faust,
the peers users compare cxpulse with (Quix Streams, Bytewax, Pathway at 1 and
2 engine threads: each counts events per storefront in 1-minute event-time
windows, and its counts must match the workload's, window by window), one and
two ``cxpulse worker`` processes, and the window layer fed by a bare
consumer; then freshness at paced loads, memory, recovery and a py-spy
profile of the worker. Results go to ``bench/results/<mode>-<stamp>.json``
and ``docs/benchmarks.md``.

``--only peers`` measures the ceiling and the peers alone (no cxpulse rows, no
later stages); ``--only throughput`` every throughput row, no later stages.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from bench.harness import ROOT, Worker, child_json, cpu_seconds, drive, rss_bytes, wait_ready
from bench.inventory import inventory, same_span
from bench.workload import Feeder, Workload, fresh_app, load, messages, namespace_settings

BENCH = Path(__file__).resolve().parent
VENV = Path.home() / ".cache" / "cxpulse-bench" / "venv"


@dataclass(frozen=True)
class Plan:
    reps: int
    single_events: int
    batched_events: int
    cap_s: float
    peer_cap_s: float  # a peer must count the whole workload within this (from its first record), or fail
    fresh_levels: tuple[tuple[str, int], ...]  # (layout, events/s)
    fresh_s: float
    memory_events: tuple[int, ...]  # batched events: N and 10 N, over the same event-time span
    memory_feed_per_s: float  # paced load while the worker runs (below one worker's rate: the lag stays small)
    cells_storefronts: tuple[int, int]
    cells_events: int
    profile_s: float
    batched_batch_max: int


FULL = Plan(reps=3, single_events=60_000, batched_events=500_000, cap_s=12.0, peer_cap_s=150.0,
            fresh_levels=(("batched", 1000), ("batched", 5000), ("batched", 20000), ("single", 1000),
                          ("single", 5000)),
            fresh_s=15.0, memory_events=(50_000, 500_000), memory_feed_per_s=12_500, cells_storefronts=(5, 50),
            cells_events=300_000,
            profile_s=10.0, batched_batch_max=50)
QUICK = Plan(reps=1, single_events=10_000, batched_events=100_000, cap_s=5.0, peer_cap_s=60.0,
             fresh_levels=(("batched", 5000),), fresh_s=5.0, memory_events=(10_000, 100_000),
             memory_feed_per_s=10_000,
             cells_storefronts=(5, 50), cells_events=0, profile_s=0.0, batched_batch_max=50)


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


# ------------------------------------------------------------------ setup
def ensure_venv() -> Path:
    """The bench virtualenv with bench/requirements.txt (Quix Streams, py-spy)."""
    req = (BENCH / "requirements.txt").read_bytes()
    stamp = VENV / "requirements.sha256"
    digest = hashlib.sha256(req).hexdigest()
    if not (VENV / "bin" / "python").exists():
        say(f"creating the bench virtualenv {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if not stamp.exists() or stamp.read_text() != digest:
        say("installing bench/requirements.txt into it")
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "-r", str(BENCH / "requirements.txt")],
                       check=True)
        stamp.write_text(digest)
    return VENV


def code_version() -> dict:
    """The commit measured, and whether streams/ differed from it (read-only git)."""
    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)
        return r.stdout.strip()
    # Every module of the package (it has subpackages since the layout by layer).
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted((ROOT / "streams").rglob("*.py")))).hexdigest()
    return {"commit": git("rev-parse", "--short", "HEAD"), "streams_changes": git("status", "--porcelain", "streams"),
            "streams_sha256": digest[:16], "streams_files": "streams/**/*.py"}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
    import confluent_kafka
    import faust
    versions = {"python": platform.python_version(), "faust-streaming": faust.__version__,
                "confluent-kafka": confluent_kafka.__version__}
    peers = subprocess.run([str(VENV / "bin" / "python"), "-c", "import json, importlib.metadata as m; print(json.dumps("
                            "{p: m.version(p) for p in ('quixstreams', 'bytewax', 'pathway', 'confluent-kafka')}))"],
                           capture_output=True, text=True)
    found = json.loads(peers.stdout or "{}")
    versions.update({k: found.get(k) for k in ("quixstreams", "bytewax", "pathway")})
    versions["confluent-kafka (peers' venv)"] = found.get("confluent-kafka")
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "versions": versions,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


# ------------------------------------------------------------ throughput
def settings_json(s) -> str:
    keys = ("bootstrap_servers", "topic_sessions", "topic_orders", "topic_tickets", "topic_surveys", "topic_state",
            "topic_deadletter", "app_id", "partitions", "batch_max")
    return json.dumps({k: getattr(s, k) for k in keys})


def run_ceiling(s, events: int, cap: float, work: Path) -> dict:
    return child_json([sys.executable, "-m", "bench.ceiling", "--bootstrap", s.bootstrap_servers,
                       "--topics", ",".join(s.topics.values()), "--events", str(events), "--cap", str(cap)],
                      120 + cap, work / "ceiling.log")


def run_faust(s, events: int, cap: float, work: Path) -> dict:
    from streams.devtools.broker import free_port
    f = fresh_app(s)
    return child_json([sys.executable, "-m", "bench.faust_idiomatic", "--bootstrap", s.bootstrap_servers,
                       "--topics", ",".join(s.topics.values()), "--events", str(events), "--cap", str(cap),
                       "--app-id", f"faust.{f.app_id}", "--web-port", str(free_port()),
                       "--datadir", str(work / "faust" / f.app_id)], 120 + cap, work / "faust.log", cwd=work)


# The peers run in the bench virtualenv, each from its own script; each prints its
# counts per storefront and window (``cells``), which ``check_peer`` holds
# against the workload's. A peer's cap is a deadline, not a stopping point.
def run_quix(s, events: int, layout: str, cap: float, work: Path) -> dict:
    f = fresh_app(s)
    return child_json([str(VENV / "bin" / "python"), str(BENCH / "quix_count.py"), "--bootstrap",
                       s.bootstrap_servers, "--topics", ",".join(s.topics.values()), "--events", str(events),
                       "--cap", str(cap), "--group", f"quix.{f.app_id}", "--state-dir",
                       str(work / "quix" / f.app_id)], 120 + cap, work / "quix.log", cwd=work)


def run_bytewax(s, events: int, layout: str, cap: float, work: Path) -> dict:
    return child_json([str(VENV / "bin" / "python"), str(BENCH / "bytewax_count.py"), "--bootstrap",
                       s.bootstrap_servers, "--topics", ",".join(s.topics.values()), "--events", str(events),
                       "--cap", str(cap)], 120 + cap, work / "bytewax.log", cwd=work)


def run_pathway(s, events: int, layout: str, cap: float, work: Path, threads: int = 1) -> dict:
    return child_json([str(VENV / "bin" / "python"), str(BENCH / "pathway_count.py"), "--bootstrap",
                       s.bootstrap_servers, "--topics", ",".join(s.topics.values()), "--events", str(events),
                       "--layout", layout, "--cap", str(cap)], 120 + cap, work / f"pathway-{threads}t.log", cwd=work,
                      env={"PATHWAY_THREADS": str(threads)})


def check_peer(r: dict, expected: int, truth: dict[str, int]) -> dict:
    """A peer's result, with ``error`` set unless its window counts are the workload's, cell by cell."""
    cells = r.pop("cells", None) or {}
    if r.get("error"):
        return r
    if r.get("counted") != expected:
        r["error"] = f"counted {r.get('counted')} events, the workload has {expected}"
    elif cells != truth:
        wrong = sorted(k for k in truth.keys() | cells.keys() if cells.get(k) != truth.get(k))
        r["error"] = (f"{len(wrong)} of {len(truth)} storefront-minute counts differ from the workload's, e.g. "
                      + ", ".join(f"{k}: {cells.get(k)} for {truth.get(k)}" for k in wrong[:3]))
    r["cells_checked"] = len(truth)
    return r


def run_bare(s, events: int, cap: float, work: Path) -> dict:
    f = fresh_app(s)
    return child_json([sys.executable, "-m", "bench.bare_window", "--settings", settings_json(f),
                       "--events", str(events), "--cap", str(cap)], 120 + cap, work / "bare.log")


def run_cxpulse(s, events: int, cap: float, work: Path, workers: int = 1) -> dict:
    f = fresh_app(s)
    procs = [Worker(f, work, f"cxpulse-{f.app_id}-{i}").start() for i in range(workers)]
    try:
        result = drive(procs, events, cap)
    finally:
        for w in procs:
            w.stop()
    result.pop("last")
    return result


PEERS = {
    "quix": run_quix,
    "bytewax": run_bytewax,
    "pathway": run_pathway,
    "pathway_2t": lambda s, e, layout, c, w: run_pathway(s, e, layout, c, w, threads=2),
}

APPROACHES = {  # measured in this order in every repetition
    "ceiling": run_ceiling,
    "faust": run_faust,
    **PEERS,
    "cxpulse": run_cxpulse,
    "cxpulse_2w": lambda s, e, c, w: run_cxpulse(s, e, c, w, workers=2),
    "bare_window": run_bare,
}


ONLY = {"peers": ("ceiling", *PEERS), "throughput": tuple(APPROACHES)}


def rate(r: dict) -> float:
    """Events/s of a result; 0 for a failed peer (no rate for one that did not count everything)."""
    if r.get("error") and r.get("approach") in PEERS:
        return 0.0
    return r["events"] / r["seconds"] if r.get("seconds") else 0.0


# -------------------------------------------------------------- freshness
def freshness(base, layout: str, per_s: int, duration_s: float, batch_max: int, work: Path) -> dict:
    """Produce paced, timestamped events with the cxpulse Producer; poll /metrics every 50 ms."""
    from streams.producer import Producer
    from streams.devtools.simulate import SimConfig, generate

    s = namespace_settings(base)
    s = replace(s, batch_max=batch_max if layout == "batched" else s.batch_max)
    from streams.devtools.broker import create_topics
    create_topics(s)
    worker = Worker(s, work, f"fresh-{layout}-{per_s}").start()
    try:
        wait_ready([worker])
        idle_rss = rss_bytes(worker.pid)[0]
        polls: list[tuple[float, float]] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                scrape = worker.scrape()
                if scrape is not None:
                    polls.append((time.monotonic(), scrape.events))
                time.sleep(0.05)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        now_ms = int(time.time() * 1000)
        events = generate(SimConfig(seed=per_s, start_ms=now_ms, rate_per_s=per_s))
        sent: list[tuple[float, int]] = []  # (monotonic time, cumulative events handed to the producer)
        total = int(per_s * duration_s)
        producer = Producer.from_settings(s, batch_events=100 if layout == "batched" else 1)
        began = time.monotonic()
        n = 0
        while n < total:
            due = min(total, int((time.monotonic() - began) * per_s) + 1)
            while n < due:
                producer.send(next(events))
                n += 1
            sent.append((time.monotonic(), n))
            time.sleep(0.002)
        producer.flush()
        offered_s = time.monotonic() - began
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (not polls or polls[-1][1] < total):
            time.sleep(0.1)
        stop.set()
        poller.join()
        producer.close()
        final = worker.scrape()
    finally:
        worker.stop()
    times = [t for t, _ in polls]
    counts = [c for _, c in polls]
    delays: list[tuple[float, int]] = []
    missing = 0
    previous = 0
    for t, cum in sent:
        j = bisect.bisect_left(counts, cum)  # counts only grow
        if j < len(counts):
            delays.append((times[j] - t, cum - previous))
        else:
            missing += cum - previous
        previous = cum
    return {"layout": layout, "offered_per_s": per_s, "achieved_send_per_s": total / offered_s,
            "events": total, "visible": counts[-1] if counts else 0, "missing": missing,
            **weighted_quantiles(delays), "histogram": hist_quantiles(final.freshness if final else []),
            "idle_rss": idle_rss}


def weighted_quantiles(pairs: list[tuple[float, int]]) -> dict:
    if not pairs:
        return {"p50_s": None, "p99_s": None, "max_s": None}
    pairs = sorted(pairs)
    total = sum(w for _, w in pairs)
    out = {}
    for q, name in ((0.5, "p50_s"), (0.99, "p99_s")):
        acc = 0
        for d, w in pairs:
            acc += w
            if acc >= q * total:
                out[name] = d
                break
    out["max_s"] = pairs[-1][0]
    return out


def hist_quantiles(buckets: list[tuple[float, float]]) -> dict:
    """histogram_quantile over the worker's cxpulse_event_freshness_seconds (per message)."""
    if not buckets or buckets[-1][1] == 0:
        return {}
    total = buckets[-1][1]
    out = {}
    for q in (0.5, 0.99):
        rank = q * total
        lo_le, lo_c = 0.0, 0.0
        for le, c in buckets:
            if c >= rank:
                out[f"p{int(q * 100)}_s"] = le if le == float("inf") else lo_le + (le - lo_le) * (rank - lo_c) / max(c - lo_c, 1e-9)
                break
            lo_le, lo_c = le, c
    return out


# ------------------------------------------------------- memory, recovery
def memory_recovery(s, workload: Workload, batch: list, per_s: float, batch_max: int, work: Path) -> dict:
    """One worker counts a batched workload fed at ``per_s`` events/s while it runs; a
    restarted one must serve the same counts.

    Paced, not preloaded: a worker started on a preloaded backlog fetches it into
    Faust's stream buffers (up to ``stream_buffer_maxsize`` messages per partition),
    so its peak RSS would grow with the backlog's bytes, i.e. with the event count.
    """
    f = replace(fresh_app(s), batch_max=batch_max)
    first = Worker(f, work, f"mem-{workload.name}").start()
    try:
        wait_ready([first])
        idle_rss = rss_bytes(first.pid)[0]
        feeder = Feeder(batch, f, per_s).start()
        done = drive([first], workload.events, cap_s=300, stall_s=15, produced=lambda: feeder.produced)
        feeder.join()
    finally:
        first.stop()
    last = done.pop("last")[0].values
    second = Worker(f, work, f"restart-{workload.name}").start()
    try:
        ready = wait_ready([second], interval_s=0.05)[0]
        t_ready = ready.at - second.started_at
        correct_at = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            scrape = second.scrape()
            if scrape is not None and scrape.ready and scrape.events >= done["counted"]:
                correct_at = scrape.at - second.started_at
                break
            time.sleep(0.05)
        after = second.scrape()
        restored_rss = rss_bytes(second.pid)
    finally:
        second.stop()
    return {
        "events": workload.events, "workload": workload.name, "sim_rate_per_s": workload.sim_rate_per_s,
        "span_s": workload.events / workload.sim_rate_per_s, "feed_per_s": per_s, "max_lag": done["max_lag"],
        "feed_errors": feeder.errors[:3], "idle_rss": idle_rss,
        "counted": done["counted"], "stalled": done["stalled"], "error": done["error"],
        "rss_peak": done["rss_peak"], "rss": done["rss"],
        "state_windows": last.get("cxpulse_state_windows"), "state_tickets": last.get("cxpulse_state_tickets"),
        "state_seen_ids": last.get("cxpulse_state_seen_ids"), "state_customers": last.get("cxpulse_state_customers"),
        "restart_ready_s": t_ready, "restart_correct_s": correct_at,
        "recovery_read_s": after.values.get("cxpulse_state_recovery_seconds") if after else None,
        "changelog_records": after.values.get("cxpulse_state_recovered_records_total") if after else None,
        "restored_rss": restored_rss[0],
    }


# ---------------------------------------------------------------- profile
def profile(s, events: int, duration_s: float, batch_max: int, work: Path, name: str) -> dict:
    f = replace(fresh_app(s), batch_max=batch_max)
    worker = Worker(f, work, f"profile-{name}").start()
    out = work / f"profile-{name}.txt"
    try:
        wait_ready([worker])
        subprocess.run([str(VENV / "bin" / "py-spy"), "record", "--pid", str(worker.pid), "--duration",
                        str(int(duration_s)), "--rate", "200", "--format", "raw", "--nonblocking",
                        "--output", str(out)], capture_output=True, timeout=duration_s + 60)
    finally:
        worker.stop()
    return summarize_profile(out)


CATEGORIES = (
    ("streams.decode (decode_message)", "decode_message"),
    ("streams.pipeline.window_state apply", "apply (streams/pipeline/window_state.py"),
    ("Slot/Meta to_json (changelog records)", "to_json (streams/"),
    ("state snapshot for scrapes", "snapshot (streams/pipeline/window_state.py"),
    ("changelog producer.send (Faust/aiokafka)", "send (faust/"),
    ("Runtime.process (the whole batch: decode, apply, sends, acks, publish)", "process (streams/runtime/faust_app.py"),
    ("Runtime._publish", "_publish (streams/runtime/faust_app.py"),
    ("aiokafka fetcher / record parsing", "aiokafka/consumer/fetcher.py"),
    ("faust stream/take/conductor", "faust/streams/"),
    ("faust transport consumer", "faust/transport/"),
    ("asyncio event loop (all)", "run_forever"),
)


def summarize_profile(path: Path) -> dict:
    if not path.exists():
        return {"error": "py-spy produced no output"}
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if n.isdigit():
            stacks.append((stack.split(";"), int(n)))
    # py-spy samples every thread: keep the event-loop thread (the one running the agent).
    total = sum(n for _, n in stacks)
    loop = [(f, n) for f, n in stacks if any("run_forever" in x for x in f)]
    loop_total = sum(n for _, n in loop)
    inclusive = {}
    for label, needle in CATEGORIES:
        inclusive[label] = sum(n for f, n in loop if any(needle in x for x in f)) / max(loop_total, 1)
    leaf: dict[str, int] = defaultdict(int)
    for f, n in loop:
        leaf[f[-1].split(" (", 1)[0] + " (" + f[-1].split(" (", 1)[-1].split("/")[-1]] += n
    top = sorted(leaf.items(), key=lambda kv: -kv[1])[:15]
    idle = sum(n for f, n in loop if "select (selectors.py" in f[-1] or "poll (selectors.py" in f[-1])
    scrape = sum(n for f, n in stacks if any("collect (streams/runtime/collector.py" in x for x in f))
    return {"samples_all_threads": total, "samples_loop": loop_total, "idle_share": idle / max(loop_total, 1),
            "scrape_thread_samples_vs_loop": scrape / max(loop_total, 1),
            "inclusive": inclusive, "top_self": [(k, v / max(loop_total, 1)) for k, v in top], "raw": str(path)}


# ------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench run")
    parser.add_argument("--quick", action="store_true", help="one repetition, small workloads (< 3 min)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cxpulse-bench"))
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--only", choices=tuple(ONLY),
                        help="peers: the ceiling and the peers only; throughput: every throughput row; "
                             "either way no freshness, memory, cells, profile or layer stage")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    ensure_venv()
    from streams.devtools.broker import LocalBroker
    from streams.config import Settings

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    work = args.workdir / stamp
    work.mkdir(parents=True, exist_ok=True)
    mode = "quick" if args.quick else "full"
    results: dict = {"plan": asdict(plan), "mode": mode + (f", --only {args.only}" if args.only else ""),
                     "machine": machine(),
                     "command": "python -m bench run" + (" --quick" if args.quick else "")
                                + (f" --only {args.only}" if args.only else ""),
                     "code": code_version(), "errors": []}
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    result_path = out / f"{mode}{'-' + args.only if args.only else ''}-{stamp}.json"

    def save() -> None:
        results["elapsed_s"] = time.monotonic() - started
        result_path.write_text(json.dumps(results, indent=1, default=str))

    def stage(name: str, fn) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - one failed stage must not lose the others
            import traceback
            results["errors"].append({"stage": name, "error": traceback.format_exc()[-1500:]})
            say(f"stage {name} failed: {type(exc).__name__}: {exc}")
        save()
    with LocalBroker(log_path=work / "broker.log") as broker:
        base = Settings(bootstrap_servers=broker.bootstrap)
        spaces = {}
        truth: dict[str, dict[str, int]] = {}  # layout -> events per storefront|minute
        results["loaded"] = {}
        for layout, n in (("single", plan.single_events), ("batched", plan.batched_events)):
            space = namespace_settings(base)
            truth[layout] = {}
            results["loaded"][layout] = load(Workload(layout, n), space, cells=truth[layout])
            if layout == "batched":
                space = replace(space, batch_max=plan.batched_batch_max)
            spaces[layout] = (space, n)
            say(f"loaded {results['loaded'][layout]}")
        runs: list[dict] = []
        results["load"] = {"before throughput": os.getloadavg()[0]}
        names = ONLY[args.only] if args.only else tuple(APPROACHES)
        say(f"throughput: {plan.reps} repetition(s) x {len(spaces)} workloads x {', '.join(names)}")
        for rep in range(plan.reps):
            for layout, (space, n) in spaces.items():
                for name in names:
                    if args.quick and layout == "single" and name == "cxpulse_2w":
                        continue
                    try:
                        if name in PEERS:
                            r = check_peer(PEERS[name](space, n, layout, plan.peer_cap_s, work), n, truth[layout])
                        else:
                            r = APPROACHES[name](space, n, plan.cap_s, work)
                    except Exception as exc:  # noqa: BLE001 - a failed approach is a reported figure
                        r = {"error": f"{type(exc).__name__}: {exc}"[:400], "events": 0, "seconds": 0}
                    r.update(rep=rep, layout=layout, approach=name)
                    r["rate"] = rate(r)
                    runs.append(r)
                    say(f"rep {rep} {layout:7} {name:11} {r['rate']:>10,.0f} events/s"
                        + (f"  cpu {1e6 * r['cpu_s'] / r['events']:.0f} us/event" if r.get("events") else "")
                        + ("  (capped)" if r.get("capped") else "")
                        + (f"  counts match the workload's in {r['cells_checked']} storefront-minutes"
                           if r.get("cells_checked") and not r.get("error") else "")
                        + (f"  ERROR {r.get('error')}" if r.get("error") else ""))
        results["throughput"] = runs
        results["load"]["after throughput"] = os.getloadavg()[0]
        from bench.report import peer_summary
        results["peers"] = peer_summary(runs)
        save()
        if args.only:
            results["skipped_stages"] = f"--only {args.only}: no freshness, memory, cells, profile or layer stage"
        else:
            later_stages(results, plan, base, spaces, work, stage)
    save()
    from bench.report import render
    if not args.no_docs:
        (ROOT / "docs" / "benchmarks.md").write_text(render(results))
    say(f"done in {results['elapsed_s']:.0f} s; results in {result_path.relative_to(ROOT)}")
    return 0


def later_stages(results, plan, base, spaces, work, stage) -> None:
    results["freshness"] = []
    stage("freshness", lambda: fresh_stage(results, plan, base, work))
    results["memory_recovery"] = []
    stage("memory_recovery", lambda: memory_stage(results, plan, base, spaces, work))
    results["cells"] = []
    stage("cells", lambda: cells_stage(results, plan, base, work))
    results["profile"] = {}
    stage("profile", lambda: profile_stage(results, plan, spaces, work))
    results["layer"] = []
    stage("layer", lambda: layer_stage(results, plan))


def fresh_stage(results, plan, base, work) -> None:
    for layout, per_s in plan.fresh_levels:
        r = freshness(base, layout, per_s, plan.fresh_s, plan.batched_batch_max, work)
        results["freshness"].append(r)
        say(f"freshness {layout} {per_s}/s: p50 {r['p50_s']} p99 {r['p99_s']} max {r['max_s']} missing {r['missing']}")


def memory_stage(results, plan, base, spaces, work) -> None:
    """Peak RSS at N and 10 N events over the same event-time span (10x the simulated rate).

    Same span, so the worker holds the same base windows; fed while it runs, so the
    buffered backlog stays small. What still grows with the rate by design (every
    event id of the dedupe horizon, open tickets, customers) is sized by replaying
    the workload in process (bench.inventory).
    """
    for workload in same_span(plan.memory_events):
        space = replace(namespace_settings(base), batch_max=plan.batched_batch_max)
        from streams.devtools.broker import create_topics
        create_topics(space)
        batch = messages(workload, space)
        inv = inventory(batch, space)
        r = memory_recovery(space, workload, batch, plan.memory_feed_per_s, plan.batched_batch_max, work)
        r["inventory"] = inv
        results["memory_recovery"].append(r)
        say(f"memory/recovery {workload.name}: peak RSS {r['rss_peak'] / 2**20:.0f} MiB (idle "
            f"{r['idle_rss'] / 2**20:.0f}), max lag {r['max_lag']:,} events, seen ids {r['state_seen_ids']}, "
            f"restart correct after {r['restart_correct_s']} s, {r['changelog_records']} changelog records")


def cells_stage(results, plan, base, work) -> None:
    if plan.cells_events:
        for stores in plan.cells_storefronts:
            wl = Workload("batched", plan.cells_events, storefronts=stores)
            space = replace(namespace_settings(base), batch_max=plan.batched_batch_max)
            load(wl, space)
            inv = inventory(messages(wl, space), space)
            cells = inv["counts"]["cells"]
            f = fresh_app(space)
            w = Worker(f, work, f"cells-{stores}").start()
            try:
                d = drive([w], plan.cells_events, cap_s=300, stall_s=15)
            finally:
                w.stop()
            results["cells"].append({"storefronts": stores, "events": plan.cells_events, "cells": cells,
                                     "rss_peak": d["rss_peak"], "rss": d["rss"], "counted": d["counted"],
                                     "scrape_ms": d["scrape_ms"], "inventory": inv})
            say(f"cells {stores} storefronts: {cells} cells, peak RSS {d['rss_peak'] / 2**20:.0f} MiB")


def layer_stage(results, plan) -> None:
    from bench.layer import measure
    results["layer"] = [measure("single", plan.single_events, 2000),
                        measure("batched", plan.batched_events, plan.batched_batch_max)]


def profile_stage(results, plan, spaces, work) -> None:
    if plan.profile_s:
        for layout, (space, n) in spaces.items():
            results["profile"][layout] = profile(space, n, plan.profile_s, space.batch_max, work, layout)
            say(f"profile {layout}: {results['profile'][layout].get('inclusive')}")
