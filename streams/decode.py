"""Bytes -> events, or a rejection with a reason: the second stop of the flow.

A Kafka message carries one event (a JSON object) or a batch (a JSON array of
events). ``decode_message`` never raises for bad input: every problem comes
back as a ``Rejection`` value that the worker parks in the dead-letter topic.
Validation is a compiled check per event type built from ``contract.py``; a
generic JSON Schema engine per event costs several times the decode itself
(measured by ``python -m bench.layer``; see docs/benchmarks.md), so the schemas are for producers and tests.

    >>> ok, bad = decode_message(b'[]', "order")
    >>> bad[0].reason
    'empty_batch'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import orjson

from streams.contract import (
    CURRENCY_PATTERN,
    EVENT_TYPES,
    FAMILY_KEY,
    ID_PATTERN,
    LABEL_PATTERN,
    SCHEMA_VERSION,
    SCORE_RANGE,
    TIMESTAMP_PATTERN,
    EventType,
    Family,
    Field,
    MAX_MINOR,
    partition_for,
)
from streams.errors import InvalidEvent, Reason

DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
DEFAULT_MAX_BATCH_EVENTS = 10_000

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)
# fullmatch: the patterns end in `$`, which Python lets match before a final newline
_id_ok = re.compile(ID_PATTERN).fullmatch
_label_ok = re.compile(LABEL_PATTERN).fullmatch
_currency_ok = re.compile(CURRENCY_PATTERN).fullmatch
_timestamp_ok = re.compile(TIMESTAMP_PATTERN).fullmatch


@dataclass(frozen=True, slots=True)
class Event:
    """A valid event: its parsed body and its event time in epoch milliseconds."""

    body: dict[str, Any]
    ts_ms: int
    index: int  # position in its message (0 for a single-event message)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message, or one event of a batch, was refused."""

    reason: Reason
    detail: str
    index: int | None  # position in a batch; None when the whole message is refused
    raw: bytes  # the original message, or the re-encoded event of a batch


_SAFE_TO_SHOW = re.compile(r"[A-Za-z0-9_.:+\- ]{0,40}").fullmatch


def _show(value: str) -> str:
    """A refused value for a message, unless it might be personal data (an email,
    a name): the detail goes to logs and dead-letter headers."""
    return repr(value) if _SAFE_TO_SHOW(value) and " " not in value.strip() else f"a {len(value)}-character string"


def reencode(obj: Any, fallback: bytes) -> bytes:
    """JSON of a parsed event, for the dead-letter topic; ``fallback`` when it cannot be
    written back (orjson reads 1024 levels of nesting but writes 254)."""
    try:
        return orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):
        return fallback


class _Invalid(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def parse_timestamp_ms(text: str) -> int:
    """RFC 3339 with offset -> epoch milliseconds (exact integer arithmetic).

        >>> parse_timestamp_ms("1970-01-01T00:00:01.5+00:00")
        1500
    """
    if not _timestamp_ok(text):
        raise _Invalid("bad_timestamp", f"occurred_at {_show(text)} is not RFC 3339 with an offset")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise _Invalid("bad_timestamp", f"occurred_at {_show(text)} is not a real date and time") from None
    return (moment - _EPOCH) // _MS


# Label and currency values that passed their pattern, per kind: a store sends a handful
# of distinct ones, so the regex runs once per value instead of once per event. Bounded:
# once full, new values are still checked, just not remembered (the patterns are pure, so
# a remembered value is valid for good). Ids are not remembered: nearly every one is new.
KNOWN_GOOD_MAX = 1024
_KNOWN_GOOD: dict[str, set[str]] = {"label": set(), "currency": set()}


def _check_field(f: Field) -> Callable[[Any], Any]:
    """A checker that returns the (normalised) value or raises _Invalid."""
    name = f.name

    def wrong(expected: str, value: Any) -> _Invalid:
        return _Invalid("wrong_type", f"{name} must be {expected}, got {type(value).__name__}")

    if f.kind in ("id", "label", "currency"):
        pattern = {"id": _id_ok, "label": _label_ok, "currency": _currency_ok}[f.kind]
        what = {"id": "an id (1-128 of A-Z a-z 0-9 _ . : -)",
                "label": "a lowercase label (a-z 0-9 _ -, up to 63)",
                "currency": "an ISO 4217 code like EUR"}[f.kind]
        known = _KNOWN_GOOD.get(f.kind)

        def check(value: Any) -> Any:
            if type(value) is not str:
                raise wrong("a string", value)
            if known is not None and value in known:
                return value
            if not pattern(value):
                shown = f"a {len(value)}-character string" if f.kind == "id" else _show(value)  # ids: never echoed
                raise _Invalid("bad_value", f"{name} must be {what}, got {shown}")
            if known is not None and len(known) < KNOWN_GOOD_MAX:
                known.add(value)
            return value
        return check
    if f.kind == "enum":
        choices = frozenset(f.choices)

        def check(value: Any) -> Any:
            if type(value) is not str:
                raise wrong("a string", value)
            if value not in choices:
                raise _Invalid("bad_value", f"{name} must be one of {sorted(choices)}, got {_show(value)}")
            return value
        return check
    if f.kind == "bool":
        def check(value: Any) -> Any:
            if type(value) is not bool:
                raise wrong("true or false", value)
            return value
        return check
    if f.kind in ("int", "minor", "version"):
        def check(value: Any) -> Any:
            kind = type(value)
            if kind is float and value.is_integer():
                if abs(value) > 2**53:  # beyond exact integers (and before int() makes it unwritable)
                    raise _Invalid("out_of_range", f"{name} is too large ({value:.3g})")
                value = int(value)  # JSON Schema's "integer" admits 5.0; so do we
            elif kind is not int:
                raise wrong("an integer", value)
            if f.kind == "minor" and not 0 <= value <= MAX_MINOR:
                raise _Invalid("out_of_range", f"{name} must be 0..{MAX_MINOR}, got {value}")
            if f.kind == "version" and value != SCHEMA_VERSION:
                raise _Invalid("unsupported_version", f"schema_version {value} is not supported (this worker reads {SCHEMA_VERSION})")
            return value
        return check
    if f.kind == "timestamp":
        def check(value: Any) -> Any:
            if type(value) is not str:
                raise wrong("an RFC 3339 string", value)
            return value
        return check
    raise AssertionError(f"unknown field kind {f.kind}")


def _compile(event_type: EventType) -> list[tuple[str, bool, Callable[[Any], Any]]]:
    from streams.contract import ENVELOPE

    fields = [f for f in ENVELOPE if f.name != "type"] + list(event_type.fields)
    return [(f.name, f.required, _check_field(f)) for f in fields]


_CHECKS = {name: _compile(t) for name, t in EVENT_TYPES.items()}


def check_event(obj: Any, family: Family | None = None) -> int:
    """Validate one parsed event; return its event time in ms or raise _Invalid.

    ``family`` is the family of the topic it came from (None: any family).
    """
    if type(obj) is not dict:
        raise _Invalid("not_object", f"an event must be a JSON object, got {type(obj).__name__}")
    type_name = obj.get("type")
    if type_name is None:
        raise _Invalid("missing_field", "type is required")
    if type(type_name) is not str:
        raise _Invalid("wrong_type", "type must be a string")
    checks = _CHECKS.get(type_name)
    if checks is None:
        raise _Invalid("unknown_type", f"type {_show(type_name)} is not an event type of the contract")
    event_type = EVENT_TYPES[type_name]
    if family is not None and event_type.family != family:
        raise _Invalid("wrong_topic", f"{type_name} belongs on the {event_type.family} topic, not the {family} one")
    for name, required, check in checks:
        value = obj.get(name)
        if value is None:
            if required:
                raise _Invalid("missing_field", f"{name} is required for {type_name}")
            continue
        normalised = check(value)
        if normalised is not value:
            obj[name] = normalised
    if type_name == "survey.answered":
        low, high = SCORE_RANGE[obj["kind"]]
        if not low <= obj["score"] <= high:
            raise _Invalid("out_of_range", f"a {obj['kind']} score must be {low}..{high}, got {obj['score']}")
    elif type_name == "order.returned" and (obj.get("amount_minor") is None) != (obj.get("currency") is None):
        raise _Invalid("missing_field", "order.returned needs currency with amount_minor")
    return parse_timestamp_ms(obj["occurred_at"])


def validate_event(obj: Any, family: Family | None = None) -> int:
    """The producer-side check: return the event time in ms or raise InvalidEvent.

        >>> validate_event({"type": "nope"})
        Traceback (most recent call last):
        streams.errors.InvalidEvent: unknown_type: type 'nope' is not an event type of the contract
    """
    try:
        return check_event(obj, family)
    except _Invalid as exc:
        raise InvalidEvent(exc.reason, exc.detail) from None


def decode_message(
    value: bytes | None,
    family: Family,
    *,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_events: int = DEFAULT_MAX_BATCH_EVENTS,
    not_after_ms: int | None = None,
    partition: int | None = None,
    partitions: int = 1,
) -> tuple[list[Event], list[Rejection]]:
    """One Kafka message value -> (valid events, rejections). Never raises.

    ``not_after_ms``: events later than this (the worker's clock plus the allowed
    skew) are refused as ``future_timestamp``, so one bad clock cannot push the
    watermark past every open window. ``partition`` (of ``partitions``): the
    message's partition; an event of a batch whose own key maps elsewhere is
    refused as ``wrong_partition`` (the batching rule, docs/events.md: a ticket's
    replies or a session's funnel must share the partition that follows them).

        >>> events, _ = decode_message(b'{"type": "x"}', "order")
        >>> events
        []
    """
    raw = value or b""
    if len(raw) > max_bytes:
        return [], [Rejection("oversized", f"message of {len(raw)} bytes is over {max_bytes}", None, raw)]
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return [], [Rejection("not_utf8", "message is not valid UTF-8", None, raw)]
        return [], [Rejection("not_json", f"not JSON: {str(exc)[:120]}", None, raw)]
    if type(parsed) is list:
        if not parsed:
            return [], [Rejection("empty_batch", "a batch must hold at least one event", None, raw)]
        if len(parsed) > max_events:
            return [], [Rejection("too_many_events", f"batch of {len(parsed)} events is over {max_events}", None, raw)]
        batched = True
        items = parsed
    else:
        batched = False
        items = [parsed]
    events: list[Event] = []
    rejections: list[Rejection] = []
    check_key = batched and partition is not None and partitions > 1
    key_field = FAMILY_KEY[family]
    for index, obj in enumerate(items):
        try:
            ts_ms = check_event(obj, family)
            if not_after_ms is not None and ts_ms > not_after_ms:
                raise _Invalid("future_timestamp", f"occurred_at is {ts_ms - not_after_ms} ms past the allowed clock skew")
            if check_key and _partition_of(obj[key_field], partitions) != partition:
                raise _Invalid("wrong_partition", f"{key_field} maps to partition "
                               f"{_partition_of(obj[key_field], partitions)}, not this batch's {partition}: batch "
                               "only events whose key maps to the message's partition")
        except _Invalid as exc:
            rejections.append(Rejection(
                exc.reason, exc.detail,
                index if batched else None,
                reencode(obj, raw) if batched else raw,
            ))
            continue
        events.append(Event(obj, ts_ms, index))
    return events, rejections


# Partitions of recent keys: the events of a session or a ticket share their key, so most
# batched events hit. Bounded: cleared when full (it is only a cache of a pure function).
_KEY_PARTITIONS: dict[tuple[str, int], int] = {}
_KEY_PARTITIONS_MAX = 65_536


def _partition_of(key: str, partitions: int) -> int:
    found = _KEY_PARTITIONS.get((key, partitions))
    if found is None:
        if len(_KEY_PARTITIONS) >= _KEY_PARTITIONS_MAX:
            _KEY_PARTITIONS.clear()
        found = _KEY_PARTITIONS[key, partitions] = partition_for(key, partitions)
    return found
