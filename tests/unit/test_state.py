"""Partition state: exactly-once effect under replays and partial changelog writes.

The property: however a run is cut by crashes — any prefix of a batch's
changelog records on the broker, replay from any offset at or before the last
commit — the recovered state ends equal to a run without crashes.
"""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from streams.config import Settings
from streams.decode import decode_message
from streams.pipeline.records import Message
from streams.pipeline.window_state import PartitionState
from tests.helpers import apply_with_crashes, facts_of

# A 1-minute session timeout: sessions of the session family's runs time out and start over in between.
SETTINGS = Settings(window_ms=60_000, grace_ms=120_000, dedupe_horizon_ms=300_000, retention_ms=7_200_000,
                    session_timeout_ms=60_000)
T0 = 1_795_000_000_000 - 1_795_000_000_000 % 60_000


def _iso(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def ticket_events(rng: random.Random, n: int) -> list[bytes]:
    """Messages (some batched) of ticket events with replays of ids, disorder and lateness."""
    messages, sent = [], []
    clock = T0
    for i in range(n):
        clock += rng.randint(0, 20_000)
        ticket = f"t-{rng.randint(0, 12)}"
        kind = rng.choice(["ticket.created", "ticket.replied", "ticket.replied", "ticket.resolved", "ticket.reopened"])
        ts = clock - (rng.randint(0, 400_000) if rng.random() < 0.1 else rng.randint(0, 5_000))
        body = {"event_id": f"e-{i}", "type": kind, "schema_version": 1, "occurred_at": _iso(ts),
                "storefront": rng.choice(["north", "south"]), "ticket_id": ticket}
        if kind == "ticket.created":
            body["support_channel"] = rng.choice(["email", "chat"])
        if rng.random() < 0.5:
            body["reason"] = rng.choice(["shipping", "payment", "returns_refunds"])
        if rng.random() < 0.5:
            body["product_category"] = rng.choice(["footwear", "bags", "home"])
        if kind == "ticket.replied":
            body["author"] = rng.choice(["agent", "agent", "bot", "customer"])
            body["public"] = rng.random() < 0.8
        if sent and rng.random() < 0.08:
            body = rng.choice(sent)  # a resend: same event_id
        sent.append(body)
        messages.append(body)
    out: list[bytes] = []
    i = 0
    while i < len(messages):
        size = rng.choice([1, 1, 1, 3])
        group = messages[i:i + size]
        out.append(orjson.dumps(group if size > 1 else group[0]))
        i += size
    if len(out) > 3:
        out.insert(rng.randint(0, len(out)), b"{not json")
    return out


def session_order_events(rng: random.Random, n: int, family: str) -> list[bytes]:
    out, clock = [], T0
    for i in range(n):
        clock += rng.randint(0, 15_000)
        ts = clock - (rng.randint(0, 400_000) if rng.random() < 0.1 else rng.randint(0, 5_000))
        if family == "session":  # 16 sessions: funnel steps repeat, and sessions time out and start over
            kind = rng.choice(["session.started", "session.product_viewed", "session.cart_added",
                               "session.checkout_started"])
            body = {"type": kind, "session_id": f"s{rng.randint(0, 15)}", "channel": rng.choice(["web", "app"]),
                    "device": "mobile"}
            if kind == "session.started":
                body["visitor_id"] = f"v{rng.randint(0, 5)}"  # visitors come back: distinct counts matter
            elif kind != "session.checkout_started":
                body["product_id"] = "p1"
        else:
            body = {"type": "order.placed", "order_id": f"o{i}", "customer_id": "c1",
                    "total_minor": rng.randint(100, 50_000), "currency": rng.choice(["EUR", "USD"]),
                    "first_order": rng.random() < 0.5}
        body.update(event_id=f"e-{rng.randint(0, n)}", schema_version=1, occurred_at=_iso(ts), storefront="north")
        out.append(orjson.dumps(body))
    return out


def decode_all(family: str, payloads: list[bytes], first_offset: int = 0) -> list[Message]:
    messages = []
    for offset, payload in enumerate(payloads, start=first_offset):
        events, rejections = decode_message(payload, family)
        messages.append(Message(offset, events, rejections))
    return messages


def fingerprint(state: PartitionState) -> dict:
    """Everything a scrape can see, in comparable form."""
    return {
        "meta": orjson.loads(state.meta.to_json()),
        "totals": sorted((seg, c.to_json()) for seg, c in state.totals.cells.items()),
        "windows": {s: sorted((seg, c.to_json()) for seg, c in slot.cells.items()) for s, slot in state.windows.items()},
        "days": {d: sorted((seg, c.to_json()) for seg, c in slot.cells.items()) for d, slot in state.days.items()},
        # the sessions still going (one timed out counts as new at its next event, whenever eviction ran)
        "funnels": {sid: f for sid, f in state.funnels.items()
                    if f[1] >= (state.meta.watermark_ms or 0) - state.session_timeout_ms},
        # the distinct visitors of the windows still open (a closed window's went to the merge stage)
        "visitors": {start: {seg: sorted(v) for seg, v in by.items()} for start, by in state.visitors.items()},
    }


def run_clean(family: str, messages: list[Message]) -> PartitionState:
    state = PartitionState(family, 0, SETTINGS)
    for start in range(0, len(messages), 7):
        state.apply(messages[start:start + 7])
    return state


def run_with_crashes(family: str, messages: list[Message], rng: random.Random, crashes: int,
                     settings: Settings = SETTINGS) -> PartitionState:
    """Apply in random batches with crashes (``tests.helpers.apply_with_crashes``)."""
    return apply_with_crashes(lambda: PartitionState(family, 0, settings), messages, rng, crashes)[0]


@pytest.mark.parametrize("family", ["ticket", "session", "order"])
@pytest.mark.parametrize("seed", range(12))
def test_crashes_and_replays_leave_the_state_of_a_clean_run(family: str, seed: int) -> None:
    rng = random.Random(seed)
    payloads = ticket_events(rng, 150) if family == "ticket" else session_order_events(rng, 150, family)
    messages = decode_all(family, payloads)
    clean = fingerprint(run_clean(family, messages))
    crashed = fingerprint(run_with_crashes(family, messages, rng, crashes=6))
    assert crashed == clean


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), crashes=st.integers(1, 15))
def test_crash_schedules_property(seed: int, crashes: int) -> None:
    rng = random.Random(seed)
    messages = decode_all("ticket", ticket_events(rng, 80))
    assert fingerprint(run_with_crashes("ticket", messages, rng, crashes)) == fingerprint(run_clean("ticket", messages))


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), aborts=st.integers(1, 6))
def test_aborted_records_read_back_after_a_shorter_replay_change_nothing(seed: int, aborts: int) -> None:
    """An aborted batch's records that the replay did not see, read back by a later recovery
    (Tansu shows aborted records; the read_uncommitted fallback reads them): the replay covered
    less than the aborted batch, so those records claim events that the replay's own records do
    not hold. The recovered state must count every event once, as a clean run does."""
    rng = random.Random(seed)
    messages = decode_all("ticket", ticket_events(rng, 80))
    state, _ = apply_with_crashes(lambda: PartitionState("ticket", 0, SETTINGS), messages, rng, aborts,
                                  hide_aborted=True)
    assert fingerprint(state) == fingerprint(run_clean("ticket", messages))


def test_restore_from_changelog_equals_live_state() -> None:
    rng = random.Random(3)
    messages = decode_all("ticket", ticket_events(rng, 200))
    state, changelog = PartitionState("ticket", 0, SETTINGS), []
    for start in range(0, len(messages), 5):
        changelog.extend(state.apply(messages[start:start + 5]).records)
    restored = PartitionState("ticket", 0, SETTINGS)
    restored.restore(changelog)
    assert fingerprint(restored) == fingerprint(state)
    assert restored.tickets == state.tickets
    assert restored.seen == state.seen


def test_state_written_before_tickets_had_a_reason_restores_with_reason_unknown() -> None:
    """A worker of this version recovers a changelog written by one whose ticket segment was (storefront,
    support_channel) and whose ticket records had 9 fields: old cells count under reason `unknown`,
    an open ticket keeps counting there, and a new ticket with a reason gets its own segment."""
    state, changelog = PartitionState("ticket", 0, SETTINGS), []
    created = {"event_id": "e1", "type": "ticket.created", "schema_version": 1, "occurred_at": _iso(T0),
               "storefront": "north", "ticket_id": "t1", "support_channel": "chat"}
    changelog.extend(state.apply(decode_all("ticket", [orjson.dumps(created)])).records)
    old = []
    for key, value in changelog:  # as the older worker wrote them
        kind = key.rsplit(b"|", 1)[0][-1:]
        if value is not None and kind in (b"w", b"c", b"y"):
            through, cells = orjson.loads(value)
            value = orjson.dumps([through, [[segment[:2], cell] for segment, cell in cells]])
        elif value is not None and kind == b"t":
            value = orjson.dumps(orjson.loads(value)[:9])
        old.append((key, value))
    assert any(len(orjson.loads(v)) == 9 for k, v in old if v and k.rsplit(b"|", 1)[0][-1:] == b"t")
    restored = PartitionState("ticket", 0, SETTINGS)
    restored.restore(old)
    assert restored.tickets["t1"].reason is None
    resolved = {**created, "event_id": "e2", "type": "ticket.resolved", "occurred_at": _iso(T0 + 30_000)}
    del resolved["support_channel"]
    new = {**created, "event_id": "e3", "ticket_id": "t2", "reason": "shipping"}
    restored.apply(decode_all("ticket", [orjson.dumps(resolved), orjson.dumps(new)], first_offset=1))
    totals = {segment: cell.counts for segment, cell in restored.totals.cells.items()}
    assert totals == {("north", "chat", "unknown"): {"tickets_created": 1, "tickets_resolved_one_touch": 1},
                      ("north", "chat", "shipping"): {"tickets_created": 1}}


def _event(i: int, ts_ms: int, event_id: str | None = None) -> dict:
    return {"event_id": event_id or f"e{i}", "type": "session.started", "schema_version": 1,
            "occurred_at": _iso(ts_ms), "storefront": "north", "session_id": f"s{i}", "visitor_id": "v",
            "channel": "web", "device": "mobile"}


def test_late_duplicate_and_rejected_are_counted_and_parked() -> None:
    state = PartitionState("session", 0, SETTINGS)
    payloads = [
        orjson.dumps(_event(0, T0 + 10 * 60_000)),              # pushes the watermark
        orjson.dumps(_event(1, T0)),                            # its window closed long ago: late
        orjson.dumps(_event(2, T0 + 10 * 60_000 - 1_000)),      # out of order, within grace: counted
        orjson.dumps(_event(3, T0 + 10 * 60_000, "e0")),        # same event_id as the first: duplicate
        b"\xff",                                                 # not UTF-8
    ]
    applied = state.apply(decode_all("session", payloads))
    assert (state.meta.events, state.meta.late, state.meta.duplicates) == (2, 1, 1)
    assert state.meta.rejected == {"not_utf8": 1}
    assert sorted(p.reason for p in applied.parked) == ["late", "not_utf8"]
    late = next(p for p in applied.parked if p.reason == "late")
    assert orjson.loads(late.raw)["event_id"] == "e1" and late.offset == 1


def test_replaying_a_persisted_batch_is_not_a_duplicate() -> None:
    messages = decode_all("session", [orjson.dumps(_event(i, T0 + i * 1000)) for i in range(5)])
    state = PartitionState("session", 0, SETTINGS)
    records = state.apply(messages).records
    restored = PartitionState("session", 0, SETTINGS)
    restored.restore(records[:-1])  # everything but the meta record reached the broker
    restored.apply(messages)
    assert restored.meta.duplicates == 0
    assert restored.totals.cells[("north", "web", "mobile")].counts == {"sessions_started": 5}


def test_windows_beyond_retention_are_evicted_with_tombstones() -> None:
    state = PartitionState("session", 0, SETTINGS)
    state.apply(decode_all("session", [orjson.dumps(_event(0, T0))]))
    later = Message(1, decode_message(orjson.dumps(_event(1, T0 + SETTINGS.retention_ms + 120_000)), "session")[0], [])
    applied = state.apply([later])
    assert T0 not in state.windows
    assert any(key.endswith(f"w|{T0}".encode()) and value is None for key, value in applied.records)
    # the running totals keep both
    assert state.totals.cells[("north", "web", "mobile")].counts["sessions_started"] == 2


# ------------------------------------------------------------ cardinality budget
def _order(i: int, storefront: str, channel: str, currency: str = "EUR") -> bytes:
    return orjson.dumps({"event_id": f"e{i}", "type": "order.placed", "schema_version": 1,
                         "occurred_at": _iso(T0 + i), "storefront": storefront, "order_id": f"o{i}",
                         "customer_id": "c1", "total_minor": 100, "currency": currency, "first_order": False,
                         "channel": channel, "device": "mobile"})


def test_label_values_beyond_the_cap_go_to_other_and_are_counted() -> None:
    from dataclasses import replace

    state = PartitionState("order", 0, replace(SETTINGS, label_cap=3, segment_cap=1000))
    payloads = [_order(i, f"shop-{i % 10}", "web") for i in range(100)]
    state.apply(decode_all("order", payloads))
    storefronts = {segment[0] for segment in state.totals.cells}
    assert storefronts == {"shop-0", "shop-1", "shop-2", "other"}
    assert state.meta.overflow == {"storefront": 70}
    assert state.totals.cells[("other", "web", "mobile", "EUR")].counts["orders_placed"] == 70


def test_allow_list_sends_every_other_value_to_other() -> None:
    from dataclasses import replace

    state = PartitionState("order", 0, replace(SETTINGS, allowed_channels="web,app"))
    state.apply(decode_all("order", [_order(0, "north", "web"), _order(1, "north", "tiktok"), _order(2, "north", "app")]))
    assert {segment[1] for segment in state.totals.cells} == {"web", "app", "other"}
    assert state.meta.overflow == {"channel": 1}


def test_segment_cap_bounds_series_under_attack() -> None:
    from dataclasses import replace

    budget = replace(SETTINGS, label_cap=20, segment_cap=50)
    state = PartitionState("order", 0, budget)
    # 100k distinct storefront/channel/currency values
    payloads = [_order(i, f"s{i}", f"c{i}", "".join(chr(65 + (i // 26 ** k) % 26) for k in range(3)))
                for i in range(100_000)]
    for start in range(0, len(payloads), 2000):
        state.apply(decode_all("order", payloads[start:start + 2000], first_offset=start))
    assert len(state.totals.cells) <= budget.segment_cap + 1
    assert all(len(values) <= budget.label_cap for values in state.meta.admitted.values())
    total = sum(c.counts["orders_placed"] for c in state.totals.cells.values())
    assert total == 100_000, "overflow must re-label events, never drop them"


@pytest.mark.parametrize("seed", range(6))
def test_capped_labels_decide_the_same_after_crashes(seed: int) -> None:
    from dataclasses import replace

    capped = replace(SETTINGS, label_cap=2, segment_cap=4)
    rng = random.Random(seed)
    payloads = [_order(i, f"shop-{rng.randint(0, 5)}", rng.choice(["web", "app", "x", "y"])) for i in range(120)]
    messages = decode_all("order", payloads)

    def clean() -> PartitionState:
        state = PartitionState("order", 0, capped)
        state.apply(messages)
        return state

    crashed = run_with_crashes("order", messages, rng, crashes=5, settings=capped)
    assert fingerprint(crashed) == fingerprint(clean())
    assert crashed.meta.admitted == clean().meta.admitted


def test_seen_ids_records_stay_small_for_huge_batches() -> None:
    """200k ids in one batch (2,000 messages x 100 events) once made a 10 MB record that
    the broker refused, which stopped the agent: records are chunked at message bounds."""
    from streams.pipeline.window_state import SEEN_RECORD_ITEMS

    now = T0
    payloads = [orjson.dumps([_event(m * 100 + i, now) for i in range(100)]) for m in range(120)]
    state = PartitionState("session", 0, SETTINGS)
    applied = state.apply(decode_all("session", payloads))
    seen_records = [value for key, value in applied.records if b"|d|" in key]
    assert len(seen_records) == -(-12_000 // SEEN_RECORD_ITEMS)
    assert all(len(orjson.loads(v)) <= SEEN_RECORD_ITEMS + 100 for v in seen_records)
    restored = PartitionState("session", 0, SETTINGS)
    restored.restore(applied.records)
    assert restored.seen == state.seen


def test_day_totals_hold_sessions_orders_revenue_and_squares() -> None:
    """The initiative ROI reads these: per UTC day and segment, exact integers (squares as floats)."""
    state = PartitionState("order", 0, SETTINGS)
    state.apply(decode_all("order", [_order(0, "shop", "app"), _order(1, "shop", "app")]))
    (day, cells), = state.days.items()
    assert day % 86_400_000 == 0
    cell = cells.cells["shop", "app", "mobile", "EUR"]
    assert cell.counts == {"orders_placed": 2, "revenue_minor": 200, "revenue_sq": 20_000.0}


@pytest.mark.parametrize("seed", range(6))
def test_facts_resent_after_crashes_are_a_superset_of_a_clean_runs(seed: int) -> None:
    """The window stage resends the facts of replayed messages; every fact of a clean run is
    sent at least once, and nothing else is (the customer stage drops resends by event id)."""
    rng = random.Random(seed)
    payloads = session_order_events(rng, 150, "order")
    messages = decode_all("order", payloads)
    clean = PartitionState("order", 0, SETTINGS)
    clean_facts = [f for i in range(0, len(messages), 7) for f in facts_of(clean.apply(messages[i:i + 7]))]
    changelog: list = []
    state = PartitionState("order", 0, SETTINGS)
    sent: list = []
    committed = position = 0
    crash_points = set(rng.sample(range(len(messages)), k=6))
    while position < len(messages):
        size = rng.randint(1, 9)
        batch = messages[position:position + size]
        applied = state.apply(batch)
        if crash_points & {m.offset for m in batch}:
            # the worker's order: facts are acknowledged before any state record is sent
            crash_points -= {m.offset for m in batch}
            sent += facts_of(applied)[:rng.randint(0, len(facts_of(applied)))]
            if len(sent) >= len(facts_of(applied)) and facts_of(applied) == sent[len(sent) - len(facts_of(applied)):]:
                changelog.extend(applied.records[:rng.randint(0, len(applied.records))])
            state = PartitionState("order", 0, SETTINGS)
            state.restore(changelog)
            position = committed
            continue
        sent += facts_of(applied)
        changelog.extend(applied.records)
        position += size
        committed = rng.randint(committed, position)
    assert clean_facts
    assert {f[3] for f in sent} == {f[3] for f in clean_facts}
    assert all(f in clean_facts for f in sent)


def test_the_funnel_counts_each_session_once_per_step_and_a_timed_out_session_anew() -> None:
    """The worked example of tests/unit/test_reference.py, through the window state (30-minute timeout)."""
    from tests.unit.test_reference import FUNNEL_BY_HAND, FUNNEL_EVENTS, MIN, T0 as START

    state = PartitionState("session", 0, Settings())
    state.apply(decode_all("session", [orjson.dumps(event) for event in FUNNEL_EVENTS]))
    for field, minutes in FUNNEL_BY_HAND.items():
        got = {(start - START) // MIN: sum(c.counts.get(field, 0) for c in slot.cells.values())
               for start, slot in state.windows.items()}
        assert {m: n for m, n in got.items() if n} == minutes, field
    assert sorted(state.funnels) == ["s1", "s3"]  # s2 timed out (its last event 40 minutes back)


class _KeepingSessions(PartitionState):
    """A window state that never drops a session: what eviction must not change, and what it drops from."""

    def _evict_sessions(self, over: int) -> None:
        pass


@pytest.mark.parametrize("seed", range(8))
def test_session_eviction_drops_exactly_the_timed_out_sessions_also_after_a_restore(seed: int) -> None:
    """At every new minute eviction drops exactly the sessions whose last event is a timeout behind the
    watermark (those ``on_session`` would start anew), never one still going, and changes no count; a state
    restored from the changelog mid-run holds the same sessions and goes on evicting the same way."""
    rng = random.Random(seed)
    messages = decode_all("session", session_order_events(rng, 600, "session"))
    state, keeping, changelog = PartitionState("session", 0, SETTINGS), _KeepingSessions("session", 0, SETTINGS), []
    position = evictions = dropped = restores = 0
    while position < len(messages):
        batch = messages[position:position + rng.randint(1, 9)]
        position += len(batch)
        evicted_below = state._evicted_below
        changelog.extend(state.apply(batch).records)
        keeping.apply(batch)
        assert fingerprint(state) == fingerprint(keeping)
        assert sorted(sid for _, sid in state.funnel_expiry) == sorted(state.funnels)  # one entry each
        over = state.meta.watermark_ms - SETTINGS.session_timeout_ms
        if state._evicted_below != evicted_below:  # a new minute of event time: eviction ran at this watermark
            evictions += 1
            assert state.funnels == {sid: f for sid, f in keeping.funnels.items() if f[1] >= over}
            dropped += len(keeping.funnels) - len(state.funnels)
        if rng.random() < 0.1:  # a restart: everything written so far comes back from the changelog
            restores += 1
            restored = PartitionState("session", 0, SETTINGS)
            restored.restore(changelog)
            assert fingerprint(restored) == fingerprint(state)
            assert restored.funnels == {sid: f for sid, f in state.funnels.items() if f[1] >= over}
            state = restored
    assert evictions > 5 and dropped > 0 and restores > 0
