"""How many inputs the fuzz suites tried in this run, printed in pytest's summary."""

from __future__ import annotations

from collections import Counter

TRIED: Counter[str] = Counter()


def count(what: str, n: int = 1) -> None:
    TRIED[what] += n
