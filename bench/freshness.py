"""Freshness only: `python -m bench.freshness [--rates 2000,5000] [--layouts batched,single]`.

The same measurement as the full run's freshness stage (bench.run.freshness: paced
events from the cxpulse Producer, /metrics polled every 50 ms), on its own broker,
for checking a hot-path change without the 15-minute run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.run import freshness
from streams.devtools.broker import LocalBroker
from streams.config import Settings


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.freshness")
    parser.add_argument("--rates", default="2000,5000", help="offered events/s, comma-separated")
    parser.add_argument("--layouts", default="batched,single", help="batched and/or single")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cxpulse-bench/freshness"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    with LocalBroker(log_path=args.workdir / "broker.log") as broker:
        base = Settings(bootstrap_servers=broker.bootstrap)
        for layout in args.layouts.split(","):
            for rate in (int(r) for r in args.rates.split(",")):
                r = freshness(base, layout, rate, args.seconds, 2000, args.workdir)
                print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "layout": layout,
                                  "offered_per_s": rate, "p50_s": round(r["p50_s"], 3), "p99_s": round(r["p99_s"], 3),
                                  "max_s": round(r["max_s"], 3), "missing": r["missing"],
                                  "histogram": {k: round(v, 3) for k, v in r["histogram"].items()}}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
