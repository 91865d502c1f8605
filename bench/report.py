"""Render a bench result (bench/results/*.json) as docs/benchmarks.md's generated part.

Every figure is shown with the run it comes from (machine, date, command, commit); the
"before" column of the engine comparison comes from ``BASELINE``, the last full run of
the Faust runtime, named with its own date and commit.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent
# The last full run before the engine rewrite (the Faust runtime): the "before" figures.
BASELINE = HERE / "results" / "full-20261123T083321Z.json"

NAMES = {"ceiling": "bare confluent-kafka loop (ceiling)", "faust": "idiomatic Faust (windowed table per event)",
         "quix": "Quix Streams (tumbling-window count)", "bytewax": "Bytewax, 1 worker (tumbling-window count)",
         "pathway": "Pathway, 1 thread (tumbling-window count)", "pathway_2t": "Pathway, 2 threads (tumbling-window count)",
         "cxpulse": "**cxpulse, 1 worker** (kafka engine, the default)",
         "cxpulse_2w": "cxpulse, 2 workers (kafka engine)",
         "cxpulse_faust": "cxpulse, 1 worker, Faust engine (`CXPULSE_ENGINE=faust`)",
         "bare_window": "cxpulse window stage, bare consumer (no engine)"}
WORKERS = {"cxpulse": 1, "cxpulse_2w": 2, "cxpulse_faust": 1}
CXPULSE = tuple(WORKERS)
# The ratio rows of the peers table: name -> approach (results JSON and docs use these names).
PEER_RATIOS = {"cxpulse/quix": "quix", "cxpulse/pathway": "pathway", "cxpulse/pathway-2t": "pathway_2t",
               "cxpulse/bytewax": "bytewax"}
# The same peers against the Faust engine (one worker process): name prefix -> approach.
ENGINE_PREFIX = {"cxpulse": "cxpulse", "cxpulse-faust": "cxpulse_faust"}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, pattern="{:,.0f}"):
    return "—" if x is None else pattern.format(x)


def cpu_us(r: dict) -> float | None:
    return 1e6 * r["cpu_s"] / r["events"] if r.get("events") and r.get("cpu_s") is not None else None


def peer_summary(runs: list[dict]) -> dict:
    """Per workload: each ``cxpulse/<peer>`` ratio (median of the per-repetition ratios, and each
    one), the same for the Faust engine (``cxpulse-faust/<peer>``), and each peer's events/s and
    CPU µs/event (medians over its successful runs)."""
    out: dict = {}
    for layout in ("single", "batched"):
        mine = [r for r in runs if r["layout"] == layout]
        ratios = {}
        for prefix, approach in ENGINE_PREFIX.items():
            for name, peer in PEER_RATIOS.items():
                per_rep = []
                for rep in sorted({r["rep"] for r in mine}):
                    got = {r["approach"]: r["rate"] for r in mine if r["rep"] == rep}
                    if got.get(approach) and got.get(peer):
                        per_rep.append(got[approach] / got[peer])
                ratios[prefix + name.removeprefix("cxpulse")] = {"median": med(per_rep), "per_rep": per_rep}
        peers = {}
        for peer in PEER_RATIOS.values():
            rs = [r for r in mine if r["approach"] == peer]
            ok = [r for r in rs if r.get("rate")]
            peers[peer] = {"events_per_s": med([r["rate"] for r in ok]),
                           "cpu_us_per_event": med([cpu_us(r) for r in ok]),
                           "runs": len(rs), "failed": len(rs) - len(ok),
                           "counts_checked": sum(1 for r in ok if r.get("cells_checked")),
                           "errors": sorted({str(r.get("error"))[:200] for r in rs if not r.get("rate")})}
        out[layout] = {"ratios": ratios, "peers": peers}
    return out


def peers_table(results: dict) -> list[str]:
    summary = results.get("peers") or peer_summary(results["throughput"])
    has = {a for a in ENGINE_PREFIX.values() if any(r["approach"] == a for r in results["throughput"])}
    rows = ["| workload | ratio | median of per-run ratios | per run | peer events/s (median) | "
            "peer CPU µs/event (median) | peer runs ok |", "|---|---|---:|---|---:|---:|---|"]
    for layout in ("single", "batched"):
        for prefix, approach in ENGINE_PREFIX.items():
            if approach not in has and prefix != "cxpulse":
                continue
            for name, peer in PEER_RATIOS.items():
                ratio = summary[layout]["ratios"].get(prefix + name.removeprefix("cxpulse"))
                if ratio is None:  # a result from before the Faust engine's rows
                    continue
                p = summary[layout]["peers"][peer]
                ok = (f"{p['runs'] - p['failed']} of {p['runs']}; counts checked in {p.get('counts_checked', 0)}"
                      + (f" ({'; '.join(p['errors'])[:200]})" if p["errors"] else ""))
                label = prefix + name.removeprefix("cxpulse")
                rows.append(f"| {layout} | {'**' + label + '**' if prefix == 'cxpulse' else label} | "
                            f"{fmt(ratio['median'], '{:.3f}')} | "
                            f"{', '.join(f'{x:.3f}' for x in ratio['per_rep']) or '—'} | {fmt(p['events_per_s'])} | "
                            f"{fmt(p['cpu_us_per_event'], '{:,.1f}')} | {ok} |")
    if "cxpulse" not in has:
        rows.append("\nNo cxpulse rows in this run: the ratios are left blank; a full run or `--only throughput` "
                    "fills them.")
    return rows


def within_rep_ratios(runs: list[dict]) -> dict[tuple[str, str], list[float]]:
    """(layout, name) -> the ratio in each repetition where both sides have a rate."""
    pairs = (("cxpulse/ceiling", "cxpulse", "ceiling"), ("cxpulse/faust (idiomatic)", "cxpulse", "faust"),
             ("cxpulse/quix", "cxpulse", "quix"), ("2 workers/1 worker", "cxpulse_2w", "cxpulse"),
             ("Faust engine/kafka engine", "cxpulse_faust", "cxpulse"),
             ("Faust engine/faust (idiomatic)", "cxpulse_faust", "faust"),
             ("bare window stage/cxpulse", "bare_window", "cxpulse"),
             ("bare window stage/ceiling", "bare_window", "ceiling"))
    ratios: dict[tuple[str, str], list[float]] = defaultdict(list)
    for layout in ("single", "batched"):
        for rep in sorted({r["rep"] for r in runs}):
            got = {r["approach"]: r["rate"] for r in runs if r["layout"] == layout and r["rep"] == rep}
            for name, a, b in pairs:
                if got.get(a) and got.get(b):
                    ratios[(layout, name)].append(got[a] / got[b])
    return ratios


def exact_note(rs: list[dict]) -> str | None:
    """What the exactness checks of a cxpulse row's runs compared (the last successful run's)."""
    ok = [r for r in rs if r.get("exact") and r.get("rate")]
    if not ok:
        return None
    e = ok[-1]["exact"]
    return (f"counts exact in {len(ok)} of {len(rs)} runs ({e.get('metric_values', 0):,} /metrics values, "
            f"{e.get('windows', 0):,} windows, {e.get('window_values', 0):,} window values each)")


def tables(results: dict) -> tuple[str, dict]:
    runs = results["throughput"]
    by = defaultdict(list)
    for r in runs:
        by[(r["layout"], r["approach"])].append(r)
    ratios = within_rep_ratios(runs)
    lines = ["| workload | approach | events/s (median) | per worker process | runs | CPU µs/event (median) | notes |",
             "|---|---|---:|---:|---|---:|---|"]
    for layout in ("single", "batched"):
        for name in NAMES:
            rs = by.get((layout, name), [])
            if not rs:
                continue
            rates = [r["rate"] for r in rs]
            ok = [r for r in rs if r["rate"]]
            cpu = med([cpu_us(r) for r in ok])
            median = med([r["rate"] for r in ok])
            notes = []
            if len(ok) < len(rs):
                notes.append(f"{len(rs) - len(ok)} of {len(rs)} runs failed (no rate; left out of the median): "
                             + str(next(r.get("error") for r in rs if not r["rate"]))[:220])
            if any(r.get("capped") for r in rs):
                notes.append(f"time-capped at {results['plan']['cap_s']:g} s: rate over the events reached"
                             + (" (then counted to the end for the check)" if name in CXPULSE else ""))
            if name in CXPULSE and exact_note(rs):
                notes.append(exact_note(rs))  # type: ignore[arg-type]
            per_worker = fmt(median / WORKERS[name]) if name in WORKERS and median else ""
            lines.append(f"| {layout} | {NAMES[name]} | {fmt(median)} | {per_worker} | "
                         f"{', '.join(fmt(x) for x in rates)} | "
                         f"{fmt(cpu, '{:,.1f}')} | {'; '.join(notes)} |")
    rl = ["| workload | ratio | median of per-run ratios | per run |", "|---|---|---:|---|"]
    for (layout, name), xs in ratios.items():
        rl.append(f"| {layout} | {name} | {med(xs):.3f} | {', '.join(f'{x:.3f}' for x in xs)} |")
    if not ratios:
        rl = ["No cxpulse rows in this run, so no ratios."]
    return "\n".join(lines) + "\n\n" + "\n".join(rl), {k: med(v) for k, v in ratios.items()}


def verdict(ok) -> str:
    return "—" if ok is None else ("**met**" if ok else "**not met**")


def targets(results: dict, ratios: dict) -> list[str]:
    """The targets of the engine issue (per worker process, every metric family on, exactly
    once, same run), each with what this run measured."""
    summary = results.get("peers") or peer_summary(results["throughput"])

    def peer(layout: str, name: str):
        return (summary[layout]["ratios"].get(name) or {}).get("median")

    rows = ["| target (engine issue) | measured in this run | verdict |", "|---|---|---|"]
    r = peer("single", "cxpulse/pathway")
    rows.append(f"| single-event messages: ≥ Pathway on one thread | {fmt(r, '{:.2f}')}× Pathway (1 thread) | "
                f"{verdict(None if r is None else r >= 1)} |")
    q, p2 = peer("batched", "cxpulse/quix"), peer("batched", "cxpulse/pathway-2t")
    rows.append(f"| batched messages: ≥ 2× Quix Streams and ≥ Pathway on two threads | {fmt(q, '{:.2f}')}× Quix, "
                f"{fmt(p2, '{:.2f}')}× Pathway (2 threads) | "
                f"{verdict(None if q is None or p2 is None else q >= 2 and p2 >= 1)} |")
    b1, b2 = peer("single", "cxpulse/bytewax"), peer("batched", "cxpulse/bytewax")
    rows.append(f"| stretch: ≥ Bytewax in both | {fmt(b1, '{:.2f}')}× single, {fmt(b2, '{:.2f}')}× batched | "
                f"{verdict(None if b1 is None or b2 is None else b1 >= 1 and b2 >= 1)} |")
    s1, s2 = ratios.get(("single", "2 workers/1 worker")), ratios.get(("batched", "2 workers/1 worker"))
    measured = [x for x in (s1, s2) if x is not None]
    two = [r for r in results["throughput"] if r["approach"] == "cxpulse_2w"]
    failed_two = [r for r in two if not r.get("rate")]
    why = (f" ({len(failed_two)} of {len(two)} two-worker runs failed, no rate: "
           f"{str(failed_two[0].get('error'))[:160]})" if failed_two else "")
    rows.append(f"| scaling: 2 workers ≥ 1.8× one | {fmt(s1, '{:.2f}')}× single, {fmt(s2, '{:.2f}')}× batched{why} | "
                f"{verdict(None if not measured else min(measured) >= 1.8 and not failed_two)} |")
    for per_s in (5000, 50000):
        rows.append(freshness_target(results, per_s))
    rows.append(recovery_target(results))
    failed = [r for r in results["throughput"] if r["approach"] in CXPULSE and not r.get("rate")]
    checked = [r for r in results["throughput"] if r["approach"] in CXPULSE and r.get("exact") and r.get("rate")]
    rows.append(f"| exactly once: every cxpulse row's counts equal the reference | {len(checked)} runs proven exact, "
                f"{len(failed)} failed | {verdict(None if not checked and not failed else not failed)} |")
    flat = flat_in_events(results.get("memory_recovery", []))
    if flat is not None and flat["by_rate"] is not None:
        rows.append(f"| RSS flat in event count (from the earlier issue) | {flat['events_x']:.0f}× events, same "
                    f"event-time span → {flat['raw']:.2f}× peak RSS; {flat['adjusted']:.2f}× without the "
                    f"+{flat['by_rate'] / 2**20:,.0f} MiB of state that grows with the event rate by design "
                    f"(dedupe ids, tickets, customers) | {verdict(flat['adjusted'] <= 1.25)} |")
    return rows


def freshness_target(results: dict, per_s: int) -> str:
    rows = [f for f in results.get("freshness", []) if f["offered_per_s"] == per_s]
    if not rows:
        return f"| freshness p99 ≤ 1 s at {per_s // 1000}k events/s | not measured in this run | — |"
    parts, oks = [], []
    for f in rows:
        reached = f["achieved_send_per_s"] >= 0.95 * per_s
        kept_up = f.get("visible_per_s") is not None and f["visible_per_s"] >= 0.95 * per_s and not f["missing"]
        text = f"{f['layout']}: p99 {fmt(f['p99_s'], '{:.2f}')} s"
        if not reached:
            text += f" (the feed reached only {f['achieved_send_per_s']:,.0f} events/s)"
        elif not kept_up:
            text += (f" (one worker did not keep up: {fmt(f.get('visible_per_s'))} events/s visible"
                     + (f", {f['missing']:,} events not visible 15 s after the feed" if f["missing"] else "") + ")")
        parts.append(text)
        oks.append(None if not reached else (f["p99_s"] is not None and f["p99_s"] <= 1.0 and kept_up))
    ok = None if any(o is None for o in oks) else all(oks)
    return f"| freshness p99 ≤ 1 s at {per_s // 1000}k events/s | {'; '.join(parts)} | {verdict(ok)} |"


def recovery_target(results: dict) -> str:
    mem = [m for m in results.get("memory_recovery", []) if "sigkill" in m]
    if not mem:
        return "| recovery: no worse than before | not measured in this run | — |"
    before = {m["events"]: m.get("restart_correct_s") for m in baseline().get("memory_recovery", [])}
    parts, oks = [], []
    for m in mem:
        now = m["sigterm"]["correct_s"]
        then = before.get(m["events"])
        parts.append(f"{m['events']:,} events: after SIGTERM {fmt(now, '{:.1f}')} s"
                     + (f" (before {then:.1f} s)" if then else "")
                     + f", after SIGKILL {fmt(m['sigkill']['correct_s'], '{:.1f}')} s"
                     + (" (exact)" if not m["sigkill"].get("error") else f" (ERROR {m['sigkill']['error'][:100]})"))
        oks.append(None if now is None or then is None else now <= then and not m["sigkill"].get("error"))
    ok = None if any(o is None for o in oks) else all(oks)
    return f"| recovery: no worse than before (restart → correct /metrics) | {'; '.join(parts)} | {verdict(ok)} |"


_baseline: dict | None = None


def baseline() -> dict:
    global _baseline
    if _baseline is None:
        _baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    return _baseline


def before_after(results: dict) -> list[str]:
    """This run's headline figures beside the last full run of the Faust runtime."""
    old = baseline()
    if not old or not any(r["approach"] == "cxpulse" for r in results["throughput"]):
        return []
    c = old["code"]
    out = ["", "### Before and after the engine rewrite", "",
           f"Before: the full run of {old['machine']['date']} (`{old['command']}`, commit `{c['commit']}`, the "
           "Faust runtime: Faust's consumer, one message at a time through its agent), "
           f"`{BASELINE.relative_to(HERE.parent)}`, on a machine like this one "
           f"({old['machine']['nproc']} cores, {old['machine']['cpu']}). After: this run. Each side's medians "
           "come from its own run; the machine and its load differ, so read the ratios of the tables above for "
           "comparisons within a run.", "",
           "| figure | before | after |", "|---|---:|---:|"]

    def rows_of(res: dict, layout: str, approach: str) -> list[dict]:
        return [r for r in res["throughput"] if r["layout"] == layout and r["approach"] == approach and r.get("rate")]

    for layout in ("single", "batched"):
        for approach, label in (("cxpulse", "1 worker"), ("cxpulse_2w", "2 workers")):
            a, b = rows_of(old, layout, approach), rows_of(results, layout, approach)
            if not b:
                continue
            out.append(f"| {layout}, {label}: events/s | {fmt(med([r['rate'] for r in a]))} | "
                       f"{fmt(med([r['rate'] for r in b]))} |")
            out.append(f"| {layout}, {label}: CPU µs/event | {fmt(med([cpu_us(r) for r in a]), '{:,.1f}')} | "
                       f"{fmt(med([cpu_us(r) for r in b]), '{:,.1f}')} |")
    for per_s in (5000,):
        a = next((f for f in old.get("freshness", []) if f["layout"] == "batched" and f["offered_per_s"] == per_s), None)
        b = next((f for f in results.get("freshness", []) if f["layout"] == "batched" and f["offered_per_s"] == per_s),
                 None)
        if b:
            out.append(f"| freshness p99 at {per_s // 1000}k events/s (batched), s | {fmt(a and a['p99_s'], '{:.2f}')} | "
                       f"{fmt(b['p99_s'], '{:.2f}')} |")
    mem_a = {m["events"]: m for m in old.get("memory_recovery", [])}
    for m in results.get("memory_recovery", []):
        a = mem_a.get(m["events"])
        inv_a, inv_b = (a or {}).get("inventory"), m.get("inventory")
        if inv_b:
            for key, label in (("cell", "heap bytes per window cell (state + snapshot copy)"),
                               ("seen_id", "heap bytes per dedupe id"), ("ticket", "heap bytes per open ticket"),
                               ("customer", "heap bytes per customer")):
                out.append(f"| {m['events']:,} events: {label} | "
                           f"{fmt(inv_a and inv_a['bytes_per'][key])} | {fmt(inv_b['bytes_per'][key])} |")
        out.append(f"| {m['events']:,} events: peak RSS MiB | {mib(a and a['rss_peak'])} | {mib(m['rss_peak'])} |")
        out.append(f"| {m['events']:,} events: restart → correct /metrics after SIGTERM, s | "
                   f"{fmt(a and a.get('restart_correct_s'), '{:.1f}')} | {fmt(m.get('restart_correct_s'), '{:.1f}')} |")
    cells_a, cells_b = old.get("cells") or [], results.get("cells") or []
    if len(cells_b) >= 2:
        def per_cell(cs):
            if len(cs) < 2 or cs[-1]["cells"] == cs[0]["cells"]:
                return None
            return (cs[-1]["rss_peak"] - cs[0]["rss_peak"]) / (cs[-1]["cells"] - cs[0]["cells"])
        out.append(f"| peak RSS per added active cell, bytes | {fmt(per_cell(cells_a))} | {fmt(per_cell(cells_b))} |")
    out.append("")
    return out


BY_RATE = ("seen", "tickets", "customers")  # state that grows with the event rate over a fixed span


def flat_in_events(mem: list[dict]) -> dict | None:
    """The flat-in-events figures of the first and last memory runs (N and 10 N)."""
    if len(mem) < 2:
        return None
    a, b = mem[0], mem[-1]
    out = {"events_x": b["events"] / a["events"], "raw": b["rss_peak"] / a["rss_peak"], "by_rate": None}
    if a.get("inventory") and b.get("inventory"):
        ha, hb = a["inventory"]["heap_bytes"], b["inventory"]["heap_bytes"]
        by_rate = sum(hb[k] - ha[k] for k in BY_RATE)
        out.update(by_rate=by_rate, adjusted=(b["rss_peak"] - by_rate) / a["rss_peak"],
                   rest=b["rss_peak"] - a["rss_peak"] - by_rate)
    return out


def mib(x, pattern: str = "{:,.0f}") -> str:
    return "—" if x is None else pattern.format(x / 2**20)


def memory_tables(results: dict) -> list[str]:
    mem = results.get("memory_recovery", [])
    if not mem:
        return ["Not measured in this run (the stage failed; see `errors` in the results file)."]
    out = ["Each workload fed while one worker runs (`bench.workload.Feeder`, paced, so the worker never "
           "holds a large fetched backlog); the 10× workload covers the same event-time span at 10× the "
           "simulated rate, so it holds the same base windows.", "",
           "| events (batched) | simulated events/s (span s) | fed events/s | max lag (events) | counted | "
           "idle RSS MiB | peak RSS MiB | windows / tickets / seen ids / customers in the worker |",
           "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in mem:
        out.append(f"| {r['events']:,} | {r['sim_rate_per_s']:,.0f} ({r['span_s']:,.0f}) | {r['feed_per_s']:,.0f} | "
                   f"{fmt(r['max_lag'])} | {r['counted']:,.0f} | {mib(r['idle_rss'])} | {mib(r['rss_peak'])} | "
                   f"{fmt(r['state_windows'])} / {fmt(r['state_tickets'])} / {fmt(r['state_seen_ids'])} / "
                   f"{fmt(r.get('state_customers'))} |")
    if all(r.get("inventory") for r in mem):
        out += ["", "The same workloads replayed in process through the pipeline (`bench.inventory`): heap bytes "
                "of the state, by structure (`sys.getsizeof` over what each reaches; no allocator overhead). "
                "A window cell is one segment of one base window (or of the running totals) of one source "
                "partition; its bytes include its copy in the snapshot the scrape reads.", "",
                "| events | window cells MiB (B/cell) | merge stage MiB | seen ids MiB (B/id) | tickets MiB (B/ticket) | "
                "customers MiB (B/customer) | cells | seen ids | tickets | customers |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in mem:
            h, c, per = r["inventory"]["heap_bytes"], r["inventory"]["counts"], r["inventory"]["bytes_per"]
            out.append(f"| {r['events']:,} | {mib(h['cells'] + h['cells_snapshot'], '{:,.1f}')} ({per['cell']:,.0f}) | "
                       f"{mib(h.get('merge'), '{:,.1f}')} | "
                       f"{mib(h['seen'], '{:,.1f}')} ({per['seen_id']:,.0f}) | {mib(h['tickets'], '{:,.1f}')} "
                       f"({per['ticket']:,.0f}) | {mib(h['customers'], '{:,.1f}')} ({per['customer']:,.0f}) | "
                       f"{c['cells']:,} | {c['seen_ids']:,} | {c['tickets']:,} | {c['customers']:,} |")
    flat = flat_in_events(mem)
    if flat is not None and flat["by_rate"] is not None:
        a, b = mem[0], mem[-1]
        out.append(f"\n{flat['events_x']:.0f}× events over the same event-time span: peak RSS {mib(a['rss_peak'])} → "
                   f"{mib(b['rss_peak'])} MiB (**{flat['raw']:.2f}×**). Of the {mib(b['rss_peak'] - a['rss_peak'])} "
                   f"MiB added, {mib(flat['by_rate'])} MiB is heap of state that grows with the event rate by "
                   f"design (dedupe ids, tickets, customers); the rest, {mib(flat['rest'])} MiB, is "
                   f"**{flat['adjusted']:.2f}×** the N run's peak.")
    out += ["", "### Recovery", "",
            "The worker that counted the workload is killed (SIGKILL: no commit, no leaving the group), a new one "
            "started with the same app id and timed from its start: to `/ready`, and to serving the same "
            "`cxpulse_events_total`; then its counters and every event-time window are checked against the "
            "reference (`bench.exactness`). Then that one is stopped (SIGTERM) and a third one timed the same way "
            "(the figure measured before the engine rewrite).", "",
            "| events (batched) | restart after | → ready s | → correct /metrics s | changelog read s | "
            "changelog records recovered | RSS after restore MiB | counts |",
            "|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in mem:
        for how in ("sigkill", "sigterm"):
            x = r.get(how)
            if x is None:
                continue
            exact = r[how].get("exact") or {}
            counts = ("—" if how != "sigkill" else
                      f"ERROR {x['error'][:160]}" if x.get("error") else
                      f"exact ({exact.get('metric_values', 0):,} /metrics values, {exact.get('windows', 0):,} windows)")
            out.append(f"| {r['events']:,} | {how.upper()} | {fmt(x['ready_s'], '{:.1f}')} | "
                       f"{fmt(x['correct_s'], '{:.1f}')} | {fmt(x['read_s'], '{:.2f}')} | "
                       f"{fmt(x['changelog_records'])} | {mib(x['rss'])} | {counts} |")
    return out


def render(results: dict) -> str:
    m = results["machine"]
    thr, ratios = tables(results)
    header = (HERE / "doc_header.md").read_text()
    has_cxpulse = any(r["approach"] == "cxpulse" for r in results["throughput"])
    out = [header,
        "<!-- generated by `python -m bench run` from bench/results/*.json; edit bench/report.py, not this part -->",
        f"## Results ({results['mode']} run)", "",
        f"- machine: {m['nproc']} cores, {m['cpu']}, {m['ram_gib']} GiB RAM, Linux {m['kernel']}; broker, "
        "clients and workers share the cores"
        + (f"; load average (1 min) {' → '.join(f'{x:.1f}' for x in results['load'].values())} "
           f"({', '.join(results['load'])}): other work on the machine slows every row, ratios within a "
           "repetition suffer least" if results.get("load") else ""),
        f"- date: {m['date']}; command: `{results['command']}`; wall time {results['elapsed_s'] / 60:.1f} min",
        f"- versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}; broker Tansu 0.6.0 (memory storage)",
        f"- workloads: {results['loaded']}",
        *([f"- stages that failed: {', '.join(e['stage'] for e in results['errors'])} (see `errors` in the "
           "results file)"] if results.get("errors") else []),
        "",
        "### Targets", "",
        *(targets(results, ratios) if has_cxpulse else ["Not measured in this run: it has no cxpulse rows."]), "",
        "### Throughput (medians of the repetitions; ratios computed within each repetition)", "", thr, "",
        "### cxpulse against its peers (ratios computed within each repetition)", "",
        "Each peer counts every event of the workload per storefront in 1-minute tumbling windows on the "
        "event's `occurred_at`, and its counts must equal the workload's, storefront by storefront and minute "
        "by minute, or the run is a failure with no rate. Each cxpulse row must prove its counts too (every "
        "counter and every complete window against the reference), or it has no rate. A ratio above 1 means "
        "cxpulse (one worker process) is faster.", "",
        *peers_table(results), ""]
    if results.get("skipped_stages"):
        out += [f"Freshness, memory, recovery, cells, profile and pipeline in process: not measured in this run "
                f"({results['skipped_stages']}); a full `python -m bench run` measures them."]
    else:
        out += later_sections(results)
    compared = before_after(results)
    out += compared
    if results.get("code"):
        c = results["code"]
        out += ["", f"Code measured: commit `{c['commit']}`, {c.get('streams_files', 'streams/*.py')} sha256 "
                f"`{c['streams_sha256']}`"
                + (f", with uncommitted changes in streams/: `{' '.join(c['streams_changes'].split())}`"
                   if c.get("streams_changes") else "") + "."]
    findings = HERE / "doc_findings.md"
    if findings.exists() and not results.get("skipped_stages") and results["mode"] == "full":
        out += ["", findings.read_text()]
    before = HERE / "doc_before.md"
    if before.exists() and compared:  # it reads beside the "Before and after" table
        out += ["", before.read_text()]
    elif before.exists():
        out += ["", "The findings of the last full run before the engine rewrite (`bench/doc_before.md`) are shown "
                "beside a run with cxpulse rows, under its \"Before and after the engine rewrite\" table."]
    return "\n".join(out) + "\n"


def later_sections(results: dict) -> list[str]:
    """Freshness, memory and recovery, cells, profile and the pipeline in process (a full run's later stages)."""
    out = [
        "### Freshness: handed to the producer → visible on /metrics", "",
        "Simulator events handed over at a paced rate and sent as `streams.producer.Producer` batches them "
        "(batched: up to 100 events per message per partition, 50 ms linger; single: one keyed message per "
        "event), built before the clock starts and sent by a confluent-kafka producer at their due times, so "
        "the bench's own Python does not compete with the worker. /metrics polled every 50 ms (`name[]`: the "
        "worker's health families), the whole page scraped every 15 s as Prometheus does. Delay = first "
        "poll whose `cxpulse_events_total` covers the event − the moment it was handed over (so it includes "
        "the linger and the poll interval). *Visible/s*: events over the time until the last was visible; below "
        "the offered rate, one worker did not keep up. The worker's own `cxpulse_event_freshness_seconds` "
        "(Kafka timestamp → snapshot published, per message) is shown beside it.", "",
        "| layout | offered events/s | sent events/s | visible events/s | p50 s | p99 s | max s | "
        "not visible after 15 s | histogram p50 / p99 s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in results.get("freshness", []):
        h = r.get("histogram") or {}
        out.append(f"| {r['layout']} | {r['offered_per_s']:,} | {r['achieved_send_per_s']:,.0f} | "
                   f"{fmt(r.get('visible_per_s'))} | "
                   f"{fmt(r['p50_s'], '{:.3f}')} | {fmt(r['p99_s'], '{:.3f}')} | {fmt(r['max_s'], '{:.3f}')} | "
                   f"{r['missing']:,} | {fmt(h.get('p50_s'), '{:.3f}')} / {fmt(h.get('p99_s'), '{:.3f}')} | "
                   f"{mib(r.get('rss_peak'))} |")
    out += ["", "### Memory", "", *memory_tables(results)]
    if results.get("cells"):
        out += ["", "### Memory per active cell", "",
                "| storefronts | events | active cells (window × segment, plus totals) | peak RSS MiB | "
                "whole-page scrape ms (all cells held) |", "|---:|---:|---:|---:|---:|"]
        for r in results["cells"]:
            out.append(f"| {r['storefronts']} | {r['events']:,} | {r['cells']:,} | {r['rss_peak'] / 2**20:,.0f} | "
                       f"{fmt(r['scrape_ms'])} |")
        a, b = results["cells"][0], results["cells"][-1]
        if b["cells"] != a["cells"]:
            per = (b["rss_peak"] - a["rss_peak"]) / (b["cells"] - a["cells"])
            out.append(f"\nPeak RSS per added cell: **{per:,.0f} bytes** "
                       f"({b['cells'] / a['cells']:.1f}× cells → {b['rss_peak'] / a['rss_peak']:.2f}× peak RSS)"
                       + (f"; heap per cell in the state and its snapshot copy (`bench.inventory`): "
                          f"{b['inventory']['bytes_per']['cell']:,.0f} bytes." if b.get("inventory") else "."))
    if results.get("profile"):
        out += ["", "### Profile of each engine's thread (py-spy, 200 Hz, --nonblocking)", "",
                "Shares are of the samples of the thread that runs the engine (the batch engine's main loop; the "
                "Faust engine's executor thread), inclusive of what it calls; py-spy leaves out idle threads, so "
                "waits inside librdkafka do not count. Other threads' samples are given relative to it.", ""]
        for name, p in results["profile"].items():
            if "inclusive" not in p:
                out.append(f"- **{name}**: no profile ({p.get('error', p)}).")
                continue
            inc = ", ".join(f"{k} {100 * v:.0f}%" for k, v in p["inclusive"].items() if v >= 0.01)
            others = ", ".join(f"{k} {100 * v:.0f}%" for k, v in (p.get("other_threads") or {}).items() if v >= 0.01)
            top = ", ".join(f"`{k}` {100 * v:.0f}%" for k, v in p["top_self"][:8])
            out.append(f"- **{name}** ({p.get('samples_engine_thread', p.get('samples_loop'))} samples of the "
                       f"engine thread). Inclusive: {inc}. Other threads: {others or '—'}. Top self time: {top}.")
    if results.get("layer"):
        out += ["", "### The pipeline in process (no Kafka client), CPU µs per event", "",
                *([results["layer_note"] + ".", ""] if results.get("layer_note") else []),
                "`Pipeline.plan` is the engine's pure step (decode, dedupe, windows, outbox); the re-keyed stages are "
                "the customer and merge stages fed what the window stage sent them. What a worker spends above "
                "`plan` + re-keyed per event is the engine's I/O (consume, transactions, publish, scrapes, remote "
                "write).", "",
                "| layout | decode_message | PartitionState.apply (incl. changelog records) | snapshot | "
                "Pipeline.plan (window stage) | re-keyed stages | messages per apply | changelog bytes per event |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in results["layer"]:
            out.append(f"| {r['layout']} | {r['decode_us']:.1f} | {r['apply_us']:.1f} | {r['snapshot_us']:.1f} | "
                       f"{fmt(r.get('plan_us'), '{:.1f}')} | {fmt(r.get('rekeyed_us'), '{:.1f}')} | "
                       f"{r['messages_per_apply']} | {r['changelog_bytes_per_event']:.0f} |")
    return out
