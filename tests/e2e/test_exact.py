"""End to end: real broker, real worker processes, simulated messy traffic; every number exact.

The simulator's log of what it sent is fed to ``tests/reference.py`` (written from
docs/metrics.md alone), and the workers' /metrics must equal it: every cumulative counter per
segment and partition (money exactly), every histogram bucket per partition and the histogram's
own labels (no ticket reason), late / duplicate / rejected counts, watermarks; and every base
window of every partition that a restart would recover from the state changelog must equal it
too. The same holds after a SIGKILL mid-stream and across rebalances, with either engine (the
batch consumer, and Faust). What Prometheus shows of the windows is tests/e2e/test_event_time.py's.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

import orjson
import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from streams.catalog import COUNTERS, HISTOGRAMS
from streams.config import Settings
from streams.contract import FAMILIES
from streams.devtools.stack import WorkerProcess
from streams.runtime.changelog import STALL_S
from streams.runtime.engine import HELD_READS, HELD_STAGE_S, RETRY_S
from streams.runtime.faust_engine import REJOIN_S
from streams.catalog import CUSTOMER, CUSTOMER_MONEY
from tests.customer_reference import customer_kpis
from tests.helpers import BUSINESS_HOURS, changelog_states, wait_until
from tests.reference import SEGMENT_LABELS, Params, Reference, major

Sample = tuple[str, dict[str, str], float]
ENGINES = ("kafka", "faust")
JOIN_S = 90.0


# ------------------------------------------------------------------ scraping
def scrape(worker: WorkerProcess) -> list[Sample]:
    return [(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(worker.scrape()) for s in family.samples]


def segment(family: str, labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((label, labels[label]) for label in SEGMENT_LABELS[family])


def per_source(samples: Iterable[Sample], name: str) -> dict[tuple[str, int], float]:
    found: dict[tuple[str, int], float] = defaultdict(float)
    for sample_name, labels, value in samples:
        if sample_name == name:
            found[labels["family"], int(labels["partition"])] += value
    return dict(found)


def owned(samples: list[Sample]) -> set[tuple[str, int]]:
    """The (family, partition) sources a worker exports, from its ``cxpulse_events_total`` series."""
    return set(per_source(samples, "cxpulse_events_total"))


# ------------------------------------------------------------------ traffic helpers
def send_malformed(settings: Settings) -> Counter[str]:
    """Messages the decoder must park, one per reason; returns the expected rejected counts."""
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    good = {"event_id": "bad-1", "type": "session.started", "schema_version": 1, "occurred_at": future,
            "storefront": "harbor-tea", "session_id": "bad-s-1", "visitor_id": "bad-v-1", "channel": "web",
            "device": "mobile"}
    messages = [
        (settings.topic_sessions, b"\xff\xfe{", "not_utf8"),
        (settings.topic_sessions, b"{not json", "not_json"),
        (settings.topic_sessions, b"[]", "empty_batch"),
        (settings.topic_sessions, b"42", "not_object"),
        (settings.topic_sessions, orjson.dumps(good), "future_timestamp"),
        (settings.topic_sessions, orjson.dumps({**good, "event_id": "bad-2", "occurred_at": "2020-01-01T00:00:00Z",
                                                "visitor_id": None}), "missing_field"),
        (settings.topic_orders, orjson.dumps({**good, "event_id": "bad-3", "occurred_at": "2020-01-01T00:00:00Z"}),
         "wrong_topic"),
        (settings.topic_sessions, orjson.dumps({**good, "event_id": "bad-4", "schema_version": 2}),
         "unsupported_version"),
    ]
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    for topic, value, _ in messages:
        producer.send(topic, value, partition=1)
    producer.flush()
    producer.close()
    return Counter(reason for *_, reason in messages)


# ------------------------------------------------------------------ waiting
# A partition that moves in a rebalance can take its recovery's worst case before it counts again: the
# test broker can hold the changelog's read_committed end, and the reader gives up HELD_READS times
# (each after STALL_S without progress, then RETRY_S) before it reads read_uncommitted (docs/operations.md).
SETTLE_S = 90.0 + HELD_READS * (STALL_S + RETRY_S)


def wait_settled(live: list[WorkerProcess], ref: Reference, rejected: Counter[str],
                 timeout_s: float = SETTLE_S) -> dict:
    """Scrape until every sent event is accounted for (counted + late + duplicate per source, rejected
    by reason) and the numbers stop moving; return the last scrape per worker."""
    expected = {source: ref.counted.get(source, 0) + ref.late.get(source, 0) + ref.duplicate.get(source, 0)
                for source in set(ref.counted) | set(ref.late) | set(ref.duplicate)}
    deadline = time.monotonic() + timeout_s
    last: tuple | None = None
    while True:
        scrapes = {w.index: scrape(w) for w in live}
        seen: dict[tuple[str, int], float] = defaultdict(float)
        reasons: Counter[str] = Counter()
        for samples in scrapes.values():
            for name in ("cxpulse_events_total", "cxpulse_events_late_total", "cxpulse_events_duplicate_total"):
                for source, value in per_source(samples, name).items():
                    seen[source] += value
            for name, labels, value in samples:
                if name == "cxpulse_events_rejected_total":
                    reasons[labels["reason"]] += int(value)
        state = (dict(seen), dict(reasons))
        done = all(seen.get(s, 0) >= n for s, n in expected.items()) and all(
            reasons[r] >= n for r, n in rejected.items())
        if done and state == last:
            return scrapes
        if time.monotonic() > deadline:
            return scrapes  # the comparison says what is missing
        last = state
        time.sleep(1.0)


# ------------------------------------------------------------------ comparing
def close(a: float, b: float, rel: float = 1e-9) -> bool:
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def compare_watermarks(scrapes: dict[int, list[Sample]], ref: Reference, idle_ms: int) -> list[str]:
    """Each partition's watermark is the largest event time it counted (docs/metrics.md), except
    that a partition idle for ``idle_ms`` (processing time; a slow settle on a busy machine makes
    one) may have moved on to its worker's largest watermark of the family minus ``idle_ms``:
    then it lies above its own and at most ``idle_ms`` below the family's largest (whichever
    worker owned the others when it moved), and the worker says it is idle."""
    problems = []
    for samples in scrapes.values():
        got = per_source(samples, "cxpulse_watermark_timestamp_seconds")
        idle = per_source(samples, "cxpulse_partition_idle")
        for source, value in got.items():
            if source[0] not in FAMILIES:  # the customer stage's own watermark: compare_customers
                continue
            wm_ms = ref.watermark_ms.get(source)
            if wm_ms is None:  # no event: only an idle partition's advance gives it a watermark
                if idle.get(source) != 1.0:
                    problems.append(f"cxpulse_watermark_timestamp_seconds{source}: no event counted, got {value}")
                continue
            if close(value, wm_ms / 1000, 1e-12):
                continue
            ceiling = max(wm for (family, _), wm in ref.watermark_ms.items() if family == source[0]) - idle_ms
            if not (idle.get(source) == 1.0 and wm_ms / 1000 < value <= ceiling / 1000 + 1e-3):
                problems.append(f"cxpulse_watermark_timestamp_seconds{source}: expected {wm_ms / 1000}"
                                f"{f' (or, idle, up to {ceiling / 1000})' if ceiling > wm_ms else ''}, got {value}, "
                                f"idle {idle.get(source)}")
    exported = {source for samples in scrapes.values()
                for source in per_source(samples, "cxpulse_watermark_timestamp_seconds")}
    problems += [f"cxpulse_watermark_timestamp_seconds{source}: expected {ref.watermark_ms[source] / 1000}, not exported"
                 for source in sorted(set(ref.watermark_ms) - exported)]
    return problems


def compare_fleet(scrapes: dict[int, list[Sample]], ref: Reference, rejected: Counter[str], idle_ms: int) -> list[str]:
    """Every cumulative number, summed over the live workers, against the reference."""
    problems: list[str] = []
    sources = set(ref.counted) | set(ref.late) | set(ref.duplicate)
    owners: dict[tuple[str, int], list[int]] = defaultdict(list)
    for index, samples in scrapes.items():
        for source in owned(samples):
            owners[source].append(index)
    for source in sorted(sources | set(owners)):
        if len(owners.get(source, [])) != 1:
            problems.append(f"partition {source} exported by workers {owners.get(source, [])}, expected exactly one")
    every = [s for samples in scrapes.values() for s in samples]
    for name, table in (("cxpulse_events_total", ref.counted), ("cxpulse_events_late_total", ref.late),
                        ("cxpulse_events_duplicate_total", ref.duplicate)):
        got = per_source(every, name)
        for source in sorted(set(got) | set(table)):
            if got.get(source, 0) != table.get(source, 0):
                problems.append(f"{name}{source}: expected {table.get(source, 0)}, got {got.get(source, 0)}")
    problems += compare_watermarks(scrapes, ref, idle_ms)
    reasons: Counter[str] = Counter()
    for name, labels, value in every:
        if name == "cxpulse_events_rejected_total":
            reasons[labels["reason"]] += int(value)
    if +reasons != +rejected:
        problems.append(f"cxpulse_events_rejected_total by reason: expected {dict(rejected)}, got {dict(+reasons)}")

    # counters: per segment and partition, so money compares exactly (no float sums across partitions)
    for spec in COUNTERS:
        got: dict[tuple, float] = defaultdict(float)
        for name, labels, value in every:
            if name == spec.name:
                got[segment(spec.family, labels), int(labels["partition"])] += value
        expected: dict[tuple, Any] = {}
        for partition in ref.partitions_of_family(spec.family):
            for seg, value in ref.counter(spec.name, [partition]).items():
                expected[seg, partition] = value
        for key in set(got) | set(expected):
            want, have = expected.get(key, 0), got.get(key, 0.0)
            if float(want) != have:
                problems.append(f"{spec.name} {dict(key[0])} partition {key[1]}: expected {want}, got {have}")
    # histograms: per partition and the histogram's own labels (the catalog's: its family's segment but
    # the ticket's reason), each against the reference's observations of every segment sharing them
    for spec in HISTOGRAMS:
        got_h: dict[tuple, dict[str, float]] = defaultdict(dict)
        for name, labels, value in every:
            if name.startswith(spec.name + "_"):
                suffix = name.removeprefix(spec.name + "_")
                if suffix == "bucket":
                    suffix = "+Inf" if labels["le"] == "+Inf" else str(float(labels["le"]))
                expected_labels = {*spec.labels, "partition", *(("le",) if name.endswith("_bucket") else ())}
                if set(labels) != expected_labels:
                    problems.append(f"{name} {labels}: labels {sorted(labels)}, expected {sorted(expected_labels)}")
                    continue
                key = (tuple((label, labels[label]) for label in spec.labels), int(labels["partition"]))
                if suffix in got_h[key]:
                    problems.append(f"{name} {labels}: exported twice")
                got_h[key][suffix] = value
        expected_h: dict[tuple, dict[str, float]] = {}
        for partition in ref.partitions_of_family(spec.family):
            for key, buckets in ref.histogram(spec.name, [partition], spec.labels).items():
                expected_h[key, partition] = buckets
        for key in set(got_h) | set(expected_h):
            want_h, have_h = expected_h.get(key, {}), got_h.get(key, {})
            if not want_h and not have_h.get("count"):
                continue
            for bucket in set(want_h) | set(have_h):
                ok = (close(want_h.get(bucket, 0), have_h.get(bucket, 0), 1e-9) if bucket == "sum"
                      else want_h.get(bucket, 0) == have_h.get(bucket, 0))
                if not ok:
                    problems.append(f"{spec.name} {bucket} {dict(key[0])} partition {key[1]}: "
                                    f"expected {want_h.get(bucket, 0)}, got {have_h.get(bucket)}")
    return problems


def compare_windows(settings: Settings, ref: Reference) -> list[str]:
    """Every base window of every partition, as a restart would recover it from the state
    changelog, against the reference: each counter exactly, each duration histogram's count, and
    the tickets' breakdown by product category (rule 17) per storefront and category."""
    problems: list[str] = []
    states = changelog_states(settings)
    got: dict[tuple, float] = defaultdict(float)
    for (family, partition), state in states.items():
        for start, slot in state.windows.items():
            for seg, cell in slot.cells.items():
                labels = tuple(zip(SEGMENT_LABELS[family], seg))
                amounts = [*cell.counts.items(), *((name, sketch.count) for name, sketch in cell.hists.items())]
                for name, value in amounts:
                    field, _, category = name.partition("|")  # a breakdown field: <field>|<category>
                    key = (family, partition, start, labels, name) if not category else (
                        "category", partition, start, (("storefront", seg[0]), ("product_category", category)), field)
                    got[key] += value
    want: dict[tuple, float] = defaultdict(float)
    for key, value in ref.components.items():
        want[key] += value
    for key, values in ref.samples.items():
        want[key] += len(values)
    for breakdown in (ref.category_counts, ref.category_samples):
        for (partition, start, storefront, category, field), value in breakdown.items():
            key = ("category", partition, start, (("storefront", storefront), ("product_category", category)), field)
            want[key] += value if isinstance(value, int) else len(value)
    oldest = min((start for (_, _, start, _, _) in got), default=0)  # evicted beyond the retention
    for key in sorted(set(got) | {k for k in want if k[2] >= oldest}, key=str):
        if got.get(key, 0) != want.get(key, 0):
            problems.append(f"window {key}: expected {want.get(key, 0)}, recovered {got.get(key, 0)}")
    return problems


def compare_customers(live: list[WorkerProcess], events: list[dict], ref: Reference, settings: Settings,
                      timeout_s: float = HELD_STAGE_S + 60.0) -> list[str]:
    """Customer-level gauges, summed over the live workers, against tests/customer_reference.py.

    The deadline covers a customer partition the broker holds after a worker died inside a
    transaction: the stage reads it read_uncommitted HELD_STAGE_S after its assignment."""
    counted = [e for e, decision in zip(events, ref.decisions) if decision == "counted"]
    expected = customer_kpis(counted, settings.partitions, settings.post_support_ms,
                             tuple(p // 86_400_000 for p in settings.retention_periods_ms),
                             settings.checkout_horizon_ms, settings.grace_ms)
    facts = sum(1 for e in counted if e.get("customer_id") and (
        e["type"] in ("order.placed", "ticket.created")
        or (e["type"] == "survey.answered" and e["kind"] in ("nps", "csat"))))
    facts += sum(1 for e in counted if e["type"] == "session.checkout_started"
                 or (e["type"] == "order.placed" and e.get("session_id")))
    assert facts, "no event named a customer: the customer stage is not tested"
    if any(e["type"] == "session.checkout_started" for e in counted):
        assert expected.get("checkout_abandoned") and expected.get("checkout_decided"), \
            "no checkout session was decided abandoned: the checkout join is not tested (traffic too short?)"
    by_name = {name: (kind, ("storefront", *labels)) for kind, (name, labels, _) in CUSTOMER.items()}
    deadline = time.monotonic() + timeout_s
    while True:
        samples = [s for w in live for s in scrape(w)]
        read = sum(v for n, _, v in samples if n == "cxpulse_customer_facts_total")
        got: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
        for name, labels, value in samples:
            if name in by_name:
                kind, label_names = by_name[name]
                got[kind][tuple(labels[label] for label in label_names)] += value
        problems = []
        for kind in sorted(set(expected) | set(got)):
            label_names = by_name[CUSTOMER[kind][0]][1]
            currency = label_names.index("currency") if kind in CUSTOMER_MONEY else None
            want = {k: (float(major(v, k[currency])) if currency is not None else float(v))
                    for k, v in expected.get(kind, {}).items()}
            for key in sorted(set(want) | set(got[kind])):
                if not close(want.get(key, 0.0), got[kind].get(key, 0.0)):
                    problems.append(f"{CUSTOMER[kind][0]} {key}: expected {want.get(key, 0.0)}, "
                                    f"got {got[kind].get(key, 0.0)}")
        if (read >= facts and not problems) or time.monotonic() > deadline:
            return problems + ([] if read >= facts else [f"customer stage read {read} facts of {facts}"])
        time.sleep(1.0)


def assert_exact(live: list[WorkerProcess], events: list[dict], settings: Settings, rejected: Counter[str]) -> None:
    params = Params.of(settings)
    ref = Reference.compute(events, params)
    decisions = Counter(ref.decisions)
    assert decisions["late"] and decisions["duplicate"], f"traffic not messy enough to test anything: {decisions}"
    scrapes = wait_settled(live, ref, rejected)
    problems = compare_fleet(scrapes, ref, rejected, settings.idle_partition_ms)
    problems += compare_windows(settings, ref)
    problems += compare_customers(live, events, ref, settings)
    assert not problems, (f"{len(problems)} mismatches with the reference ({len(events)} events sent: "
                          f"{dict(decisions)}):\n" + "\n".join(problems[:60]))


def processed(worker: WorkerProcess) -> float:
    try:
        return sum(per_source(scrape(worker), "cxpulse_events_total").values())
    except OSError:
        return 0.0


# The traffic spans 40 minutes of event time: a 10-minute checkout horizon (CXPULSE_CHECKOUT_HORIZON) lets
# most checkout sessions be decided, abandoned ones too, before it ends.
CHECKOUT_HORIZON_MS = 600_000


# ------------------------------------------------------------------ the tests
@pytest.mark.parametrize("engine", ENGINES)
def test_steady_one_worker_equals_reference(make_settings: Callable[..., Settings], make_traffic, workers,
                                            engine: str) -> None:
    settings = make_settings(engine=engine, business_hours=BUSINESS_HOURS, checkout_horizon_ms=CHECKOUT_HORIZON_MS)
    worker = workers(settings, 0)
    worker.wait_ready(JOIN_S)
    rejected = send_malformed(settings)
    traffic = make_traffic(settings, chunks=1, events=24_000, rate=10.0).start_sending()
    events = traffic.wait()
    assert_exact([worker], events, settings, rejected)


@pytest.mark.parametrize("engine", ENGINES)
def test_sigkill_mid_stream_stays_exact(make_settings: Callable[..., Settings], make_traffic, workers,
                                        engine: str) -> None:
    settings = make_settings(engine=engine, business_hours=BUSINESS_HOURS, checkout_horizon_ms=CHECKOUT_HORIZON_MS)
    first = workers(settings, 0)
    first.wait_ready(JOIN_S)
    rejected = send_malformed(settings)
    traffic = make_traffic(settings, chunks=4, events=6000, rate=10.0, pause_s=2.0).start_sending()
    wait_until(lambda: processed(first) > 3000, timeout_s=60, what="the worker counting the first events")
    assert traffic.sending, "the simulator finished before the crash: make the traffic longer"
    first.kill()
    second = workers(settings, 1)
    second.wait_ready(JOIN_S)
    recovered = sum(v for n, _, v in scrape(second) if n == "cxpulse_state_recovered_records_total")
    assert recovered > 0, "the restarted worker recovered no state: the crash tested nothing"
    events = traffic.wait()
    assert_exact([second], events, settings, rejected)


@pytest.mark.parametrize("engine", ENGINES)
def test_rebalance_add_stop_and_kill_workers_stays_exact(make_settings: Callable[..., Settings], make_traffic,
                                                         workers, engine: str) -> None:
    settings = make_settings(engine=engine, business_hours=BUSINESS_HOURS, checkout_horizon_ms=CHECKOUT_HORIZON_MS)
    w0 = workers(settings, 0)
    w0.wait_ready(JOIN_S)
    rejected = send_malformed(settings)
    traffic = make_traffic(settings, chunks=6, events=4000, rate=10.0, pause_s=3.0).start_sending()
    wait_until(lambda: processed(w0) > 2000, timeout_s=60, what="worker 0 counting the first events")
    w1, w2 = workers(settings, 1), workers(settings, 2)
    w1.wait_ready(JOIN_S)
    w2.wait_ready(JOIN_S)
    assert traffic.sending, "the simulator finished before the rebalance: make the traffic longer"
    w1.stop()
    w2.kill()
    w3 = workers(settings, 3)
    w3.wait_ready(JOIN_S)
    events = traffic.wait()
    live = [w0, w3]
    assert_exact(live, events, settings, rejected)
    # The group settles after the kill (the dead member's session times out, then every member rejoins):
    # a deadline on every live worker owning partitions, not one look at the instant the traffic ended.
    shares: dict[int, set[tuple[str, int]]] = {}

    def shared() -> bool:
        shares.update({w.index: owned(scrape(w)) for w in live})
        return all(shares.values())

    try:
        # up to the Faust engine's rejoin watch (a member whose group died starts over) and a join
        wait_until(shared, timeout_s=REJOIN_S + 60, interval_s=1, what="every live worker owning partitions")
    except AssertionError as exc:
        raise AssertionError(f"after the rebalance every live worker should own partitions: {shares}") from exc
