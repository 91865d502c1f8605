"""What 6-hour and 24-hour windows cost: as views of the merge stage, or read from 1-minute windows.

The pages of small shops (docs/alerts.md, "Small shops") read 6h and 24h windows. Two ways to get
them: add ``6h,24h`` to ``CXPULSE_VIEWS`` (the merge stage then writes them every minute), or have
the recording rules sum the 1-minute windows (``sum_over_time``). This measures both:

- pipeline: the merge stage's CPU per minute of event time and the samples it writes, with the
  default views and with 6h and 24h added, and the base windows every source partition then has to
  keep (the retention must cover the longest view);
- Prometheus: the time to evaluate the rules' 6h and 24h conversion (this window and last week's)
  from 1-minute windows, against reading a 6h / 24h view, on a real Prometheus holding the same data.

``python -m bench.long_windows [--storefronts 20]`` prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.parse
from pathlib import Path

import orjson

from streams.catalog import KPIS
from streams.config import Settings
from streams.mixin import rules
from streams.pipeline.aggregates import Cell
from streams.pipeline.merge_state import MergeState
from streams.pipeline.records import Message
from streams.pipeline.window_state import Slot

MINUTE = 60_000
SEGMENTS = [(channel, device) for channel in ("web", "app", "social") for device in ("mobile", "desktop")]


def merge_cost(views: str, storefronts: int, partitions: int = 4, measured: int = 30) -> dict:
    """One merge partition holding the closed 1-minute windows of two families from ``partitions``
    source partitions, as far back as its retention; then ``measured`` minutes of markers, each
    completing one more minute: the merge stage's CPU for them and the samples it writes."""
    settings = Settings.from_env({"CXPULSE_VIEWS": views}, partitions=partitions)
    state = MergeState(0, settings)
    shops = [f"shop-{i}" for i in range(storefronts)]

    def cells(family: str, shop: str) -> list:
        out = []
        for channel, device in SEGMENTS:
            cell = Cell()
            if family == "session":
                cell.add("sessions_started", 3)
                segment = [shop, channel, device]
            else:
                cell.add("orders_placed", 1)
                cell.add("revenue_minor", 4200)
                segment = [shop, channel, device, "EUR"]
            out.append([segment, cell.to_json()])
        return out

    held = settings.retention_ms // MINUTE + measured
    offset = 0
    for minute in range(held):  # partials only: nothing completes, nothing is exported
        items = [["p", family, source, minute * MINUTE, shop, cells(family, shop)]
                 for family in ("session", "order") for source in range(partitions) for shop in shops]
        state.apply([Message(offset, items, [])])
        offset += 1

    def markers(until_minute: int) -> list:
        return [["m", family, source, until_minute * MINUTE] for family in ("session", "order")
                for source in range(partitions)]

    state.apply([Message(offset, markers(held - measured), [])])
    offset += 1
    cpu, exported, samples = 0.0, 0, 0
    for minute in range(held - measured + 1, held + 1):
        t0 = time.process_time()
        applied = state.apply([Message(offset, markers(minute), [])])
        cpu += time.process_time() - t0
        offset += 1
        exported += len(applied.exports)
        # a sample per counter of each segment with data (sessions: 1; orders: count and revenue), and
        # the complete mark of each export
        samples += sum(sum(len(c.counts) for c in e.cells.values()) + 1 for e in applied.exports)
    base = Slot(0, {(shop, *seg, "EUR"): Cell() for shop in shops[:1] for seg in SEGMENTS})
    for cell in base.cells.values():
        cell.add("orders_placed", 1)
        cell.add("revenue_minor", 4200)
    return {
        "views": views,
        "storefronts": storefronts,
        "retention_minutes": settings.retention_ms // MINUTE,
        "merge_cpu_ms_per_minute_of_event_time": round(1000 * cpu / measured, 2),
        "window_exports_per_minute": exported / measured,
        "samples_per_minute": samples / measured,
        "merge_partials_held": sum(len(v) for v in state.partials.values()),
        # every source partition keeps its base windows as long: in memory, in the changelog, and
        # read back on every recovery
        "base_windows_per_source_partition": settings.retention_ms // settings.window_ms,
        "base_window_record_bytes_per_storefront": len(base.to_json()),
    }


def promql_cost(storefronts: int, workdir: Path, repeat: int = 15) -> dict:
    """Evaluate the long-window rules (sum_over_time of 1-minute windows) and the view reads on a real
    Prometheus holding two days of each (now and a week ago)."""
    from tests.backfill import BackfilledPrometheus
    from streams.devtools.stack import http_get

    end_s = 8 * 86_400
    spans = [(end_s - 7 * 86_400 - 26 * 3600, end_s - 7 * 86_400), (end_s - 26 * 3600, end_s)]

    def document():
        for name, window, value in (("cxpulse_window_sessions_started", "1m", 3), ("cxpulse_window_orders_placed",
                                                                                   "1m", 1),
                                    ("cxpulse_window_sessions_started", "6h", 1080),
                                    ("cxpulse_window_orders_placed", "6h", 360),
                                    ("cxpulse_window_sessions_started", "24h", 4320),
                                    ("cxpulse_window_orders_placed", "24h", 1440)):
            yield f"# TYPE {name} gauge\n"
            for shop in range(storefronts):
                for channel, device in SEGMENTS:
                    extra = ',currency="EUR"' if "orders" in name else ""
                    labels = f'storefront="shop-{shop}",channel="{channel}",device="{device}"{extra},window="{window}"'
                    for first, last in spans:
                        for t in range(first, last + 1, 60):
                            yield f"{name}{{{labels}}} {value} {t}\n"
        yield "# TYPE cxpulse_window_complete gauge\n"
        for shop in range(storefronts):
            for family in ("order", "session"):
                for window in ("1m", "6h", "24h"):
                    for first, last in spans:
                        for t in range(first, last + 1, 60):
                            yield (f'cxpulse_window_complete{{storefront="shop-{shop}",family="{family}",'
                                   f'window="{window}"}} 1 {t}\n')
        yield "# EOF\n"

    prometheus = BackfilledPrometheus.build([document()], workdir)
    try:
        conversion = next(k for k in KPIS if k.key == "conversion")
        level = ("storefront",)

        def view_expr(window: str, offset: str) -> str:  # as if the merge stage exported the view
            saved = rules.LONG_WINDOWS
            rules.LONG_WINDOWS = ()
            try:
                return rules.window_kpi_expr(conversion, level, window, offset)
            finally:
                rules.LONG_WINDOWS = saved

        timings = {}
        for window in rules.LONG_WINDOWS:
            for how, expr in (("sum_over_time of 1m windows",
                               rules.window_kpi_expr(conversion, level, window, rules.DELAY) + "\nor\n"
                               + rules.window_kpi_expr(conversion, level, window, f"1w{rules.DELAY}")),
                              (f"{window} view", view_expr(window, rules.DELAY) + "\nor\n"
                               + view_expr(window, f"1w{rules.DELAY}"))):
                url = f"{prometheus.url}/api/v1/query?query={urllib.parse.quote(expr)}&time={end_s}"
                elapsed = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    status, body = http_get(url, 30)
                    elapsed.append(time.perf_counter() - t0)
                    assert status == 200, body[:300]
                    assert len(orjson.loads(body)["data"]["result"]) == storefronts, body[:300]
                timings[f"{window}: {how}"] = round(1000 * statistics.median(elapsed), 1)
        return {"storefronts": storefronts, "series_per_family": storefronts * len(SEGMENTS),
                "query_ms_median_this_window_and_last_week": timings}
    finally:
        prometheus.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storefronts", type=int, default=20)
    parser.add_argument("--merge-storefronts", type=int, default=5, help="storefronts of the merge partition")
    args = parser.parse_args()
    out = {"pipeline": [merge_cost(views, args.merge_storefronts)
                        for views in ("1m,5m,15m,1h", "1m,5m,15m,1h,6h,24h")]}
    with tempfile.TemporaryDirectory() as tmp:
        out["prometheus"] = promql_cost(args.storefronts, Path(tmp))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
