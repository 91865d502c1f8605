"""Freshness only: `python -m bench.freshness [--rates 5000,50000] [--layouts batched,single]`.

The same measurement as the full run's freshness stage (bench.run.freshness: events
handed over at a paced rate and sent as the producer library batches them, /metrics
polled every 50 ms), on its own broker, for checking a hot-path change without the
full run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.exactness import Receiver
from bench.run import FULL, freshness
from streams.devtools.broker import LocalBroker
from streams.config import Settings


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.freshness")
    parser.add_argument("--rates", default="5000,50000", help="offered events/s, comma-separated")
    parser.add_argument("--layouts", default="batched,single", help="batched and/or single")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--batch-max", type=int, default=FULL.batched_batch_max,
                        help="CXPULSE_BATCH_MAX for the batched layout (the full run's by default)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cxpulse-bench/freshness"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    receiver = Receiver()  # the workers remote-write their windows, as in the full run
    with LocalBroker(log_path=args.workdir / "broker.log") as broker:
        base = Settings(bootstrap_servers=broker.bootstrap)
        for layout in args.layouts.split(","):
            for rate in (int(r) for r in args.rates.split(",")):
                r = freshness(base, layout, rate, args.seconds, args.batch_max, args.workdir, receiver)
                print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "layout": layout,
                                  "offered_per_s": rate, "sent_per_s": round(r["achieved_send_per_s"]),
                                  "visible_per_s": r["visible_per_s"] and round(r["visible_per_s"]),
                                  "p50_s": r["p50_s"] and round(r["p50_s"], 3),
                                  "p99_s": r["p99_s"] and round(r["p99_s"], 3),
                                  "max_s": r["max_s"] and round(r["max_s"], 3), "missing": r["missing"],
                                  "histogram": {k: round(v, 3) for k, v in r["histogram"].items()}}), flush=True)
    receiver.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
