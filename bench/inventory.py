"""Where a worker's state memory goes: a workload replayed in process, its state sized by structure.

Runs a workload's messages through the same pure pipeline a worker runs
(``streams.pipeline.plan.Pipeline``, every stage, no Kafka): the source records
in batches of ``batch_max`` messages, as the batch engine's ``consume(n)`` hands
them over; then what the window stage sent to the customer and merge stages, as
records of their topics, until nothing is left to send. Then it sizes what the
states keep (``sys.getsizeof`` over every object each structure reaches: Python
heap bytes, without the allocator's own overhead). The bench uses it to say how
much of a worker's peak RSS growth the state explains, structure by structure:

- ``cells``: the window stage's base windows, day totals and running totals
  (segment -> ``Cell``), plus the copy the published snapshot holds; bounded by
  segments x retention. Per cell: these bytes / (window cells + totals cells);
- ``merge``: the merge stage's partials of closed windows (per source partition)
  until their window is complete and exported;
- ``seen``: the dedupe set (event id -> first sighting), every id within the
  dedupe horizon of event time: bounded by event rate x horizon;
- ``tickets``: tickets followed until their TTL; ``customers``: one record per
  customer (``CXPULSE_CUSTOMER_MAX`` per partition), with the cohort aggregates.

``python -m bench.inventory 50000 500000`` prints one JSON line per event count,
all over the same event-time span (the first count at 200 events/s).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable

from streams.config import Settings
from streams.pipeline.customer_state import CustomerState
from streams.pipeline.merge_state import MergeState
from streams.pipeline.plan import Pipeline
from streams.pipeline.records import Record
from streams.pipeline.window_state import PartitionState

from bench.workload import Workload, messages

_LEAVES = (str, int, float, bool, bytes, type(None))
NOW_MS = 2 ** 62 // 2  # far after every event: no event is refused as from the future


def deep_bytes(roots: Iterable[Any]) -> int:
    """Heap bytes of every object reachable from ``roots`` (each counted once)."""
    seen: set[int] = set()
    stack = list(roots)
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, _LEAVES):
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        else:
            if hasattr(obj, "__dict__"):
                stack.append(vars(obj))
            for cls in type(obj).__mro__:
                for slot in getattr(cls, "__slots__", ()):
                    if hasattr(obj, slot):
                        stack.append(getattr(obj, slot))
    return total


def replay(batch: list[tuple[str, int, bytes | None, bytes]], settings: Settings,
           batch_max: int | None = None) -> Pipeline:
    """The pipeline after ``batch`` ((topic, partition, key, value) in send order) and
    everything it sent on to the customer and merge stages."""
    pipeline = Pipeline(settings, worker="inventory")
    keys = [(stage, p) for stage in ("session", "order", "ticket", "survey", "customer", "merge")
            for p in range(settings.partitions)]
    for job in pipeline.claim(keys):
        pipeline.install(job, [], 0)
    size = batch_max or settings.batch_max
    offsets: dict[tuple[str, int], int] = {}

    def records(items: Iterable[tuple[str, int, bytes]]) -> list[Record]:
        out = []
        for topic, partition, value in items:
            offset = offsets.get((topic, partition), 0)
            offsets[topic, partition] = offset + 1
            out.append(Record(topic, partition, offset, 0, value))
        return out

    sends: list[tuple[str, int, bytes]] = []
    for i in range(0, len(batch), size):
        for outbox in pipeline.plan(records((t, p, v) for t, p, _, v in batch[i:i + size]), now_ms=NOW_MS):
            sends.extend((pipeline.topic_of[stage], part, value) for stage, part, value in outbox.sends)
    while sends:  # the re-keyed stages, until they send nothing more
        pending, sends = sends, []
        for i in range(0, len(pending), size):
            for outbox in pipeline.plan(records(pending[i:i + size]), now_ms=NOW_MS):
                sends.extend((pipeline.topic_of[stage], part, value) for stage, part, value in outbox.sends)
    return pipeline


def inventory(batch: list[tuple[str, int, bytes | None, bytes]], settings: Settings,
              batch_max: int | None = None) -> dict:
    """Counts and heap bytes of the state ``batch`` leaves, by structure."""
    pipeline = replay(batch, settings, batch_max)
    states = [s for s in pipeline.states.values() if isinstance(s, PartitionState)]
    customers = [s for s in pipeline.states.values() if isinstance(s, CustomerState)]
    merges = [s for s in pipeline.states.values() if isinstance(s, MergeState)]
    snapshots = [state.snapshot(None) for state in states]
    cells = sum(len(st.totals.cells) + sum(len(slot.cells) for slot in st.windows.values()) for st in states)
    counts = {
        "windows": sum(len(st.windows) for st in states),
        "cells": cells,  # (window, segment) cells plus totals cells, as the cells stage counts them
        "merge_partials": sum(len(p) for m in merges for p in m.partials.values()),
        "seen_ids": sum(len(st.seen) for st in states),
        "tickets": sum(len(st.tickets) for st in states),
        "customers": sum(len(cs.customers) for cs in customers),
    }
    heap = {
        "cells": deep_bytes([[st.windows, st.days, st.totals] for st in states]),
        "cells_snapshot": deep_bytes([[s.windows, s.days, s.totals] for s in snapshots]),
        "merge": deep_bytes([[m.partials, m._through, m.sources] for m in merges]),
        "seen": deep_bytes([[st.seen, st.seen_records] for st in states]),
        "tickets": deep_bytes([st.tickets for st in states]),
        "customers": deep_bytes([[cs.customers, cs.aggregates, cs._maturing] for cs in customers]),
    }
    return {"counts": counts, "heap_bytes": heap,
            "bytes_per": {"cell": (heap["cells"] + heap["cells_snapshot"]) / max(cells, 1),
                          "cell_state_only": heap["cells"] / max(cells, 1),
                          "seen_id": heap["seen"] / max(counts["seen_ids"], 1),
                          "ticket": heap["tickets"] / max(counts["tickets"], 1),
                          "customer": heap["customers"] / max(counts["customers"], 1)}}


def same_span(events: tuple[int, ...], rate_per_s: float = 200.0) -> list[Workload]:
    """Batched workloads of ``events`` over one event-time span (the first at ``rate_per_s``)."""
    return [Workload("batched", n, sim_rate_per_s=rate_per_s * n / events[0]) for n in events]


if __name__ == "__main__":
    counts = tuple(int(a) for a in sys.argv[1:]) or (50_000, 500_000)
    for wl in same_span(counts):
        print(json.dumps({"workload": wl.name, **inventory(messages(wl, Settings()), Settings())}), flush=True)
