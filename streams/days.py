"""UTC days and ISO weeks in epoch milliseconds: the calendar arithmetic the pipeline's day
totals, the customer cohorts, the initiatives and the config share (the report's own
``report/weeks.py`` speaks datetimes and Unix seconds, for PromQL).

    >>> iso_week(1_795_000_000_000), day_label(week_start_ms(1_795_000_000_000))
    ('2026-W47', '2026-11-16')
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS


def day_start_ms(ts_ms: int) -> int:
    """00:00 UTC of the day holding ``ts_ms``."""
    return ts_ms - ts_ms % DAY_MS


def week_start_ms(ts_ms: int) -> int:
    """Monday 00:00 UTC of the ISO week holding ``ts_ms`` (1970-01-01 was a Thursday)."""
    return ts_ms - (ts_ms + 3 * DAY_MS) % WEEK_MS


def iso_week(ts_ms: int) -> str:
    """The ISO week of an event time, the cohort label: ``2026-W47``.

        >>> iso_week(1_795_000_000_000)
        '2026-W47'
    """
    return _week_label(week_start_ms(ts_ms))


@functools.lru_cache(maxsize=4096)  # one per Monday: every fact asks for the weeks of all its customer's events
def _week_label(monday_ms: int) -> str:
    year, week, _ = datetime.fromtimestamp(monday_ms / 1000, timezone.utc).isocalendar()
    return f"{year}-W{week:02d}"


@functools.lru_cache(maxsize=4096)  # period starts: a few distinct values, asked for every order of every fact
def day_label(ts_ms: int) -> str:
    """The UTC date of ``ts_ms``: ``2026-01-26``."""
    return datetime.fromtimestamp(ts_ms / 1000, timezone.utc).strftime("%Y-%m-%d")
