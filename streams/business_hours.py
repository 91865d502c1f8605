"""Business hours: each storefront's support calendar, and how much of a wait fell inside it.

Support desks (Zendesk, Gorgias) report first-response and resolution times twice: in calendar
time, and in business hours, the time the team was open. ``CXPULSE_BUSINESS_HOURS`` gives the
calendars, as JSON text or the path of a JSON file, one calendar per storefront and ``"*"`` for
every storefront not named (docs/operations.md, "Business hours")::

    {"shop-eu": {"timezone": "Europe/Berlin",
                 "hours": {"mon-fri": "09:00-12:30,13:30-18:00", "sat": "10:00-14:00"},
                 "holidays": ["2026-12-24", "2026-12-25"]},
     "*":       {"timezone": "America/New_York", "hours": {"mon-fri": "08:00-20:00"}}}

Opening hours are local wall-clock time of the calendar's time zone (daylight saving included),
per weekday (``mon`` .. ``sun``, or a range such as ``mon-fri``); a day not listed, and a
holiday (a local date), is closed. ``24:00`` closes at midnight; hours past midnight are written
on the next day (``fri 22:00-24:00`` and ``sat 00:00-02:00``). A storefront without a calendar
(and no ``"*"``) gets no business-hours times: only calendar time.

    >>> calendars = parse_calendars('{"*": {"timezone": "UTC", "hours": {"mon-fri": "09:00-17:00"}}}', "X")
    >>> friday_4pm = 1_796_342_400_000 + 16 * 3_600_000      # Fri 2026-12-04 16:00 UTC
    >>> monday_10am = friday_4pm + 3 * 86_400_000 - 6 * 3_600_000
    >>> calendars.get("any-shop").business_ms(friday_4pm, monday_10am) // 60_000   # 1 h Fri + 1 h Mon
    120
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from streams.errors import ConfigError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT = "*"  # the calendar of every storefront without its own
_DAY = timedelta(days=1)
EXAMPLE = '{"*": {"timezone": "Europe/Berlin", "hours": {"mon-fri": "09:00-18:00"}, "holidays": ["2026-12-25"]}}'


@dataclass(frozen=True)
class Calendar:
    """One storefront's opening hours: per weekday (Monday first) the open ranges in minutes after local
    midnight, sorted and disjoint; closed local dates."""

    timezone: str
    hours: tuple[tuple[tuple[int, int], ...], ...]
    holidays: frozenset[date] = frozenset()
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _days: dict = field(init=False, repr=False, compare=False)  # local date -> open ranges in Unix ms

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", ZoneInfo(self.timezone))
        object.__setattr__(self, "_days", {})

    def open_ms(self, day: date) -> tuple[tuple[int, int], ...]:
        """The open ranges of a local date as Unix ms [from, to)."""
        found = self._days.get(day)
        if found is None:
            if day in self.holidays:
                found = ()
            else:
                found = tuple((self._instant(day, start), self._instant(day, end))
                              for start, end in self.hours[day.weekday()])
            if len(self._days) > 4096:
                self._days.clear()
            self._days[day] = found
        return found

    def _instant(self, day: date, minute: int) -> int:
        if minute == 1440:
            day, minute = day + _DAY, 0
        local = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=self._zone)
        return int(local.timestamp()) * 1000

    def business_ms(self, start_ms: int, end_ms: int) -> int:
        """How much of [start, end) the storefront was open, in ms (0 when end <= start)."""
        if end_ms <= start_ms:
            return 0
        day = datetime.fromtimestamp(start_ms / 1000, self._zone).date() - _DAY  # a range may begin the day before
        last = datetime.fromtimestamp(end_ms / 1000, self._zone).date()
        total = 0
        while day <= last:
            for opened, closed in self.open_ms(day):
                overlap = min(closed, end_ms) - max(opened, start_ms)
                if overlap > 0:
                    total += overlap
            day += _DAY
        return total

    def advance(self, start_ms: int, business_ms: int) -> int:
        """The instant at which ``business_ms`` of opening hours have passed since ``start_ms`` (the
        simulator's agents work only while their storefront is open); at most ~3 years ahead.

            >>> cal = parse_calendars('{"*": {"timezone": "UTC", "hours": {"mon-fri": "09:00-17:00"}}}', "X").get("a")
            >>> friday_4pm = 1_796_342_400_000 + 16 * 3_600_000
            >>> (cal.advance(friday_4pm, 2 * 3_600_000) - friday_4pm) // 3_600_000   # 1 h Fri, 1 h Mon from 9:00
            66
        """
        day = datetime.fromtimestamp(start_ms / 1000, self._zone).date() - _DAY
        left = max(business_ms, 0)
        for _ in range(1100):
            for opened, closed in self.open_ms(day):
                begin = max(opened, start_ms)
                if closed > begin:
                    if left <= closed - begin:
                        return begin + left
                    left -= closed - begin
            day += _DAY
        return start_ms + business_ms


@dataclass(frozen=True)
class Calendars:
    """The calendars by storefront; ``get`` falls back to ``"*"``."""

    by_storefront: Mapping[str, Calendar]

    def get(self, storefront: str) -> Calendar | None:
        found = self.by_storefront.get(storefront)
        return found if found is not None else self.by_storefront.get(DEFAULT)

    def __bool__(self) -> bool:
        return bool(self.by_storefront)


NONE = Calendars({})


def parse_calendars(text: str, var: str = "CXPULSE_BUSINESS_HOURS") -> Calendars:
    """The calendars of ``var``'s value: JSON text (``{...}``) or the path of a JSON file; empty: none.
    Every mistake is a ConfigError naming ``var``, the storefront and the entry."""
    text = text.strip()
    if not text:
        return NONE
    source = "its JSON"
    if not text.startswith("{"):
        source = text
        try:
            with open(os.path.expanduser(text), "rb") as file:
                text = file.read().decode()
        except OSError as exc:
            raise ConfigError(f"{var}={source!r}: cannot read the file ({exc.strerror or exc}); give the path of "
                              f"a JSON file or the JSON itself, e.g. {EXAMPLE}") from None
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{var}: {source} is not valid JSON ({exc}); e.g. {EXAMPLE}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{var}: expects an object of storefront -> calendar, e.g. {EXAMPLE}")
    return Calendars({str(name): _calendar(var, str(name), spec) for name, spec in data.items()})


def _calendar(var: str, name: str, spec: Any) -> Calendar:
    where = f"{var}: storefront {name!r}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expects an object with timezone, hours and (optional) holidays")
    unknown = sorted(set(spec) - {"timezone", "hours", "holidays"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (a calendar has timezone, hours, holidays)")
    zone = spec.get("timezone")
    try:
        ZoneInfo(zone) if isinstance(zone, str) and zone else None
    except (ZoneInfoNotFoundError, ValueError):
        zone = None
    if not isinstance(zone, str) or not zone:
        raise ConfigError(f"{where}: timezone {spec.get('timezone')!r} is not an IANA time zone "
                          f"(e.g. Europe/Berlin, America/New_York, UTC)")
    hours = spec.get("hours")
    if not isinstance(hours, dict) or not hours:
        raise ConfigError(f"{where}: hours expects an object of weekday -> ranges, e.g. "
                          '{"mon-fri": "09:00-18:00", "sat": "10:00-14:00"}')
    per_day: list[list[tuple[int, int]] | None] = [None] * 7
    for days, ranges in hours.items():
        for day in _weekdays(where, days):
            if per_day[day] is not None:
                raise ConfigError(f"{where}: {WEEKDAYS[day]} is listed twice in hours")
            per_day[day] = _ranges(f"{where}: hours {days!r}", ranges)
    holidays = spec.get("holidays", [])
    if not isinstance(holidays, list):
        raise ConfigError(f"{where}: holidays expects a list of local dates, e.g. [\"2026-12-25\"]")
    closed = set()
    for text in holidays:
        try:
            closed.add(date.fromisoformat(text))
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: holiday {text!r} is not a date YYYY-MM-DD") from None
    return Calendar(zone, tuple(tuple(ranges or ()) for ranges in per_day), frozenset(closed))


def _weekdays(where: str, text: Any) -> list[int]:
    words = str(text).strip().lower().split("-")
    if len(words) in (1, 2) and all(word in WEEKDAYS for word in words):
        first, last = WEEKDAYS.index(words[0]), WEEKDAYS.index(words[-1])
        if first <= last:
            return list(range(first, last + 1))
    raise ConfigError(f"{where}: {text!r} in hours is not a weekday (mon .. sun) or a range of them (mon-fri)")


def _ranges(where: str, value: Any) -> list[tuple[int, int]]:
    parts = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else None
    if parts is None:
        raise ConfigError(f"{where}: expects ranges like \"09:00-12:30,13:30-18:00\" (or a list of them)")
    ranges = []
    for part in parts:
        bounds = str(part).strip().split("-")
        minutes = [_minute(bound) for bound in bounds] if len(bounds) == 2 else [None]
        if None in minutes or minutes[0] >= minutes[1]:  # type: ignore[operator]
            raise ConfigError(f"{where}: {str(part).strip()!r} is not a range HH:MM-HH:MM that ends after it begins "
                              "(24:00 is midnight; write hours past midnight on the next day)")
        ranges.append((minutes[0], minutes[1]))
    ranges.sort()
    for (_, end), (start, _) in zip(ranges, ranges[1:]):
        if start < end:
            raise ConfigError(f"{where}: ranges overlap")
    return ranges


def _minute(text: str) -> int | None:
    hour, _, minute = text.strip().partition(":")
    if not (hour.isdigit() and minute.isdigit() and len(minute) == 2):
        return None
    value = int(hour) * 60 + int(minute)
    return value if int(minute) < 60 and value <= 1440 else None
