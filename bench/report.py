"""Render a bench result (bench/results/*.json) as docs/benchmarks.md's generated part."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

NAMES = {"ceiling": "bare confluent-kafka loop (ceiling)", "faust": "idiomatic Faust (windowed table per event)",
         "quix": "Quix Streams (tumbling-window count)", "bytewax": "Bytewax, 1 worker (tumbling-window count)",
         "pathway": "Pathway, 1 thread (tumbling-window count)", "pathway_2t": "Pathway, 2 threads (tumbling-window count)",
         "cxpulse": "cxpulse, 1 worker",
         "cxpulse_2w": "cxpulse, 2 workers", "bare_window": "cxpulse window layer, bare consumer (no Faust)"}
# The ratio rows of the peers table: name -> approach (results JSON and docs use these names).
PEER_RATIOS = {"cxpulse/quix": "quix", "cxpulse/pathway": "pathway", "cxpulse/pathway-2t": "pathway_2t",
               "cxpulse/bytewax": "bytewax"}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, pattern="{:,.0f}"):
    return "—" if x is None else pattern.format(x)


def cpu_us(r: dict) -> float | None:
    return 1e6 * r["cpu_s"] / r["events"] if r.get("events") and r.get("cpu_s") is not None else None


def peer_summary(runs: list[dict]) -> dict:
    """Per workload: each ``cxpulse/<peer>`` ratio (median of the per-repetition ratios, and each
    one), and each peer's events/s and CPU µs/event (medians over its successful runs)."""
    out: dict = {}
    for layout in ("single", "batched"):
        mine = [r for r in runs if r["layout"] == layout]
        ratios = {}
        for name, peer in PEER_RATIOS.items():
            per_rep = []
            for rep in sorted({r["rep"] for r in mine}):
                got = {r["approach"]: r["rate"] for r in mine if r["rep"] == rep}
                if got.get("cxpulse") and got.get(peer):
                    per_rep.append(got["cxpulse"] / got[peer])
            ratios[name] = {"median": med(per_rep), "per_rep": per_rep}
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
    has_cxpulse = any(r["approach"] == "cxpulse" for r in results["throughput"])
    rows = ["| workload | ratio | median of per-run ratios | per run | peer events/s (median) | "
            "peer CPU µs/event (median) | peer runs ok |", "|---|---|---:|---|---:|---:|---|"]
    for layout in ("single", "batched"):
        for name, peer in PEER_RATIOS.items():
            ratio = summary[layout]["ratios"][name]
            p = summary[layout]["peers"][peer]
            ok = (f"{p['runs'] - p['failed']} of {p['runs']}; counts checked in {p.get('counts_checked', 0)}"
                  + (f" ({'; '.join(p['errors'])[:200]})" if p["errors"] else ""))
            rows.append(f"| {layout} | {name} | {fmt(ratio['median'], '{:.3f}')} | "
                        f"{', '.join(f'{x:.3f}' for x in ratio['per_rep']) or '—'} | {fmt(p['events_per_s'])} | "
                        f"{fmt(p['cpu_us_per_event'], '{:,.1f}')} | {ok} |")
    if not has_cxpulse:
        rows.append("\nNo cxpulse rows in this run: the ratios are left blank; a full run or `--only throughput` "
                    "fills them.")
    return rows


def tables(results: dict) -> tuple[str, dict]:
    runs = results["throughput"]
    by = defaultdict(list)
    for r in runs:
        by[(r["layout"], r["approach"])].append(r)
    ratios = defaultdict(list)  # (layout, name) -> per-rep ratio
    for layout in ("single", "batched"):
        for rep in {r["rep"] for r in runs}:
            got = {r["approach"]: r["rate"] for r in runs if r["layout"] == layout and r["rep"] == rep}
            c = got.get("cxpulse")
            for other in ("ceiling", "faust", "quix"):
                if c and got.get(other):
                    ratios[(layout, f"cxpulse/{other}")].append(c / got[other])
            if c and got.get("cxpulse_2w"):
                ratios[(layout, "2 workers/1 worker")].append(got["cxpulse_2w"] / c)
            if c and got.get("bare_window"):
                ratios[(layout, "bare window layer/cxpulse")].append(got["bare_window"] / c)
            if got.get("bare_window") and got.get("ceiling"):
                ratios[(layout, "bare window layer/ceiling")].append(got["bare_window"] / got["ceiling"])
    lines = ["| workload | approach | events/s (median) | runs | CPU µs/event (median) | notes |",
             "|---|---|---:|---|---:|---|"]
    for layout in ("single", "batched"):
        for name in NAMES:
            rs = by.get((layout, name), [])
            if not rs:
                continue
            rates = [r["rate"] for r in rs]
            ok = [r for r in rs if r["rate"]]
            cpu = med([cpu_us(r) for r in ok])
            notes = []
            if len(ok) < len(rs):
                notes.append(f"{len(rs) - len(ok)} of {len(rs)} runs failed (no rate; left out of the median)")
            if any(r.get("capped") for r in rs):
                notes.append(f"time-capped at {results['plan']['cap_s']:g} s: rate over the events reached")
            if any(r.get("stalled") for r in rs):
                notes.append("STALLED: " + str(next(r.get("error") for r in rs if r.get("stalled")))[:160])
            if any(r.get("error") and not r.get("stalled") and r.get("approach") not in ("cxpulse", "cxpulse_2w") for r in rs):
                notes.append("error: " + str(next(r["error"] for r in rs if r.get("error")))[:160])
            lines.append(f"| {layout} | {NAMES[name]} | {fmt(med([r['rate'] for r in ok]))} | "
                         f"{', '.join(fmt(x) for x in rates)} | "
                         f"{fmt(cpu, '{:,.1f}')} | {'; '.join(notes)} |")
    rl = ["| workload | ratio | median of per-run ratios | per run |", "|---|---|---:|---|"]
    for (layout, name), xs in ratios.items():
        rl.append(f"| {layout} | {name} | {med(xs):.3f} | {', '.join(f'{x:.3f}' for x in xs)} |")
    if not ratios:
        rl = ["No cxpulse rows in this run, so no ratios."]
    return "\n".join(lines) + "\n\n" + "\n".join(rl), {k: med(v) for k, v in ratios.items()}


def targets(results: dict, ratios: dict) -> list[str]:
    def verdict(ok):
        return "—" if ok is None else ("**met**" if ok else "**not met**")

    rows = ["| target (issue 5) | measured in this run | verdict |", "|---|---|---|"]
    r = ratios.get(("batched", "cxpulse/ceiling"))
    rows.append(f"| batched messages: ≥ 50% of the bare-client ceiling | {fmt(r and 100 * r, '{:.0f}')}% | "
                f"{verdict(None if r is None else r >= 0.5)} |")
    r = ratios.get(("single", "cxpulse/quix"))
    rows.append(f"| single-event messages: ≥ Quix Streams | {fmt(r, '{:.2f}')}× Quix | "
                f"{verdict(None if r is None else r >= 1)} |")
    f5 = next((f for f in results.get("freshness", []) if f["layout"] == "batched" and f["offered_per_s"] == 5000),
              None)
    p99 = f5 and f5["p99_s"]
    rows.append(f"| freshness p99 ≤ 1 s at 5k events/s | p99 {fmt(p99, '{:.2f}')} s (batched) | "
                f"{verdict(None if p99 is None else p99 <= 1.0 and not f5['missing'])} |")
    flat = flat_in_events(results.get("memory_recovery", []))
    if flat is not None:
        if flat["by_rate"] is None:  # a result from before the same-span, paced stage
            rows.append(f"| RSS flat in event count | {flat['events_x']:.0f}× events → {flat['raw']:.2f}× peak RSS | "
                        f"{verdict(flat['raw'] <= 1.25)} |")
        else:
            rows.append(f"| RSS flat in event count | {flat['events_x']:.0f}× events, same event-time span → "
                        f"{flat['raw']:.2f}× peak RSS; {flat['adjusted']:.2f}× without the +{flat['by_rate'] / 2**20:,.0f} "
                        f"MiB of state that grows with the event rate by design (dedupe ids, tickets, customers) | "
                        f"{verdict(flat['adjusted'] <= 1.25)} |")
    cells = results.get("cells") or []
    if len(cells) >= 2:
        a, b = cells[0], cells[-1]
        per = (b["rss_peak"] - a["rss_peak"]) / max(b["cells"] - a["cells"], 1)
        rows.append(f"| RSS linear in active cells, stated per cell | {b['cells'] / a['cells']:.1f}× cells → "
                    f"{b['rss_peak'] / a['rss_peak']:.2f}× peak RSS; {per:,.0f} B/cell | stated |")
    r = ratios.get(("batched", "2 workers/1 worker"))
    rows.append(f"| 2 workers ≥ 1.7× one worker | {fmt(r, '{:.2f}')}× (batched) | "
                f"{verdict(None if r is None else r >= 1.7)} |")
    return rows


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
    if mem and "idle_rss" in mem[0]:
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
            out += ["", "The same workloads replayed in process (`bench.inventory`): heap bytes of the state, by "
                    "structure (`sys.getsizeof` over what each reaches; no allocator overhead).", "",
                    "| events | cells (state + snapshot copy) MiB | seen ids MiB (B/id) | tickets MiB (B/ticket) | "
                    "customers MiB (B/customer) | cells | seen ids | tickets | customers |",
                    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for r in mem:
                h, c, per = r["inventory"]["heap_bytes"], r["inventory"]["counts"], r["inventory"]["bytes_per"]
                out.append(f"| {r['events']:,} | {mib(h['cells'] + h['cells_snapshot'], '{:,.1f}')} | "
                           f"{mib(h['seen'], '{:,.1f}')} ({per['seen_id']:,.0f}) | {mib(h['tickets'], '{:,.1f}')} "
                           f"({per['ticket']:,.0f}) | {mib(h['customers'], '{:,.1f}')} ({per['customer']:,.0f}) | {c['cells']:,} | {c['seen_ids']:,} | "
                           f"{c['tickets']:,} | {c['customers']:,} |")
        flat = flat_in_events(mem)
        if flat is not None and flat["by_rate"] is not None:
            a, b = mem[0], mem[-1]
            out.append(f"\n{flat['events_x']:.0f}× events over the same event-time span: peak RSS {mib(a['rss_peak'])} → "
                       f"{mib(b['rss_peak'])} MiB (**{flat['raw']:.2f}×**). Of the {mib(b['rss_peak'] - a['rss_peak'])} "
                       f"MiB added, {mib(flat['by_rate'])} MiB is heap of state that grows with the event rate by "
                       f"design (dedupe ids, tickets, customers); the rest, {mib(flat['rest'])} MiB, is "
                       f"**{flat['adjusted']:.2f}×** the N run's peak.")
        out += ["", "| events (batched) | changelog records recovered | restart → ready s | "
                "restart → correct /metrics s | changelog read s | RSS after restore MiB |",
                "|---:|---:|---:|---:|---:|---:|"]
        for r in mem:
            out.append(f"| {r['events']:,} | {fmt(r['changelog_records'])} | {fmt(r['restart_ready_s'], '{:.1f}')} | "
                       f"{fmt(r['restart_correct_s'], '{:.1f}')} | {fmt(r['recovery_read_s'], '{:.2f}')} | "
                       f"{mib(r['restored_rss'])} |")
        return out
    out = ["| events (batched) | counted | peak RSS MiB | windows / tickets / seen ids in state | changelog records "
           "recovered | restart → ready s | restart → correct /metrics s | changelog read s | RSS after restore MiB |",
           "|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in mem:
        out.append(f"| {r['events']:,} | {r['counted']:,.0f} | {r['rss_peak'] / 2**20:,.0f} | "
                   f"{fmt(r['state_windows'])} / {fmt(r['state_tickets'])} / {fmt(r['state_seen_ids'])} | "
                   f"{fmt(r['changelog_records'])} | {fmt(r['restart_ready_s'], '{:.1f}')} | "
                   f"{fmt(r['restart_correct_s'], '{:.1f}')} | {fmt(r['recovery_read_s'], '{:.2f}')} | "
                   f"{r['restored_rss'] / 2**20:,.0f} |")
    return out


def render(results: dict) -> str:
    m = results["machine"]
    thr, ratios = tables(results)
    header = (Path(__file__).parent / "doc_header.md").read_text()
    footer_path = Path(__file__).parent / "doc_findings.md"
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
        f"- workloads: {results['loaded']}", "",
        "### Targets", "",
        *(targets(results, ratios) if any(r["approach"] == "cxpulse" for r in results["throughput"])
          else ["Not measured in this run: it has no cxpulse rows."]), "",
        "### Throughput (medians of the repetitions; ratios computed within each repetition)", "", thr, "",
        "### cxpulse against its peers (ratios computed within each repetition)", "",
        "Each peer counts every event of the workload per storefront in 1-minute tumbling windows on the "
        "event's `occurred_at`, and its counts must equal the workload's, storefront by storefront and minute "
        "by minute, or the run is a failure with no rate. A ratio above 1 means cxpulse is faster.", "",
        *peers_table(results), ""]
    if results.get("skipped_stages"):
        out += [f"Freshness, memory, recovery, cells, profile and window layer: not measured in this run "
                f"({results['skipped_stages']}); a full `python -m bench run` measures them."]
    else:
        out += later_sections(results)
    if results.get("code"):
        c = results["code"]
        out += ["", f"Code measured: commit `{c['commit']}`, {c.get('streams_files', 'streams/*.py')} sha256 "
                f"`{c['streams_sha256']}`"
                + (f", with uncommitted changes in streams/: `{' '.join(c['streams_changes'].split())}`"
                   if c.get("streams_changes") else "") + "."]
    if footer_path.exists() and not results.get("skipped_stages"):
        out += ["", footer_path.read_text()]
    elif footer_path.exists():
        out += ["", "The findings written for the last full run (`bench/doc_findings.md`) go with that run's "
                "tables and are shown with a full run only."]
    return "\n".join(out) + "\n"


def later_sections(results: dict) -> list[str]:
    """Freshness, memory and recovery, cells, profile and window layer (a full run's later stages)."""
    out = [
        "### Freshness: produce → visible on /metrics", "",
        "Events sent with `streams.producer.Producer` (batched: 100 events per message, 50 ms linger; single: one "
        "event per message) at a paced rate; /metrics polled every 50 ms. Delay = first poll whose "
        "`cxpulse_events_total` covers the event − the moment `send()` was called (so it includes the "
        "producer's linger and the poll interval). The worker's own `cxpulse_event_freshness_seconds` "
        "(Kafka timestamp → snapshot published, per message) is shown beside it.", "",
        "| layout | offered events/s | achieved send/s | p50 s | p99 s | max s | not visible after 15 s | "
        "histogram p50 / p99 s |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results.get("freshness", []):
        h = r.get("histogram") or {}
        out.append(f"| {r['layout']} | {r['offered_per_s']:,} | {r['achieved_send_per_s']:,.0f} | "
                   f"{fmt(r['p50_s'], '{:.3f}')} | {fmt(r['p99_s'], '{:.3f}')} | {fmt(r['max_s'], '{:.3f}')} | "
                   f"{r['missing']:,} | {fmt(h.get('p50_s'), '{:.3f}')} / {fmt(h.get('p99_s'), '{:.3f}')} |")
    out += ["", "### Memory and recovery", "", *memory_tables(results)]
    if results.get("cells"):
        out += ["", "| storefronts | events | active cells (window × segment, plus totals) | peak RSS MiB | "
                "scrape ms |", "|---:|---:|---:|---:|---:|"]
        for r in results["cells"]:
            out.append(f"| {r['storefronts']} | {r['events']:,} | {r['cells']:,} | {r['rss_peak'] / 2**20:,.0f} | "
                       f"{r['scrape_ms']:,.0f} |")
        a, b = results["cells"][0], results["cells"][-1]
        if b["cells"] != a["cells"]:
            per = (b["rss_peak"] - a["rss_peak"]) / (b["cells"] - a["cells"])
            out.append(f"\nPeak RSS per added cell: **{per:,.0f} bytes** "
                       f"({b['cells'] / a['cells']:.1f}× cells → {b['rss_peak'] / a['rss_peak']:.2f}× peak RSS)"
                       + (f"; heap per cell in the state and its snapshot copy (`bench.inventory`): "
                          f"{b['inventory']['bytes_per']['cell']:,.0f} bytes." if b.get("inventory") else "."))
    if results.get("profile"):
        out += ["", "### Profile of the worker's event-loop thread (py-spy, 200 Hz, --nonblocking)", ""]
        for layout, p in results["profile"].items():
            if "inclusive" not in p:
                out.append(f"- {layout}: {p}")
                continue
            inc = ", ".join(f"{k} {100 * v:.0f}%" for k, v in p["inclusive"].items() if v >= 0.01)
            top = ", ".join(f"`{k}` {100 * v:.0f}%" for k, v in p["top_self"][:8])
            out.append(f"- **{layout}** ({p['samples_loop']} samples; idle in select {100 * p['idle_share']:.0f}%; "
                       "no scrapes while profiling). "
                       f"Inclusive: {inc}. Top self time: {top}.")
    if results.get("layer"):
        out += ["", "### Window layer in process (no Kafka, no Faust), CPU µs per event", "",
                *([results["layer_note"] + ".", ""] if results.get("layer_note") else []),
                "| layout | decode_message | PartitionState.apply (incl. changelog records) | snapshot | "
                "messages per apply | changelog bytes per event |", "|---|---:|---:|---:|---:|---:|"]
        for r in results["layer"]:
            out.append(f"| {r['layout']} | {r['decode_us']:.1f} | {r['apply_us']:.1f} | {r['snapshot_us']:.1f} | "
                       f"{r['messages_per_apply']} | {r['changelog_bytes_per_event']:.0f} |")
    return out
