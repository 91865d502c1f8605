"""Hypothesis strategies for hostile input, generated from the event contract.

Valid events are built field by field from ``streams.contract.EVENT_TYPES`` (so a new
event type or field is fuzzed without touching this file); hostile ones replace,
drop or retype one field at a time, or are not events at all (random bytes,
invalid UTF-8, deep nesting, huge numbers and strings, NaN/Infinity literals,
timestamps far in the past or future, unknown types and versions).
"""

from __future__ import annotations

import string
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import strategies as st

from streams.contract import (
    AUTHORS,
    EVENT_TYPES,
    FAMILY_KEY,
    SCHEMA_VERSION,
    SCORE_RANGE,
    SURVEY_KINDS,
    EventType,
    Field,
)
from streams.contract import ENVELOPE

ID_CHARS = string.ascii_letters + string.digits + "_.:-"
LABEL_CHARS = string.ascii_lowercase + string.digits + "_-"

# The worker's clock in these tests: events are dated at or before it.
NOW = datetime.now(timezone.utc)
NOW_MS = int(NOW.timestamp() * 1000)
SKEW_MS = 300_000

ids = st.builds(lambda head, tail: head + tail,
                st.sampled_from(string.ascii_letters + string.digits), st.text(ID_CHARS, max_size=40))
labels = st.builds(lambda head, tail: head + tail,
                   st.sampled_from(string.ascii_lowercase + string.digits), st.text(LABEL_CHARS, max_size=20))
currencies = st.text(string.ascii_uppercase, min_size=3, max_size=3)


def _rfc3339(moment: datetime, offset_min: int, digits: int) -> str:
    local = moment.astimezone(timezone(timedelta(minutes=offset_min)))
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{local.microsecond:06d}{local.microsecond % 1000:03d}"[:digits]
    if offset_min == 0:
        return text + "Z"
    sign = "+" if offset_min > 0 else "-"
    return f"{text}{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"


# Valid timestamps: within the last two days (so on time or late, never in the future).
valid_timestamps = st.builds(
    _rfc3339,
    st.integers(0, 2 * 86_400_000).map(lambda back_ms: NOW - timedelta(milliseconds=back_ms)),
    st.integers(-23 * 60, 23 * 60),
    st.integers(0, 9),
)

# Hostile timestamps: far past/future (still well-formed), impossible dates, wrong shapes.
hostile_timestamps = st.one_of(
    st.builds(_rfc3339, st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                                     timezones=st.just(timezone.utc)),
              st.integers(-23 * 60 - 59, 23 * 60 + 59), st.integers(0, 9)),
    st.sampled_from([
        "0000-01-01T00:00:00Z", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59",
        "2025-02-30T00:00:00Z", "2025-13-01T00:00:00Z", "2025-01-01T24:00:00Z", "2025-01-01T23:59:60Z",
        "2025-01-01T00:00:00+24:00", "2025-01-01T00:00:00+99:99", "2025-01-01T00:00:00", "2025-01-01",
        "2025-01-01T00:00:00.Z", "2025-01-01T00:00:00.1234567890Z", "2025-01-01T00:00:00Z\n",
        "２０２５-01-01T00:00:00Z", "٢٠٢٥-01-01T00:00:00Z", "", "now", "9" * 400,
        "1970-01-01T00:00:00Z", "2262-04-11T23:47:16.854775807Z",
    ]),
    st.text(max_size=40),
)

# Values of every JSON type, the awkward ones included.
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 10**12, 10**12 + 1, 2**53 + 1, 1e300, -0.0, 5.0, 1.5, True, False, "", "0", "true",
                     "49.99", "null", "\x00", "\ud7ff", "é" * 3, "a" * 10_000]),
    st.text(max_size=60),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def valid_value(event_type: EventType, f: Field) -> st.SearchStrategy[Any]:
    if f.name == "score":
        raise AssertionError("score depends on kind: built in valid_event")
    if f.kind == "id":
        return ids
    if f.kind == "label":
        return labels
    if f.kind == "currency":
        return currencies
    if f.kind == "enum":
        return st.sampled_from(f.choices or tuple(EVENT_TYPES))
    if f.kind == "bool":
        return st.booleans()
    if f.kind == "minor":
        return st.integers(0, 10**12)
    if f.kind == "version":
        return st.just(SCHEMA_VERSION)
    if f.kind == "timestamp":
        return valid_timestamps
    raise AssertionError(f"no strategy for {f.kind}")


@st.composite
def valid_event(draw: st.DrawFn, type_name: str | None = None) -> dict[str, Any]:
    """A valid event of ``type_name`` (or any type), with a unique event_id."""
    name = type_name or draw(st.sampled_from(sorted(EVENT_TYPES)))
    event_type = EVENT_TYPES[name]
    body: dict[str, Any] = {"type": name, "event_id": uuid.uuid4().hex}
    for f in ENVELOPE + event_type.fields:
        if f.name in ("type", "event_id", "score"):
            continue
        if not f.required and draw(st.booleans()):
            continue
        body[f.name] = draw(valid_value(event_type, f))
    if name == "survey.answered":
        low, high = SCORE_RANGE[body["kind"]]
        body["score"] = draw(st.integers(low, high))
    if name == "order.returned" and ("amount_minor" in body) != ("currency" in body):
        body.pop("amount_minor", None)
        body.pop("currency", None)
    if name == "ticket.replied":
        body["author"] = draw(st.sampled_from(AUTHORS))
    if draw(st.integers(0, 9)) == 0:  # unknown extra fields are allowed, sometimes awkward
        body[draw(st.text(max_size=10).filter(lambda k: k not in body))] = draw(json_values)
    return body


def family_of(event: dict[str, Any]) -> str:
    return EVENT_TYPES[event["type"]].family


@st.composite
def hostile_event(draw: st.DrawFn) -> Any:
    """An object that may or may not be a valid event: one field dropped, retyped or pushed out of range."""
    body = draw(valid_event())
    name = body["type"]
    fields = [f.name for f in ENVELOPE + EVENT_TYPES[name].fields]
    how = draw(st.sampled_from(["drop", "retype", "timestamp", "type", "version", "score", "not_object", "keep"]))
    target = draw(st.sampled_from(fields))
    if how == "drop":
        body.pop(target, None)
    elif how == "retype":
        body[target] = draw(json_values)
    elif how == "timestamp":
        body["occurred_at"] = draw(hostile_timestamps)
    elif how == "type":
        body["type"] = draw(st.one_of(st.text(max_size=30), st.sampled_from(sorted(EVENT_TYPES)), json_values))
    elif how == "version":
        body["schema_version"] = draw(st.one_of(st.integers(-5, 5), json_values))
    elif how == "score" and name == "survey.answered":
        body["kind"] = draw(st.sampled_from(SURVEY_KINDS))
        body["score"] = draw(st.one_of(st.integers(-(2**63), 2**64 - 1), st.floats(), json_values))
    elif how == "not_object":
        return draw(json_values)
    return body


# Raw message bytes: random, invalid UTF-8, unbalanced, NaN/Infinity, huge numbers.
def _nested(depth: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * depth + close * depth


hostile_bytes = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(min_size=1, max_size=50).map(lambda b: b'{"type": "' + b + b'"}'),
    st.sampled_from([
        b"", b"null", b"true", b"42", b'"x"', b"[]", b"{}", b"[null]", b"[[]]", b"[{}]", b"NaN", b"Infinity",
        b"-Infinity", b'{"score": NaN}', b'{"score": Infinity}', b"1e400", b"-1e400", b"1" * 5000,
        b'{"a": ' + b"9" * 100_000 + b"}", b"\xff\xfe{", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
        b'{"a":"\\ud800"}', b"\x00" * 10, b"{" * 2000, _nested(1025), _nested(5000),  # _nested(255..1024): see the xfail tests
        b'{"a":' * 300 + b"1" + b"}" * 300, b'[{"a":' + _nested(100) + b"}]", b"\xef\xbb\xbf{}",
    ]),
)
