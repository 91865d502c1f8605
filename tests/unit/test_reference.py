"""The reference calculator checked by hand: tiny event lists whose numbers are worked out below.

Every test uses one partition (``Params(partitions=1)``) unless it is about partitions, a 1m window
and a 2m grace, so lateness is easy to follow: an event at minute m is late once the watermark has
reached minute floor(m) + 1 + 2.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.reference import Params, Reference, event_ms, exact_quantile, partition_of

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a whole hour
MIN = 60_000
ONE = Params(partitions=1)


def at(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


_ids = iter(range(1, 10**9))


def session(ms: int, *, event_id: str | None = None, kind: str = "started", session_id: str = "s1",
            storefront: str = "shop", channel: str = "web", device: str = "mobile") -> dict:
    event = {"event_id": event_id or f"e{next(_ids)}", "type": f"session.{kind}", "schema_version": 1,
             "occurred_at": at(ms), "storefront": storefront, "session_id": session_id, "channel": channel,
             "device": device}
    if kind == "started":
        event["visitor_id"] = "v1"
    return event


def ticket(ms: int, kind: str, ticket_id: str = "t1", **fields) -> dict:
    return {"event_id": f"e{next(_ids)}", "type": f"ticket.{kind}", "schema_version": 1, "occurred_at": at(ms),
            "storefront": "shop", "ticket_id": ticket_id, **fields}


def reply(ms: int, author: str = "agent", public: bool = True, ticket_id: str = "t1") -> dict:
    return ticket(ms, "replied", ticket_id, author=author, public=public)


WEB = (("storefront", "shop"), ("channel", "web"), ("device", "mobile"))
EMAIL = (("storefront", "shop"), ("support_channel", "email"), ("reason", "unknown"))


def started(ref: Reference) -> dict:
    return ref.counter("cxpulse_sessions_started_total")


# ------------------------------------------------------------------ lateness, duplicates, order
def test_out_of_order_within_grace_counts_in_its_own_window() -> None:
    events = [session(T0 + 5 * MIN), session(T0 + 3 * MIN + 10)]  # minute 3 closes at wm >= minute 6
    ref = Reference.compute(events, ONE)
    assert ref.decisions == ["counted", "counted"]
    assert ref.field_totals("session", "sessions_started", start_ms=T0 + 3 * MIN, end_ms=T0 + 4 * MIN) == {WEB: 1}
    assert ref.watermark_ms["session", 0] == T0 + 5 * MIN


def test_late_when_watermark_reached_window_end_plus_grace() -> None:
    events = [session(T0 + 6 * MIN), session(T0 + 3 * MIN + 59_999), session(T0 + 4 * MIN)]
    ref = Reference.compute(events, ONE)
    # minute 3 ends at 4, + 2m grace = 6: reached (>=), so late; minute 4 closes at 7: on time
    assert ref.decisions == ["counted", "late", "counted"]
    assert ref.late["session", 0] == 1 and ref.counted["session", 0] == 2
    assert started(ref) == {WEB: 2}


def test_late_event_does_not_move_the_watermark_and_its_resend_is_late_again() -> None:
    first = session(T0 + 10 * MIN)
    old = session(T0 + 1 * MIN, event_id="old")
    ref = Reference.compute([first, old, dict(old)], ONE)
    assert ref.decisions == ["counted", "late", "late"]
    assert ref.duplicate.get(("session", 0), 0) == 0


def test_duplicate_of_counted_event_is_counted_once() -> None:
    event = session(T0, event_id="same")
    ref = Reference.compute([event, session(T0 + 1000), dict(event)], ONE)
    assert ref.decisions == ["counted", "counted", "duplicate"]
    assert ref.duplicate["session", 0] == 1
    assert started(ref) == {WEB: 2}


def test_same_event_id_on_another_partition_is_not_a_duplicate() -> None:
    params = Params(partitions=8)
    a = session(T0, event_id="same", session_id="s-a")
    b = session(T0, event_id="same", session_id="s-b")
    assert partition_of("s-a", 8) != partition_of("s-b", 8)
    ref = Reference.compute([a, b], params)
    assert ref.decisions == ["counted", "counted"]


def test_resend_after_the_dedupe_horizon_is_late_not_duplicate() -> None:
    event = session(T0, event_id="same")
    ref = Reference.compute([event, session(T0 + 6 * MIN), dict(event)], ONE)  # horizon 5m passed
    assert ref.decisions == ["counted", "counted", "late"]


@pytest.mark.parametrize(("key", "partition"), [("", 681), ("a", 524), ("ab", 434), ("abc", 107), ("123456789", 566)])
def test_partition_is_kafkas_murmur2(key: str, partition: int) -> None:
    # the Java client's values for 1000 partitions (kafka-python's Java-compatibility vectors)
    assert partition_of(key, 1000) == partition


# ------------------------------------------------------------------ money and segments
def test_money_is_exact_per_currency_and_segments_default() -> None:
    base = {"schema_version": 1, "storefront": "shop", "occurred_at": at(T0)}
    events = [
        {**base, "event_id": "o1", "type": "order.placed", "order_id": "o1", "customer_id": "c", "total_minor": 1,
         "currency": "EUR", "first_order": True, "channel": "web", "device": "desktop"},
        {**base, "event_id": "o2", "type": "order.placed", "order_id": "o2", "customer_id": "c", "total_minor": 2,
         "currency": "EUR", "first_order": False, "channel": "web", "device": "desktop"},
        {**base, "event_id": "o3", "type": "order.placed", "order_id": "o3", "customer_id": "c",
         "total_minor": 12800, "currency": "JPY", "first_order": False},
        {**base, "event_id": "o4", "type": "order.returned", "order_id": "o1"},
        {**base, "event_id": "o5", "type": "order.refunded", "order_id": "o1", "amount_minor": 1234,
         "currency": "KWD"},
    ]
    ref = Reference.compute(events, ONE)
    eur = (("storefront", "shop"), ("channel", "web"), ("device", "desktop"), ("currency", "EUR"))
    unknown = lambda cur: (("storefront", "shop"), ("channel", "unknown"), ("device", "unknown"), ("currency", cur))  # noqa: E731
    assert ref.counter("cxpulse_order_revenue_total") == {eur: Decimal("0.03"), unknown("JPY"): Decimal(12800)}
    assert ref.counter("cxpulse_orders_placed_total") == {eur: 2, unknown("JPY"): 1}
    assert ref.counter("cxpulse_orders_first_total") == {eur: 1}
    assert ref.counter("cxpulse_returns_total") == {unknown("XXX"): 1}
    assert ref.counter("cxpulse_return_amount_total") == {unknown("XXX"): Decimal(0)}
    assert ref.counter("cxpulse_refund_amount_total") == {unknown("KWD"): Decimal("1.234")}
    assert float(ref.counter("cxpulse_order_revenue_total")[eur]) == 0.03  # not 0.01 + 0.02


def test_surveys_split_by_kind_and_score() -> None:
    base = {"schema_version": 1, "storefront": "shop", "occurred_at": at(T0), "type": "survey.answered"}
    answers = [("nps", 10), ("nps", 9), ("nps", 7), ("nps", 6), ("nps", 0), ("csat", 4), ("csat", 3), ("ces", 6)]
    events = [{**base, "event_id": f"r{i}", "response_id": f"r{i}", "kind": kind, "score": score}
              for i, (kind, score) in enumerate(answers)]
    events[0]["channel"] = "app"
    ref = Reference.compute(events, ONE)
    shop = (("storefront", "shop"), ("channel", "unknown"))
    app = (("storefront", "shop"), ("channel", "app"))
    assert ref.counter("cxpulse_nps_responses_total") == {app: 1, shop: 4}
    assert ref.counter("cxpulse_nps_promoters_total") == {app: 1, shop: 1}
    assert ref.counter("cxpulse_nps_detractors_total") == {shop: 2}
    assert ref.counter("cxpulse_nps_score_points_total") == {app: 10, shop: 22}
    assert ref.counter("cxpulse_csat_satisfied_total") == {shop: 1}
    assert ref.counter("cxpulse_csat_score_points_total") == {shop: 7}
    assert ref.counter("cxpulse_ces_score_points_total") == {shop: 6}


def test_surveys_sent_count_per_kind_in_their_own_window_apart_from_the_answers() -> None:
    # rule 12: a survey.sent is one survey sent of its kind, in the window of its own event time;
    # an answer counts in its window, whether or not its survey.sent was seen (never joined).
    def survey(ms: int, response: str, kind: str, score: int | None = None, event_id: str | None = None,
               **more: str) -> dict:
        event = {"event_id": event_id or f"e{next(_ids)}", "schema_version": 1, "storefront": "shop",
                 "occurred_at": at(ms), "response_id": response, "kind": kind, **more,
                 "type": "survey.sent" if score is None else "survey.answered"}
        return event if score is None else {**event, "score": score}

    twice = survey(T0 + 1000, "r2", "nps", channel="web", event_id="same")
    events = [
        survey(T0, "r1", "nps", channel="web"),
        twice,
        survey(T0 + 2000, "r3", "csat"),
        survey(T0 + 3000, "r3", "ces"),  # the same survey's second question
        survey(T0 + 2 * MIN, "r1", "nps", 9, channel="web"),  # r1's answer, two minutes later
        survey(T0 + 2 * MIN, "r8", "csat", 5),  # an answer whose survey.sent was never seen
        dict(twice),  # a resend: a duplicate
        survey(T0 + 10 * MIN, "r4", "nps", channel="web"),
        survey(T0 + 5000, "r5", "csat"),  # minute 0 closed at minute 3: late
    ]
    ref = Reference.compute(events, ONE)
    assert ref.decisions == ["counted"] * 6 + ["duplicate", "counted", "late"]
    web = (("storefront", "shop"), ("channel", "web"))
    shop = (("storefront", "shop"), ("channel", "unknown"))
    assert ref.counter("cxpulse_nps_surveys_sent_total") == {web: 3}
    assert ref.counter("cxpulse_csat_surveys_sent_total") == {shop: 1}
    assert ref.counter("cxpulse_ces_surveys_sent_total") == {shop: 1}
    assert ref.counter("cxpulse_nps_responses_total") == {web: 1}
    assert ref.counter("cxpulse_csat_responses_total") == {shop: 1}
    assert ref.field_totals("survey", "nps_sent", start_ms=T0, end_ms=T0 + MIN) == {web: 2}
    assert ref.field_totals("survey", "nps_responses", start_ms=T0, end_ms=T0 + MIN) == {}
    assert ref.view("survey", T0, 5 * MIN)["cxpulse_window_nps_surveys_sent"] == {web: 2}


def test_response_rate_is_answers_over_surveys_sent_of_the_window_per_kind() -> None:
    # docs/metrics.md, "Survey response rates": two counts of one window, not a join by response_id
    def survey(minute: int, response: str, kind: str, score: int | None = None, **more: str) -> dict:
        event = {"event_id": f"e{next(_ids)}", "schema_version": 1, "storefront": "shop",
                 "occurred_at": at(T0 + minute * MIN), "response_id": response, "kind": kind, **more,
                 "type": "survey.sent" if score is None else "survey.answered"}
        return event if score is None else {**event, "score": score}

    events = [
        *(survey(0, f"n{i}", "nps", channel="web") for i in range(4)),  # 4 NPS surveys sent on web
        survey(1, "n0", "nps", 10, channel="web"),
        survey(1, "c0", "csat"), survey(1, "c0", "csat", 4),  # CSAT: 1 sent, 1 answer (no channel)
        survey(2, "x9", "ces", 5),  # a CES answer and no CES survey sent in the window: no rate
        survey(6, "n1", "nps", 3, channel="web"),  # answered in the next 5-minute window
        survey(7, "c1", "csat", 5), survey(7, "c2", "csat", 2),  # 2 answers, 1 sent: 200%
        survey(8, "c3", "csat"),
    ]
    ref = Reference.compute(events, ONE)
    assert set(ref.decisions) == {"counted"}
    first = ref.window_kpis(T0 + 5 * MIN, 5 * MIN)
    assert first["nps_response_rate", ("shop",)] == 1 / 4
    assert first["csat_response_rate", ("shop",)] == 1.0
    assert ("ces_response_rate", ("shop",)) not in first and first["ces", ("shop",)] == 5
    by_channel = ref.window_kpis(T0 + 5 * MIN, 5 * MIN, "channel")
    assert by_channel["nps_response_rate", ("shop", "web")] == 1 / 4
    assert by_channel["csat_response_rate", ("shop", "unknown")] == 1.0
    second = ref.window_kpis(T0 + 10 * MIN, 5 * MIN)
    # no NPS survey sent in the window: no rate, though n1's answer counts there as an NPS answer
    assert ("nps_response_rate", ("shop",)) not in second and second["nps", ("shop",)] == -100
    assert second["csat_response_rate", ("shop",)] == 2.0
    hour = ref.window_kpis(T0 + 60 * MIN, 60 * MIN)
    assert (hour["nps_response_rate", ("shop",)], hour["csat_response_rate", ("shop",)]) == (2 / 4, 3 / 2)


# ------------------------------------------------------------------ tickets
def test_first_response_skips_bots_customers_and_internal_notes() -> None:
    events = [
        ticket(T0, "created", support_channel="email"),
        reply(T0 + 5_000, author="bot"),
        reply(T0 + 10_000, author="customer"),
        reply(T0 + 20_000, public=False),
        reply(T0 + 90_000),  # the first public agent reply: 90 s, in minute 1
        reply(T0 + 100_000),  # later agent replies do not count again
    ]
    ref = Reference.compute(events, ONE)
    assert ref.field_samples("first_response") == {EMAIL: [90.0]}
    assert ref.field_samples("first_response", start_ms=T0 + MIN, end_ms=T0 + 2 * MIN) == {EMAIL: [90.0]}
    hist = ref.histogram("cxpulse_ticket_first_response_seconds")[EMAIL]
    assert (hist["60.0"], hist["120.0"], hist["+Inf"], hist["count"], hist["sum"]) == (0, 1, 1, 1, 90.0)


def test_reply_before_create_in_offset_order() -> None:
    events = [
        reply(T0 + 40_000),  # arrives first (channel still unknown)
        reply(T0 + 30_000),  # an earlier agent reply, also before the creation
        ticket(T0, "created", support_channel="chat"),  # now both are known: earliest reply - creation
        ticket(T0 + 50_000, "resolved"),
    ]
    ref = Reference.compute(events, ONE)
    chat = (("storefront", "shop"), ("support_channel", "chat"), ("reason", "unknown"))
    assert ref.field_samples("first_response") == {chat: [30.0]}
    assert ref.field_samples("resolution") == {chat: [50.0]}
    assert ref.counter("cxpulse_tickets_resolved_one_touch_total") == {}  # two agent replies


def test_first_response_recorded_once_even_if_an_earlier_reply_arrives_later() -> None:
    events = [ticket(T0, "created", support_channel="email"), reply(T0 + 60_000), reply(T0 + 30_000)]
    ref = Reference.compute(events, ONE)
    assert ref.field_samples("first_response") == {EMAIL: [60.0]}


def test_reopen_measures_to_the_last_resolve_and_is_not_one_touch() -> None:
    events = [
        ticket(T0, "created", support_channel="email"),
        reply(T0 + 10_000),
        ticket(T0 + 20_000, "resolved"),  # one-touch: 20 s
        ticket(T0 + 30_000, "reopened"),
        reply(T0 + 40_000),
        ticket(T0 + 200_000, "resolved"),  # measured again from creation: 200 s, not one-touch
    ]
    ref = Reference.compute(events, ONE)
    assert ref.field_samples("resolution") == {EMAIL: [20.0, 200.0]}
    assert ref.counter("cxpulse_tickets_resolved_one_touch_total") == {EMAIL: 1}
    assert ref.counter("cxpulse_tickets_reopened_total") == {EMAIL: 1}
    assert ref.field_totals("ticket", "tickets_resolved_one_touch", start_ms=T0, end_ms=T0 + MIN) == {EMAIL: 1}
    assert ref.field_samples("resolution", start_ms=T0 + 3 * MIN, end_ms=T0 + 4 * MIN) == {EMAIL: [200.0]}


def test_resolve_without_creation_is_unmatched_in_the_first_given_channel() -> None:
    events = [ticket(T0, "resolved", ticket_id="t9", support_channel="sms"), ticket(T0 + 1, "resolved", ticket_id="t8")]
    ref = Reference.compute(events, ONE)
    assert ref.counter("cxpulse_tickets_resolved_unmatched_total") == {
        (("storefront", "shop"), ("support_channel", "sms"), ("reason", "unknown")): 1,
        (("storefront", "shop"), ("support_channel", "unknown"), ("reason", "unknown")): 1,
    }
    assert ref.field_samples("resolution") == {}
    assert ref.counter("cxpulse_tickets_resolved_one_touch_total") == {}


def test_a_tickets_reason_is_its_creations_and_follows_its_replies_and_resolution() -> None:
    shop = ("storefront", "shop")
    events = [
        ticket(T0, "created", support_channel="chat", reason="shipping"),
        reply(T0 + 30_000),
        ticket(T0 + 60_000, "resolved", reason="payment"),  # a later reason does not change the ticket's
        ticket(T0 + 1_000, "created", ticket_id="t2", support_channel="email"),  # no reason: unknown
        ticket(T0 + 5_000, "resolved", ticket_id="t3", reason="returns_refunds"),  # unmatched, its own reason
    ]
    ref = Reference.compute(events, ONE)
    shipping = (shop, ("support_channel", "chat"), ("reason", "shipping"))
    assert ref.counter("cxpulse_tickets_created_total") == {
        shipping: 1, (shop, ("support_channel", "email"), ("reason", "unknown")): 1}
    assert ref.field_samples("first_response") == {shipping: [30.0]}
    assert ref.field_samples("resolution") == {shipping: [60.0]}
    assert ref.counter("cxpulse_tickets_resolved_one_touch_total") == {shipping: 1}
    assert ref.counter("cxpulse_tickets_resolved_unmatched_total") == {
        (shop, ("support_channel", "unknown"), ("reason", "returns_refunds")): 1}


def test_a_reason_given_before_the_creation_holds_only_until_the_creation_gives_one() -> None:
    events = [reply(T0 + 10_000, ticket_id="t1") | {"reason": "account"},
              ticket(T0, "created", support_channel="chat", reason="technical")]
    ref = Reference.compute(events, ONE)
    assert ref.counter("cxpulse_tickets_created_total") == {
        (("storefront", "shop"), ("support_channel", "chat"), ("reason", "technical")): 1}


def test_kpis_by_reason_divide_the_reasons_tickets_by_all_orders_of_the_storefront() -> None:
    def order(ms: int, order_id: str) -> dict:
        return {"event_id": f"e{next(_ids)}", "type": "order.placed", "schema_version": 1, "occurred_at": at(ms),
                "storefront": "shop", "order_id": order_id, "customer_id": "c1", "total_minor": 100,
                "currency": "EUR", "first_order": False}

    events = [order(T0 + i * 1000, f"o{i}") for i in range(4)] + [
        ticket(T0, "created", support_channel="chat", reason="shipping"),
        reply(T0 + 20_000),
        ticket(T0 + 40_000, "resolved"),
        ticket(T0, "created", ticket_id="t2", support_channel="email", reason="shipping"),
        ticket(T0, "created", ticket_id="t3", support_channel="email", reason="payment"),
        reply(T0 + 10_000, ticket_id="t3"), reply(T0 + 15_000, ticket_id="t3"),
        ticket(T0 + 50_000, "resolved", ticket_id="t3"),  # two agent replies: not one-touch
    ]
    ref = Reference.compute(events, ONE)
    kpis = ref.window_kpis(T0 + 5 * MIN, 5 * MIN, "reason")
    assert kpis["ticket_to_order", ("shop", "shipping")] == 2 / 4
    assert kpis["ticket_to_order", ("shop", "payment")] == 1 / 4
    assert kpis["first_contact_resolution", ("shop", "shipping")] == 1.0
    assert kpis["first_contact_resolution", ("shop", "payment")] == 0.0
    assert kpis["first_response_p90", ("shop", "payment")] == 10.0
    assert kpis["resolution_p50", ("shop", "shipping")] == 40.0
    assert not {key for key, _ in kpis} - {"ticket_to_order", "first_contact_resolution", "first_response_p50",
                                           "first_response_p90", "resolution_p50", "resolution_p90"}
    # summed over reasons, the storefront's figures are unchanged
    assert ref.window_kpis(T0 + 5 * MIN, 5 * MIN)["ticket_to_order", ("shop",)] == 3 / 4


def test_late_creation_leaves_the_ticket_unmatched() -> None:
    events = [ticket(T0 + 10 * MIN, "created", ticket_id="t2", support_channel="chat"),
              ticket(T0, "created", support_channel="email"),  # late: never seen
              ticket(T0 + 10 * MIN, "resolved")]
    ref = Reference.compute(events, ONE)
    assert ref.decisions == ["counted", "late", "counted"]
    assert ref.counter("cxpulse_tickets_resolved_unmatched_total") == {
        (("storefront", "shop"), ("support_channel", "unknown"), ("reason", "unknown")): 1}


# ------------------------------------------------------------------ views and quantiles
def test_view_sums_aligned_base_windows_of_the_given_partitions() -> None:
    params = Params(partitions=4)
    events = [session(T0 + m * MIN, session_id=f"s{m}") for m in range(10)]
    ref = Reference.compute(events, params)
    all_five = ref.view("session", T0, 5 * MIN)["cxpulse_window_sessions_started"]
    assert all_five == {WEB: 5}
    some = [partition_of(f"s{m}", 4) for m in range(3)]
    expected = sum(1 for m in range(5) if partition_of(f"s{m}", 4) in some)
    assert ref.view("session", T0, 5 * MIN, some)["cxpulse_window_sessions_started"] == {WEB: expected}
    with pytest.raises(AssertionError):
        ref.view("session", T0 + MIN, 5 * MIN)


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([1], 0.5, 1), ([1, 2], 0.5, 1), ([1, 2, 3], 0.5, 2), ([1, 2, 3, 4], 0.5, 2),
    ([4, 3, 2, 1], 0.9, 4), (list(range(1, 11)), 0.9, 9), (list(range(1, 12)), 0.9, 10),
])
def test_exact_quantile_is_the_smallest_value_with_ceil_qn_at_or_below(values, q, expected) -> None:
    assert exact_quantile(values, q) == expected


@pytest.mark.parametrize(("text", "ms"), [
    ("2026-01-01T00:00:00Z", T0),
    ("2026-01-01T01:00:00.5+01:00", T0 + 500),
    ("2026-01-01T00:00:00.123456789Z", T0 + 123),
    ("2025-12-31T23:59:59.9999-00:30", T0 + 30 * MIN - 1),
])
def test_event_time_parses_rfc3339_offsets(text: str, ms: int) -> None:
    assert event_ms(text) == ms


def test_a_histogram_by_fewer_labels_counts_the_observations_of_every_reason_together() -> None:
    shop = ("storefront", "shop")
    events = [
        ticket(T0, "created", support_channel="chat", reason="shipping"),
        ticket(T0 + 1_000, "created", ticket_id="t2", support_channel="chat", reason="payment"),
        ticket(T0 + 2_000, "created", ticket_id="t3", support_channel="email"),
        ticket(T0 + 12_000, "resolved", ticket_id="t3"),
        ticket(T0 + 50_000, "resolved"),
        ticket(T0 + 201_000, "resolved", ticket_id="t2"),
    ]
    ref = Reference.compute(events, ONE)
    by_channel = ref.histogram("cxpulse_ticket_resolution_seconds", labels=("storefront", "support_channel"))
    assert set(by_channel) == {(shop, ("support_channel", "chat")), (shop, ("support_channel", "email"))}
    chat = by_channel[shop, ("support_channel", "chat")]
    assert (chat["60.0"], chat["300.0"], chat["+Inf"], chat["count"], chat["sum"]) == (1, 2, 2, 2, 250.0)
    assert by_channel[shop, ("support_channel", "email")]["15.0"] == 1
    per_segment = ref.histogram("cxpulse_ticket_resolution_seconds")
    assert per_segment[shop, ("support_channel", "chat"), ("reason", "payment")]["count"] == 1


# ------------------------------------------------------------------ the funnel per session (rule 15)
def step(ms: int, kind: str, session_id: str) -> dict:
    """A funnel step of a session (product views and cart adds name a product)."""
    event = session(ms, kind=kind, session_id=session_id)
    if kind != "checkout_started":
        event["product_id"] = "p1"
    return event


FUNNEL_EVENTS = [  # in time order (nothing late)
    session(T0, session_id="s1"), session(T0, session_id="s2"),
    step(T0 + MIN, "product_viewed", "s1"), step(T0 + MIN, "cart_added", "s2"),  # s2: a cart without a view
    step(T0 + 2 * MIN, "product_viewed", "s1"), step(T0 + 3 * MIN, "cart_added", "s1"),
    step(T0 + 4 * MIN, "checkout_started", "s1"), step(T0 + 5 * MIN, "checkout_started", "s1"),
    step(T0 + 10 * MIN, "product_viewed", "s3"),
    # s1 again after 35 minutes without an event (> the 30-minute timeout): a new session
    step(T0 + 40 * MIN, "product_viewed", "s1"),
]
# by hand: sessions with a view in minutes 1 (s1), 10 (s3), 40 (s1 anew); with a cart in minutes 1 (s2) and 3
# (s1); with a checkout in minute 4 (s1), its second checkout adds nothing
FUNNEL_BY_HAND = {"sessions_viewed": {1: 1, 10: 1, 40: 1}, "sessions_carted": {1: 1, 3: 1},
                  "sessions_checked_out": {4: 1}}


def test_the_funnel_counts_each_session_once_per_step_and_a_timed_out_session_anew() -> None:
    ref = Reference.compute(FUNNEL_EVENTS, ONE)
    for field, minutes in FUNNEL_BY_HAND.items():
        got = {m: ref.field_totals("session", field, start_ms=T0 + m * MIN, end_ms=T0 + (m + 1) * MIN).get(WEB, 0)
               for m in range(45)}
        assert {m: n for m, n in got.items() if n} == minutes, field
