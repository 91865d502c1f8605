"""In-process CPU cost of the pipeline's steps, µs per event, no Kafka client at all.

The worker's pure core (``streams.pipeline``) on a workload's message values, timed
with ``time.process_time``:

- ``decode_message`` with the arguments ``Pipeline.plan`` gives it;
- ``PartitionState.apply`` (the window stage, changelog records included), in batches
  of ``batch_max`` messages spread over the 16 source partitions, as one
  ``consume(batch_max)`` of the batch engine spreads them; and ``snapshot`` after each;
- ``Pipeline.plan`` end to end, as the engine calls it: source records in batches of
  ``batch_max``, then what the window stage sent to the customer and merge stages, as
  their records (``plan_us`` the window stage, ``rekeyed_us`` the two re-keyed stages,
  both per source event).

The garbage collector runs at the worker's thresholds (``streams.runtime.worker.GC_THRESHOLD``).
What a worker adds on top is the engine's I/O: consuming, one transaction per partition
and batch (``streams/runtime/sink.py``), publishing snapshots, scrapes and remote write.
``python -m bench.layer`` prints one JSON line per layout; ``bench.run`` calls ``measure``.
"""

from __future__ import annotations

import gc
import json
import time
from collections import defaultdict

from streams.config import Settings
from streams.decode import decode_message
from streams.pipeline.plan import Pipeline
from streams.pipeline.records import Message, Record
from streams.pipeline.window_state import PartitionState
from streams.runtime.worker import GC_THRESHOLD

from bench.workload import Workload, messages

NOW_MS = 2 ** 61  # far after every event of the workload: none is refused as from the future


def measure(layout: str, events: int, batch_max: int) -> dict:
    """One layout's costs, with the garbage collector set as a worker sets it."""
    previous = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        return _measure(layout, events, batch_max)
    finally:
        gc.set_threshold(*previous)


def _measure(layout: str, events: int, batch_max: int) -> dict:
    settings = Settings()
    family = {t: f for f, t in settings.topics.items()}
    values = messages(Workload(layout, events), settings)
    options = dict(max_bytes=settings.max_message_bytes, max_events=settings.max_batch_events,
                   not_after_ms=NOW_MS, partitions=settings.partitions)
    t0 = time.process_time()
    decoded = []
    for topic, part, _, value in values:
        ev, rej = decode_message(value, family[topic], partition=part, **options)  # type: ignore[arg-type]
        decoded.append((family[topic], part, ev, rej))
    t_decode = time.process_time() - t0
    per_part: dict = defaultdict(list)
    offsets: dict = defaultdict(int)
    for fam, part, ev, rej in decoded:
        per_part[(fam, part)].append(Message(offsets[(fam, part)], ev, rej, 0))
        offsets[(fam, part)] += 1
    states = {key: PartitionState(key[0], key[1], settings) for key in per_part}
    # A batch of batch_max messages spreads over the 16 source partitions.
    chunk = max(1, batch_max // len(per_part))
    t_apply = t_snapshot = 0.0
    records = record_bytes = 0
    snaps: dict = {}
    for key, msgs in per_part.items():
        for i in range(0, len(msgs), chunk):
            t0 = time.process_time()
            applied = states[key].apply(msgs[i:i + chunk])
            t1 = time.process_time()
            snaps[key] = states[key].snapshot(snaps.get(key))
            t_snapshot += time.process_time() - t1
            t_apply += t1 - t0
            records += len(applied.records)
            record_bytes += sum(len(v or b"") for _, v in applied.records)
    t_plan, t_rekeyed = plan_cost(values, settings, batch_max)
    return {"layout": layout, "events": events, "batch_max": batch_max, "messages_per_apply": chunk,
            "decode_us": 1e6 * t_decode / events, "apply_us": 1e6 * t_apply / events,
            "snapshot_us": 1e6 * t_snapshot / events, "plan_us": 1e6 * t_plan / events,
            "rekeyed_us": 1e6 * t_rekeyed / events, "changelog_records": records,
            "changelog_bytes_per_event": record_bytes / events}


def plan_cost(values: list[tuple[str, int, bytes | None, bytes]], settings: Settings,
              batch_max: int) -> tuple[float, float]:
    """CPU seconds of ``Pipeline.plan``: the source records, then the re-keyed stages' records."""
    pipeline = Pipeline(settings, worker="layer")
    keys = [(stage, p) for stage in ("session", "order", "ticket", "survey", "customer", "merge")
            for p in range(settings.partitions)]
    for job in pipeline.claim(keys):
        pipeline.install(job, [], 0)
    offsets: dict[tuple[str, int], int] = defaultdict(int)

    def records(items) -> list[Record]:
        out = []
        for topic, partition, value in items:
            out.append(Record(topic, partition, offsets[topic, partition], 0, value))
            offsets[topic, partition] += 1
        return out

    sends: list[tuple[str, int, bytes]] = []
    t_plan = 0.0
    for i in range(0, len(values), batch_max):
        batch = records((t, p, v) for t, p, _, v in values[i:i + batch_max])
        t0 = time.process_time()
        outboxes = pipeline.plan(batch, now_ms=NOW_MS)
        t_plan += time.process_time() - t0
        sends.extend((pipeline.topic_of[stage], part, value) for o in outboxes for stage, part, value in o.sends)
    t_rekeyed = 0.0
    while sends:
        pending, sends = sends, []
        for i in range(0, len(pending), batch_max):
            batch = records(pending[i:i + batch_max])
            t0 = time.process_time()
            outboxes = pipeline.plan(batch, now_ms=NOW_MS)
            t_rekeyed += time.process_time() - t0
            sends.extend((pipeline.topic_of[stage], part, value) for o in outboxes for stage, part, value in o.sends)
    return t_plan, t_rekeyed


if __name__ == "__main__":
    for layout, n, bm in (("single", 60_000, 2000), ("batched", 500_000, 50)):
        print(json.dumps(measure(layout, n, bm)), flush=True)
