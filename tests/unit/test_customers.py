"""Customer state: exact under crashes, equal to the independent reference, bounded.

Pure logic (no Kafka): events go through the window stage's ``PartitionState`` (which
emits the facts, as a worker does), facts are routed by Kafka's murmur2 of the customer
id, and each customer partition's ``CustomerState`` applies them in batches. The expected
figures come from ``tests/customer_reference.py``, which reads the events only.
"""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from streams.config import Settings
from streams.days import day_label, iso_week, week_start_ms
from streams.pipeline.customer_kpis import Customer, contribution, csat_band, period_start_ms
from streams.pipeline.customer_state import NEW_KINDS, CustomerState
from streams.decode import decode_message
from streams.contract import partition_for
from streams.pipeline.records import Message
from streams.pipeline.window_state import PartitionState
from tests.customer_events import T0, customer_events
from tests.customer_reference import customer_kpis
from tests.helpers import apply_with_crashes, facts_of
from tests.reference import Params, Reference, partition_of

DAY = 86_400_000
SETTINGS = Settings(partitions=3, customer_ttl_ms=400 * DAY, cohort_weeks=60)  # no cohort pruned here


FAMILY = {"order.placed": "order", "ticket.created": "ticket", "survey.answered": "survey",
          "session.checkout_started": "session"}
KEY = {"order": "order_id", "ticket": "ticket_id", "survey": "response_id", "session": "session_id"}


def window_stage(events: list[dict], settings: Settings) -> list[list]:
    """Facts in the order a single worker would send them (batches of 5 messages per partition)."""
    per_source: dict[tuple[str, int], list[Message]] = {}
    order: list[tuple[str, int]] = []
    for event in events:
        family = FAMILY[event["type"]]
        source = (family, partition_of(event[KEY[family]], settings.partitions))
        messages = per_source.setdefault(source, [])
        decoded, rejected = decode_message(orjson.dumps(event), family)
        assert not rejected, rejected
        messages.append(Message(len(messages), decoded, rejected))
        order.append(source)
    states = {source: PartitionState(source[0], source[1], settings) for source in per_source}
    facts: list[list] = []
    cursor = {source: 0 for source in per_source}
    for source in order:  # interleave partitions roughly in send order
        if cursor[source] % 5 == 0:
            batch = per_source[source][cursor[source]:cursor[source] + 5]
            facts += facts_of(states[source].apply(batch))
        cursor[source] += 1
    return facts


def customer_stage(facts: list[list], settings: Settings, batch: int = 4) -> dict[int, CustomerState]:
    per_partition: dict[int, list[Message]] = {}
    for fact in facts:
        messages = per_partition.setdefault(partition_for(fact[2], settings.partitions), [])
        messages.append(Message(len(messages), [fact], []))
    states = {}
    for partition, messages in per_partition.items():
        state = states[partition] = CustomerState(partition, settings)
        for i in range(0, len(messages), batch):
            state.apply(messages[i:i + batch])
    return states


def summed(states: dict[int, CustomerState]) -> dict[str, dict[tuple, int]]:
    """The exported aggregates of every partition, summed, as the collector sums them."""
    out: dict[str, dict[tuple, int]] = {}
    for state in states.values():
        for key, value in state.exported().items():
            if len(key) == 1:  # counters (facts skipped, customers created), not KPI aggregates
                continue
            kind = out.setdefault(key[0], {})
            kind[key[1:]] = kind.get(key[1:], 0) + value
    return out


@pytest.mark.parametrize("seed", range(6))
def test_customer_kpis_equal_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    events = customer_events(rng, sessions=150)
    ref = Reference.compute(events, Params(partitions=SETTINGS.partitions))
    counted = [e for e, decision in zip(events, ref.decisions) if decision == "counted"]
    assert len(counted) < len(events)  # the resends were not counted twice ...
    expected = customer_kpis(counted, SETTINGS.partitions)
    got = summed(customer_stage(window_stage(events, SETTINGS), SETTINGS))
    assert set(got) == set(expected)
    for kind in expected:
        assert got[kind] == expected[kind], kind
    for kind in ("nps_customers", "csat_customers", "support_converted", "support_mature_converted",
                 "support_revenue", "cohort_repeat_customers", "cohort_mature_repeat_customers",
                 "retention_retained", "cohort_retention_retained", "checkout_abandoned"):
        assert any(expected[kind].values()), f"{kind}: nothing to compare"
    # the checkout join met every case: converted, abandoned with and without a late order, pruned days
    assert sum(expected["checkout_decided"].values()) > sum(expected["checkout_abandoned"].values()) > 0


def customer_fingerprint(state: CustomerState) -> dict:
    return {
        "meta": orjson.loads(state.meta.to_json()),
        "aggregates": sorted((list(k), v) for k, v in state.aggregates.items()),
        "customers": sorted((list(k), orjson.loads(c.to_json())[1:]) for k, c in state.customers.items()),
        "sessions": sorted((k, orjson.loads(c.to_json())[1:]) for k, c in state.sessions.items()),
    }


def random_facts(rng: random.Random, n: int, customers: int) -> list[Message]:
    """Customer-topic messages of 1-4 facts (orders, tickets, NPS and CSAT answers over ~8
    months: retention periods pass and get pruned; checkouts and orders of sessions, within and
    past the 1h horizon, some arriving days late); some facts resent (a window stage crashed)."""
    facts: list[list] = []
    clock = T0
    sessions: list[tuple[str, int]] = []  # (session id, checkout time)
    for i in range(n):
        clock += rng.randrange(0, 3 * DAY)
        who = f"c{rng.randrange(customers)}"
        kind = rng.choice("oootnckks")
        ts = clock - rng.randrange(0, 2 * DAY)
        if kind == "k":
            if sessions and rng.random() < 0.2:  # a second checkout of a session, maybe earlier
                sid, first = rng.choice(sessions[-5:])
                ts = first + rng.randrange(-600_000, 1_800_000)
            else:
                sid = f"s{i}"
                sessions.append((sid, ts))
            facts.append(["k", "shop", sid, f"e{i}", ts, rng.choice(["web", "app"]), rng.choice(["mobile", "desktop"])])
        elif kind == "s":
            sid, first = rng.choice(sessions[-5:]) if sessions and rng.random() < 0.9 else (f"s{i}", ts)
            facts.append(["s", "shop", sid, f"e{i}", first + rng.randrange(-300_000, 2 * 3_600_000)])
        elif kind == "o":
            facts.append(["o", "shop", who, f"e{i}", ts, rng.randrange(100, 9000), "EUR"])
        elif kind == "t":
            facts.append(["t", "shop", who, f"e{i}", ts])
        elif kind == "n":
            facts.append(["n", "shop", who, f"e{i}", ts, rng.randrange(11)])
        else:
            facts.append(["c", "shop", who, f"e{i}", ts, rng.randint(1, 5)])
        if rng.random() < 0.05 and facts:
            facts.append(list(rng.choice(facts[-20:])))
    messages, offset, i = [], 0, 0
    while i < len(facts):
        size = rng.randint(1, 4)
        messages.append(Message(offset, facts[i:i + size], []))
        offset += 1
        i += size
    return messages


def run_with_crashes(messages: list[Message], rng: random.Random, crashes: int, settings: Settings) -> CustomerState:
    """Random batches with crashes (``tests.helpers.apply_with_crashes``); the final changelog
    alone must restore the same state."""
    state, changelog = apply_with_crashes(lambda: CustomerState(0, settings), messages, rng, crashes)
    restored = CustomerState(0, settings)
    restored.restore(changelog)
    assert customer_fingerprint(restored) == customer_fingerprint(state), "changelog does not restore the state"
    return state


def run_clean(messages: list[Message], settings: Settings) -> CustomerState:
    state = CustomerState(0, settings)
    for start in range(0, len(messages), 3):
        state.apply(messages[start:start + 3])
    return state


BOUNDED = Settings(customer_ttl_ms=97 * DAY, cohort_weeks=8)  # TTL evictions and pruned cohorts


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), crashes=st.integers(1, 12), bounded=st.booleans())
def test_crashes_and_replays_leave_the_state_of_a_clean_run(seed: int, crashes: int, bounded: bool) -> None:
    """Any crash point, any prefix of records persisted, replay from a lagging commit: the same
    aggregates, customers and counters as a run without crashes — with TTL and budget evictions
    and cohort pruning happening in between (``bounded``)."""
    rng = random.Random(seed)
    settings = BOUNDED if bounded else SETTINGS
    messages = random_facts(rng, 160, customers=30)
    clean = customer_fingerprint(run_clean(messages, settings))
    assert customer_fingerprint(run_with_crashes(messages, rng, crashes, settings)) == clean


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), aborts=st.integers(1, 6), bounded=st.booleans())
def test_aborted_records_read_back_after_a_shorter_replay_change_nothing(seed: int, aborts: int,
                                                                         bounded: bool) -> None:
    """A customer record of an aborted batch that the replay did not see, read back by a later
    recovery, says it holds a fact that the aggregates the replay wrote do not hold; with TTL
    evictions (``bounded``), its tombstones forget customers the replay still holds. The state
    must still end as a clean run's (no customer, order or maturity missing from its cohort)."""
    rng = random.Random(seed)
    settings = BOUNDED if bounded else SETTINGS
    messages = random_facts(rng, 160, customers=30)
    state, _ = apply_with_crashes(lambda: CustomerState(0, settings), messages, rng, aborts, hide_aborted=True)
    assert customer_fingerprint(state) == customer_fingerprint(run_clean(messages, settings))


def test_ttl_forgets_inactive_customers_and_keeps_their_contribution() -> None:
    state = CustomerState(0, Settings(customer_ttl_ms=97 * DAY))
    order = lambda who, i, ts: ["o", "shop", who, f"e{i}", ts, 1000, "EUR"]  # noqa: E731
    state.apply([Message(0, [order("a", 0, T0), order("b", 1, T0 + 1)], [])])
    state.apply([Message(1, [order("b", 3, T0 + 98 * DAY)], [])])
    assert list(state.customers) == [("shop", "b")]  # a: inactive for more than 97 days
    assert state.aggregates[("cohort_customers", "shop", iso_week(T0))] == 2  # a still counts
    assert state.aggregates[("customers_created",)] - len(state.customers) == 1  # the exported evictions


def test_ttl_decides_per_customer_also_when_a_record_is_restored_ahead_of_the_replay() -> None:
    """x ordered last at T0 + 5 days, y at T0, y arrived after x. The watermark then passes y's 97
    days but not x's, y orders again, then x. A crash persists the aggregates and x's record of
    that batch, not y's: the restored x is ahead of the replay. y is forgotten once the watermark
    passes its own 97 days whatever x's record says, with and without the crash (a walk in order
    of arrival kept y while x stood first, and forgot it in the replay where x had moved back)."""
    settings = Settings(customer_ttl_ms=97 * DAY)
    order = lambda who, i, ts: ["o", "shop", who, f"e{i}", ts, 1000, "EUR"]  # noqa: E731
    history = [Message(0, [order("x", 0, T0 + 5 * DAY)], []), Message(1, [order("y", 1, T0)], [])]
    batch = [Message(2, [order("z", 2, T0 + 97 * DAY + 1)], []), Message(3, [order("y", 3, T0 + 97 * DAY + 2)], []),
             Message(4, [order("x", 4, T0 + 97 * DAY + 3)], [])]
    clean = CustomerState(0, settings)
    changelog = clean.apply(history).records
    records = clean.apply(batch).records
    assert clean.customers[("shop", "y")].orders == [[T0 + 97 * DAY + 2, 1000, "EUR", "e3"]]  # forgotten, then new
    ahead = [r for r in records if r[0].endswith(b"|a|0") or b'"x"' in r[0]]
    crashed = CustomerState(0, settings)
    crashed.restore(changelog + ahead)
    crashed.apply(batch)
    assert customer_fingerprint(crashed) == customer_fingerprint(clean)


def test_budget_bounds_customers_per_partition() -> None:
    """Beyond the budget the least recently active customer goes (a memory guard: which one may
    differ after a crash, so this is not part of the exactness property)."""
    state = CustomerState(0, Settings(customer_max=50))
    for i in range(20):
        state.apply([Message(i, [["o", "shop", f"c{i}-{k}", f"e{i}-{k}", T0 + i, 100, "EUR"] for k in range(10)], [])])
        assert len(state.customers) <= 50
    assert ("shop", "c19-9") in state.customers and ("shop", "c0-0") not in state.customers
    assert state.aggregates[("cohort_customers", "shop", iso_week(T0))] == 200


def test_resent_fact_is_applied_once_and_counted_as_skipped() -> None:
    state = CustomerState(0, SETTINGS)
    fact = ["o", "shop", "a", "e1", T0, 1000, "EUR"]
    state.apply([Message(0, [fact], []), Message(1, [list(fact)], [])])
    week = iso_week(T0)
    assert state.aggregates[("cohort_revenue", "shop", week, "EUR", "30d")] == 1000
    assert state.aggregates[("facts_duplicate",)] == 1


def test_nps_cohort_counts_a_customer_once_the_horizon_has_passed() -> None:
    state = CustomerState(0, SETTINGS)
    state.apply([Message(0, [["o", "shop", "a", "e1", T0, 1000, "EUR"], ["n", "shop", "a", "e2", T0 + DAY, 10]], [])])
    assert not [k for k in state.aggregates if k[0] == "nps_customers"]
    # another customer's order moves the watermark past 30 days + 1 day margin
    state.apply([Message(1, [["o", "shop", "b", "e3", T0 + 31 * DAY, 500, "EUR"]], [])])
    assert state.aggregates[("nps_customers", "shop", "promoter", "1", "30d")] == 1
    assert ("nps_customers", "shop", "promoter", "1", "90d") not in state.aggregates
    state.apply([Message(2, [["o", "shop", "b", "e4", T0 + 92 * DAY, 500, "EUR"]], [])])
    assert state.aggregates[("nps_revenue", "shop", "promoter", "1", "EUR", "90d")] == 1000


def test_week_start_is_monday_utc() -> None:
    monday = 1_767_571_200_000  # 2026-01-05T00:00:00Z, a Monday
    assert week_start_ms(monday + 3 * DAY + 5) == monday
    assert week_start_ms(monday - 1) == monday - 7 * DAY
    assert iso_week(monday) == "2026-W02"


def test_contribution_of_a_customer_without_orders_is_only_the_ticket_cohort() -> None:
    customer = Customer(tickets=[[T0, "t1"]], answers=[[T0, 3, "n1"]])
    # a year on, the ticket week's 7 days (and a day's margin) have passed: mature, not converted
    assert contribution("shop", customer, T0 + 365 * DAY, 7 * DAY) == {
        ("support_customers", "shop", iso_week(T0)): 1, ("support_mature_customers", "shop", iso_week(T0)): 1}


def test_cohorts_older_than_the_exported_weeks_are_pruned() -> None:
    state = CustomerState(0, Settings(cohort_weeks=4))
    state.apply([Message(0, [["o", "shop", "a", "e1", T0, 1000, "EUR"], ["t", "shop", "a", "e2", T0]], [])])
    assert ("cohort_customers", "shop", iso_week(T0)) in state.aggregates
    state.apply([Message(1, [["o", "shop", "b", "e3", T0 + 4 * 7 * DAY, 500, "EUR"]], [])])
    weeks = {k[2] for k in state.aggregates if k[0] in ("cohort_customers", "support_customers")}
    assert weeks == {iso_week(T0 + 4 * 7 * DAY)}  # 4 weeks kept: the watermark's and the 3 before


def test_a_malformed_customer_topic_message_is_refused_not_applied() -> None:
    from streams.pipeline.exchange import decode_facts

    good = ["o", "shop", "c1", "e1", T0, 1000, "EUR"]
    assert decode_facts(orjson.dumps([good])) == [good]
    for bad in ([good[:5]], [["o", "shop", "c1", "e1", T0, "1000", "EUR"]], [["x", "shop", "c1", "e1", T0]],
                [["n", "shop", "c1", "e1", T0, True]], {"not": "a list"}, [None]):
        with pytest.raises(ValueError):
            decode_facts(orjson.dumps(bad))
    with pytest.raises(ValueError):
        decode_facts(b"\xff not json")


def legacy(records: list) -> list:
    """A changelog as the version before retention, CSAT bands, revenue after support and the
    mature counts wrote it: aggregates without those kinds and without a format version,
    customer records without the CSAT field."""
    out = []
    for key, value in records:
        if value is not None and key.startswith(b"customer|0|a|"):
            through, items, *_ = orjson.loads(value)
            value = orjson.dumps([through, [[k, v] for k, v in items if k[0] not in NEW_KINDS]])
        elif value is not None and key.startswith(b"customer|0|k|"):
            value = orjson.dumps(orjson.loads(value)[:7])
        out.append((key, value))
    return out


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), crashes=st.integers(0, 6))
def test_a_state_of_the_previous_format_upgrades_to_the_state_of_a_clean_run(seed: int, crashes: int) -> None:
    """The previous version runs (and crashes) over the first facts, the last of its batches only
    partly persisted; the new version restores its changelog, replays from a lagging commit and
    goes on with CSAT facts: every aggregate, old and new kinds, equals a clean run's."""
    rng = random.Random(seed)
    messages = random_facts(rng, 160, customers=30)
    cut = rng.randrange(20, len(messages) - 20)
    # the previous version's window stage sent no CSAT facts
    before = [Message(m.offset, [f for f in m.events if f[0] != "c"], []) for m in messages[:cut]]
    clean = customer_fingerprint(run_clean(before + messages[cut:], SETTINGS))

    last = rng.randint(1, 5)
    old, changelog = apply_with_crashes(lambda: CustomerState(0, SETTINGS), before[:-last], rng, crashes)
    records = old.apply(before[-last:]).records
    changelog += records[:rng.randint(0, len(records))]  # a crash while its last batch was written
    new = CustomerState(0, SETTINGS)
    new.restore(legacy(changelog))
    position = rng.randint(0, new.meta.through)  # the committed offset lags the state
    rest = before + messages[cut:]
    while position < len(rest):
        size = rng.randint(1, 9)
        new.apply(rest[position:position + size])
        position += size
    assert customer_fingerprint(new) == clean


def test_support_revenue_goes_to_the_latest_ticket_before_each_order_within_the_window() -> None:
    # tickets on Monday 2026-01-05 (W02) and Monday 2026-01-12 (W03), orders: 1 ms after the first
    # (W02's), exactly 7 days after the second (W03's, the edge counts), and 7 days + 1 ms after it
    # (too late: no ticket within 7 days before it). Worked from docs/customers.md.
    monday = 1_767_571_200_000
    customer = Customer(tickets=[[monday, "t1"], [monday + 7 * DAY, "t2"]],
                        orders=[[monday + 1, 100, "EUR", "o1"], [monday + 14 * DAY, 200, "EUR", "o2"],
                                [monday + 14 * DAY + 1, 400, "EUR", "o3"]])
    got = contribution("shop", customer, None, 7 * DAY)
    assert {k: v for k, v in got.items() if k[0] in ("support_orders", "support_revenue")} == {
        ("support_orders", "shop", "2026-W02", "EUR"): 1, ("support_revenue", "shop", "2026-W02", "EUR"): 100,
        ("support_orders", "shop", "2026-W03", "EUR"): 1, ("support_revenue", "shop", "2026-W03", "EUR"): 200}
    # an order at the ticket's own millisecond is not after it
    same = Customer(tickets=[[monday, "t1"]], orders=[[monday, 100, "EUR", "o1"]])
    assert not [k for k in contribution("shop", same, None, 7 * DAY) if k[0] == "support_orders"]


def test_retention_periods_are_blocks_of_days_from_monday_1969_12_29() -> None:
    # 1969-12-29 to 2026-01-01: 3 + 56 x 365 + 14 leap days = 20,457 days = 681 x 30 + 27, so the
    # 30-day period holding 2026-01-01 began 27 days earlier, 2025-12-05; the next 2026-01-04.
    assert day_label(period_start_ms(T0, 30 * DAY)) == "2025-12-05"
    assert day_label(period_start_ms(T0 + 3 * DAY - 1, 30 * DAY)) == "2025-12-05"
    assert day_label(period_start_ms(T0 + 3 * DAY, 30 * DAY)) == "2026-01-04"
    # a 7-day period is the ISO week
    assert period_start_ms(T0, 7 * DAY) == week_start_ms(T0)


def test_retention_counts_last_periods_customers_who_ordered_again() -> None:
    # 30-day periods 2025-12-05, 2026-01-04, 02-03, 03-05, 04-04. a: orders in the 12-05 and 01-04
    # periods; b: 12-05 only; c: 01-04 and 02-03. Watermark in 02-03: exported 01-04 (customers
    # a, b; a retained) and 02-03 (customers a, c; c retained); the 03-05 period (customer c) is
    # kept, not shown: it has not begun.
    state = CustomerState(0, Settings(retention_periods_ms=(30 * DAY,), cohort_weeks=60))
    jan4, feb3 = T0 + 3 * DAY, T0 + 33 * DAY
    state.apply([Message(0, [["o", "shop", "a", "e1", T0, 100, "EUR"], ["o", "shop", "b", "e2", T0, 100, "EUR"],
                             ["o", "shop", "a", "e3", jan4 + DAY, 100, "EUR"],
                             ["o", "shop", "c", "e4", jan4 + 2 * DAY, 100, "EUR"],
                             ["o", "shop", "c", "e5", feb3 + DAY, 100, "EUR"]], [])])
    exported = state.exported()
    assert {k: v for k, v in exported.items() if k[0].startswith("retention")} == {
        ("retention_customers", "shop", "30d", "2026-01-04"): 2, ("retention_retained", "shop", "30d", "2026-01-04"): 1,
        ("retention_customers", "shop", "30d", "2026-02-03"): 2, ("retention_retained", "shop", "30d", "2026-02-03"): 1}
    assert state.aggregates[("retention_customers", "shop", "30d", "2026-03-05")] == 1
    # 2026-04-04 begins the 04-04 period: 01-04 and 02-03 are past the previous period, pruned,
    # and a late order of b in the 01-04 period changes nothing
    state.apply([Message(1, [["t", "shop", "x", "e6", feb3 + 60 * DAY], ["o", "shop", "b", "e7", jan4, 5, "EUR"]],
                         [])])
    assert not [k for k in state.aggregates if k[0].startswith("retention") and k[3] <= "2026-02-03"]


def test_csat_band_is_the_latest_answers_and_counts_once_the_horizon_is_mature() -> None:
    customer = Customer(orders=[[T0, 1000, "EUR", "o1"], [T0 + DAY, 500, "EUR", "o2"]],
                        csat=[[T0, 5, "c1"], [T0 + 2 * DAY, 2, "c2"]])
    # 30 days + the day's margin after the first order, 1 ms short: no band yet
    assert not [k for k in contribution("shop", customer, T0 + 31 * DAY - 1, 7 * DAY) if k[0].startswith("csat")]
    got = contribution("shop", customer, T0 + 31 * DAY, 7 * DAY)
    assert {k: v for k, v in got.items() if k[0].startswith("csat")} == {
        ("csat_customers", "shop", "unsatisfied", "2", "30d"): 1,
        ("csat_revenue", "shop", "unsatisfied", "2", "EUR", "30d"): 1500}
    assert [csat_band(s) for s in range(1, 6)] == ["unsatisfied", "unsatisfied", "neutral", "satisfied", "satisfied"]


def test_repeat_purchase_and_post_support_turn_mature_a_margin_after_their_windows() -> None:
    customer = Customer(orders=[[T0, 100, "EUR", "o1"], [T0 + 3 * DAY, 100, "EUR", "o2"]], tickets=[[T0 + DAY, "t1"]])
    kinds = lambda wm: {k[0] for k in contribution("shop", customer, wm, 7 * DAY)}  # noqa: E731
    assert {"support_mature_customers", "support_mature_converted"} <= kinds(T0 + 9 * DAY)  # ticket + 7d + 1d
    assert "support_mature_customers" not in kinds(T0 + 9 * DAY - 1)
    assert {"cohort_mature_customers", "cohort_mature_repeat_customers"} <= kinds(T0 + 91 * DAY)  # first + 90d + 1d
    assert "cohort_mature_customers" not in kinds(T0 + 91 * DAY - 1)


def test_csat_facts_travel_apart_from_the_first_kinds_and_decode() -> None:
    from streams.pipeline.exchange import decode_facts, fact_messages

    facts = [["o", "shop", "c1", "e1", T0, 1000, "EUR"], ["c", "shop", "c1", "e2", T0, 4],
             ["n", "shop", "c1", "e3", T0, 9]]
    sends = fact_messages(facts, 1)
    assert [decode_facts(value) for _, _, value in sends] == [[facts[0], facts[2]], [facts[1]]]
    for bad in (["c", "shop", "c1", "e2", T0, 0], ["c", "shop", "c1", "e2", T0, 6], ["n", "shop", "c1", "e2", T0, 11]):
        with pytest.raises(ValueError):
            decode_facts(orjson.dumps([bad]))


def test_a_scrape_shows_revenue_after_support_in_major_units_and_no_period_before_it_begins() -> None:
    from prometheus_client.registry import CollectorRegistry

    from streams.runtime.collector import CxCollector
    from streams.runtime.published import Published, Publisher

    state = CustomerState(0, Settings(retention_periods_ms=(30 * DAY,)))
    monday = 1_767_571_200_000  # 2026-01-05, ISO week 2026-W02, in the 30-day period from 2026-01-04
    state.apply([Message(0, [["t", "shop", "a", "e1", monday], ["o", "shop", "a", "e2", monday + DAY, 1999, "EUR"],
                             ["o", "shop", "a", "e3", monday + DAY, 500, "JPY"]], [])])
    publisher = Publisher()
    publisher.current = Published(snapshots={("customer", 0): state.snapshot()})
    registry = CollectorRegistry()
    registry.register(CxCollector(publisher, Settings()))
    week = {"storefront": "shop", "cohort": "2026-W02"}
    assert registry.get_sample_value("cxpulse_customer_post_support_revenue", {**week, "currency": "EUR"}) == 19.99
    assert registry.get_sample_value("cxpulse_customer_post_support_revenue", {**week, "currency": "JPY"}) == 500.0
    assert registry.get_sample_value("cxpulse_customer_post_support_orders", {**week, "currency": "EUR"}) == 1.0
    # a is a customer of the next period (from 2026-02-03), which has not begun: not exported yet
    assert registry.get_sample_value("cxpulse_customer_retention_customers",
                                     {"storefront": "shop", "period": "30d", "period_start": "2026-02-03"}) is None
    assert ("retention_customers", "shop", "30d", "2026-02-03") in state.aggregates


def test_cart_abandonment_joins_checkouts_and_orders_by_session() -> None:
    """docs/customers.md, "Checkouts", case by case (horizon 1h, grace 2m), figures worked by hand."""
    state = CustomerState(0, Settings())
    minute = 60_000
    day = day_label(T0)

    def k(sid: str, i: int, at: int, channel: str = "web") -> list:
        return ["k", "shop", sid, f"k{i}", T0 + at * minute, channel, "mobile"]

    def s(sid: str, i: int, at: int) -> list:
        return ["s", "shop", sid, f"s{i}", T0 + at * minute]

    state.apply([Message(0, [k("a", 1, 0), s("a", 1, 30),  # ordered 30 min after: converted
                             k("b", 2, 0), s("b", 2, 61),  # ordered after the hour: abandoned once decided
                             k("c", 3, 10), s("c", 3, 8),  # order stamped 2 min before the checkout: converted
                             s("d", 4, 5),  # an order without a checkout: counts nowhere
                             k("e", 5, 20, "app"), k("e", 6, 5, "web")], [])])  # the earlier checkout decides
    web, app = ("shop", "web", "mobile", day), ("shop", "app", "mobile", day)
    assert state.aggregates[("checkout_sessions", *web)] == 4  # a, b, c, e (by its first checkout: web)
    assert ("checkout_sessions", *app) not in state.aggregates
    assert state.aggregates[("checkout_decided", *web)] == 2  # a, c; b and e wait for 1h + 2m
    assert ("checkout_abandoned", *web) not in state.aggregates
    state.apply([Message(1, [s("z", 7, 66)], [])])  # watermark 1h06: e (first at 0h05) not yet past 1h07
    assert state.aggregates[("checkout_abandoned", *web)] == 1  # b: 0h00 + 1h + 2m passed
    state.apply([Message(2, [s("z", 8, 67)], [])])
    assert state.aggregates[("checkout_abandoned", *web)] == 2  # and e
    assert state.aggregates[("checkout_decided", *web)] == 4
    assert len(state.sessions) == 6
    # 8 days + 1h + 2m after their last fact the sessions are forgotten; what they counted stays
    state.apply([Message(3, [s("y", 9, 8 * 24 * 60 + 63 + 67)], [])])
    assert list(state.sessions) == ["y"]
    assert ("checkout_sessions", *web) not in state.exported()  # the day left the exported 8 days
