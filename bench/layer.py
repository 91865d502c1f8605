"""In-process cost of the window layer's steps, µs per event, no Kafka and no Faust.

Decodes the loaded workload's message values with ``decode_message``, applies
them to ``PartitionState`` in batches of ``batch_max`` messages spread over the
source partitions (as the worker's take batches are), and times each step with ``time.process_time``.
``python -m bench.layer`` prints one JSON line; ``bench.run`` calls ``measure``.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict

from streams.config import Settings
from streams.decode import decode_message
from streams.pipeline.records import Message
from streams.pipeline.window_state import PartitionState

from bench.workload import Workload, messages


def measure(layout: str, events: int, batch_max: int) -> dict:
    settings = Settings()
    family = {t: f for f, t in settings.topics.items()}
    values = messages(Workload(layout, events), settings)
    t0 = time.process_time()
    decoded = []
    for topic, part, _, value in values:
        ev, rej = decode_message(value, family[topic], not_after_ms=2 ** 62)
        decoded.append((family[topic], part, ev, rej))
    t_decode = time.process_time() - t0
    per_part: dict = defaultdict(list)
    offsets: dict = defaultdict(int)
    for fam, part, ev, rej in decoded:
        per_part[(fam, part)].append(Message(offsets[(fam, part)], ev, rej, 0))
        offsets[(fam, part)] += 1
    states = {key: PartitionState(key[0], key[1], settings) for key in per_part}
    # A take batch of batch_max messages spreads over the 16 source partitions.
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
    return {"layout": layout, "events": events, "batch_max": batch_max, "messages_per_apply": chunk,
            "decode_us": 1e6 * t_decode / events, "apply_us": 1e6 * t_apply / events,
            "snapshot_us": 1e6 * t_snapshot / events, "changelog_records": records,
            "changelog_bytes_per_event": record_bytes / events}


if __name__ == "__main__":
    for layout, n, bm in (("single", 60_000, 2000), ("batched", 500_000, 50)):
        print(json.dumps(measure(layout, n, bm)))
