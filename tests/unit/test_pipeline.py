"""Partition ownership in streams.pipeline.plan: what a worker keeps across losing and
regaining partitions, and when it must read the changelog from its start; and what a batch of
survey records counts."""

from __future__ import annotations

import random
from collections import Counter

import orjson

from streams.config import Settings
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

