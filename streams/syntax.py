"""The syntax of setting values users type: durations and Kafka broker lists.

Durations take a unit (``500ms``, ``90s``, ``5m``, ``2h``, ``30d``): a bare number
is refused, it is ambiguous. ``format_duration`` writes one back in the largest
unit that divides it, as messages and generated rules show it. A broker list is
``host:port[,host:port...]``. ``streams.config`` reads and checks settings with
these; they are also importable from there.
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
DURATION_EXAMPLES = "500ms, 90s, 5m, 2h or 30d"
# host:port, the host a name, an IPv4 address or a bracketed IPv6 address.
_SERVER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9])?):(\d{1,5})$")


def parse_duration_ms(text: str) -> int:
    """'90s' -> 90000. Units: ms, s, m, h, d; a bare number is refused (ambiguous).

        >>> parse_duration_ms("5m")
        300000
    """
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"a duration with a unit, like {DURATION_EXAMPLES}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def format_duration(ms: int) -> str:
    """300000 -> '5m' (the largest unit that divides it)."""
    for unit in ("d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0 and ms >= _UNIT_MS[unit]:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def bootstrap_problem(text: str) -> str | None:
    """Why ``text`` is not ``host:port[,host:port...]``, or None when it is.

        >>> bootstrap_problem("kafka-1:9092, kafka-2:9092") is None
        True
        >>> bootstrap_problem("notahost")
        "'notahost' has no :port"
    """
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        return "it is empty"
    for part in parts:
        if not part:
            return "it has an empty entry (a stray comma?)"
        if ":" not in part:
            return f"{part!r} has no :port"
        match = _SERVER.match(part)
        if not match:
            return f"{part!r} is not host:port"
        if not 1 <= int(match.group(2)) <= 65535:
            return f"{part!r} has a port outside 1-65535"
    return None
