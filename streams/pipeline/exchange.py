"""The wire formats between stages: each encoder beside its decoder.

The window stage reads events keyed by session, order, ticket or response; two views
need every event of a customer or of a storefront in one place, so the window stage
re-keys what they need onto internal topics, one hop each:

* **customer facts** (to the customer stage, keyed by customer id): a JSON array of
  ``[kind, storefront, customer_id, event_id, ts_ms, ...]``, kind ``o`` (order: amount in
  minor units, currency), ``t`` (ticket), ``n`` (NPS answer: score) or ``c`` (CSAT answer:
  score, 1-5; added later, so it travels in messages of its own: see ``fact_messages``);
  and, keyed by *session* id on the same topic (the checkout join, added later still), ``k``
  (a checkout started: channel, device) and ``s`` (an order that names its session:
  ``[kind, storefront, session_id, event_id, ts_ms, ...]``);
* **window items** (to the merge stage, keyed by storefront): a JSON array of
  ``["p", family, partition, start_ms, storefront, [[segment, cell], ...]]`` (the cells of
  one closed window of one source partition, one storefront) and
  ``["m", family, partition, closed_ms]`` (that source partition has closed every window
  ending at or before ``closed_ms``). Markers go to every merge partition, after the
  partials they cover.

Both sides are exactly-once by content: a stage that resends after a crash resends the
same facts and partials, and the receiving stage applies each once (facts by event id,
partials by their source partition, markers by maximum).

    >>> fact_messages([["t", "shop", "c1", "e1", 5]], 4)
    [('customer', 3, b'[["t","shop","c1","e1",5]]')]
"""

from __future__ import annotations

from typing import Any, Iterable

import orjson

from streams.contract import partition_for
from streams.pipeline.aggregates import Cell, Segment

FACTS_PER_MESSAGE = 2000  # ~100 bytes each: a message stays far below Kafka's 1 MB default
WINDOW_MESSAGE_BYTES = 256 * 1024  # chunk size of window items for one merge partition

Send = tuple[str, int, bytes]  # (stage, partition, value)


# ------------------------------------------------------------------ customer facts
# The release that first read each fact kind. Kinds of different releases never share a message:
# during a rolling upgrade an older customer stage refuses a message with a kind it does not know
# (parked as malformed), and must lose only facts it would not have used.
_GENERATION = {"o": 0, "t": 0, "n": 0, "c": 1, "k": 2, "s": 2}
SESSION_KINDS = frozenset("ks")  # keyed by session id: the checkout join (customer_state.py)


def fact_messages(facts: list[list[Any]], partitions: int) -> list[Send]:
    """Facts grouped by the customer-topic partition of their key (customer or session id), in
    chunks; facts of kinds different releases added (``_GENERATION``) never share a message."""
    by_partition: dict[tuple[int, int], list[list[Any]]] = {}
    for fact in facts:
        by_partition.setdefault((partition_for(fact[2], partitions), _GENERATION[fact[0]]), []).append(fact)
    return [("customer", target, orjson.dumps(items[i:i + FACTS_PER_MESSAGE]))
            for (target, _), items in sorted(by_partition.items())
            for i in range(0, len(items), FACTS_PER_MESSAGE)]


_FACT_SHAPES = {"o": (str, str, str, str, int, int, str), "t": (str, str, str, str, int),
                "n": (str, str, str, str, int, int), "c": (str, str, str, str, int, int),
                "k": (str, str, str, str, int, str, str), "s": (str, str, str, str, int)}
_SCORES = {"n": range(0, 11), "c": range(1, 6)}


def decode_facts(value: bytes | None) -> list[list[Any]]:
    """A customer-topic message, checked field by field so foreign or corrupt data is
    parked, never applied.

        >>> decode_facts(b'[["t", "shop", "c1", "e1", 5]]')
        [['t', 'shop', 'c1', 'e1', 5]]
        >>> decode_facts(b'[["o", "shop", "c1", "e1", 5]]')
        Traceback (most recent call last):
        ...
        ValueError: fact 0 is not an order, ticket, NPS, CSAT, checkout or session-order fact
    """
    facts = orjson.loads(value or b"[]")
    if not isinstance(facts, list):
        raise ValueError("not a JSON array of facts")
    for i, fact in enumerate(facts):
        shape = _FACT_SHAPES.get(fact[0]) if isinstance(fact, list) and fact else None
        if (shape is None or len(fact) != len(shape)
                or not all(type(v) is t for v, t in zip(fact, shape))  # noqa: E721 - bool is not an int here
                or (fact[0] in _SCORES and fact[5] not in _SCORES[fact[0]])):
            raise ValueError(f"fact {i} is not an order, ticket, NPS, CSAT, checkout or session-order fact")
    return facts


# ------------------------------------------------------------------ window items
def window_messages(family: str, partition: int, closed_ms: int,
                    partials: Iterable[tuple[int, dict[Segment, Cell]]], partitions: int) -> list[Send]:
    """Closed windows of one source partition, by storefront, to the merge partition of each
    storefront; then, to every merge partition, the marker saying how far it has closed.

        >>> window_messages("order", 0, 120_000, [], 2)
        [('merge', 0, b'[["m","order",0,120000]]'), ('merge', 1, b'[["m","order",0,120000]]')]
    """
    items: dict[int, list[bytes]] = {m: [] for m in range(partitions)}
    for start, cells in partials:
        by_storefront: dict[str, list[list[Any]]] = {}
        for segment, cell in cells.items():
            by_storefront.setdefault(segment[0], []).append([list(segment), cell.to_json()])
        for storefront, segments in sorted(by_storefront.items()):
            items[partition_for(storefront, partitions)].append(
                orjson.dumps(["p", family, partition, start, storefront, segments]))
    marker = orjson.dumps(["m", family, partition, closed_ms])
    out: list[Send] = []
    for target in range(partitions):
        chunk: list[bytes] = []
        size = 0
        for item in [*items[target], marker]:
            if chunk and size + len(item) > WINDOW_MESSAGE_BYTES:
                out.append(("merge", target, b"[" + b",".join(chunk) + b"]"))
                chunk, size = [], 0
            chunk.append(item)
            size += len(item) + 1
        out.append(("merge", target, b"[" + b",".join(chunk) + b"]"))
    return out


def decode_window_items(value: bytes | None) -> list[list[Any]]:
    """A merge-topic message: partials and markers, checked for shape.

        >>> decode_window_items(b'[["m", "order", 0, 120000]]')
        [['m', 'order', 0, 120000]]
    """
    items = orjson.loads(value or b"[]")
    if not isinstance(items, list):
        raise ValueError("not a JSON array of window items")
    for i, item in enumerate(items):
        ok = isinstance(item, list) and item and (
            (item[0] == "m" and len(item) == 4 and type(item[1]) is str and type(item[2]) is int
             and type(item[3]) is int)
            or (item[0] == "p" and len(item) == 6 and type(item[1]) is str and type(item[2]) is int
                and type(item[3]) is int and type(item[4]) is str and isinstance(item[5], list)))
        if not ok or (item[0] == "p" and not all(_is_cell_entry(entry) for entry in item[5])):
            raise ValueError(f"item {i} is not a window partial or marker")
    return items


def _is_cell_entry(entry: Any) -> bool:
    """``[segment, cell]`` of a partial: a segment of strings and a cell ``Cell.from_json`` reads (foreign
    data that passed the item's shape must be parked here, not fail the merge stage)."""
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], list)
            and all(type(v) is str for v in entry[0]) and isinstance(entry[1], list) and 2 <= len(entry[1]) <= 3):
        return False
    counts, hists, *rest = entry[1]
    try:
        cell = Cell.from_json(entry[1])
    except (TypeError, ValueError, KeyError, IndexError, AttributeError):
        return False
    return (all(type(k) is str and type(v) in (int, float) for k, v in cell.counts.items())
            and isinstance(counts, dict) and isinstance(hists, dict)
            and all(type(m) is str for members in (cell.sets or {}).values() for m in members))
