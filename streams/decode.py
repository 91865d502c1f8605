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
from typing import Any, Callable, Literal, NamedTuple, Optional, Union

import msgspec
import orjson

from operator import attrgetter
from typing import Annotated

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


class Event(NamedTuple):
    """A valid event: its body (a struct of its event type: ``body.storefront``), its event
    time in epoch milliseconds, and its position in its message (0 for a single event)."""

    body: Any
    ts_ms: int
    index: int


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

    Valid events take the fast path: msgspec decodes and validates them in C into a
    struct of their event type (``STRUCTS``). Anything it refuses goes through the
    checker above, which says why (or accepts what msgspec is stricter about, such as
    ``5.0`` for an integer): the reasons are the checker's, the speed the fast path's.

        >>> events, _ = decode_message(b'{"type": "x"}', "order")
        >>> events
        []
    """
    raw = value or b""
    if len(raw) > max_bytes:
        return [], [Rejection("oversized", f"message of {len(raw)} bytes is over {max_bytes}", None, raw)]
    events: list[Event] = []
    rejections: list[Rejection] = []
    fast = _FAST[family]
    if raw[:1] == b"[":
        try:
            items = _RAW_LIST.decode(raw)
        except _FAST_ERRORS:
            return _slow_message(raw, family, max_events, not_after_ms, partition, partitions)
        if not items or len(items) > max_events:
            return _slow_message(raw, family, max_events, not_after_ms, partition, partitions)
        check_key = partition is not None and partitions > 1
        key_field = FAMILY_KEY[family]
        for index, item in enumerate(items):
            event = _fast_event(fast, item, index)
            if event is None:
                _slow_event(bytes(item), family, index, True, raw, not_after_ms, events, rejections,
                            partition if check_key else None, partitions)
                continue
            if not_after_ms is not None and event.ts_ms > not_after_ms:
                rejections.append(_future(event.ts_ms, not_after_ms, index, bytes(item)))
            elif check_key and _partition_of(getattr(event.body, key_field), partitions) != partition:
                rejections.append(_wrong_partition(key_field, getattr(event.body, key_field), partitions, partition,
                                                   index, bytes(item)))
            else:
                events.append(event)
        return events, rejections
    event = _fast_event(fast, raw, 0)
    if event is None:
        return _slow_message(raw, family, max_events, not_after_ms, partition, partitions)
    if not_after_ms is not None and event.ts_ms > not_after_ms:
        return [], [_future(event.ts_ms, not_after_ms, None, raw)]
    return [event], []


def _future(ts_ms: int, not_after_ms: int, index: int | None, raw: bytes) -> Rejection:
    return Rejection("future_timestamp", f"occurred_at is {ts_ms - not_after_ms} ms past the allowed clock skew",
                     index, raw)


def _wrong_partition(key_field: str, key: str, partitions: int, partition: int, index: int | None,
                     raw: bytes) -> Rejection:
    return Rejection("wrong_partition", f"{key_field} maps to partition {_partition_of(key, partitions)}, not this "
                     f"batch's {partition}: batch only events whose key maps to the message's partition", index, raw)


def _slow_message(raw: bytes, family: Family, max_events: int, not_after_ms: int | None, partition: int | None,
                  partitions: int) -> tuple[list[Event], list[Rejection]]:
    """The checker's path for a message the fast path refused: every reason, exactly."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return [], [Rejection("not_utf8", "message is not valid UTF-8", None, raw)]
        return [], [Rejection("not_json", f"not JSON: {str(exc)[:120]}", None, raw)]
    events: list[Event] = []
    rejections: list[Rejection] = []
    if type(parsed) is list:
        if not parsed:
            return [], [Rejection("empty_batch", "a batch must hold at least one event", None, raw)]
        if len(parsed) > max_events:
            return [], [Rejection("too_many_events", f"batch of {len(parsed)} events is over {max_events}", None, raw)]
        check = partition if partitions > 1 else None
        for index, obj in enumerate(parsed):
            _check_one(obj, family, index, True, raw, not_after_ms, events, rejections, check, partitions)
    else:
        _check_one(parsed, family, 0, False, raw, not_after_ms, events, rejections, None, partitions)
    return events, rejections


def _slow_event(item: bytes, family: Family, index: int, batched: bool, raw: bytes, not_after_ms: int | None,
                events: list[Event], rejections: list[Rejection], partition: int | None, partitions: int) -> None:
    _check_one(orjson.loads(item), family, index, batched, raw, not_after_ms, events, rejections, partition,
               partitions)


def _check_one(obj: Any, family: Family, index: int, batched: bool, raw: bytes, not_after_ms: int | None,
               events: list[Event], rejections: list[Rejection], partition: int | None, partitions: int) -> None:
    key_field = FAMILY_KEY[family]
    try:
        ts_ms = check_event(obj, family)
        if not_after_ms is not None and ts_ms > not_after_ms:
            raise _Invalid("future_timestamp", f"occurred_at is {ts_ms - not_after_ms} ms past the allowed clock skew")
        if partition is not None and _partition_of(obj[key_field], partitions) != partition:
            raise _Invalid("wrong_partition", f"{key_field} maps to partition "
                           f"{_partition_of(obj[key_field], partitions)}, not this batch's {partition}: batch "
                           "only events whose key maps to the message's partition")
    except _Invalid as exc:
        rejections.append(Rejection(exc.reason, exc.detail, index if batched else None,
                                    reencode(obj, raw) if batched else raw))
        return
    # accepted by the checker (e.g. 5.0 for an integer): the same struct as the fast path's
    events.append(Event(msgspec.convert(obj, STRUCTS[obj["type"]]), ts_ms, index))


# ---------------------------------------------------------------- the fast path
_PATTERN_KINDS = {"id": ID_PATTERN, "label": LABEL_PATTERN, "currency": CURRENCY_PATTERN,
                  "timestamp": TIMESTAMP_PATTERN}
_LENGTHS = {"id": (1, 128), "label": (1, 63), "currency": (3, 3), "timestamp": (20, 40)}


def _annotation(f: Field) -> Any:
    """The msgspec type of a contract field. String patterns are not msgspec's to check (it
    calls Python's regex once per field, 4x the decode): one combined expression per event
    type checks them all (``_patterns``); msgspec checks the lengths, so a present empty
    string never passes for an absent optional field there."""
    if f.kind in _PATTERN_KINDS:
        low, high = _LENGTHS[f.kind]
        kind: Any = Annotated[str, msgspec.Meta(min_length=low, max_length=high)]
    elif f.kind == "enum":
        kind = Literal[f.choices]  # type: ignore[valid-type]
    elif f.kind == "bool":
        kind = bool
    elif f.kind == "minor":
        kind = Annotated[int, msgspec.Meta(ge=0, le=MAX_MINOR)]
    elif f.kind == "version":
        kind = Literal[SCHEMA_VERSION]  # type: ignore[valid-type]
    else:
        kind = int
    return kind if f.required else Optional[kind]


def _fields(event_type: EventType) -> list[Field]:
    from streams.contract import ENVELOPE

    return [f for f in ENVELOPE if f.name != "type"] + list(event_type.fields)


def _struct(event_type: EventType) -> type:
    spec = [(f.name, _annotation(f)) if f.required else (f.name, _annotation(f), None) for f in _fields(event_type)]
    name = "".join(part.title() for part in event_type.name.replace(".", "_").split("_"))
    return msgspec.defstruct(name, spec, tag_field="type", tag=event_type.name, kw_only=True, gc=False)


def _patterns(event_type: EventType) -> tuple[Callable[[Any], tuple], Callable[[str], Any]]:
    """(the event's pattern-checked fields as a tuple, one expression matching them joined by
    US): every field's own pattern (the contract's, unanchored), optional ones may be empty."""
    fields = [f for f in _fields(event_type) if f.kind in _PATTERN_KINDS]
    parts = [f"(?:{_PATTERN_KINDS[f.kind][1:-1]})" + ("" if f.required else "?") for f in fields]
    return attrgetter(*(f.name for f in fields)), re.compile("\x1f".join(parts)).fullmatch


# One struct per event type (``body.storefront``; ``type(body).TYPE`` is the event type).
STRUCTS: dict[str, type] = {name: _struct(t) for name, t in EVENT_TYPES.items()}
for _name, _cls in STRUCTS.items():
    _cls.TYPE = _name  # type: ignore[attr-defined]
    _cls.PATTERNS = _patterns(EVENT_TYPES[_name])  # type: ignore[attr-defined]
_FAST = {family: msgspec.json.Decoder(Union[tuple(cls for name, cls in STRUCTS.items()  # type: ignore[misc]
                                                   if EVENT_TYPES[name].family == family)])
         for family in ("session", "order", "ticket", "survey")}
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])
# msgspec refuses with DecodeError (and ValidationError, a subclass), or runs out of stack
# on absurd nesting: either way the checker says why.
_FAST_ERRORS = (msgspec.DecodeError, RecursionError, ValueError)


def as_dict(body: Any) -> dict[str, Any]:
    """An event body as the JSON object it came from (its contract fields; absent ones left out).

        >>> as_dict(decode_message(b'{"type": "ticket.resolved", "event_id": "e", "schema_version": 1, '
        ...                       b'"occurred_at": "2026-01-01T00:00:00Z", "storefront": "s", "ticket_id": "t"}',
        ...                       "ticket")[0][0].body)["ticket_id"]
        't'
    """
    return {"type": body.TYPE, **{k: v for k, v in msgspec.structs.asdict(body).items() if v is not None}}


def _fast_event(decoder: Any, data: Any, index: int) -> Event | None:
    """The event, or None where the checker must look (refused, or a check msgspec lacks)."""
    try:
        body = decoder.decode(data)
    except _FAST_ERRORS:
        return None
    values, matches = body.PATTERNS
    if not matches("\x1f".join([value or "" for value in values(body)])):
        return None
    kind = body.TYPE
    if kind == "survey.answered":
        low, high = SCORE_RANGE[body.kind]
        if not low <= body.score <= high:
            return None
    elif kind == "order.returned" and (body.amount_minor is None) != (body.currency is None):
        return None
    ts_ms = _timestamp_ms(body.occurred_at)
    if ts_ms is None:
        return None
    return Event(body, ts_ms, index)


# Epoch seconds of "YYYY-MM-DDTHH:MM:SS" + offset, remembered: events of one second share it.
_SECONDS: dict[str, int] = {}
_SECONDS_MAX = 100_000


def _timestamp_ms(text: str) -> int | None:
    """RFC 3339 (already matched against TIMESTAMP_PATTERN) -> epoch ms, exactly as
    ``parse_timestamp_ms`` (floored to the millisecond); None if not a real date-time."""
    if text[-1] == "Z":
        offset, fraction = "Z", text[19:-1]
    else:
        offset, fraction = text[-6:], text[19:-6]
    whole = text[:19] + offset
    seconds = _SECONDS.get(whole)
    if seconds is None:
        try:
            moment = datetime.fromisoformat(text[:19] + ("+00:00" if offset == "Z" else offset))
        except ValueError:
            return None
        seconds = (moment - _EPOCH) // timedelta(seconds=1)
        if len(_SECONDS) >= _SECONDS_MAX:
            _SECONDS.clear()
        _SECONDS[whole] = seconds
    return seconds * 1000 + (int(fraction[1:4].ljust(3, "0")) if fraction else 0)


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
