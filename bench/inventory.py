"""Where a worker's state memory goes: a workload replayed in process, its state sized by structure.

Decodes a workload's messages, applies them to one ``PartitionState`` per
source partition (in take-sized chunks, as the worker does) and the facts to
one ``CustomerState`` per customer-topic partition, then sizes what the state
keeps (``sys.getsizeof`` over every object each structure reaches: Python heap
bytes, without the allocator's own overhead). The bench uses it to say how much
of a worker's peak RSS growth the state explains, structure by structure:

- ``cells``: base windows and running totals (segment -> ``Cell``), plus the
  copy the published snapshot holds; bounded by segments x retention;
- ``seen``: the dedupe set (event id -> first sighting), every id within the
  dedupe horizon of event time: bounded by event rate x horizon;
- ``tickets``: tickets followed until their TTL; ``customers``: one record per
  customer (``CXPULSE_CUSTOMER_MAX`` per partition).

``python -m bench.inventory 50000 500000`` prints one JSON line per event count,
all over the same event-time span (the first count at 200 events/s).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any, Iterable

from streams.config import Settings
from streams.pipeline.customer_state import CustomerState
from streams.decode import decode_message
from streams.contract import partition_for
from streams.pipeline.records import Message
from streams.pipeline.window_state import PartitionState

from bench.workload import Workload, messages

FACTS_PER_MESSAGE = 2000  # as streams/runtime/faust_app.py sends them
_LEAVES = (str, int, float, bool, bytes, type(None))


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
           messages_per_apply: int = 50) -> tuple[dict, dict]:
    """Window and customer state after applying ``batch`` ((topic, partition, key, value) in send order)."""
    family = {t: f for f, t in settings.topics.items()}
    per_part: dict[tuple[str, int], list[Message]] = defaultdict(list)
    for topic, part, _, value in batch:
        key = (family[topic], part)
        events, rejected = decode_message(value, key[0], not_after_ms=2 ** 62)
        per_part[key].append(Message(len(per_part[key]), events, rejected, 0))
    states: dict[tuple[str, int], PartitionState] = {}
    facts: dict[int, list[list[Any]]] = defaultdict(list)
    for key, msgs in per_part.items():
        state = states[key] = PartitionState(key[0], key[1], settings)
        for i in range(0, len(msgs), messages_per_apply):
            for fact in state.apply(msgs[i:i + messages_per_apply]).facts:
                facts[partition_for(fact[2], settings.partitions)].append(fact)
    per_part.clear()
    customers: dict[int, CustomerState] = {}
    for part, items in facts.items():
        state = customers[part] = CustomerState(part, settings)
        state.apply([Message(i // FACTS_PER_MESSAGE, items[i:i + FACTS_PER_MESSAGE], [])
                     for i in range(0, len(items), FACTS_PER_MESSAGE)])
    return states, customers


def inventory(batch: list[tuple[str, int, bytes | None, bytes]], settings: Settings) -> dict:
    """Counts and heap bytes of the state ``batch`` leaves, by structure."""
    states, customers = replay(batch, settings)
    snapshots = [state.snapshot(None) for state in states.values()]
    cells = sum(len(st.totals.cells) + sum(len(slot.cells) for slot in st.windows.values()) for st in states.values())
    counts = {
        "windows": sum(len(st.windows) for st in states.values()),
        "cells": cells,  # (window, segment) cells plus totals cells, as the cells stage counts them
        "seen_ids": sum(len(st.seen) for st in states.values()),
        "tickets": sum(len(st.tickets) for st in states.values()),
        "customers": sum(len(cs.customers) for cs in customers.values()),
    }
    heap = {
        "cells": deep_bytes([[st.windows, st.days, st.totals] for st in states.values()]),
        "cells_snapshot": deep_bytes([[s.windows, s.days, s.totals] for s in snapshots]),
        "seen": deep_bytes([[st.seen, st.seen_records] for st in states.values()]),
        "tickets": deep_bytes([st.tickets for st in states.values()]),
        "customers": deep_bytes([[cs.customers, cs.aggregates, cs._maturing] for cs in customers.values()]),
    }
    return {"counts": counts, "heap_bytes": heap,
            "bytes_per": {"cell": (heap["cells"] + heap["cells_snapshot"]) / max(cells, 1),
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
