"""A declared CX initiative: the record a user declares and every worker reads.

The start of the initiatives feature, beside the event contract: ``cxpulse initiative
declare`` (``cli.py``) builds an ``Initiative`` and publishes its JSON on a compacted
topic (``CXPULSE_TOPIC_INITIATIVES``, key = name; a newer declaration replaces an
older, a tombstone deletes it); ``reader.py`` reads them back in every worker,
``components.py`` sums each arm's day totals at scrape time and ``rules.py`` turns
those into the ROI. An initiative names the days it runs, the segment it treats,
a control (another segment over the same days, or the same segment over the days
before), the investment, its currency and the gross margin; a bad declaration is
a ``ConfigError`` naming every problem. Plain Python: no Kafka, no Prometheus.

    >>> day = 86_400_000
    >>> Initiative.from_json(Initiative("chat", day, 2 * day, {"channel": "app"}, None, 0, day,
    ...                                 1000.0, "USD", 0.4).to_json()).control_label
    'before'
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone

import orjson

from streams.contract import LABEL_PATTERN
from streams.days import DAY_MS
from streams.errors import ConfigError

KPIS = ("revenue_per_visitor", "conversion", "average_order_value")
SEGMENT_LABELS = ("storefront", "channel", "device")  # labels both sessions and orders carry
NAME = re.compile(LABEL_PATTERN)
MAX_INITIATIVES = 50  # initiative names are label values: bounded


@dataclass(frozen=True)
class Initiative:
    """One declared initiative; periods are whole UTC days, ``[start, end)`` in ms."""

    name: str
    start_ms: int
    end_ms: int | None  # None: running
    treated: dict[str, str]
    control: dict[str, str] | None  # None: the treated segment over the control period
    control_start_ms: int
    control_end_ms: int | None
    investment: float  # in major units of ``currency``
    currency: str
    margin: float  # gross margin, 0..1
    kpi: str = "revenue_per_visitor"
    description: str = ""

    def __post_init__(self) -> None:
        problems = []
        if not NAME.fullmatch(self.name):
            problems.append(f"name {self.name!r} must be a short lowercase label (a-z, 0-9, _ and -)")
        if self.kpi not in KPIS:
            problems.append(f"kpi {self.kpi!r} must be one of {', '.join(KPIS)}")
        if not 0 < self.margin <= 1:
            problems.append(f"gross margin {self.margin} must be a ratio in (0, 1], e.g. 0.4 for 40%")
        if not self.investment > 0:
            problems.append(f"investment {self.investment} must be positive")
        if not re.fullmatch(r"[A-Z]{3}", self.currency):
            problems.append(f"currency {self.currency!r} must be an ISO 4217 code such as USD")
        for what, segment in (("treated", self.treated), ("control", self.control or {})):
            for label, value in segment.items():
                if label not in SEGMENT_LABELS:
                    problems.append(f"{what} segment label {label!r} must be one of {', '.join(SEGMENT_LABELS)}")
                if not re.fullmatch(LABEL_PATTERN, value):
                    problems.append(f"{what} segment value {value!r} is not a label value")
        if not self.treated:
            problems.append("the treated segment needs at least one label=value")
        for what, start, end in (("", self.start_ms, self.end_ms),
                                 ("control ", self.control_start_ms, self.control_end_ms)):
            if start % DAY_MS or (end is not None and end % DAY_MS):
                problems.append(f"{what}period must be whole UTC days")
            if end is not None and end <= start:
                problems.append(f"{what}period must end after it starts")
        if self.control is None and self.control_end_ms is not None and self.control_end_ms > self.start_ms:
            problems.append("a before-period control must end when the initiative starts")
        if self.control is not None and self.control == self.treated:
            problems.append("the control segment must differ from the treated one")
        if problems:
            raise ConfigError(f"initiative {self.name!r}: " + "; ".join(problems))

    @property
    def treated_label(self) -> str:
        return _describe(self.treated)

    @property
    def control_label(self) -> str:
        return "before" if self.control is None else _describe(self.control)

    def arms(self) -> dict[str, tuple[dict[str, str], int, int | None]]:
        """arm -> (segment labels, first day ms, end ms or None)."""
        return {
            "treated": (self.treated, self.start_ms, self.end_ms),
            "control": (self.control if self.control is not None else self.treated,
                        self.control_start_ms, self.control_end_ms),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> "Initiative":
        fields = orjson.loads(data)
        if not isinstance(fields, dict):
            raise ConfigError("an initiative record must be a JSON object")
        try:
            return cls(**fields)
        except TypeError as error:
            raise ConfigError(f"initiative record has the wrong fields: {error}") from None


def _describe(segment: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(segment.items()))


def parse_segment(text: str) -> dict[str, str]:
    """``channel=app,device=mobile`` -> {"channel": "app", "device": "mobile"}.

        >>> parse_segment("storefront=harbor-tea, device=mobile")
        {'storefront': 'harbor-tea', 'device': 'mobile'}
    """
    out: dict[str, str] = {}
    for part in text.split(","):
        label, sep, value = part.strip().partition("=")
        if not sep:
            raise ConfigError(f"segment {text!r}: write label=value pairs, e.g. channel=app,device=mobile")
        out[label.strip()] = value.strip()
    return out


def day_ms(text: str) -> int:
    """``2026-01-31`` -> ms of that UTC midnight.

        >>> day_ms("2026-01-31") % DAY_MS, day_ms("2026-02-01") - day_ms("2026-01-31") == DAY_MS
        (0, True)
    """
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"date {text!r}: write YYYY-MM-DD (UTC days)") from None
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)


def matches(segment: tuple[str, ...], wanted: dict[str, str]) -> bool:
    """Does a session or order segment (storefront, channel, device[, currency]) fall in ``wanted``?"""
    values = dict(zip(SEGMENT_LABELS, segment))
    return all(values.get(label) == value for label, value in wanted.items())
