"""Hostile input against the decoder and partition state: nothing escapes, nothing valid is lost.

Property-based (hypothesis) over ``decode_message`` and ``PartitionState.apply`` with
events generated from the contract (``tests/fuzz/strategies.py``). The properties:

- ``decode_message`` never raises, whatever the bytes;
- every rejection carries a reason of ``streams.errors.REASONS``;
- every event of a batch comes out, as an event or as a rejection, and every valid
  event of a batch comes out as an event, whatever its neighbours are;
- ``PartitionState.apply`` on decoded hostile batches never raises, and its counters
  add up: events + late + duplicates + rejected = inputs; a replay changes nothing.

The number of inputs tried is printed at the end of the run (``fuzz inputs tried``).
A coverage-guided run of the decoder is in ``tests/fuzz/atheris_decode.py``.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from streams.config import Settings
from streams.contract import ENVELOPE, EVENT_TYPES, FAMILIES
from streams.decode import decode_message
from streams.errors import REASONS
from streams.pipeline.records import Message
from streams.pipeline.window_state import PartitionState
from tests.fuzz import tally
from tests.fuzz.strategies import (
    NOW_MS,
    SKEW_MS,
    family_of,
    hostile_bytes,
    hostile_event,
    json_values,
    valid_event,
)

NOT_AFTER = NOW_MS + SKEW_MS
# database=None: no replay of examples saved by earlier runs, so a run's count is its own.
FUZZ = hsettings(max_examples=1500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_SMALL = hsettings(max_examples=400, deadline=None, database=None,
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def decode(raw: bytes, family: str, **limits: int):
    """decode_message with the worker's clock check; counts the input."""
    tally.count("decode_message")
    return decode_message(raw, family, not_after_ms=NOT_AFTER, **limits)


def check_rejections(rejections) -> None:
    for rejection in rejections:
        assert rejection.reason in REASONS, rejection
        assert isinstance(rejection.detail, str) and rejection.detail
        assert isinstance(rejection.raw, bytes)


# ------------------------------------------------------------------ decode_message
@FUZZ
@given(raw=hostile_bytes, family=st.sampled_from(FAMILIES))
def test_random_bytes_never_raise(raw: bytes, family: str) -> None:
    events, rejections = decode(raw, family)
    check_rejections(rejections)
    assert events or rejections


@FUZZ
@given(event=valid_event())
def test_every_valid_event_is_accepted(event: dict[str, Any]) -> None:
    events, rejections = decode(orjson.dumps(event), family_of(event))
    assert not rejections, (rejections, event)
    assert [e.body.event_id for e in events] == [event["event_id"]]


@FUZZ
@given(event=valid_event(), other=st.sampled_from(FAMILIES))
def test_wrong_topic(event: dict[str, Any], other: str) -> None:
    events, rejections = decode(orjson.dumps(event), other)
    if other == family_of(event):
        assert events and not rejections
    else:
        assert [r.reason for r in rejections] == ["wrong_topic"]


@FUZZ
@given(event=valid_event(), data=st.data())
def test_missing_required_field_is_missing_field(event: dict[str, Any], data: st.DataObject) -> None:
    required = [f.name for f in ENVELOPE + EVENT_TYPES[event["type"]].fields if f.required]
    name = data.draw(st.sampled_from(required))
    del event[name]
    family = family_of(event) if name != "type" else "session"
    _, rejections = decode(orjson.dumps(event), family)
    assert [r.reason for r in rejections] == ["missing_field"]


@FUZZ
@given(obj=hostile_event(), family=st.sampled_from(FAMILIES))
def test_hostile_event_never_raises(obj: Any, family: str) -> None:
    events, rejections = decode(orjson.dumps(obj), family)
    check_rejections(rejections)
    batch = type(obj) is list and len(obj) > 0
    assert len(events) + len(rejections) == (len(obj) if batch else 1)


@FUZZ_SMALL
@given(good=st.lists(valid_event(), max_size=8), bad=st.lists(hostile_event(), max_size=8), data=st.data())
def test_batch_keeps_every_valid_event(good: list[dict], bad: list[Any], data: st.DataObject) -> None:
    family = data.draw(st.sampled_from(FAMILIES))
    good = [e for e in good if family_of(e) == family]
    items = data.draw(st.permutations([*good, *bad]))
    if not items:
        return
    events, rejections = decode(orjson.dumps(items), family)
    check_rejections(rejections)
    assert len(events) + len(rejections) == len(items)
    assert all(r.index is not None for r in rejections)
    assert sorted(e.index for e in events) + sorted(r.index for r in rejections) != []
    assert {e.index for e in events}.isdisjoint(r.index for r in rejections)
    out = {e.body.event_id for e in events}
    assert {e["event_id"] for e in good} <= out
    for rejection in rejections:  # a parked batch member is re-encoded on its own, readable again
        assert orjson.loads(rejection.raw) is not None or rejection.raw == b"null"


@FUZZ_SMALL
@given(events=st.lists(valid_event(), min_size=1, max_size=5), depth=st.integers(1, 200))
def test_nesting_below_encoder_limit(events: list[dict], depth: int) -> None:
    """Valid events carrying a deeply nested extra field still decode; bad ones still park."""
    nested: Any = 1
    for _ in range(depth):
        nested = [nested]
    family = family_of(events[0])
    items = [dict(e, extra=nested) for e in events]
    items.append({"type": "nope", "extra": nested})
    decoded, rejections = decode(orjson.dumps(items), family)
    check_rejections(rejections)
    assert len(decoded) + len(rejections) == len(items)


@FUZZ_SMALL
@given(event=valid_event(), size=st.integers(0, 20_000))
def test_huge_strings_in_every_field(event: dict[str, Any], size: int) -> None:
    family = family_of(event)
    for name in list(event):
        hostile = dict(event, **{name: "A" * size})
        events, rejections = decode(orjson.dumps(hostile), family)
        check_rejections(rejections)
        assert len(events) + len(rejections) == 1
        for rejection in rejections:
            assert len(rejection.detail) < 400  # details quote at most a prefix of the value


def test_limits_oversized_and_too_many() -> None:
    event = {"type": "session.started"}
    assert decode(b"x" * 101, "session", max_bytes=100)[1][0].reason == "oversized"
    assert decode(orjson.dumps([event] * 11), "session", max_events=10)[1][0].reason == "too_many_events"


# A bad event of a batch is re-encoded for the dead-letter topic, and orjson writes at most
# 254 levels of nesting while it reads 1024: such an event is parked with the message's own
# bytes instead (found by this suite: it used to raise out of decode_message).
DEEP = 254


@pytest.mark.parametrize("raw", [
    b'[{"a":' + b"[" * DEEP + b"]" * DEEP + b"}]",  # an object missing its type, nested 255 deep
    b"[" * 1024 + b"]" * 1024,  # a batch of one list nested 1023 deep (orjson.loads reads up to 1024)
])
def test_deeply_nested_bad_event_in_a_batch_is_parked(raw: bytes) -> None:
    events, rejections = decode_message(raw, "order")
    assert not events and len(rejections) == 1 and rejections[0].reason in ("missing_field", "not_object")


def test_deeply_nested_late_event_is_parked() -> None:
    def event(i: int, ts: str, extra: Any = None) -> bytes:
        body = {"event_id": f"e{i}", "type": "survey.answered", "schema_version": 1, "occurred_at": ts,
                "storefront": "s", "response_id": f"r{i}", "kind": "nps", "score": 9}
        raw = orjson.dumps(body)
        return raw if extra is None else b'{"x":' + extra + b"," + raw[1:]

    messages = [event(1, "2025-01-01T12:00:00Z"),
                event(2, "2025-01-01T11:00:00Z", b"[" * DEEP + b"]" * DEEP)]  # valid, one hour late
    state = PartitionState("survey", 0, Settings())
    applied = state.apply(Message(i, *decode_message(raw, "survey")) for i, raw in enumerate(messages))
    assert [p.reason for p in applied.parked] == ["late"]


def test_huge_float_score_in_a_batch_is_parked() -> None:
    raw = (b'[{"event_id":"e1","type":"survey.answered","schema_version":1,"occurred_at":"2025-01-01T00:00:00Z",'
           b'"storefront":"s","response_id":"r1","kind":"nps","score":1e300}]')
    events, rejections = decode_message(raw, "survey")
    assert not events and [r.reason for r in rejections] == ["out_of_range"]


# ------------------------------------------------------------------ PartitionState.apply
@st.composite
def hostile_stream(draw: st.DrawFn) -> tuple[str, list[bytes]]:
    """Messages of one family: single events, batches, resends of earlier events and garbage."""
    family = draw(st.sampled_from(FAMILIES))
    names = sorted(n for n, t in EVENT_TYPES.items() if t.family == family)
    sent: list[dict] = []
    messages: list[bytes] = []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["event", "batch", "resend", "bytes", "hostile"]))
        if kind == "bytes":
            messages.append(draw(hostile_bytes))
            continue
        items: list[Any] = []
        for _ in range(draw(st.integers(1, 6)) if kind == "batch" else 1):
            roll = draw(st.integers(0, 9))
            if sent and (kind == "resend" or roll == 0):
                items.append(copy.deepcopy(draw(st.sampled_from(sent))))
            elif kind == "hostile" or roll == 1:
                items.append(draw(hostile_event()))
            else:
                event = draw(valid_event(draw(st.sampled_from(names))))
                sent.append(event)
                items.append(event)
        messages.append(orjson.dumps(items if kind == "batch" else items[0]))
    return family, messages


@hsettings(max_examples=150, deadline=None, database=None,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(stream=hostile_stream(), cuts=st.lists(st.integers(1, 24), max_size=4))
def test_apply_counts_add_up(stream: tuple[str, list[bytes]], cuts: list[int]) -> None:
    family, raws = stream
    tally.count("PartitionState.apply streams")
    messages = [Message(offset, *decode(raw, family)) for offset, raw in enumerate(raws)]
    inputs = sum(len(m.events) + len(m.rejections) for m in messages)
    state = PartitionState(family, 0, Settings())
    bounds = sorted({0, len(messages), *(c for c in cuts if c < len(messages))})
    counted = parked = 0
    for start, end in zip(bounds, bounds[1:]):
        applied = state.apply(messages[start:end])
        counted += applied.counted
        parked += len(applied.parked)
        assert all(isinstance(k, bytes) and (v is None or isinstance(v, bytes)) for k, v in applied.records)
    meta = state.meta
    assert meta.events + meta.late + meta.duplicates + sum(meta.rejected.values()) == inputs
    assert counted == meta.events
    assert parked == meta.late + sum(meta.rejected.values())
    assert set(meta.rejected) <= set(REASONS)
    assert meta.messages == len(messages)
    before = state.meta.to_json()
    replay = state.apply(messages)  # a full replay after a crash: every offset is below `through`
    assert replay.counted == 0 and not replay.parked and state.meta.to_json() == before
    state.snapshot(None)


def test_json_values_strategy_is_encodable() -> None:
    """Guard for the strategies themselves: every generated value is JSON orjson can write."""

    @hsettings(max_examples=200, deadline=None)
    @given(json_values)
    def encodable(value: Any) -> None:
        orjson.dumps(value)

    encodable()
