"""Partition ownership in streams.pipeline.plan: what a worker keeps across losing and
regaining partitions, and when it must read the changelog from its start."""

from __future__ import annotations

import random

import orjson

from streams.config import Settings
from streams.pipeline.plan import Pipeline
from streams.pipeline.records import Record
from tests.faults.common import valid_body

KEY = ("order", 1)


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
