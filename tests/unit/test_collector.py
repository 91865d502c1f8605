"""The collector read as a scrape reads it: a fresh registry, ``get_sample_value``.

Window states of a few partitions are fed hand-made events; every expected figure is
counted here from the same event list (docs/metrics.md: a counter per segment and
source partition, money in major units), never taken from the pipeline.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime

import orjson
import pytest
from prometheus_client.registry import CollectorRegistry

from streams.config import Settings
from streams.contract import EVENT_TYPES, FAMILY_KEY, SCORE_RANGE, partition_for
from streams.decode import decode_message
from streams.pipeline.aggregates import LE_SECONDS
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


def ticket_events(rng: random.Random, n: int) -> list[dict]:
    """n tickets of random storefront, support channel and reason (a few without one), most answered by
    an agent and resolved after random delays that span the buckets; a few resolved twice (reopened).
    In event-time order, so none is late."""
    evs = []
    for i in range(n):
        reason = rng.choice(["shipping", "payment", "order_status", None])
        common = {"schema_version": 1, "storefront": rng.choice(["north", "south"]), "ticket_id": f"t{i}"}
        created = T0 + 1000 * i
        evs.append({**common, "event_id": f"c{i}", "type": "ticket.created", "occurred_at": _iso(created),
                    "support_channel": rng.choice(["chat", "email"]), **({"reason": reason} if reason else {})})
        replied = created + rng.randrange(1, 4_000_000)
        if rng.random() < 0.8:
            evs.append({**common, "event_id": f"a{i}", "type": "ticket.replied", "occurred_at": _iso(replied),
                        "author": "agent", "public": True})
        resolved = replied + rng.randrange(1, 20_000_000)
        evs.append({**common, "event_id": f"r{i}", "type": "ticket.resolved", "occurred_at": _iso(resolved)})
        if rng.random() < 0.1:
            evs.append({**common, "event_id": f"o{i}", "type": "ticket.reopened", "occurred_at": _iso(resolved + 1)})
            evs.append({**common, "event_id": f"s{i}", "type": "ticket.resolved",
                        "occurred_at": _iso(resolved + rng.randrange(2, 9_000_000))})
    return sorted(evs, key=lambda ev: ev["occurred_at"])


def test_ticket_counters_carry_the_reason_and_resolutions_keep_the_creations() -> None:
    rng = random.Random(5)
    reasons = ["shipping", "payment", "order_status", None]
    evs, expected = [], Counter()
    for i in range(120):
        reason = rng.choice(reasons)
        common = {"schema_version": 1, "storefront": rng.choice(["north", "south"]), "ticket_id": f"t{i}"}
        evs.append({**common, "event_id": f"c{i}", "type": "ticket.created", "occurred_at": _iso(T0 + 1000 * i),
                    "support_channel": "chat", **({"reason": reason} if reason else {})})
        evs.append({**common, "event_id": f"r{i}", "type": "ticket.resolved",
                    "occurred_at": _iso(T0 + 1000 * i + 90_000)})
        labels = {"storefront": common["storefront"], "support_channel": "chat", "reason": reason or "unknown",
                  "partition": str(partition_for(f"t{i}", PARTITIONS))}
        expected[tuple(labels.items())] += 1
    registry = scrape(counted(evs))
    for labels, value in expected.items():
        assert registry.get_sample_value("cxpulse_tickets_created_total", dict(labels)) == value, labels
        # the one-touch resolutions count under the creation's reason, like the creations
        assert registry.get_sample_value("cxpulse_tickets_resolved_one_touch_total", dict(labels)) == value, labels
    seen = {s.labels["reason"] for m in registry.collect() if m.name == "cxpulse_tickets_created" for s in m.samples}
    assert seen == {"shipping", "payment", "order_status", "unknown"}


def test_ticket_histograms_are_per_support_channel_summed_over_reasons() -> None:
    """No reason label on the cumulative histograms: per storefront, support channel and partition, the
    bucket counts, _count and _sum are those of every observation of the reasons together, counted here
    from the events, and equal the segment cells summed over reasons."""
    evs = ticket_events(random.Random(9), 300)
    published = counted(evs)
    registry = scrape(published)
    # observations (ms) per (storefront, support channel, partition), from the events alone
    created: dict[str, tuple[int, str]] = {}
    first_reply: dict[str, int] = {}
    observed: dict[str, dict[tuple[str, str, str], list[int]]] = {"first_response": {}, "resolution": {}}
    for ev in evs:
        at = round(datetime.fromisoformat(ev["occurred_at"].replace("Z", "+00:00")).timestamp() * 1000)
        ticket = ev["ticket_id"]
        if ev["type"] == "ticket.created":
            created[ticket] = (at, ev["support_channel"])
            continue
        start, channel = created[ticket]
        key = (ev["storefront"], channel, str(partition_for(ticket, PARTITIONS)))
        if ev["type"] == "ticket.replied" and ticket not in first_reply:
            first_reply[ticket] = at
            observed["first_response"].setdefault(key, []).append(at - start)
        elif ev["type"] == "ticket.resolved":
            observed["resolution"].setdefault(key, []).append(at - start)
    hists = {"first_response": "cxpulse_ticket_first_response_seconds",
             "resolution": "cxpulse_ticket_resolution_seconds"}
    for field, name in hists.items():
        (metric,) = [m for m in registry.collect() if m.name == name]
        assert {tuple(sorted(s.labels)) for s in metric.samples} <= {
            ("partition", "storefront", "support_channel"), ("le", "partition", "storefront", "support_channel")}
        got = {(s.labels["storefront"], s.labels["support_channel"], s.labels["partition"]) for s in metric.samples}
        assert set(observed[field]) <= got
        cells: Counter = Counter()  # the segment cells summed over reasons: what the histogram must equal
        for (_, partition), snap in published.snapshots.items():
            for (storefront, channel, _reason), cell in snap.totals.items():
                sketch = cell.hists.get(field)
                if sketch is not None:
                    cells[storefront, channel, str(partition), "count"] += sketch.count
                    cells[storefront, channel, str(partition), "sum_ms"] += sketch.sum_ms
        assert len({reason for snap in published.snapshots.values() for (_, _, reason) in snap.totals}) == 4
        for key in got:
            labels = dict(zip(("storefront", "support_channel", "partition"), key))
            values = observed[field].get(key, [])
            count = registry.get_sample_value(name + "_count", labels)
            assert count == len(values) == cells[(*key, "count")], (name, key)
            assert registry.get_sample_value(name + "_sum", labels) == sum(values) / 1000 \
                == cells[(*key, "sum_ms")] / 1000, (name, key)
            for le in LE_SECONDS:
                assert registry.get_sample_value(name + "_bucket", {**labels, "le": repr(float(le))}) \
                    == sum(1 for v in values if v <= le * 1000), (name, key, le)
            assert registry.get_sample_value(name + "_bucket", {**labels, "le": "+Inf"}) == len(values)


def test_a_histogram_series_holds_a_reason_born_within_the_hold_back_one_scrape() -> None:
    """A reason new to a support channel's histogram series adds to it one scrape late, as a new counter
    series shows 0 first: the series never goes down and rate() sees every observation."""
    common = {"schema_version": 1, "storefront": "north", "support_channel": "chat"}
    evs = []
    for i, reason in enumerate(["shipping", "payment"]):
        ticket = next(f"t{reason}{j}" for j in range(100) if partition_for(f"t{reason}{j}", PARTITIONS) == 0)
        evs.append({**common, "ticket_id": ticket, "event_id": f"c{i}", "type": "ticket.created",
                    "occurred_at": _iso(T0), "reason": reason})
        evs.append({**common, "ticket_id": ticket, "event_id": f"r{i}", "type": "ticket.resolved",
                    "occurred_at": _iso(T0 + 60_000)})
    published = counted(evs)
    key = ("ticket", 0)
    born = Published(snapshots=published.snapshots, recovered=True,
                     born={(key, ("north", "chat", "payment")): 0.0})
    publisher = Publisher()
    publisher.current = born
    registry = CollectorRegistry()
    registry.register(CxCollector(publisher, SETTINGS))
    labels = {"storefront": "north", "support_channel": "chat", "partition": "0"}
    assert registry.get_sample_value("cxpulse_ticket_resolution_seconds_count", labels) == 1.0
    assert registry.get_sample_value("cxpulse_ticket_resolution_seconds_count", labels) == 2.0


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


def test_the_health_and_kpi_parts_together_are_the_whole_page_and_a_health_scrape_builds_no_kpi() -> None:
    """The worker registers the two parts apart: together they serve every family the whole
    collector serves, with the same samples, and a ``name[]`` scrape of health families (a
    progress check, a probe) never asks the KPI part to build its thousands of series."""
    publisher = Publisher()
    publisher.current = counted(events(random.Random(5), 100))

    def samples(metrics) -> dict:  # the lag gauges read the clock: their series, not values
        return {(s.name, tuple(sorted(s.labels.items()))): None if "lag_seconds" in s.name else s.value
                for m in metrics for s in m.samples}

    whole = samples(CxCollector(publisher, SETTINGS).collect())
    registry = CollectorRegistry()
    health, kpis = (CxCollector(publisher, SETTINGS, part=part) for part in ("health", "kpis"))
    for part in (health, kpis):
        registry.register(part)  # raises if the parts' described names overlapped
    assert samples(registry.collect()) == whole
    assert any(name == "cxpulse_orders_placed_total" for name, _ in whole)
    built = []
    kpis.collect = lambda: built.append(1) or iter(())  # type: ignore[method-assign]
    asked = registry.restricted_registry(["cxpulse_events_total", "cxpulse_worker_ready"])
    names = {s.name for m in asked.collect() for s in m.samples}
    assert names == {"cxpulse_events_total", "cxpulse_worker_ready"}
    assert built == []
