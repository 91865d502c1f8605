"""The published JSON Schemas, their examples and the decoder agree.

Every file under ``schemas/examples/<family>/valid/`` must pass the schema and
``decode_message``; every file under ``.../invalid/<reason>__<what>.json`` must
fail the schema and be rejected by the decoder with exactly ``<reason>``. The
drift tests compare the schemas with ``streams/contract.py`` field by field, and
``docs/events.md`` must mention every event type, field and reason code.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from streams import contract
from streams.contract import EVENT_TYPES, FAMILIES, FAMILY_KEY
from streams.decode import decode_message
from streams.errors import REASONS

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"
DOCS = ROOT / "docs" / "events.md"
BASE = "https://schemas.cxpulse.example/v1/"

SCHEMA_FILES = sorted(SCHEMAS.glob("*.schema.json"))
VALID = sorted(EXAMPLES.glob("*/valid/*.json"))
INVALID = sorted(EXAMPLES.glob("*/invalid/*.json"))

# Reasons a single event or message on its own topic can show, per family.
# out_of_range needs a ranged number (amounts, scores); session and ticket events have none.
EXPECTED_REASONS = {
    family: {"missing_field", "wrong_type", "bad_value", "unknown_type", "unsupported_version",
             "bad_timestamp", "not_object", "wrong_topic"}
    | ({"out_of_range"} if family in ("order", "survey") else set())
    for family in FAMILIES
}

# JSON Schema leaves "format" as an annotation unless a checker asserts it. The
# published schemas say date-time; this is the check a producer should enable
# (jsonschema's own needs the optional rfc3339-validator package).
FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if isinstance(value, str):
        datetime.fromisoformat(value)  # the pattern fixes the shape; this checks the calendar
    return True


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _registry() -> Registry:
    return Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema))
        for schema in map(_load, SCHEMA_FILES)
    )


REGISTRY = _registry()


def _message_validator(family: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": f"{BASE}message.schema.json#/$defs/{family}"},
        registry=REGISTRY, format_checker=FORMATS,
    )


VALIDATORS = {family: _message_validator(family) for family in FAMILIES}


def _family_of(path: Path) -> str:
    return path.relative_to(EXAMPLES).parts[0]


def _schema(name: str) -> dict:
    return _load(SCHEMAS / f"{name}.schema.json")


def _id(path: Path) -> str:
    return str(path.relative_to(EXAMPLES))


# ---------------------------------------------------------------- the schema files

@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_schema_is_draft_2020_12_with_its_id(path: Path) -> None:
    schema = _load(path)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == BASE + path.name


def test_one_schema_per_family_plus_envelope_and_message() -> None:
    names = {p.name.removesuffix(".schema.json") for p in SCHEMA_FILES}
    assert names == {"envelope", "message", *FAMILIES}


# ---------------------------------------------------------------- examples

@pytest.mark.parametrize("path", VALID, ids=_id)
def test_valid_example_passes_schema_and_decoder(path: Path) -> None:
    family = _family_of(path)
    errors = [e.message for e in VALIDATORS[family].iter_errors(_load(path))]
    assert errors == []
    events, rejections = decode_message(path.read_bytes(), family)
    assert rejections == []
    assert events


@pytest.mark.parametrize("path", INVALID, ids=_id)
def test_invalid_example_fails_schema_and_decoder_says_why(path: Path) -> None:
    family = _family_of(path)
    reason = path.name.split("__")[0]
    assert reason in REASONS, f"{path.name} must start with a reason code of streams/errors.py"
    assert not VALIDATORS[family].is_valid(_load(path))
    events, rejections = decode_message(path.read_bytes(), family)
    assert events == []
    assert rejections and {r.reason for r in rejections} == {reason}, [r.detail for r in rejections]


@pytest.mark.parametrize("family", FAMILIES)
def test_invalid_examples_cover_every_reason_of_the_family(family: str) -> None:
    shown = {p.name.split("__")[0] for p in INVALID if _family_of(p) == family}
    assert EXPECTED_REASONS[family] <= shown


def test_every_event_type_has_at_least_two_valid_examples() -> None:
    seen: dict[str, int] = dict.fromkeys(EVENT_TYPES, 0)
    for path in VALID:
        body = _load(path)
        for event in body if isinstance(body, list) else [body]:
            seen[event["type"]] += 1
    assert {name: n for name, n in seen.items() if n < 2} == {}


def test_examples_use_synthetic_data_only() -> None:
    text = "\n".join(p.read_text() for p in VALID + INVALID)
    assert "@" not in text  # no emails
    assert not re.search(r"\b(?:[a-z0-9-]+\.)+(?:com|net|org|io)\b", text)  # no hostnames


# ---------------------------------------------------------------- byte-level cases

def _valid_event(family: str) -> dict:
    for path in VALID:
        body = _load(path)
        if _family_of(path) == family and isinstance(body, dict):
            return body
    raise AssertionError(family)


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\xff\xfe{}", "not_utf8"),
    (b'{"type": "ticket.created"', "not_json"),
    (b"", "not_json"),
    (b"NaN", "not_json"),
    (b'{"score": 1e400}', "not_json"),
    (b"[]", "empty_batch"),
])
def test_byte_level_rejections(raw: bytes, reason: str) -> None:
    events, rejections = decode_message(raw, "ticket")
    assert events == []
    assert [r.reason for r in rejections] == [reason]
    assert rejections[0].index is None and rejections[0].raw == raw


def test_empty_batch_fails_the_schema_too() -> None:
    assert not VALIDATORS["order"].is_valid([])


def test_oversized_message() -> None:
    raw = orjson.dumps(_valid_event("order"))
    _, rejections = decode_message(raw, "order", max_bytes=len(raw) - 1)
    assert [r.reason for r in rejections] == ["oversized"]
    assert decode_message(raw, "order", max_bytes=len(raw))[1] == []


def test_batch_limit_is_ten_thousand_events() -> None:
    event = _valid_event("survey")
    at_limit, over = [event] * 10_000, [event] * 10_001
    assert VALIDATORS["survey"].is_valid(at_limit)
    assert not VALIDATORS["survey"].is_valid(over)
    # 10,000 real events outgrow the default 1 MiB message limit: the producer splits by bytes too.
    big = 100 * 1_048_576
    assert len(decode_message(orjson.dumps(at_limit), "survey", max_bytes=big)[0]) == 10_000
    assert [r.reason for r in decode_message(orjson.dumps(over), "survey", max_bytes=big)[1]] == ["too_many_events"]


def test_integer_beyond_64_bits_is_out_of_range_not_json() -> None:
    # orjson 3.13 reads integers past 64 bits as floats (errors.py says not_json);
    # an amount that large is refused either way.
    raw = orjson.dumps({**_valid_event("order"), "total_minor": 0}).replace(
        b'"total_minor":0', b'"total_minor":18446744073709551616')
    assert [r.reason for r in decode_message(raw, "order")[1]] == ["out_of_range"]


def test_future_timestamp_is_a_decoder_option() -> None:
    raw = orjson.dumps(_valid_event("session"))
    events, _ = decode_message(raw, "session")
    _, rejections = decode_message(raw, "session", not_after_ms=events[0].ts_ms - 1)
    assert [r.reason for r in rejections] == ["future_timestamp"]


def test_a_batch_rejects_only_its_bad_events() -> None:
    good = _valid_event("ticket")
    bad = {**good, "support_channel": "fax"}
    events, rejections = decode_message(orjson.dumps([good, bad, good]), "ticket")
    assert [e.index for e in events] == [0, 2]
    assert [(r.index, r.reason) for r in rejections] == [(1, "bad_value")]
    assert orjson.loads(rejections[0].raw) == bad


# ---------------------------------------------------------------- schema vs contract

def _type_def(name: str) -> dict:
    return _schema(EVENT_TYPES[name].family)["$defs"][name]


def _strip_null(prop: dict) -> dict:
    """The non-null branch of an optional field (null is the same as absent)."""
    if "anyOf" in prop:
        branches = [b for b in prop["anyOf"] if b != {"type": "null"}]
        assert len(branches) == 1 and len(prop["anyOf"]) == 2
        return branches[0]
    return prop


def _resolve(prop: dict, base: str) -> dict:
    if "$ref" not in prop:
        return prop
    resolved = REGISTRY.resolver(base).lookup(prop["$ref"]).contents
    return {**resolved, **{k: v for k, v in prop.items() if k != "$ref"}}


KIND_SCHEMA = {
    "id": {"type": "string", "pattern": contract.ID_PATTERN},
    "label": {"type": "string", "pattern": contract.LABEL_PATTERN},
    "currency": {"type": "string", "pattern": contract.CURRENCY_PATTERN},
    "minor": {"type": "integer", "minimum": 0, "maximum": contract.MAX_MINOR},
    "timestamp": {"type": "string", "pattern": contract.TIMESTAMP_PATTERN, "format": "date-time"},
    "int": {"type": "integer"},
    "bool": {"type": "boolean"},
}


def _assert_field_matches(prop: dict, f: contract.Field, base: str) -> None:
    body = _resolve(_strip_null(prop) if not f.required else prop, base)
    if f.kind == "enum":
        assert body["type"] == "string" and body["enum"] == list(f.choices), f.name
    else:
        for key, value in KIND_SCHEMA[f.kind].items():
            assert body.get(key) == value, (f.name, key)
    assert prop.get("description"), f"{f.name} needs a description"


def test_envelope_matches_contract() -> None:
    envelope = _schema("envelope")
    assert envelope["required"] == [f.name for f in contract.ENVELOPE]
    props = envelope["properties"]
    assert set(props) == {f.name for f in contract.ENVELOPE}
    assert props["type"]["enum"] == list(EVENT_TYPES)
    assert props["schema_version"] == {**props["schema_version"], "type": "integer",
                                       "const": contract.SCHEMA_VERSION}
    for f in contract.ENVELOPE:
        if f.kind in KIND_SCHEMA:
            _assert_field_matches(props[f.name], f, envelope["$id"])


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_event_type_schema_matches_contract(name: str) -> None:
    event_type = EVENT_TYPES[name]
    definition = _type_def(name)
    props = definition["properties"]
    assert props["type"] == {"const": name}
    assert set(props) == {"type"} | event_type.names
    assert set(definition["required"]) == {"type"} | {f.name for f in event_type.fields if f.required}
    for f in event_type.fields:
        _assert_field_matches(props[f.name], f, f"{BASE}{event_type.family}.schema.json")
        if not f.required:
            assert {"type": "null"} in props[f.name]["anyOf"], f"{name}.{f.name}: null means absent"


@pytest.mark.parametrize("family", FAMILIES)
def test_family_schema_lists_exactly_its_types(family: str) -> None:
    schema = _schema(family)
    mine = [t.name for t in EVENT_TYPES.values() if t.family == family]
    assert schema["properties"]["type"]["enum"] == mine
    assert set(schema["$defs"]) == set(mine)
    assert [branch["then"]["$ref"] for branch in schema["allOf"]] == [f"#/$defs/{t}" for t in mine]
    assert FAMILY_KEY[family] in schema["description"]


def test_score_ranges_match_contract() -> None:
    branches = _type_def("survey.answered")["allOf"]
    ranges = {
        b["if"]["properties"]["kind"]["const"]:
        (b["then"]["properties"]["score"]["minimum"], b["then"]["properties"]["score"]["maximum"])
        for b in branches
    }
    assert ranges == contract.SCORE_RANGE


@pytest.mark.parametrize("kind", contract.SURVEY_KINDS)
def test_score_bounds_agree_with_decoder(kind: str) -> None:
    low, high = contract.SCORE_RANGE[kind]
    base = {**_valid_event("survey"), "kind": kind}
    for score, ok in ((low - 1, False), (low, True), (high, True), (high + 1, False)):
        event = {**base, "score": score}
        assert VALIDATORS["survey"].is_valid(event) is ok, (kind, score)
        assert (decode_message(orjson.dumps(event), "survey")[1] == []) is ok, (kind, score)


def test_survey_sent_asks_one_kind_and_carries_no_score() -> None:
    sent = EVENT_TYPES["survey.sent"]
    assert sent.family == "survey" and FAMILY_KEY["survey"] == "response_id"
    assert {f.name for f in sent.fields if f.required} == {"response_id", "kind"}
    assert "score" not in sent.names
    # the same labels and links as an answer: a response rate divides two counts of one segment
    assert sent.names == EVENT_TYPES["survey.answered"].names - {"score"}
    kind = next(f for f in sent.fields if f.name == "kind")
    assert kind.choices == contract.SURVEY_KINDS


@pytest.mark.parametrize("kind", contract.SURVEY_KINDS)
def test_a_survey_sent_of_every_kind_passes_schema_and_decoder_and_keys_like_its_answer(kind: str) -> None:
    sent = {"event_id": f"e-{kind}", "type": "survey.sent", "schema_version": 1,
            "occurred_at": "2025-03-16T07:30:00Z", "storefront": "shop-uk", "response_id": "resp-1", "kind": kind}
    answer = {**sent, "event_id": f"a-{kind}", "type": "survey.answered", "score": contract.SCORE_RANGE[kind][1]}
    assert VALIDATORS["survey"].is_valid(sent)
    events, rejections = decode_message(orjson.dumps([sent, answer]), "survey", partition=0, partitions=1)
    assert rejections == [] and [type(e.body).TYPE for e in events] == ["survey.sent", "survey.answered"]
    assert events[0].body.kind == kind
    assert contract.message_key(sent) == contract.message_key(answer) == "resp-1"
    # a survey.sent on another family's topic is refused like any event
    assert [r.reason for r in decode_message(orjson.dumps(sent), "order")[1]] == ["wrong_topic"]


@pytest.mark.parametrize(("amount", "ok"), [(0, True), (contract.MAX_MINOR, True),
                                            (-1, False), (contract.MAX_MINOR + 1, False)])
def test_amount_bounds_agree_with_decoder(amount: int, ok: bool) -> None:
    event = {**_valid_event("order"), "type": "order.refunded", "amount_minor": amount, "currency": "EUR"}
    assert VALIDATORS["order"].is_valid(event) is ok
    assert (decode_message(orjson.dumps(event), "order")[1] == []) is ok


# ---------------------------------------------------------------- edge cases that once disagreed

def test_returned_with_amount_and_null_currency_is_rejected() -> None:
    event = {**_valid_event("order"), "type": "order.returned", "amount_minor": 500, "currency": None}
    assert not VALIDATORS["order"].is_valid(event)
    assert [r.reason for r in decode_message(orjson.dumps(event), "order")[1]] == ["missing_field"]


def test_trailing_newline_in_a_label_is_rejected() -> None:
    event = {**_valid_event("session"), "channel": "web\n"}
    assert [r.reason for r in decode_message(orjson.dumps(event), "session")[1]] == ["bad_value"]


# ---------------------------------------------------------------- docs/events.md

def _doc_sections() -> dict[str, str]:
    text = DOCS.read_text()
    parts = re.split(r"^### `([a-z_.]+)`", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_docs_table_lists_every_field(name: str) -> None:
    section = _doc_sections().get(name)
    assert section, f"docs/events.md needs a '### `{name}`' section"
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z_]+)` \|[^|]*\| (yes|no) \|", section, re.M)}
    expected = {f.name: ("yes" if f.required else "no") for f in EVENT_TYPES[name].fields}
    assert rows == expected


def test_docs_cover_envelope_reasons_and_topics() -> None:
    text = DOCS.read_text()
    envelope = _doc_sections()["envelope"]
    for f in contract.ENVELOPE:
        assert f"| `{f.name}` |" in envelope
    for reason in REASONS:
        assert f"| `{reason}` |" in text, reason
    for family, topic in contract.DEFAULT_TOPICS.items():
        assert topic in text and f"`{FAMILY_KEY[family]}`" in text
    assert contract.DEADLETTER_TOPIC in text
    assert "partitioner=murmur2_random" in text
