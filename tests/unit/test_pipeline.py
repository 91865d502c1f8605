"""Partition ownership in streams.pipeline.plan: what a worker keeps across losing and
regaining partitions, and when it must read the changelog from its start; and what a batch of
survey records counts."""

from __future__ import annotations

import random
from collections import Counter

import orjson

from streams.config import Settings
from streams.errors import REASONS
from streams.pipeline.exchange import decode_facts
from streams.pipeline.plan import Pipeline
from streams.pipeline.records import Record
from tests.faults.common import valid_body

KEY = ("order", 1)


def _iso(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def installed(pipeline: Pipeline, end: int) -> None:
    (job,) = pipeline.claim([KEY])
    assert pipeline.install(job, [], 0) is not None
    pipeline.written(KEY, end)


def test_a_partition_that_comes_back_is_read_on_from_where_the_worker_left_it() -> None:
    pipeline = Pipeline(Settings(partitions=4), "w1")
    installed(pipeline, 40)
    pipeline.release([KEY])

    (job,) = pipeline.claim([KEY])

    assert (job.start, job.expect_writer) == (39, pipeline._writer[KEY])


def test_a_recovery_that_could_not_read_keeps_the_state_for_the_next_attempt() -> None:
    pipeline = Pipeline(Settings(partitions=4), "w1")
    installed(pipeline, 40)
    pipeline.release([KEY])
    first = pipeline.claim([KEY])

    pipeline.unclaim(first)  # the changelog read failed: broker gone
    (again,) = pipeline.claim([KEY])

    assert again.start == 39 and again.state is first[0].state


def test_an_incremental_read_that_does_not_find_its_own_last_record_starts_over() -> None:
    pipeline = Pipeline(Settings(partitions=4), "w1")
    installed(pipeline, 40)
    pipeline.release([KEY])
    (job,) = pipeline.claim([KEY])

    assert pipeline.install(job, [], 0) is None  # the changelog ends before it (a broker lost it)


def test_a_dropped_partition_is_read_from_the_start() -> None:
    pipeline = Pipeline(Settings(partitions=4), "w1")
    installed(pipeline, 40)
    pipeline.drop([KEY])

    (job,) = pipeline.claim([KEY])

    assert (job.start, job.expect_writer) == (0, None)


def test_a_record_delivered_twice_in_one_batch_counts_once() -> None:
    settings = Settings(partitions=1)
    pipeline = Pipeline(settings, "w1")
    (job,) = pipeline.claim([("order", 0)])
    pipeline.install(job, [], 0)
    rng = random.Random(1)
    values = [orjson.dumps(valid_body(rng, "order")) for _ in range(3)]
    records = [Record(settings.topic_orders, 0, offset, 0, value) for offset, value in enumerate(values)]

    (outbox,) = pipeline.plan(records + records[1:])  # a source that sought back mid-batch

    assert pipeline.states["order", 0].meta.through == 3
    assert sum(cell.counts.get("orders_placed", 0) for slot in pipeline.states["order", 0].windows.values()
               for cell in slot.cells.values()) == 3


def test_records_delivered_while_a_partition_recovers_are_noted_and_applied_once_read_again() -> None:
    settings = Settings(partitions=1)
    pipeline = Pipeline(settings, "w1")
    rng = random.Random(2)
    values = [orjson.dumps(valid_body(rng, "order")) for _ in range(3)]
    records = [Record(settings.topic_orders, 0, offset, 0, value) for offset, value in enumerate(values)]

    assert pipeline.plan(records) == []  # assigned, its state not recovered yet: nothing applied
    assert ("order", 0) in pipeline.skipped  # so the engine seeks the source back once it is
    (job,) = pipeline.claim([("order", 0)])
    pipeline.install(job, [], 0)
    (outbox,) = pipeline.plan(records)  # what the source delivers after that seek

    assert pipeline.states["order", 0].meta.through == 3


def test_surveys_sent_count_per_kind_and_channel_beside_the_answers_and_name_no_customer() -> None:
    """docs/metrics.md rule 12: a survey.sent is one survey sent of its kind, in its own window and
    segment (storefront, channel or `unknown`); it adds nothing to the answers' counts and sends the
    customer stage no fact (only NPS and CSAT answers that name a customer do)."""
    settings = Settings(partitions=1)
    pipeline = Pipeline(settings, "w1")
    (job,) = pipeline.claim([("survey", 0)])
    pipeline.install(job, [], 0)
    t0 = 1_795_000_000_000 - 1_795_000_000_000 % 60_000

    def event(i: int, minute: int, kind: str, response: str, score: int | None = None, **more: str) -> dict:
        body = {"event_id": f"e{i}", "type": "survey.sent" if score is None else "survey.answered",
                "schema_version": 1, "occurred_at": _iso(t0 + minute * 60_000 + i), "storefront": "shop",
                "response_id": response, "kind": kind, **more}
        return body if score is None else {**body, "score": score}

    bodies = [
        event(1, 0, "nps", "r1", channel="web", customer_id="c1", order_id="o1"),
        event(2, 0, "nps", "r2", channel="web"),
        event(3, 0, "csat", "r3", customer_id="c2", ticket_id="t1"),
        event(4, 0, "ces", "r3", customer_id="c2", ticket_id="t1"),  # one survey, two questions
        event(5, 1, "nps", "r1", 10, channel="web", customer_id="c1"),  # r1's answer, in minute 1
        event(6, 1, "csat", "r3", 2, customer_id="c2"),
        event(7, 1, "csat", "r9", 5, channel="app"),  # an answer whose survey.sent was never seen
    ]
    records = [Record(settings.topic_surveys, 0, offset, 0, orjson.dumps(body)) for offset, body in enumerate(bodies)]

    (outbox,) = pipeline.plan(records, now_ms=t0 + 5 * 60_000)

    state = pipeline.states["survey", 0]
    counts: Counter = Counter()
    for start, slot in state.windows.items():
        for segment, cell in slot.cells.items():
            for name, value in cell.counts.items():
                counts[(start - t0) // 60_000, segment, name] += value
    web, unknown, app = ("shop", "web"), ("shop", "unknown"), ("shop", "app")
    assert counts == {
        (0, web, "nps_sent"): 2, (0, unknown, "csat_sent"): 1, (0, unknown, "ces_sent"): 1,
        (1, web, "nps_responses"): 1, (1, web, "nps_score_sum"): 10, (1, web, "nps_promoters"): 1,
        (1, unknown, "csat_responses"): 1, (1, unknown, "csat_score_sum"): 2,
        (1, app, "csat_responses"): 1, (1, app, "csat_score_sum"): 5, (1, app, "csat_satisfied"): 1,
    }
    facts = [f for stage, _, value in outbox.sends if stage == "customer" for f in decode_facts(value)]
    assert sorted(f[3] for f in facts) == ["e5", "e6"]



def _ticket_counts(state) -> Counter:
    counts: Counter = Counter()
    for slot in state.windows.values():
        for segment, cell in slot.cells.items():
            for name, value in cell.counts.items():
                counts[segment, name] += value
            for name, sketch in cell.hists.items():
                counts[segment, name] += sketch.count
    return counts


def _ticket_pipeline(bodies: list[dict]) -> Pipeline:
    settings = Settings(partitions=1)
    pipeline = Pipeline(settings, "w1")
    (job,) = pipeline.claim([("ticket", 0)])
    pipeline.install(job, [], 0)
    records = [Record(settings.topic_tickets, 0, offset, 0, orjson.dumps(body)) for offset, body in enumerate(bodies)]
    pipeline.plan(records, now_ms=T_TICKETS + 10 * 60_000)
    return pipeline


T_TICKETS = 1_795_000_000_000 - 1_795_000_000_000 % 60_000


def _ticket(i: int, seconds: int, kind: str, ticket: str, **more) -> dict:
    return {"event_id": f"e{i}", "type": f"ticket.{kind}", "schema_version": 1,
            "occurred_at": _iso(T_TICKETS + seconds * 1000), "storefront": "shop", "ticket_id": ticket, **more}


def test_tickets_count_per_reason_and_keep_their_creations_reason_to_the_resolution() -> None:
    """docs/metrics.md rule 13: the reason is the creation's; replies and the resolution count under it
    (a different reason on them changes nothing); a ticket without one counts under `unknown`."""
    bodies = [
        _ticket(1, 0, "created", "t1", support_channel="chat", reason="shipping"),
        _ticket(2, 20, "replied", "t1", author="agent", public=True),
        _ticket(3, 50, "resolved", "t1", reason="payment"),
        _ticket(4, 1, "created", "t2", support_channel="chat"),
        _ticket(5, 30, "replied", "t2", author="agent", public=True),
        _ticket(6, 2, "created", "t3", support_channel="email", reason="shipping"),
        _ticket(7, 9, "resolved", "t4", reason="account"),  # never created here: unmatched, its own reason
    ]
    counts = _ticket_counts(_ticket_pipeline(bodies).states["ticket", 0])
    shipping_chat = ("shop", "chat", "shipping")
    assert counts == {
        (shipping_chat, "tickets_created"): 1, (shipping_chat, "first_response"): 1,
        (shipping_chat, "resolution"): 1, (shipping_chat, "tickets_resolved_one_touch"): 1,
        (("shop", "chat", "unknown"), "tickets_created"): 1, (("shop", "chat", "unknown"), "first_response"): 1,
        (("shop", "email", "shipping"), "tickets_created"): 1,
        (("shop", "unknown", "account"), "resolved_unmatched"): 1,
    }


def test_a_reason_seen_before_the_creation_gives_way_to_the_creations() -> None:
    bodies = [_ticket(1, 10, "replied", "t1", author="agent", public=True, reason="account"),
              _ticket(2, 0, "created", "t1", support_channel="chat", reason="technical"),
              _ticket(3, 5, "created", "t2", support_channel="chat"),
              _ticket(4, 40, "resolved", "t2", reason="order_status")]  # fills in the creation's missing one
    state = _ticket_pipeline(bodies).states["ticket", 0]
    counts = _ticket_counts(state)
    assert counts[("shop", "chat", "technical"), "tickets_created"] == 1
    assert counts[("shop", "chat", "technical"), "first_response"] == 1
    assert counts[("shop", "chat", "unknown"), "tickets_created"] == 1
    assert counts[("shop", "chat", "order_status"), "resolution"] == 1
    assert state.tickets["t1"].reason == "technical"


def test_a_foreign_message_on_the_customer_topic_is_parked_as_malformed_json_and_the_rest_applies() -> None:
    """docs/events.md (dead-letter reasons) and docs/operations.md: a message on cxpulse's own customer
    topic that cxpulse did not write is parked with reason `malformed_json`; facts around it count."""
    settings = Settings(partitions=1)
    pipeline = Pipeline(settings, "w1")
    (job,) = pipeline.claim([("customer", 0)])
    pipeline.install(job, [], 0)
    good = orjson.dumps([["t", "shop", "c1", "e1", T_TICKETS], ["t", "shop", "c2", "e2", T_TICKETS]])
    values = [b"not json", b'{"type": "order.placed"}', b'[["o", "shop", "c1", "e9", 5]]', good]
    records = [Record(settings.topic_customers, 0, offset, 0, value) for offset, value in enumerate(values)]

    (outbox,) = pipeline.plan(records, now_ms=T_TICKETS + 60_000)

    assert outbox.parked == {"malformed_json": 3}
    assert set(outbox.parked) <= set(REASONS)  # a documented reason (docs/events.md lists them all)
    assert [dict(headers)["cx-reason"] for _, headers in outbox.dead_letters] == [b"malformed_json"] * 3
    assert set(pipeline.states["customer", 0].customers) == {("shop", "c1"), ("shop", "c2")}


def test_a_foreign_partial_on_the_windows_topic_is_parked_and_cannot_stop_the_merge_stage() -> None:
    """A message of the shape of a window partial whose cells cxpulse did not write (a cell that is not
    counts and histograms, a visitor set that is not ids, a segment entry that is not one) is parked as
    `malformed_json` at decode; a real marker beside it applies."""
    settings = Settings(partitions=1)
    pipeline = Pipeline(settings, "w1")
    (job,) = pipeline.claim([("merge", 0)])
    pipeline.install(job, [], 0)
    cell = lambda c: orjson.dumps([["p", "session", 0, 0, "shop", [[["shop", "web", "mobile"], c]]]])  # noqa: E731
    values = [cell([{}, {}, "not sets"]), cell([{"sessions_started": "x"}, {}]), cell([{}, {}, {"visitors": [5]}]),
              orjson.dumps([["p", "session", 0, 0, "shop", [5]]]), orjson.dumps([["m", "session", 0, 120_000]])]
    records = [Record(settings.topic_windows, 0, offset, 0, value) for offset, value in enumerate(values)]

    (outbox,) = pipeline.plan(records, now_ms=T_TICKETS)

    assert outbox.parked == {"malformed_json": 4}
    assert pipeline.states["merge", 0].sources == {("session", 0): 120_000}
