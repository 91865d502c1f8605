"""The Prometheus collector: metric families computed at scrape time.

Last stop of the flow. The worker publishes an immutable ``Published`` view
after every batch (one reference swap); ``collect()`` reads only that view,
never live state, builds fresh metric families and keeps nothing between
scrapes (as client_python's own ``gc_collector`` does). It never raises: a bug
here is logged and the scrape still gets the pipeline-health families.

    >>> registry = CollectorRegistry()
    >>> registry.register(CxCollector(Publisher(), Settings()))
    >>> registry.get_sample_value("cxpulse_worker_ready")
    0.0
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry  # noqa: F401  (doctest)

from streams.pipeline.aggregates import Cell, LogHistogram, Segment, merge_cells
from streams.catalog import (
    COUNTERS,
    CUSTOMER,
    CUSTOMER_PIPELINE,
    HISTOGRAMS,
    INITIATIVE,
    PIPELINE,
    WINDOW_QUANTILES,
    major_units,
)
from streams.config import Settings, format_duration
from streams.contract import FAMILIES, Family
from streams.pipeline.window_state import SEGMENT_LABELS, PartitionSnapshot
from streams.pipeline.windows import base_starts, last_closed_start, window_start

log = logging.getLogger("cxpulse.collector")

FRESHNESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class Published:
    """Everything a scrape may read, frozen at the end of a batch."""

    snapshots: dict[tuple[Family, int], PartitionSnapshot] = field(default_factory=dict)
    ready: bool = False
    consumer_lag: dict[tuple[Family, int], int] = field(default_factory=dict)
    freshness_counts: tuple[int, ...] = (0,) * (len(FRESHNESS_BUCKETS) + 1)
    freshness_sum: float = 0.0
    recovery_seconds: float = 0.0
    recovered_records: int = 0
    state_resets: int = 0
    broker_up: bool = True


class Publisher:
    """Holds the latest ``Published`` view; the worker swaps it, scrapes read it."""

    def __init__(self) -> None:
        self.current = Published()


class CxCollector(Collector):
    def __init__(self, publisher: Publisher, settings: Settings, initiatives=None) -> None:
        self.publisher = publisher
        self.settings = settings
        self.initiatives = initiatives  # an initiatives.Registry, or None
        self._closed_cache: dict[tuple, dict[Segment, Cell]] = {}

    def collect(self) -> Iterator[Metric]:
        view = self.publisher.current
        yield from self._pipeline(view)
        try:
            metrics = list(self._kpi_components(view))
            metrics += self._customers(view)
            metrics += self._initiatives(view)
        except Exception:  # noqa: BLE001 - a scrape must not fail; the log says why
            log.exception("event=collect_failed")
            return
        yield from metrics

    # ------------------------------------------------------------ pipeline
    def _pipeline(self, view: Published) -> Iterator[Metric]:
        now = time.time()
        ready = GaugeMetricFamily("cxpulse_worker_ready", PIPELINE["cxpulse_worker_ready"])
        ready.add_metric([], 1.0 if view.ready else 0.0)
        yield ready
        assigned = GaugeMetricFamily("cxpulse_assigned_partitions", PIPELINE["cxpulse_assigned_partitions"],
                                     labels=["family"])
        for family in (*FAMILIES, "customer"):
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
        seen = GaugeMetricFamily("cxpulse_state_seen_ids", PIPELINE["cxpulse_state_seen_ids"], labels=per_tp)
        for (family, partition), snap in sorted(view.snapshots.items()):
            labels = [family, str(partition)]
            meta = snap.meta
            if family != "customer":  # facts are not events: cxpulse_customer_facts_total counts them
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
            if family == "customer":
                continue
            windows.add_metric(labels, len(snap.windows))
            tickets.add_metric(labels, snap.tickets)
            seen.add_metric(labels, snap.seen_ids)
        yield from (events, messages, late, dups, rejected, overflow, watermark, wm_lag, lag, windows, tickets, seen)
        fresh = HistogramMetricFamily("cxpulse_event_freshness_seconds", PIPELINE["cxpulse_event_freshness_seconds"])
        running, buckets = 0, []
        for bound, n in zip((*FRESHNESS_BUCKETS, math.inf), view.freshness_counts):
            running += n
            buckets.append(("+Inf" if bound == math.inf else repr(bound), running))
        fresh.add_metric([], buckets, sum_value=view.freshness_sum)
        yield fresh
        recovery = GaugeMetricFamily("cxpulse_state_recovery_seconds", PIPELINE["cxpulse_state_recovery_seconds"])
        recovery.add_metric([], view.recovery_seconds)
        yield recovery
        recovered = CounterMetricFamily("cxpulse_state_recovered_records_total",
                                        PIPELINE["cxpulse_state_recovered_records_total"])
        recovered.add_metric([], view.recovered_records)
        yield recovered
        resets = CounterMetricFamily("cxpulse_state_resets_total", PIPELINE["cxpulse_state_resets_total"])
        resets.add_metric([], view.state_resets)
        yield resets
        broker = GaugeMetricFamily("cxpulse_broker_up", PIPELINE["cxpulse_broker_up"])
        broker.add_metric([], 1.0 if view.broker_up else 0.0)
        yield broker

    # ------------------------------------------------------ KPI components
    def _kpi_components(self, view: Published) -> Iterator[Metric]:
        by_family: dict[Family, list[PartitionSnapshot]] = {f: [] for f in FAMILIES}
        for (family, _), snap in sorted(view.snapshots.items()):
            if family in by_family:  # the customer stage exports in _customers
                by_family[family].append(snap)
        window_end = GaugeMetricFamily("cxpulse_window_end_timestamp_seconds",
                                       PIPELINE["cxpulse_window_end_timestamp_seconds"],
                                       labels=["family", "view", "state"])
        for family in FAMILIES:
            snaps = by_family[family]
            yield from self._cumulative(family, snaps)
            windows = self._windows(family, snaps)
            yield from self._window_gauges(family, windows)
            for view_name, state, end_ms, _ in windows:
                window_end.add_metric([family, view_name, state], end_ms / 1000.0)
        yield window_end

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
            if kind in ("cohort_revenue", "nps_revenue"):
                amount = major_units(value, labels[-2])  # (..., currency, horizon)
            else:
                amount = float(value)
            families[kind].add_metric(labels, amount)
        held = GaugeMetricFamily("cxpulse_state_customers", CUSTOMER_PIPELINE["cxpulse_state_customers"],
                                 labels=["partition"])
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
            evicted.add_metric([partition], snap.aggregates.get(("customers_created",), 0) - snap.customers)
            for reason in ("duplicate", "dropped"):
                skipped.add_metric([partition, reason], snap.aggregates.get((f"facts_{reason}",), 0))
        return [*families.values(), facts, held, evicted, skipped]

    # ---------------------------------------------------------- initiatives
    def _initiatives(self, view: Published) -> list[Metric]:
        from streams.initiatives.core import components

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

    def _cumulative(self, family: Family, snaps: list[PartitionSnapshot]) -> Iterator[Metric]:
        labels = [*SEGMENT_LABELS[family], "partition"]
        for counter in (c for c in COUNTERS if c.family == family):
            metric = CounterMetricFamily(counter.name, counter.help, labels=labels)
            for snap in snaps:
                for segment, cell in sorted(snap.totals.items()):
                    metric.add_metric([*segment, str(snap.partition)], _value(counter, segment, cell))
            yield metric
        for hist in (h for h in HISTOGRAMS if h.family == family):
            metric = HistogramMetricFamily(hist.name, hist.help, labels=labels)
            for snap in snaps:
                for segment, cell in sorted(snap.totals.items()):
                    sketch = cell.hists.get(hist.field)
                    if sketch is None:
                        buckets = [("+Inf" if math.isinf(b) else repr(float(b)), 0) for b, _ in _EMPTY_LE]
                        metric.add_metric([*segment, str(snap.partition)], buckets, sum_value=0.0)
                        continue
                    buckets = [("+Inf" if math.isinf(b) else repr(float(b)), n) for b, n in sketch.cumulative_le()]
                    metric.add_metric([*segment, str(snap.partition)], buckets, sum_value=sketch.sum_ms / 1000.0)
            yield metric

    def _windows(self, family: Family, snaps: list[PartitionSnapshot]):
        """[(view name, 'closed'|'open', window end ms, {segment: cell})] for this worker."""
        watermarks = [s.meta.watermark_ms for s in snaps if s.meta.watermark_ms is not None]
        if not watermarks:
            return []
        settings = self.settings
        closed_wm, open_wm = min(watermarks), max(watermarks)
        partitions = tuple(s.partition for s in snaps)
        out = []
        for view_ms in settings.views_ms:
            name = format_duration(view_ms)
            closed = last_closed_start(view_ms, closed_wm, settings.grace_ms)
            key = (family, view_ms, closed, partitions)
            cells = self._closed_cache.get(key)
            if cells is None:
                cells = self._sum(snaps, closed, view_ms)
                if len(self._closed_cache) > 256:
                    self._closed_cache.clear()
                self._closed_cache[key] = cells
            out.append((name, "closed", closed + view_ms, cells))
            current = window_start(open_wm, view_ms)
            out.append((name, "open", current + view_ms, self._sum(snaps, current, view_ms)))
        return out

    def _sum(self, snaps: list[PartitionSnapshot], start: int, view_ms: int) -> dict[Segment, Cell]:
        starts = base_starts(start, view_ms, self.settings.window_ms)
        return merge_cells(snap.windows[s] for snap in snaps for s in starts if s in snap.windows)

    def _window_gauges(self, family: Family, windows) -> Iterator[Metric]:
        labels = ["view", "state", *SEGMENT_LABELS[family]]
        for counter in (c for c in COUNTERS if c.family == family):
            metric = GaugeMetricFamily(counter.window_name, f"Window sum: {counter.help}", labels=labels)
            for view_name, state, _, cells in windows:
                for segment, cell in sorted(cells.items()):
                    metric.add_metric([view_name, state, *segment], _value(counter, segment, cell))
            yield metric
        for hist in (h for h in HISTOGRAMS if h.family == family):
            # A summary: quantiles of the window (1% relative error) with its count and sum.
            summary = Metric(hist.window_name, f"Window quantiles (relative error 1%, per worker): {hist.help}",
                             "summary")
            for view_name, state, _, cells in windows:
                for segment, cell in sorted(cells.items()):
                    labels_of = dict(zip(labels, (view_name, state, *segment)))
                    sketch = cell.hists.get(hist.field)
                    if sketch is not None and sketch.count > 0:
                        for q in WINDOW_QUANTILES:
                            summary.add_sample(hist.window_name, {**labels_of, "quantile": repr(q)},
                                               sketch.quantile(q))
                    summary.add_sample(hist.window_name + "_count", labels_of, sketch.count if sketch else 0)
                    summary.add_sample(hist.window_name + "_sum", labels_of, sketch.sum_ms / 1000.0 if sketch else 0.0)
            yield summary


def _value(counter, segment: Segment, cell: Cell) -> float:
    amount = cell.counts.get(counter.field, 0)
    if counter.money:
        return major_units(amount, segment[-1])
    return float(amount)


_EMPTY_LE = LogHistogram().cumulative_le()
