"""Randomized fault soak, outside CI: SIGKILL/SIGTERM/SIGSTOP/restart/add-worker, broker
restarts and poison messages for N minutes, then the books.

    .venv/bin/python bench/soak.py --minutes 10 --seed 7 [--rounds 3] [--workers 3] [--engine faust]

Starts its own Tansu broker (never one you are using), runs the schedule of
``tests/faults/schedule.py`` for ``--minutes`` per round with seeds seed, seed+1, ...,
prints each step and a summary per round (faults run, events sent and counted, lost,
double-counted, events differing in the windows the changelog recovers), and exits 1 if
any round lost or double-counted an event, in the counters or the recovered windows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams.devtools.broker import LocalBroker, create_topics, free_port  # noqa: E402
from streams.config import Settings  # noqa: E402
from streams.devtools.stack import WorkerProcess, worker_settings  # noqa: E402
from tests.faults.schedule import run_schedule  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="fault schedule length per round (default 10)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="rounds, each with its own broker and seed")
    parser.add_argument("--workers", type=int, default=3, help="most workers at once (default 3)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--engine", choices=("kafka", "faust"), default="kafka",
                        help="CXPULSE_ENGINE of every worker (default kafka, the batch consumer)")
    parser.add_argument("--workdir", type=Path, default=None, help="logs (default: a temporary directory)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cxpulse-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()

    def say(text: str) -> None:
        print(f"[soak {time.monotonic() - began:7.1f}s] {text}", flush=True)

    outcomes = []
    for round_ in range(args.rounds):
        seed = args.seed + round_
        rundir = workdir / f"seed-{seed}"
        rundir.mkdir(exist_ok=True)
        started: list[WorkerProcess] = []

        def start(settings: Settings, index: int) -> WorkerProcess:
            worker = WorkerProcess(worker_settings(settings, index * 2), index,
                                   rundir / f"worker-{index}-{len(started)}.log").start()
            started.append(worker)
            return worker

        with LocalBroker(port=free_port(), log_path=rundir / "tansu.log") as broker:
            settings = Settings.from_env({}, bootstrap_servers=broker.bootstrap, partitions=args.partitions,
                                         app_id=f"soak{seed}", metrics_port=free_port(), web_port=free_port(),
                                         engine=args.engine)
            create_topics(settings)
            say(f"round {round_ + 1}/{args.rounds}, seed {seed}, engine {args.engine}, broker {broker.bootstrap}, "
                f"logs {rundir}")
            try:
                outcome = run_schedule(settings, start, seed=seed, steps=0, max_workers=args.workers, say=say,
                                       deadline_s=args.minutes * 60, broker=broker,
                                       cover=("sigstop", "broker_restart", "poison"))
            finally:
                for worker in started:
                    worker.kill()
        say(outcome.summary())
        outcomes.append(outcome)
    faults = sum(sum(o.faults.values()) for o in outcomes)
    lost = sum(o.lost for o in outcomes)
    doubled = sum(o.doubled for o in outcomes)
    windows = sum(o.windows_differ for o in outcomes)
    sent = sum(sum(o.sent.values()) for o in outcomes)
    print(f"\nSUMMARY: {len(outcomes)} schedule(s) on the {args.engine} engine, {faults} faults, {sent:,} events "
          f"sent, lost {lost}, double-counted {doubled}, events differing in recovered windows {windows}; "
          f"logs in {workdir}")
    unparked = sum(o.poison_sent - o.poison_parked for o in outcomes)
    exits = sum(len(o.unclean_exits) for o in outcomes)
    print(f"poison messages not parked: {unparked}; unclean worker exits: {exits}")
    return 1 if lost or doubled or windows or unparked or exits else 0


if __name__ == "__main__":
    sys.exit(main())
