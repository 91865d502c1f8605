"""Bounded label values: which storefronts, channels and currencies get a series of their own.

Free-form labels (storefront, channel, currency) keep their own series only when
the operator's allow-list has them or, without a list, for the first ``label_cap``
values a partition admits; everything else counts under ``other``, and beyond
``segment_cap`` segments a whole segment does. The admissions live in the partition's
meta record (``meta.admitted``), so a replay after a crash decides the same way;
overflow is counted per label in ``meta.overflow``. Device, support channel and reason are
enums and need no bound.

    >>> from types import SimpleNamespace
    >>> from streams.config import Settings
    >>> bounds = LabelBounds(("storefront", "channel"), Settings(label_cap=1))
    >>> admitted = {}
    >>> bounds.admit(SimpleNamespace(storefront="shop-a", channel=None), admitted); admitted
    {'storefront': ['shop-a']}
    >>> bounds.bound(("shop-a", "web"), admitted, {}), bounds.bound(("shop-b", "web"), admitted, {})
    (('shop-a', 'other'), ('other', 'other'))
"""

from __future__ import annotations

from typing import Any

from streams.config import Settings
from streams.contract import NO_CURRENCY
from streams.pipeline.families import UNKNOWN

OTHER = "other"  # where label values beyond the allow-list or the cap go
# Free-form labels; device, support_channel, reason: enums. A ticket's product_category is no segment
# label: the ticket family keeps it as a breakdown inside its cells (``breakdown``), bounded the same way.
CAPPED = ("storefront", "channel", "currency", "product_category")

Segment = tuple[str, ...]


class LabelBounds:
    """The label bounds of one family's segments (label names in segment order)."""

    def __init__(self, labels: tuple[str, ...], settings: Settings, breakdown: tuple[str, ...] = ()) -> None:
        self.labels = labels
        self.allowed = {name: settings.allowed_values(name) for name in (*labels, *breakdown) if name in CAPPED}
        self.label_cap = settings.label_cap
        self.segment_cap = settings.segment_cap
        self.memo: dict[Segment, Segment] = {}  # bound() of segments seen, dropped by reset()
        # free-form labels of this family without an allow-list: admitted as they come
        self.admitting = tuple(label for label in (*labels, *breakdown)
                               if label in CAPPED and self.allowed[label] is None)
        self._admitted_sets: dict[str, set[str]] = {}  # meta.admitted as sets, dropped by reset()

    def reset(self) -> None:
        """Forget what was derived from a meta record (after a restore replaced it)."""
        self.memo = {}
        self._admitted_sets = {}

    def bound(self, segment: Segment, admitted: dict[str, list[str]], segments: dict[Segment, Any]) -> Segment:
        """``segment`` with label values outside the allow-list or the cap as ``other``, or a
        whole ``other`` segment when ``segments`` (the partition's running totals) is full."""
        values = list(segment)
        for i, (label, value) in enumerate(zip(self.labels, segment)):
            if label not in CAPPED or value in (UNKNOWN, NO_CURRENCY, OTHER):
                continue
            allowed = self.allowed[label]
            if (value not in allowed) if allowed is not None else (value not in admitted.get(label, ())):
                values[i] = OTHER
        bounded = tuple(values)
        if bounded not in segments and len(segments) >= self.segment_cap:
            bounded = (OTHER,) * len(bounded)
        if len(self.memo) < 4 * self.segment_cap:  # bounded memo: an attack cannot grow it
            self.memo[segment] = bounded
        return bounded

    def value(self, label: str, value: str, admitted: dict[str, list[str]]) -> str:
        """One label value as its series would carry it."""
        allowed = self.allowed.get(label)
        if allowed is not None:
            return value if value in allowed else OTHER
        return value if value in admitted.get(label, ()) else OTHER

    def admit(self, body: Any, admitted: dict[str, list[str]]) -> None:
        """Give the event's free-form label values a series while the cap allows.

        Decided once per counted event, from the event alone, so a replay (which
        may skip the event for some records) admits in the same order.
        """
        sets = self._admitted_sets
        for label in self.admitting:  # inline: once per counted event and label (the hot path)
            value = getattr(body, label, None)
            if value is None:
                continue
            known = sets.get(label)
            if known is None:
                known = sets[label] = set(admitted.get(label, ()))
            if value not in known and len(known) < self.label_cap:
                known.add(value)
                admitted.setdefault(label, []).append(value)

    def count_overflow(self, raw: Segment, bounded: Segment, overflow: dict[str, int]) -> None:
        """Count an event that ``bound`` moved to ``other``: per label, or as a whole segment."""
        if all(value == OTHER for value in bounded) and any(value != OTHER for value in raw):
            overflow["segment"] = overflow.get("segment", 0) + 1
            return
        for label, before, after in zip(self.labels, raw, bounded):
            if before != after:
                overflow[label] = overflow.get(label, 0) + 1
