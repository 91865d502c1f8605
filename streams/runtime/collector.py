"""The Prometheus collector: metric families computed at scrape time.

Last stop of the flow for what counts by **arrival time**: the cumulative counters
per source partition (``rate()`` over them is a live view of what the workers
processed), the customer-level gauges, initiative components and pipeline health.
Counters carry their family's whole segment; the ticket histograms are summed over
the contact reason (``Histogram.labels``), exactly, from the integer counts and ms.
Event-time windows do not go through here: the merge stage writes each complete
window to the TSDB at its own time (``remote_write.py``).

The engine publishes an immutable ``Published`` view after every batch;
``collect()`` reads only that view, builds fresh metric families and keeps nothing
between scrapes (as client_python's own ``gc_collector`` does). It never raises: a
bug here is logged and the scrape still gets the pipeline-health families.

A counter series that appears mid-run (a new storefront, channel or currency on a
partition) is served at 0 to the first scrape after it appears (within
``new_series_hold``), its value from the next one on: ``rate()`` and ``increase()``
never count a series' first sample, so a series born at its first increment would
hide that increment from every rate-based view. The one thing kept between scrapes.

    >>> registry = CollectorRegistry()
    >>> registry.register(CxCollector(Publisher(), Settings()))
    >>> registry.get_sample_value("cxpulse_worker_ready")
    0.0
"""

from __future__ import annotations

import logging
import math
import time
from typing import Iterator, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry  # noqa: F401  (doctest)

from streams.catalog import (
    COUNTERS,
    CUSTOMER,
    CUSTOMER_MONEY,
    CUSTOMER_PIPELINE,
    HISTOGRAMS,
    INITIATIVE,
    PIPELINE,
    Histogram,
    major_units,
)
from streams.config import Settings
from streams.contract import FAMILIES, Family
from streams.pipeline.aggregates import LE_SECONDS, Cell, Segment
from streams.pipeline.families import SEGMENT_LABELS
from streams.pipeline.window_state import PartitionSnapshot
from streams.runtime.published import FRESHNESS_BUCKETS, Published, Publisher

log = logging.getLogger("cxpulse.collector")

STAGES = (*FAMILIES, "customer", "merge")
FRESHNESS = "cxpulse_event_freshness_seconds"  # the one histogram of PIPELINE


# The merge stage's progress gauges: PIPELINE families that the KPI part serves (they read the merge
# state), not the worker's health part.
MERGE_PROGRESS = ("cxpulse_window_complete_until_timestamp_seconds", "cxpulse_window_exported_until_timestamp_seconds")
Part = Literal["all", "health", "kpis"]


class CxCollector(Collector):
    """Every family (``part="all"``), or one of the two parts the worker registers apart:
    ``health``, the worker's own families (PIPELINE: events counted, lag, watermarks, state
    sizes, freshness; one series per partition, cheap to build), and ``kpis``, everything else
    (the segments' counters and histograms, customers, initiatives, the merge stage's progress;
    thousands of series). Registered apart, a scrape that asks only for health families
    (``/metrics?name[]=cxpulse_events_total&name[]=cxpulse_worker_ready``) builds no KPI family:
    client_python's ``name[]`` filter asks only the collectors whose names it wants.

        >>> registry = CollectorRegistry()
        >>> for part in ("health", "kpis"):
        ...     registry.register(CxCollector(Publisher(), Settings(), part=part))
        >>> [m.name for m in registry.restricted_registry(["cxpulse_worker_ready"]).collect()]
        ['cxpulse_worker_ready']
    """

    def __init__(self, publisher: Publisher, settings: Settings, initiatives=None, part: Part = "all") -> None:
        self.publisher = publisher
        self.settings = settings
        self.initiatives = initiatives  # an initiatives.Registry, or None
        self.part = part

    def describe(self) -> Iterator[Metric]:
        """The families this collector exports, typed as ``collect`` types them (no samples):
        the registry's duplicate check reads the sample names a type implies (a counter's
        ``_total`` and ``_created``, a histogram's ``_bucket``, ``_sum``, ``_count``)."""
        histograms = {h.name for h in HISTOGRAMS} | {FRESHNESS}
        health = [name for name in PIPELINE if name not in MERGE_PROGRESS]
        kpis = [*MERGE_PROGRESS, *(c.name for c in COUNTERS), *(h.name for h in HISTOGRAMS),
                *(name for name, _, _ in CUSTOMER.values()), *CUSTOMER_PIPELINE, *INITIATIVE]
        names = {"all": [*health, *kpis], "health": health, "kpis": kpis}[self.part]
        for name in dict.fromkeys(names):
            if name in histograms:
                yield HistogramMetricFamily(name, "")
            elif name.endswith("_total"):
                yield CounterMetricFamily(name, "")
            else:
                yield GaugeMetricFamily(name, "")

    def collect(self) -> Iterator[Metric]:
        view = self.publisher.current
        if self.part != "kpis":
            yield from self._pipeline(view)
        if self.part == "health":
            return
        try:
            metrics = list(self._cumulative_all(view))
            metrics += self._merge(view)
            metrics += self._customers(view)
            metrics += self._initiatives(view)
        except Exception:  # noqa: BLE001 - a scrape must not fail; the log says why
            log.exception("event=collect_failed")
            return
        yield from metrics

    # ------------------------------------------------------------ pipeline
    def _pipeline(self, view: Published) -> Iterator[Metric]:
        now = time.time()
        yield _one(GaugeMetricFamily, "cxpulse_worker_ready", 1.0 if self.publisher.ready else 0.0)
        assigned = GaugeMetricFamily("cxpulse_assigned_partitions", PIPELINE["cxpulse_assigned_partitions"],
                                     labels=["family"])
        for family in STAGES:
            assigned.add_metric([family], sum(1 for f, _ in view.snapshots if f == family))
        yield assigned
        per_tp = ["family", "partition"]
        events = CounterMetricFamily("cxpulse_events_total", PIPELINE["cxpulse_events_total"], labels=per_tp)
        messages = CounterMetricFamily("cxpulse_messages_total", PIPELINE["cxpulse_messages_total"], labels=per_tp)
        late = CounterMetricFamily("cxpulse_events_late_total", PIPELINE["cxpulse_events_late_total"], labels=per_tp)
        dups = CounterMetricFamily("cxpulse_events_duplicate_total", PIPELINE["cxpulse_events_duplicate_total"],
                                   labels=per_tp)
        rejected = CounterMetricFamily("cxpulse_events_rejected_total", PIPELINE["cxpulse_events_rejected_total"],
                                       labels=[*per_tp, "reason"])
        overflow = CounterMetricFamily("cxpulse_label_overflow_total", PIPELINE["cxpulse_label_overflow_total"],
                                       labels=[*per_tp, "label"])
        watermark = GaugeMetricFamily("cxpulse_watermark_timestamp_seconds",
                                      PIPELINE["cxpulse_watermark_timestamp_seconds"], labels=per_tp)
        wm_lag = GaugeMetricFamily("cxpulse_watermark_lag_seconds", PIPELINE["cxpulse_watermark_lag_seconds"],
                                   labels=per_tp)
        lag = GaugeMetricFamily("cxpulse_consumer_lag_messages", PIPELINE["cxpulse_consumer_lag_messages"],
                                labels=per_tp)
        windows = GaugeMetricFamily("cxpulse_state_windows", PIPELINE["cxpulse_state_windows"], labels=per_tp)
        tickets = GaugeMetricFamily("cxpulse_state_tickets", PIPELINE["cxpulse_state_tickets"], labels=per_tp)
        sessions = GaugeMetricFamily("cxpulse_state_sessions", PIPELINE["cxpulse_state_sessions"], labels=per_tp)
        seen = GaugeMetricFamily("cxpulse_state_seen_ids", PIPELINE["cxpulse_state_seen_ids"], labels=per_tp)
        closed = GaugeMetricFamily("cxpulse_window_closed_until_timestamp_seconds",
                                   PIPELINE["cxpulse_window_closed_until_timestamp_seconds"], labels=per_tp)
        idle = GaugeMetricFamily("cxpulse_partition_idle", PIPELINE["cxpulse_partition_idle"], labels=per_tp)
        for (family, partition), snap in sorted(view.snapshots.items()):
            labels = [family, str(partition)]
            meta = snap.meta
            if family in FAMILIES:  # customer facts and window items are not events: counted apart
                messages.add_metric(labels, meta.messages)
                events.add_metric(labels, meta.events)
                late.add_metric(labels, meta.late)
                dups.add_metric(labels, meta.duplicates)
            for reason, n in sorted(meta.rejected.items()):
                rejected.add_metric([*labels, reason], n)
            for label, n in sorted(meta.overflow.items()):
                overflow.add_metric([*labels, label], n)
            if meta.watermark_ms is not None:
                watermark.add_metric(labels, meta.watermark_ms / 1000.0)
                wm_lag.add_metric(labels, max(0.0, now - meta.watermark_ms / 1000.0))
            if (family, partition) in view.consumer_lag:
                lag.add_metric(labels, view.consumer_lag[family, partition])
            if family not in FAMILIES:
                continue
            if meta.closed_ms is not None:
                closed.add_metric(labels, meta.closed_ms / 1000.0)
            idle.add_metric(labels, 1.0 if (family, partition) in view.idle else 0.0)
            windows.add_metric(labels, len(snap.windows))
            tickets.add_metric(labels, snap.tickets)
            sessions.add_metric(labels, snap.sessions)
            seen.add_metric(labels, snap.seen_ids)
        yield from (events, messages, late, dups, rejected, overflow, watermark, wm_lag, lag, windows, tickets,
                    sessions, seen, closed, idle)
        fresh = HistogramMetricFamily(FRESHNESS, PIPELINE[FRESHNESS])
        running, buckets = 0, []
        for bound, n in zip((*FRESHNESS_BUCKETS, math.inf), view.freshness_counts):
            running += n
            buckets.append(("+Inf" if bound == math.inf else repr(bound), running))
        fresh.add_metric([], buckets, sum_value=view.freshness_sum)
        yield fresh
        yield _one(GaugeMetricFamily, "cxpulse_state_recovery_seconds", view.recovery_seconds)
        yield _one(CounterMetricFamily, "cxpulse_state_recovered_records_total", view.recovered_records)
        yield _one(CounterMetricFamily, "cxpulse_state_resets_total", view.state_resets)
        yield _one(GaugeMetricFamily, "cxpulse_broker_up", 1.0 if self.publisher.broker_up else 0.0)
        failures = CounterMetricFamily("cxpulse_sink_failures_total", PIPELINE["cxpulse_sink_failures_total"],
                                       labels=["outcome"])
        for outcome in ("fenced", "failed"):
            failures.add_metric([outcome], view.sink_failures.get(outcome, 0))
        yield failures
        yield _one(CounterMetricFamily, "cxpulse_position_corrections_total", view.position_corrections)
        exporter = self.publisher.exporter
        if exporter is not None:
            stats = exporter.stats
            yield _one(CounterMetricFamily, "cxpulse_window_export_samples_total", stats.samples)
            failed = CounterMetricFamily("cxpulse_window_export_failures_total",
                                         PIPELINE["cxpulse_window_export_failures_total"], labels=["reason"])
            for reason, n in sorted(stats.failures.items()):
                failed.add_metric([reason], n)
            yield failed
            yield _one(CounterMetricFamily, "cxpulse_window_export_dropped_total", stats.dropped)
            yield _one(GaugeMetricFamily, "cxpulse_window_export_queued", stats.queued)

    # -------------------------------------------- cumulative (arrival time)
    def _cumulative_all(self, view: Published) -> Iterator[Metric]:
        by_family: dict[Family, list[PartitionSnapshot]] = {f: [] for f in FAMILIES}
        for (family, _), snap in sorted(view.snapshots.items()):
            if family in by_family:
                by_family[family].append(snap)
        for family in FAMILIES:
            yield from self._cumulative(family, by_family[family], view)

    def _merge(self, view: Published) -> list[Metric]:
        """How far the merge stage has found each family's windows complete (per merge partition)."""
        complete = GaugeMetricFamily("cxpulse_window_complete_until_timestamp_seconds",
                                     PIPELINE["cxpulse_window_complete_until_timestamp_seconds"],
                                     labels=["family", "partition"])
        exported = GaugeMetricFamily("cxpulse_window_exported_until_timestamp_seconds",
                                     PIPELINE["cxpulse_window_exported_until_timestamp_seconds"],
                                     labels=["family", "partition"])
        for (stage, partition), snap in sorted(view.snapshots.items()):
            if stage != "merge":
                continue
            for family, until in sorted(snap.complete.items()):
                complete.add_metric([family, str(partition)], until / 1000.0)
            for family, until in sorted(snap.exported.items()):
                exported.add_metric([family, str(partition)], until / 1000.0)
        return [complete, exported]

    # ------------------------------------------------------ customer level
    def _customers(self, view: Published) -> list[Metric]:
        snaps = [snap for (family, _), snap in sorted(view.snapshots.items()) if family == "customer"]
        families: dict[str, GaugeMetricFamily] = {
            kind: GaugeMetricFamily(name, text, labels=["storefront", *labels])
            for kind, (name, labels, text) in CUSTOMER.items()}
        sums: dict[tuple, int] = {}
        for snap in snaps:
            for key, value in snap.aggregates.items():
                sums[key] = sums.get(key, 0) + value
        for key, value in sorted(sums.items()):
            kind = key[0]
            if kind not in families:
                continue
            labels = list(key[1:])
            if kind in CUSTOMER_MONEY:
                amount = major_units(value, labels[1 + CUSTOMER[kind][1].index("currency")])
            else:
                amount = float(value)
            families[kind].add_metric(labels, amount)
        held = GaugeMetricFamily("cxpulse_state_customers", CUSTOMER_PIPELINE["cxpulse_state_customers"],
                                 labels=["partition"])
        sessions = GaugeMetricFamily("cxpulse_state_checkout_sessions",
                                     CUSTOMER_PIPELINE["cxpulse_state_checkout_sessions"], labels=["partition"])
        evicted = CounterMetricFamily("cxpulse_customers_evicted_total",
                                      CUSTOMER_PIPELINE["cxpulse_customers_evicted_total"], labels=["partition"])
        skipped = CounterMetricFamily("cxpulse_customer_facts_skipped_total",
                                      CUSTOMER_PIPELINE["cxpulse_customer_facts_skipped_total"],
                                      labels=["partition", "reason"])
        facts = CounterMetricFamily("cxpulse_customer_facts_total", CUSTOMER_PIPELINE["cxpulse_customer_facts_total"],
                                    labels=["partition"])
        for snap in snaps:
            partition = str(snap.partition)
            facts.add_metric([partition], snap.meta.events)
            held.add_metric([partition], snap.customers)
            sessions.add_metric([partition], snap.sessions)
            evicted.add_metric([partition], snap.aggregates.get(("customers_created",), 0) - snap.customers)
            for reason in ("duplicate", "dropped"):
                skipped.add_metric([partition, reason], snap.aggregates.get((f"facts_{reason}",), 0))
        return [*families.values(), facts, held, sessions, evicted, skipped]

    # ---------------------------------------------------------- initiatives
    def _initiatives(self, view: Published) -> list[Metric]:
        from streams.initiatives.components import components

        declared = self.initiatives.current if self.initiatives is not None else {}
        arm = ["initiative", "arm"]
        out = {name: GaugeMetricFamily(name, text, labels=arm) for name, text in INITIATIVE.items()
               if name in ("cxpulse_initiative_sessions", "cxpulse_initiative_orders", "cxpulse_initiative_revenue",
                           "cxpulse_initiative_revenue_squares")}
        investment = GaugeMetricFamily("cxpulse_initiative_investment", INITIATIVE["cxpulse_initiative_investment"],
                                       labels=["initiative", "currency"])
        margin = GaugeMetricFamily("cxpulse_initiative_gross_margin_ratio",
                                   INITIATIVE["cxpulse_initiative_gross_margin_ratio"], labels=["initiative"])
        start = GaugeMetricFamily("cxpulse_initiative_start_timestamp_seconds",
                                  INITIATIVE["cxpulse_initiative_start_timestamp_seconds"], labels=["initiative"])
        end = GaugeMetricFamily("cxpulse_initiative_end_timestamp_seconds",
                                INITIATIVE["cxpulse_initiative_end_timestamp_seconds"], labels=["initiative"])
        info = GaugeMetricFamily("cxpulse_initiative_info", INITIATIVE["cxpulse_initiative_info"],
                                 labels=["initiative", "kpi", "treated", "control"])
        snaps = [snap for (family, _), snap in view.snapshots.items() if family in ("session", "order")]
        for initiative in sorted(declared.values(), key=lambda i: i.name):
            name = initiative.name
            investment.add_metric([name, initiative.currency], initiative.investment)
            margin.add_metric([name], initiative.margin)
            start.add_metric([name], initiative.start_ms / 1000)
            if initiative.end_ms is not None:
                end.add_metric([name], initiative.end_ms / 1000)
            info.add_metric([name, initiative.kpi, initiative.treated_label, initiative.control_label], 1)
        for initiative, arm_name, values in components(declared, snaps):
            for field_name, value in values.items():
                out[f"cxpulse_initiative_{field_name}"].add_metric([initiative.name, arm_name], value)
        return [*out.values(), investment, margin, start, end, info]

    def _cumulative(self, family: Family, snaps: list[PartitionSnapshot], view: Published) -> Iterator[Metric]:
        labels = [*SEGMENT_LABELS[family], "partition"]
        empty = Cell()
        announced = self.publisher.announced
        rows = []
        for snap in snaps:
            for segment, cell in sorted(snap.totals.items()):
                where = ((family, snap.partition), segment)
                if where in view.born and where not in announced:
                    announced.add(where)  # this scrape shows it at 0, the next one its value
                    cell = empty
                rows.append((snap.partition, segment, cell))
        for counter in (c for c in COUNTERS if c.family == family):
            metric = CounterMetricFamily(counter.name, counter.help, labels=labels)
            for partition, segment, cell in rows:
                metric.add_metric([*segment, str(partition)], _value(counter, segment, cell))
            yield metric
        for hist in (h for h in HISTOGRAMS if h.family == family):
            metric = HistogramMetricFamily(hist.name, hist.help, labels=[*hist.labels, "partition"])
            for (partition, values), (le, sum_ms) in sorted(_histogram_totals(hist, rows).items()):
                running, buckets = 0, []
                for bound, n in zip((*LE_SECONDS, math.inf), le):
                    running += n
                    buckets.append(("+Inf" if math.isinf(bound) else repr(float(bound)), running))
                metric.add_metric([*values, str(partition)], buckets, sum_value=sum_ms / 1000.0)
            yield metric


def _one(family: type, name: str, value: float) -> Metric:
    """A pipeline-health family of one unlabelled sample."""
    return family(name, PIPELINE[name], value=value)


def _histogram_totals(hist: Histogram, rows: list[tuple[int, Segment, Cell]]
                      ) -> dict[tuple[int, Segment], tuple[list[int], int]]:
    """A histogram's ``le`` counts and sum (ms) per partition and values of its own labels
    (``hist.labels``: the segment's but the reason), summed over the segments that share them.
    Integers all the way, so the sums are exact; every segment row gives its series, empty or not.

        >>> from streams.catalog import HISTOGRAMS
        >>> cells = [Cell(), Cell(), Cell()]
        >>> cells[0].observe("resolution", 20_000); cells[1].observe("resolution", 90_001)
        >>> rows = [(0, ("shop", "chat", "shipping"), cells[0]), (0, ("shop", "chat", "payment"), cells[1]),
        ...         (1, ("shop", "chat", "payment"), cells[2])]
        >>> totals = _histogram_totals(HISTOGRAMS[1], rows)
        >>> le, sum_ms = totals[0, ("shop", "chat")]
        >>> le[:5], sum_ms, totals[1, ("shop", "chat")][1]
        ([0, 1, 0, 1, 0], 110001, 0)
    """
    keep = [hist.segment_labels.index(label) for label in hist.labels]
    totals: dict[tuple[int, Segment], tuple[list[int], int]] = {}
    for partition, segment, cell in rows:
        key = (partition, tuple(segment[i] for i in keep))
        le, sum_ms = totals.get(key) or ([0] * (len(LE_SECONDS) + 1), 0)
        sketch = cell.hists.get(hist.field)
        if sketch is not None:
            le = [a + b for a, b in zip(le, sketch.le)]
            sum_ms += sketch.sum_ms
        totals[key] = (le, sum_ms)
    return totals


def _value(counter, segment: Segment, cell: Cell) -> float:
    amount = cell.counts.get(counter.field, 0)
    if counter.money:
        return major_units(amount, segment[-1])
    return float(amount)
