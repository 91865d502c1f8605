"""The collector read as a scrape reads it: a fresh registry, ``get_sample_value``.

Window states of a few partitions are fed hand-made events; every expected figure is
counted here from the same event list (docs/metrics.md: a counter per segment and
source partition, money in major units), never taken from the pipeline.
"""

from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest
from prometheus_client.registry import CollectorRegistry

from streams.config import Settings
from streams.contract import EVENT_TYPES, FAMILY_KEY, SCORE_RANGE, partition_for
from streams.decode import decode_message
from streams.pipeline.records import Message
from streams.pipeline.window_state import PartitionState
from streams.runtime.collector import CxCollector
from streams.runtime.published import Published, Publisher

T0 = 1_795_000_000_000  # 2026-11-19T08:26:40Z
PARTITIONS = 2
SETTINGS = Settings(partitions=PARTITIONS)
MINOR_UNITS = {"EUR": 100, "JPY": 1}


def _iso(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def events(rng: random.Random, n: int) -> list[dict]:
    out = []
    for i in range(n):
        common = {"event_id": f"e{i}", "schema_version": 1, "occurred_at": _iso(T0 + 1000 * i),
                  "storefront": rng.choice(["north", "south"])}
        if rng.random() < 0.6:
            out.append({**common, "type": rng.choice(["session.started", "session.checkout_started"]),
                        "session_id": f"s{i}", "visitor_id": f"v{i}", "channel": rng.choice(["web", "app"]),
                        "device": rng.choice(["mobile", "desktop"])})
        else:
            out.append({**common, "type": "order.placed", "order_id": f"o{i}", "customer_id": f"c{i % 7}", "first_order": i < 7, "total_minor": rng.randrange(100, 9999),
                        "currency": rng.choice(list(MINOR_UNITS)), "channel": "web", "device": "mobile"})
    return out


def scrape(published: Published) -> CollectorRegistry:
    publisher = Publisher()
    publisher.current = published
    registry = CollectorRegistry()
    registry.register(CxCollector(publisher, SETTINGS))
    return registry


def counted(evs: list[dict]) -> Published:
    """Each event on the partition its key maps to, one message each, through window states."""
    per_partition: dict[tuple[str, int], list[Message]] = {}
    for ev in evs:
        family = EVENT_TYPES[ev["type"]].family
        partition = partition_for(ev[FAMILY_KEY[family]], PARTITIONS)
        messages = per_partition.setdefault((family, partition), [])
        good, bad = decode_message(orjson.dumps(ev), family, partition=partition, partitions=PARTITIONS)
        assert not bad, bad
        messages.append(Message(len(messages), good, bad))
    snapshots = {}
    for (family, partition), messages in per_partition.items():
        state = PartitionState(family, partition, SETTINGS)  # type: ignore[arg-type]
        state.apply(messages)
        snapshots[family, partition] = state.snapshot(None)
    return Published(snapshots=snapshots, recovered=True)


def test_every_counter_shows_the_events_of_its_segment_and_partition() -> None:
    evs = events(random.Random(7), 300)
    registry = scrape(counted(evs))
    expected: Counter = Counter()
    for ev in evs:
        if ev["type"].startswith("session."):
            part = str(partition_for(ev["session_id"], PARTITIONS))
            name = {"session.started": "cxpulse_sessions_started_total",
                    "session.checkout_started": "cxpulse_checkouts_started_total"}[ev["type"]]
            labels = (("storefront", ev["storefront"]), ("channel", ev["channel"]), ("device", ev["device"]),
                      ("partition", part))
            expected[name, labels] += 1
        else:
            part = str(partition_for(ev["order_id"], PARTITIONS))
            labels = (("storefront", ev["storefront"]), ("channel", "web"), ("device", "mobile"),
                      ("currency", ev["currency"]), ("partition", part))
            expected["cxpulse_orders_placed_total", labels] += 1
            expected["cxpulse_order_revenue_total", labels] += ev["total_minor"] / MINOR_UNITS[ev["currency"]]
    for (name, labels), value in expected.items():
        assert registry.get_sample_value(name, dict(labels)) == pytest.approx(value), (name, labels)
    total = sum(registry.get_sample_value("cxpulse_events_total", {"family": f, "partition": str(p)}) or 0
                for f in ("session", "order") for p in range(PARTITIONS))
    assert total == len(evs)
    assert registry.get_sample_value("cxpulse_worker_ready") == 1.0


def survey_events(rng: random.Random, n: int) -> list[dict]:
    """n surveys sent, each of one kind, some without a channel; about 40% answered (same kind,
    channel and response_id, a minute later), and a few answers whose survey.sent never came."""
    out = []
    for i in range(n):
        kind = rng.choice(["nps", "csat", "ces"])
        common = {"schema_version": 1, "storefront": rng.choice(["north", "south"]), "response_id": f"r{i}",
                  "kind": kind, **({"channel": rng.choice(["web", "app"])} if rng.random() < 0.8 else {})}
        if rng.random() < 0.9:
            out.append({**common, "event_id": f"s{i}", "type": "survey.sent", "occurred_at": _iso(T0 + 1000 * i)})
        if rng.random() < 0.4:
            out.append({**common, "event_id": f"a{i}", "type": "survey.answered",
                        "occurred_at": _iso(T0 + 1000 * i + 60_000), "score": rng.randint(*SCORE_RANGE[kind])})
    return out


def test_surveys_sent_and_answers_are_counted_per_kind_segment_and_partition() -> None:
    evs = survey_events(random.Random(11), 400)
    registry = scrape(counted(evs))
    expected: Counter = Counter()
    for ev in evs:
        part = str(partition_for(ev["response_id"], PARTITIONS))
        labels = (("storefront", ev["storefront"]), ("channel", ev.get("channel", "unknown")), ("partition", part))
        what = "surveys_sent" if ev["type"] == "survey.sent" else "responses"
        expected[f"cxpulse_{ev['kind']}_{what}_total", labels] += 1
    assert {name for name, _ in expected} == {f"cxpulse_{k}_{w}_total" for k in ("nps", "csat", "ces")
                                              for w in ("surveys_sent", "responses")}
    for (name, labels), value in expected.items():
        assert registry.get_sample_value(name, dict(labels)) == value, (name, labels)
    # and nothing else: a survey sent is never an answer, nor an answer a survey sent
    for metric in registry.collect():
        if metric.name.endswith(("_surveys_sent", "_responses")):
            total = sum(s.value for s in metric.samples if s.name.endswith("_total"))
            assert total == sum(v for (name, _), v in expected.items() if name == metric.name + "_total"), metric.name


def test_a_series_born_within_the_hold_shows_zero_to_the_first_scrape_then_its_value() -> None:
    evs = [ev for ev in events(random.Random(3), 40) if ev["type"] == "order.placed"][:1]
    published = counted(evs)
    (key, snap), = published.snapshots.items()
    segment, = snap.totals
    labels = {"storefront": evs[0]["storefront"], "channel": "web", "device": "mobile",
              "currency": evs[0]["currency"], "partition": str(key[1])}
    born = Published(snapshots=published.snapshots, recovered=True, born={(key, segment): 0.0})
    publisher = Publisher()
    publisher.current = born
    registry = CollectorRegistry()
    registry.register(CxCollector(publisher, SETTINGS))
    assert registry.get_sample_value("cxpulse_orders_placed_total", labels) == 0.0
    assert registry.get_sample_value("cxpulse_orders_placed_total", labels) == 1.0


def test_describe_names_every_family_a_scrape_returns() -> None:
    """The registry checks duplicates by what ``describe()`` names: a family it left out could
    collide unnoticed with another collector's."""
    publisher = Publisher()
    publisher.current = counted(events(random.Random(5), 100))
    collector = CxCollector(publisher, SETTINGS)
    described = {metric.name for metric in collector.describe()}
    collected = {metric.name for metric in collector.collect()}
    assert collected <= described, collected - described
    registry = CollectorRegistry()
    registry.register(collector)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(CxCollector(publisher, SETTINGS))


def test_a_broken_snapshot_still_leaves_the_pipeline_health_families() -> None:
    published = Published(snapshots={("session", 0): object()}, recovered=True)
    registry = scrape(published)
    assert registry.get_sample_value("cxpulse_worker_ready") == 1.0
