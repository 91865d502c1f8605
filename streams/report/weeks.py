"""The report's calendar: ISO weeks, Monday 00:00 UTC to the next Monday 00:00 UTC.

The first thing ``cxpulse report`` decides is which week it reports (``--week``, or
the last complete one) and which week it compares with (the one before). Every
query of the report is evaluated at a week's end (``Week.end_s``, Unix seconds),
and first-order cohorts are labelled with the same ISO weeks. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone


DAY_S = 86_400
WEEK_S = 7 * DAY_S


@dataclass(frozen=True)
class Week:
    """An ISO week, Monday 00:00 UTC to the next Monday 00:00 UTC.

        >>> w = Week.parse("2026-W47"); (w.start.date().isoformat(), w.previous().label)
        ('2026-11-16', '2026-W46')
    """

    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> "Week":
        match = re.fullmatch(r"(\d{4})-?W(\d{1,2})", text.strip(), re.IGNORECASE)
        if match:
            year, number = int(match[1]), int(match[2])
            try:
                datetime.fromisocalendar(year, number, 1)
                return cls(year, number)
            except ValueError:
                pass
        raise ValueError(f"{text!r} is not an ISO week: write YYYY-Www, e.g. 2026-W47 (weeks start on Monday, UTC)")

    @classmethod
    def containing(cls, moment: datetime) -> "Week":
        year, number, _ = moment.astimezone(timezone.utc).isocalendar()
        return cls(year, number)

    @classmethod
    def last_complete(cls, now: datetime) -> "Week":
        """The latest week that has ended at ``now``: Monday 2026-11-23 (any hour) -> 2026-W47."""
        return cls.containing(now - timedelta(days=7))

    @property
    def label(self) -> str:
        return f"{self.year}-W{self.number:02d}"

    @property
    def start(self) -> datetime:
        return datetime.fromisocalendar(self.year, self.number, 1).replace(tzinfo=timezone.utc)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=7)

    @property
    def end_s(self) -> int:
        return int(self.end.timestamp())

    def previous(self) -> "Week":
        return Week.containing(self.start - timedelta(days=1))

    def days(self) -> str:
        """``16-22 Nov 2026``"""
        first, last = self.start, self.end - timedelta(days=1)
        if first.month == last.month:
            return f"{first.day}-{last.day} {last:%b %Y}"
        year = f" {first.year}" if first.year != last.year else ""
        return f"{first.day} {first:%b}{year} - {last.day} {last:%b %Y}"
