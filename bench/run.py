"""``python -m bench run [--quick]``: every figure of docs/benchmarks.md in one run.

Starts its own Tansu broker on a free port, loads the seeded workloads
(``bench.workload``), then measures, repetition by repetition so that ratios
come from the same run: the bare confluent-kafka ceiling, idiomatic Faust,
the peers users compare cxpulse with (Quix Streams, Bytewax, Pathway at 1 and
2 engine threads: each counts events per storefront in 1-minute event-time
windows, and its counts must match the workload's, window by window), one and
two ``cxpulse worker`` processes on the default engine (``CXPULSE_ENGINE=kafka``,
the confluent-kafka batch consumer), one on the Faust engine
(``CXPULSE_ENGINE=faust``), and the window layer fed by a bare consumer. Every
cxpulse row must prove its counts (``bench.exactness``: cumulative counters and
every complete event-time window the workers remote-wrote, against
``tests/reference.py``), or it fails with no rate. Then freshness at paced loads
up to 50k events/s, memory per window cell and per dedupe id, recovery after
SIGKILL (and after SIGTERM), a py-spy profile of each engine, and the pipeline's
per-event CPU in process. Results go to ``bench/results/<mode>-<stamp>.json`` and
``docs/benchmarks.md``.

``--only peers`` measures the ceiling and the peers alone (no cxpulse rows, no
later stages); ``--only throughput`` every throughput row, no later stages.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import hashlib
import itertools
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from bench.exactness import Checker, Expected, Receiver
from bench.harness import ROOT, FullScrapes, Worker, child_json, drive, rss_bytes, wait_ready
from bench.inventory import inventory, same_span
from bench.workload import Feeder, Workload, events_of, fresh_app, load, messages, namespace_settings, produce

BENCH = Path(__file__).resolve().parent
VENV = Path.home() / ".cache" / "cxpulse-bench" / "venv"


@dataclass(frozen=True)
class Plan:
    reps: int
    single_events: int
    batched_events: int
    cap_s: float  # a cxpulse row is timed for at most this long (then the rate is over what it reached) ...
    finish_s: float  # ... and must have counted the whole workload within this much longer, for its check
    peer_cap_s: float  # a peer must count the whole workload within this (from its first record), or fail
    fresh_levels: tuple[tuple[str, int], ...]  # (layout, events/s)
    fresh_s: float
    memory_events: tuple[int, ...]  # batched events: N and 10 N, over the same event-time span
    memory_feed_per_s: float  # paced load while the worker runs (below one worker's rate: the lag stays small)
    cells_storefronts: tuple[int, int]
    cells_events: int
    profile_s: float
    batched_batch_max: int


FULL = Plan(reps=3, single_events=60_000, batched_events=500_000, cap_s=12.0, finish_s=180.0, peer_cap_s=150.0,
            fresh_levels=(("batched", 1000), ("batched", 5000), ("batched", 20000), ("batched", 50000),
                          ("single", 1000), ("single", 5000)),
            fresh_s=15.0, memory_events=(50_000, 500_000), memory_feed_per_s=12_500, cells_storefronts=(5, 50),
            cells_events=300_000,
            profile_s=10.0, batched_batch_max=50)
QUICK = Plan(reps=1, single_events=10_000, batched_events=100_000, cap_s=5.0, finish_s=90.0, peer_cap_s=60.0,
             fresh_levels=(("batched", 5000), ("batched", 50000), ("single", 5000)), fresh_s=5.0,
             memory_events=(10_000, 100_000), memory_feed_per_s=10_000,
             cells_storefronts=(5, 50), cells_events=50_000, profile_s=3.0, batched_batch_max=50)


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


# ------------------------------------------------------------------ setup
def ensure_venv() -> Path:
    """The bench virtualenv with bench/requirements.txt (Quix Streams, Bytewax, Pathway, py-spy)."""
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
    r = child_json([sys.executable, "-m", "bench.bare_window", "--settings", settings_json(f),
                    "--events", str(events), "--cap", str(cap)], 120 + cap, work / "bare.log")
    if not r.get("capped") and r.get("events") != events:
        r["error"] = f"counted {r.get('events')} events, the workload has {events}"
    return r


@dataclass
class Context:
    """What a cxpulse row needs beyond its workload: the remote-write endpoint every worker
    writes its event-time windows to, and each layout's reference (``bench.exactness``)."""

    receiver: Receiver
    checkers: dict[str, Checker]
    finish_s: float
    # layout -> the workload's messages, to load again into a broker of a row's own
    batches: dict[str, list] = field(default_factory=dict)


@contextlib.contextmanager
def own_broker(work: Path, name: str, space=None, batch: list | None = None):
    """A broker of its own for one row or stage, ``space``'s topics created and ``batch``
    loaded into it; yields ``space`` (or bare settings) pointing at it.

    The test broker (Tansu 0.6.0) keeps every transactional id it has seen in one metadata
    record that each transactional request reads and rewrites: measured in this harness, a
    commit took 5 ms on a fresh broker and 60 ms on the one an hour of runs had used (about
    1,400 transactional ids). Sharing one broker would slow every transactional row (cxpulse,
    idiomatic Faust) by the runs before it, and the later stages most."""
    from streams.config import Settings
    from streams.devtools.broker import LocalBroker, create_topics

    with LocalBroker(log_path=work / f"broker-{name}.log") as broker:
        if space is None:
            yield Settings(bootstrap_servers=broker.bootstrap)
            return
        space = replace(space, bootstrap_servers=broker.bootstrap)
        create_topics(space)
        if batch:
            produce(batch, space, name)
        yield space


def run_cxpulse(s, events: int, cap: float, work: Path, ctx: Context, layout: str, workers: int = 1,
                engine: str = "kafka") -> dict:
    """``workers`` worker processes on ``engine``, timed as ``drive`` does; then the whole
    workload counted (up to ``finish_s`` more) and checked, or the row fails."""
    f = fresh_app(s)
    tag = f.app_id.replace(".", "-")
    f = replace(f, engine=engine, remote_write_url=ctx.receiver.url(tag))
    procs = [Worker(f, work, f"cxpulse-{engine}-{f.app_id}-{i}").start() for i in range(workers)]
    try:
        result = drive(procs, events, cap, finish_s=ctx.finish_s)
        result.pop("last")
        result.update(workers=workers, engine=engine)
        if result["finished"] > events:
            result["error"] = f"counted {result['finished']:,.0f} events, the workload has {events:,}: double counts"
        elif result["finished"] < events:
            result["error"] = (f"counted {result['finished']:,.0f} of {events:,} events within "
                               f"{cap + ctx.finish_s:.0f} s" + (" (stalled)" if result["stalled"] else ""))
        else:
            checked = ctx.checkers[layout].verify(procs, tag)
            result["exact"] = {k: v for k, v in checked.items() if k != "error"}
            if checked["error"]:
                result["error"] = "counts differ from the reference: " + checked["error"]
    finally:
        for w in procs:
            w.stop()
    return result


PEERS = {
    "quix": run_quix,
    "bytewax": run_bytewax,
    "pathway": run_pathway,
    "pathway_2t": lambda s, e, layout, c, w: run_pathway(s, e, layout, c, w, threads=2),
}

CXPULSE = {  # name -> (worker processes, engine)
    "cxpulse": (1, "kafka"),
    "cxpulse_2w": (2, "kafka"),
    "cxpulse_faust": (1, "faust"),
}

APPROACHES = ("ceiling", "faust", *PEERS, *CXPULSE, "bare_window")  # measured in this order in every repetition
OTHERS = {"ceiling": run_ceiling, "faust": run_faust, "bare_window": run_bare}

ONLY = {"peers": ("ceiling", *PEERS), "throughput": APPROACHES}


def measure(name: str, layout: str, space, n: int, plan: Plan, work: Path, truth: dict[str, int],
            ctx: Context) -> dict:
    if name in PEERS:
        return check_peer(PEERS[name](space, n, layout, plan.peer_cap_s, work), n, truth)
    if name in CXPULSE:
        workers, engine = CXPULSE[name]
        with own_broker(work, f"{name}-{layout}", space, ctx.batches[layout]) as own:
            return run_cxpulse(own, n, plan.cap_s, work, ctx, layout, workers, engine)
    return OTHERS[name](space, n, plan.cap_s, work)


def rate(r: dict) -> float:
    """Events/s of a result; 0 for a failed row (a peer or cxpulse row whose counts were not
    proven exact, or that did not count everything, has no rate)."""
    if r.get("error") and r.get("approach") in (*PEERS, *CXPULSE, "bare_window"):
        return 0.0
    return r["events"] / r["seconds"] if r.get("seconds") else 0.0


# -------------------------------------------------------------- freshness
LINGER_S = 0.05  # the producer library's linger when batching (Producer(batch_events=100))


def producer_messages(events: Iterable[dict], per_s: float, layout: str, settings) -> list[tuple]:
    """The messages ``streams.producer.Producer`` would send for ``events`` handed to it at
    ``per_s``: ``(due s, topic, partition, key, value, planned s of each event)`` by due time.

    Event i is handed over at i / per_s. Batched (``batch_events=100``): a partition's
    events wait until 100 are pending or the first has waited the 50 ms linger; single:
    one keyed message per event, at once. The bytes and keys are the library's
    (``pack_messages`` framing, the first event's key); only the sending is the bench's.
    """
    import orjson

    from streams.contract import EVENT_TYPES, message_key, partition_for

    topics = settings.topics
    out: list[tuple] = []
    pending: dict[tuple[str, int], tuple[float, list[float], list[bytes], bytes]] = {}

    def emit(where: tuple[str, int], due: float) -> None:
        since, planned, values, key = pending.pop(where)
        out.append((due, where[0], where[1], key, b"[" + b",".join(values) + b"]", planned))

    for i, event in enumerate(events):
        at = i / per_s
        key = message_key(event)
        topic = topics[EVENT_TYPES[event["type"]].family]
        where = (topic, partition_for(key, settings.partitions))
        value = orjson.dumps(event)
        if layout == "single":
            out.append((at, where[0], where[1], key.encode(), value, [at]))
            continue
        for other in [w for w, p in pending.items() if p[0] + LINGER_S <= at]:
            emit(other, pending[other][0] + LINGER_S)
        group = pending.setdefault(where, (at, [], [], key.encode()))
        group[1].append(at)
        group[2].append(value)
        if len(group[2]) == 100:
            emit(where, at)
    for where in list(pending):
        emit(where, pending[where][0] + LINGER_S)
    out.sort(key=lambda m: m[0])
    return out


def freshness(base, layout: str, per_s: int, duration_s: float, batch_max: int, work: Path,
              receiver: Receiver | None = None) -> dict:
    """Events handed over at a paced rate, as the producer library batches them; /metrics
    polled every 50 ms. An event's delay: the first poll whose ``cxpulse_events_total``
    covers it, minus the moment it was handed to the producer.

    The messages are built before the clock starts and sent by a confluent-kafka producer
    in a thread at their due times, so the bench's own Python (generating, validating,
    encoding 50k events/s) does not compete with the worker for the two cores; the
    producer library itself tops out far below 50k events/s here (docs/benchmarks.md).
    """
    from confluent_kafka import Producer as Confluent

    from streams.devtools.broker import create_topics
    from streams.devtools.simulate import SimConfig, generate

    s = namespace_settings(base)
    s = replace(s, batch_max=batch_max if layout == "batched" else s.batch_max,
                remote_write_url=receiver.url() if receiver else None)
    create_topics(s)
    total = int(per_s * duration_s)
    lead_s = 5.0 + total / 100_000  # time to build the messages before the first is due
    start_ms = int((time.time() + lead_s) * 1000)
    events = itertools.islice(generate(SimConfig(seed=per_s, start_ms=start_ms, rate_per_s=per_s)), total)
    plan = producer_messages(events, per_s, layout, s)
    worker = Worker(s, work, f"fresh-{layout}-{per_s}").start()
    full = FullScrapes([worker])  # Prometheus's whole-page scrapes beside the polls
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
        full.start()
        producer = Confluent({"bootstrap.servers": s.bootstrap_servers, "linger.ms": 5, "acks": "all",
                              "message.max.bytes": 2_000_000, "queue.buffering.max.messages": 1_000_000})
        sent: list[tuple[float, int]] = []  # (monotonic time sent, cumulative events), per message
        lateness = 0.0
        began = time.monotonic()
        n = 0
        for due, topic, partition, key, value, planned in plan:
            wait = began + due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                lateness = max(lateness, -wait)
            while True:
                try:
                    producer.produce(topic, value=value, key=key, partition=partition)
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
            n += len(planned)
            sent.append((time.monotonic(), n))
        offered_s = time.monotonic() - began
        producer.flush(60)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (not polls or polls[-1][1] < total):
            time.sleep(0.1)
        stop.set()
        poller.join()
        final = worker.scrape()
        rss_peak = rss_bytes(worker.pid)[1]
    finally:
        full.stop()
        worker.stop()
    times = [t for t, _ in polls]
    counts = [c for _, c in polls]
    delays: list[tuple[float, int]] = []
    missing = 0
    for (_, cum), (due, *_, planned) in zip(sent, plan):
        j = bisect.bisect_left(counts, cum)  # counts only grow
        if j < len(counts):
            delays.extend((times[j] - (began + at), 1) for at in planned)
        else:
            missing += len(planned)
    visible_at = times[bisect.bisect_left(counts, total)] if counts and counts[-1] >= total else None
    return {"layout": layout, "offered_per_s": per_s, "achieved_send_per_s": total / offered_s,
            "send_behind_max_s": lateness, "events": total, "messages": len(plan),
            "visible": counts[-1] if counts else 0, "missing": missing,
            "visible_per_s": total / (visible_at - began) if visible_at else None,
            **weighted_quantiles(delays), "histogram": hist_quantiles(final.freshness if final else []),
            "idle_rss": idle_rss, "rss_peak": rss_peak}


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
def memory_recovery(s, workload: Workload, batch: list, per_s: float, batch_max: int, work: Path,
                    receiver: Receiver, checker: Checker) -> dict:
    """One worker counts a batched workload fed at ``per_s`` events/s while it runs; then it
    is SIGKILLed and a new one started with the same app id (timed to /ready and to the same
    ``cxpulse_events_total``, then checked against the reference: counters and windows); then
    that one is stopped with SIGTERM and a third started (timed the same way).

    Paced, not preloaded: a worker started on a preloaded backlog prefetches it (the batch
    engine's librdkafka queues up to ``queued.max.messages.kbytes``, 64 MiB by default),
    so its peak RSS would grow with the backlog's bytes, not with its state.
    """
    tag = f"mem-{workload.name}"
    f = replace(fresh_app(s), batch_max=batch_max, remote_write_url=receiver.url(tag))
    first = Worker(f, work, f"mem-{workload.name}").start()
    try:
        wait_ready([first])
        idle_rss = rss_bytes(first.pid)[0]
        feeder = Feeder(batch, f, per_s).start()
        done = drive([first], workload.events, cap_s=300, stall_s=15, produced=lambda: feeder.produced)
        feeder.join()
    except BaseException:
        first.stop()
        raise
    last = done.pop("last")[0].values
    first.kill()  # SIGKILL: no commit, no leaving the group; the changelog is all there is
    out = {
        "events": workload.events, "workload": workload.name, "sim_rate_per_s": workload.sim_rate_per_s,
        "span_s": workload.events / workload.sim_rate_per_s, "feed_per_s": per_s, "max_lag": done["max_lag"],
        "feed_errors": feeder.errors[:3], "idle_rss": idle_rss,
        "counted": done["counted"], "stalled": done["stalled"], "log_error": done["log_error"],
        "rss_peak": done["rss_peak"], "rss": done["rss"],
        "state_windows": last.get("cxpulse_state_windows"), "state_tickets": last.get("cxpulse_state_tickets"),
        "state_seen_ids": last.get("cxpulse_state_seen_ids"), "state_customers": last.get("cxpulse_state_customers"),
    }
    for how in ("sigkill", "sigterm"):
        worker = Worker(f, work, f"restart-{how}-{workload.name}").start()
        try:
            r = restart(worker, done["counted"])
            if how == "sigkill":
                checked = checker.verify([worker], tag) if r["correct_s"] is not None else {
                    "error": f"served {r['served']:,.0f} events, not {done['counted']:,.0f}, within 90 s"}
                r["exact"] = {k: v for k, v in checked.items() if k != "error"}
                r["error"] = checked["error"]
        finally:
            worker.stop()
        out[how] = r
    # the figures of the page's recovery table (the SIGTERM restart is the one measured before)
    out.update(restart_ready_s=out["sigterm"]["ready_s"], restart_correct_s=out["sigterm"]["correct_s"],
               recovery_read_s=out["sigterm"]["read_s"], changelog_records=out["sigterm"]["changelog_records"],
               restored_rss=out["sigterm"]["rss"])
    return out


def restart(worker: Worker, counted: float, timeout_s: float = 90.0) -> dict:
    """A restarted worker, timed from its start: to /ready, and to serving ``counted`` events."""
    ready = wait_ready([worker], timeout_s=timeout_s, interval_s=0.05)[0]
    correct_at = None
    served = 0.0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        scrape = worker.scrape()
        if scrape is not None and scrape.ready:
            served = scrape.events
            if served >= counted:
                correct_at = scrape.at - worker.started_at
                break
        time.sleep(0.05)
    after = worker.scrape()
    values = after.values if after else {}
    return {"ready_s": ready.at - worker.started_at, "correct_s": correct_at, "served": served,
            "overcount": served > counted, "read_s": values.get("cxpulse_state_recovery_seconds"),
            "changelog_records": values.get("cxpulse_state_recovered_records_total"),
            "rss": rss_bytes(worker.pid)[0]}


# ---------------------------------------------------------------- profile
def profile(s, events: int, duration_s: float, batch_max: int, work: Path, name: str, engine: str = "kafka",
            receiver: Receiver | None = None) -> dict:
    """py-spy attached to one worker on ``engine`` while it consumes a preloaded workload."""
    f = replace(fresh_app(s), batch_max=batch_max, engine=engine,
                remote_write_url=receiver.url() if receiver else None)
    worker = Worker(f, work, f"profile-{engine}-{name}").start()
    out = work / f"profile-{engine}-{name}.txt"
    try:
        wait_ready([worker])
        subprocess.run([str(VENV / "bin" / "py-spy"), "record", "--pid", str(worker.pid), "--duration",
                        str(int(duration_s)), "--rate", "200", "--format", "raw", "--nonblocking",
                        "--output", str(out)], capture_output=True, timeout=duration_s + 60)
    finally:
        worker.stop()
    return {"engine": engine, **summarize_profile(out, engine)}


# (label, function, file): a frame ``function (file:line)`` (see ``_has``); shares are of the
# engine thread's samples (py-spy leaves out idle threads: waits in librdkafka are not in them).
CATEGORIES = (
    ("Engine.process: one batch (plan, write, publish)", "Engine.process", "streams/runtime/engine.py"),
    ("Pipeline.plan: decode and apply, pure CPU", "Pipeline.plan", "streams/pipeline/plan.py"),
    ("decode_message (bytes -> events)", "decode_message", "streams/decode.py"),
    ("PartitionState.apply (window stage)", "PartitionState.apply", "streams/pipeline/window_state.py"),
    ("CustomerState.apply (customer stage)", "CustomerState.apply", "streams/pipeline/customer_state.py"),
    ("MergeState.apply (merge stage)", "MergeState.apply", "streams/pipeline/merge_state.py"),
    ("state records to JSON (changelog)", "to_json", "streams/pipeline/"),
    ("Engine._write: Sink.write, one transaction per partition (sends, flush, commit)", "Engine._write",
     "streams/runtime/engine.py"),
    ("Engine._publish: snapshots for the scrape", "Engine._publish", "streams/runtime/engine.py"),
    ("snapshot() of the states", "snapshot", "streams/pipeline/"),
    ("KafkaSource.poll: consume() and Records", "KafkaSource.poll", "streams/runtime/source.py"),
    ("Engine.recover", "Engine.recover", "streams/runtime/engine.py"),
)
# The engine thread: the batch engine's main loop, or the Faust engine's executor thread.
ENGINE_THREAD = {"kafka": ("run_loop", "streams/runtime/engine.py"),
                 "faust": ("step", "streams/runtime/faust_engine.py")}
OTHER_THREADS = (  # (label, function, file): samples of other threads, relative to the engine thread's
    ("sink transactions (producer threads)", "Sink._transaction", "streams/runtime/sink.py"),
    ("scrapes (collector)", "collect", "streams/runtime/collector.py"),
    ("remote write (exporter thread)", "_send", "streams/runtime/remote_write.py"),
    ("Faust's event loop (consumer, agent, acks)", "run_forever", "asyncio/"),
)


def _has(frames: list[str], function: str, path: str) -> bool:
    """Whether a stack has a frame of ``function`` in a file whose path contains ``path``.

    py-spy names a frame by its qualified name on Python 3.11+ (``Engine.process
    (streams/runtime/engine.py:225)``, ``run_loop.<locals>.step (...)``), so ``function``
    matches the whole name or its last part."""
    for frame in frames:
        name, _, where = frame.partition(" (")
        if (name == function or name.endswith("." + function)) and path in where:
            return True
    return False


def summarize_profile(path: Path, engine: str = "kafka") -> dict:
    if not path.exists():
        return {"error": "py-spy produced no output"}
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if n.isdigit():
            stacks.append((stack.split(";"), int(n)))
    total = sum(n for _, n in stacks)
    thread = [(f, n) for f, n in stacks if _has(f, *ENGINE_THREAD[engine])]
    thread_total = sum(n for _, n in thread)
    if not thread_total:
        return {"error": f"no sample of the engine thread in {total} samples (idle while py-spy ran?)",
                "raw": str(path)}
    inclusive = {label: sum(n for f, n in thread if _has(f, fn, file)) / thread_total
                 for label, fn, file in CATEGORIES}
    others = {label: sum(n for f, n in stacks if not _has(f, *ENGINE_THREAD[engine]) and _has(f, fn, file))
              / thread_total for label, fn, file in OTHER_THREADS}
    leaf: dict[str, int] = defaultdict(int)
    for f, n in thread:
        leaf[f[-1].split(" (", 1)[0] + " (" + f[-1].split(" (", 1)[-1].split("/")[-1]] += n
    top = sorted(leaf.items(), key=lambda kv: -kv[1])[:15]
    return {"samples_all_threads": total, "samples_engine_thread": thread_total, "inclusive": inclusive,
            "other_threads": others, "top_self": [(k, v / thread_total) for k, v in top], "raw": str(path)}


# ------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench run")
    parser.add_argument("--quick", action="store_true", help="one repetition, small workloads (~10 min)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cxpulse-bench"))
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--only", choices=tuple(ONLY),
                        help="peers: the ceiling and the peers only; throughput: every throughput row; "
                             "either way no freshness, memory, cells, profile or layer stage")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    ensure_venv()
    from streams.config import Settings
    from streams.devtools.broker import LocalBroker, create_topics

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
    receiver = Receiver()
    with LocalBroker(log_path=work / "broker.log") as broker:
        base = Settings(bootstrap_servers=broker.bootstrap)
        spaces = {}
        truth: dict[str, dict[str, int]] = {}  # layout -> events per storefront|minute
        checkers: dict[str, Checker] = {}
        batches: dict[str, list] = {}  # layout -> its messages, loaded again into each row's own broker
        results["loaded"] = {}
        names = ONLY[args.only] if args.only else APPROACHES
        for layout, n in (("single", plan.single_events), ("batched", plan.batched_events)):
            space = namespace_settings(base)
            truth[layout] = {}
            workload = Workload(layout, n)
            create_topics(space)
            began = time.monotonic()
            batches[layout] = messages(workload, space, cells=truth[layout])
            results["loaded"][layout] = {"workload": workload.name, "events": n,
                                         "generate_s": round(time.monotonic() - began, 2),
                                         **produce(batches[layout], space, workload.name)}
            if any(name in CXPULSE for name in names):
                began = time.monotonic()
                checkers[layout] = Checker(Expected.compute(events_of(workload), space), receiver, space)
                results["loaded"][layout]["reference_s"] = round(time.monotonic() - began, 1)
            if layout == "batched":
                space = replace(space, batch_max=plan.batched_batch_max)
            spaces[layout] = (space, n)
            say(f"loaded {results['loaded'][layout]}")
        ctx = Context(receiver, checkers, plan.finish_s, batches)
        runs: list[dict] = []
        results["throughput"] = runs
        results["load"] = {"before throughput": os.getloadavg()[0]}
        say(f"throughput: {plan.reps} repetition(s) x {len(spaces)} workloads x {', '.join(names)}")
        for rep in range(plan.reps):
            for layout, (space, n) in spaces.items():
                for name in names:
                    if args.quick and layout == "single" and name == "cxpulse_2w":
                        continue
                    try:
                        r = measure(name, layout, space, n, plan, work, truth[layout], ctx)
                    except Exception as exc:  # noqa: BLE001 - a failed approach is a reported figure
                        r = {"error": f"{type(exc).__name__}: {exc}"[:400], "events": 0, "seconds": 0}
                    r.update(rep=rep, layout=layout, approach=name)
                    r["rate"] = rate(r)
                    runs.append(r)
                    exact = r.get("exact") or {}
                    say(f"rep {rep} {layout:7} {name:13} {r['rate']:>10,.0f} events/s"
                        + (f"  cpu {1e6 * r['cpu_s'] / r['events']:.0f} us/event" if r.get("events") else "")
                        + ("  (capped)" if r.get("capped") else "")
                        + (f"  counts match the workload's in {r['cells_checked']} storefront-minutes"
                           if r.get("cells_checked") and not r.get("error") else "")
                        + (f"  exact: {exact.get('metric_values', 0):,} /metrics values, "
                           f"{exact.get('windows', 0):,} windows ({exact.get('window_values', 0):,} values)"
                           if exact and not r.get("error") else "")
                        + (f"  ERROR {r.get('error')}" if r.get("error") else ""))
                    save()  # a long run keeps what it measured so far
        results["load"]["after throughput"] = os.getloadavg()[0]
        from bench.report import peer_summary
        results["peers"] = peer_summary(runs)
        save()
        if args.only:
            results["skipped_stages"] = f"--only {args.only}: no freshness, memory, cells, profile or layer stage"
        else:
            later_stages(results, plan, spaces, batches, work, stage, receiver)
    receiver.close()
    save()
    from bench.report import render
    if not args.no_docs:
        (ROOT / "docs" / "benchmarks.md").write_text(render(results))
    say(f"done in {results['elapsed_s']:.0f} s; results in {result_path.relative_to(ROOT)}")
    return 0


def later_stages(results, plan, spaces, batches, work, stage, receiver) -> None:
    """Each stage, and each run within it, on a broker of its own (``own_broker``)."""
    results["freshness"] = []
    stage("freshness", lambda: fresh_stage(results, plan, work, receiver))
    results["memory_recovery"] = []
    stage("memory_recovery", lambda: memory_stage(results, plan, work, receiver))
    results["cells"] = []
    stage("cells", lambda: cells_stage(results, plan, work, receiver))
    results["profile"] = {}
    stage("profile", lambda: profile_stage(results, plan, spaces, batches, work, receiver))
    results["layer"] = []
    stage("layer", lambda: layer_stage(results, plan))


def fresh_stage(results, plan, work, receiver) -> None:
    for layout, per_s in plan.fresh_levels:
        with own_broker(work, f"fresh-{layout}-{per_s}") as base:
            r = freshness(base, layout, per_s, plan.fresh_s, plan.batched_batch_max, work, receiver)
        results["freshness"].append(r)
        say(f"freshness {layout} {per_s:,}/s: sent {r['achieved_send_per_s']:,.0f}/s, visible "
            f"{r['visible_per_s'] or 0:,.0f}/s; p50 {r['p50_s']} p99 {r['p99_s']} max {r['max_s']} "
            f"missing {r['missing']}")


def memory_stage(results, plan, work, receiver) -> None:
    """Peak RSS at N and 10 N events over the same event-time span (10x the simulated rate),
    then recovery after SIGKILL (checked exact) and after SIGTERM.

    Same span, so the worker holds the same base windows; fed while it runs, so the
    buffered backlog stays small. What still grows with the rate by design (every
    event id of the dedupe horizon, open tickets, customers) is sized by replaying
    the workload in process (bench.inventory).
    """
    for workload in same_span(plan.memory_events):
        with own_broker(work, f"memory-{workload.name}") as base:
            memory_one(results, plan, base, workload, work, receiver)


def memory_one(results, plan, base, workload, work, receiver) -> None:
    """The memory stage's run of one workload, on ``base``'s broker."""
    from streams.devtools.broker import create_topics

    space = replace(namespace_settings(base), batch_max=plan.batched_batch_max)
    create_topics(space)
    batch = messages(workload, space)
    inv = inventory(batch, space)
    checker = Checker(Expected.compute(events_of(workload), space), receiver, space)
    r = memory_recovery(space, workload, batch, plan.memory_feed_per_s, plan.batched_batch_max, work,
                        receiver, checker)
    r["inventory"] = inv
    results["memory_recovery"].append(r)
    k, t = r["sigkill"], r["sigterm"]
    say(f"memory/recovery {workload.name}: peak RSS {r['rss_peak'] / 2**20:.0f} MiB (idle "
        f"{r['idle_rss'] / 2**20:.0f}), max lag {r['max_lag']:,} events, seen ids {r['state_seen_ids']}, "
        f"{inv['bytes_per']['cell']:,.0f} B/cell, {inv['bytes_per']['seen_id']:,.0f} B/seen id; "
        f"after SIGKILL ready {k['ready_s']:.1f} s, correct {k['correct_s']} s"
        + (f" ERROR {k['error']}" if k.get("error") else " (exact)")
        + f"; after SIGTERM ready {t['ready_s']:.1f} s, correct {t['correct_s']} s, "
        f"{t['changelog_records']} changelog records")


def cells_stage(results, plan, work, receiver) -> None:
    if plan.cells_events:
        for stores in plan.cells_storefronts:
            with own_broker(work, f"cells-{stores}") as base:
                cells_one(results, plan, base, stores, work, receiver)


def cells_one(results, plan, base, stores: int, work, receiver) -> None:
    """The cells stage's run over ``stores`` storefronts, on ``base``'s broker."""
    wl = Workload("batched", plan.cells_events, storefronts=stores)
    space = replace(namespace_settings(base), batch_max=plan.batched_batch_max)
    load(wl, space)
    inv = inventory(messages(wl, space), space)
    cells = inv["counts"]["cells"]
    f = replace(fresh_app(space), remote_write_url=receiver.url())
    w = Worker(f, work, f"cells-{stores}").start()
    try:
        d = drive([w], plan.cells_events, cap_s=300, stall_s=15)
        # the whole page once every cell is held, as Prometheus scrapes it (median of 3)
        took = sorted(t for t in (w.full_scrape() for _ in range(3)) if t is not None)
        d["rss_peak"] = max(d["rss_peak"], rss_bytes(w.pid)[1])
    finally:
        w.stop()
    results["cells"].append({"storefronts": stores, "events": plan.cells_events, "cells": cells,
                             "rss_peak": d["rss_peak"], "rss": d["rss"], "counted": d["counted"],
                             "scrape_ms": 1000 * took[len(took) // 2] if took else None, "inventory": inv})
    say(f"cells {stores} storefronts: {cells} cells, peak RSS {d['rss_peak'] / 2**20:.0f} MiB")


def layer_stage(results, plan) -> None:
    from bench.layer import measure
    results["layer"] = [measure("single", plan.single_events, 2000),
                        measure("batched", plan.batched_events, plan.batched_batch_max)]


PROFILED = (("kafka", "single"), ("kafka", "batched"), ("faust", "single"))  # (engine, layout)


def profile_stage(results, plan, spaces, batches, work, receiver) -> None:
    if plan.profile_s:
        for engine, layout in PROFILED:
            space, n = spaces[layout]
            name = layout if engine == "kafka" else f"{layout}, faust engine"
            with own_broker(work, f"profile-{engine}-{layout}", space, batches[layout]) as own:
                results["profile"][name] = profile(own, n, plan.profile_s, own.batch_max, work, layout, engine,
                                                   receiver)
            say(f"profile {name}: {results['profile'][name].get('inclusive')}")
