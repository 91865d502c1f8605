"""The Pipeline health dashboard (``pipeline-health``): is cxpulse keeping up and counting
everything.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.models import dashboard as dm

from streams.mixin import rules
from streams.mixin.dashboards.clocks import (ARRIVAL, ARRIVAL_NOW, DELAY_S, DELAY_TEXT, EVENT_CLOSED, EVENT_LAG,
                                             EVENT_WATERMARK)
from streams.mixin.dashboards.common import FAM, _help
from streams.mixin.dashboards.layout import _dashboard, _variables
from streams.mixin.dashboards.panels import _alerts, _series, _stat, _steps, _target, _targets

# The legend, rate interval, alert line and series the panels of several rows share.
FAMILY = "{{family}}"
RATE = "$__rate_interval"
BEHIND = DELAY_S + rules.WINDOWS_BEHIND_MARGIN_S
READ = f"family:cxpulse_events_read:rate5m{{{FAM}}}"
REJECTED_RATIO = f"family:cxpulse_events_rejected:ratio_rate5m{{{FAM}}}\nor on (family) 0 * {READ}"
LATE_RATIO = f"family:cxpulse_events_late:ratio_rate5m{{{FAM}}}"
COMPLETE_LAG = f"family:cxpulse_window_complete_lag_seconds:max{{{FAM}}}"


def _alive(expr: str, label: str) -> str:
    # A worker exports rejected / overflow counters only for reasons it has seen: a zero per family
    # keeps the panel (and the e2e check) meaningful when nothing went wrong.
    return (f"{expr}\nor on (family)\n"
            f'  label_replace(0 * family:cxpulse_events:rate5m{{{FAM}}}, "{label}", "none", "", "")')


def pipeline_health() -> dm.Dashboard:
    pipeline_alerts = [a.name for a in rules.alerts() if a.dashboard == "pipeline-health"]
    return _dashboard(
        "pipeline-health", "Pipeline health",
        "Is cxpulse keeping up and counting everything: event-time completeness and the export of complete windows, "
        "throughput, consumer and watermark lag, freshness, late, rejected and duplicate events, label overflow, "
        "broker reachability, sink failures, state size and workers.",
        _variables("family"),
        [
            ("Now", _now()),
            ("Event-time completeness", _completeness()),
            ("Window export (remote write)", _export()),
            ("Throughput", _throughput()),
            ("Lag and freshness", _lag()),
            ("Events not counted", _not_counted()),
            ("State, workers and broker", _state()),
            ("Alerts", [_alerts(pipeline_alerts)]),
        ],
        since="now-6h",
    )


def _now() -> list[stat.Panel]:
    """The first row: workers, window completeness, lag, freshness and the shares of rejected and late events."""
    headline = [
        _stat("Workers up", f"Worker processes Prometheus scrapes successfully: sum of up{{{rules.JOB}}}. A worker "
              "down for 5 min fires CxpulseWorkerDown.", "short",
              [_target(f"sum(up{{{rules.JOB}}})", "up")], clock=ARRIVAL_NOW,
              thresholds=_steps((None, "red"), (1, "green")), decimals=0),
        _stat("Workers ready", f"{_help('cxpulse_worker_ready')} Sum over workers (recording rule "
              "`job:cxpulse_workers_ready:sum`); none ready for 5 min fires CxpulseNoWorkerReady.", "short",
              [_target("job:cxpulse_workers_ready:sum", "ready")], clock=ARRIVAL_NOW,
              thresholds=_steps((None, "red"), (1, "green")), decimals=0),
        _stat("Workers without a broker", f"Workers whose cxpulse_broker_up is 0. {_help('cxpulse_broker_up')} One "
              "for a minute fires CxpulseBrokerUnreachable.", "short",
              [_target("count(cxpulse_broker_up == 0) or vector(0)", "unreachable")], clock=ARRIVAL_NOW,
              thresholds=_steps((None, "green"), (1, "red")), decimals=0),
        _stat("Windows complete, behind now", f"How far behind the wall clock the event-time windows are complete, "
              f"per family (`family:cxpulse_window_complete_lag_seconds:max`, the slowest merge partition). Yellow "
              f"above {DELAY_TEXT}, the delay the KPI rules read at; red above {BEHIND} s, where CxpulseWindowsBehind "
              "fires.", "s", [_target(COMPLETE_LAG, FAMILY)], clock=EVENT_LAG,
              thresholds=_steps((None, "green"), (DELAY_S + 1, "yellow"), (BEHIND, "red"))),
        _stat("Consumer lag", f"{_help('cxpulse_consumer_lag_messages')} Summed over partitions per family "
              f"(`family:cxpulse_consumer_lag_messages:sum`); above {rules.CONSUMER_LAG_MAX_MESSAGES} for 10 min "
              "fires CxpulseConsumerLagHigh.", "short",
              [_target(f"family:cxpulse_consumer_lag_messages:sum{{{FAM}}}", FAMILY)], clock=ARRIVAL_NOW,
              thresholds=_steps((None, "green"), (rules.CONSUMER_LAG_MAX_MESSAGES, "red")), decimals=0),
        _stat("Freshness p99", f"{_help('cxpulse_event_freshness_seconds')} 99th percentile over 5 min from the "
              f"histogram (`job:cxpulse_event_freshness_seconds:p99_rate5m`); above {rules.FRESHNESS_P99_MAX_S:g} s "
              "for 10 min fires CxpulseEventsStale.", "s",
              [_target("job:cxpulse_event_freshness_seconds:p99_rate5m", "p99")], clock=ARRIVAL,
              thresholds=_steps((None, "green"), (rules.FRESHNESS_P99_MAX_S, "red"))),
        _stat("Dead-letter ratio", f"Rejected / events read over 5 min per family "
              f"(`family:cxpulse_events_rejected:ratio_rate5m`, 0 when nothing was rejected). "
              f"{_help('cxpulse_events_rejected_total')} Above {rules.DEAD_LETTER_RATIO_MAX:.0%} fires "
              "CxpulseDeadLetterRateHigh.", "percentunit", [_target(REJECTED_RATIO, FAMILY)], clock=ARRIVAL,
              thresholds=_steps((None, "green"), (rules.DEAD_LETTER_RATIO_MAX, "red"))),
        _stat("Late ratio", f"Late / events read over 5 min per family (`family:cxpulse_events_late:ratio_rate5m`). "
              f"{_help('cxpulse_events_late_total')} Above {rules.LATE_RATIO_MAX:.0%} fires CxpulseLateEventsHigh.",
              "percentunit", [_target(LATE_RATIO, FAMILY)], clock=ARRIVAL,
              thresholds=_steps((None, "green"), (rules.LATE_RATIO_MAX, "red"))),
    ]
    return [panel.span(3) for panel in headline]


def _completeness() -> list[timeseries.Panel]:
    """How far behind now the windows are complete, closed per partition, and idle partitions."""
    return [
        _series("Windows complete, behind now, by family", f"Wall clock minus the event time up to which every "
                f"source partition of the family has closed its windows (`family:cxpulse_window_complete_lag_seconds:"
                f"max`, from {_help('cxpulse_window_complete_until_timestamp_seconds').lower()}). Dashed line: "
                "CxpulseWindowsBehind.", "s", _targets((COMPLETE_LAG, FAMILY)),
                thresholds=_steps((None, "transparent"), (BEHIND, "red")), clock=EVENT_LAG, span=8),
        _series("Windows closed, behind now, by source partition", f"Wall clock minus each source partition's "
                f"closed-until mark: {_help('cxpulse_window_closed_until_timestamp_seconds')} The slowest partition "
                "of a family holds back its complete windows.", "s",
                _targets(("time() - max by (family, partition) "
                          f"(cxpulse_window_closed_until_timestamp_seconds{{{FAM}}})", "{{family}} p{{partition}}")),
                clock=EVENT_CLOSED, span=8),
        _series("Idle source partitions by family", f"{_help('cxpulse_partition_idle')} An idle partition's windows "
                "close by the other partitions' progress, after the idle timeout: part of the normal delay.", "short",
                _targets((f"sum by (family) (max by (family, partition) (cxpulse_partition_idle{{{FAM}}}))", FAMILY)),
                clock=ARRIVAL_NOW, span=8),
    ]


def _export() -> list[timeseries.Panel]:
    """The remote write of complete windows: how far it is, samples, failures and the queue."""
    return [
        _series("Windows exported, behind now, by family", f"Wall clock minus the event time up to which the TSDB "
                "has acknowledged the family's complete windows (the slowest merge partition): "
                f"{_help('cxpulse_window_exported_until_timestamp_seconds')} Above the complete-window lag means the "
                "remote write is behind.", "s",
                _targets((f"time() - min by (family) (cxpulse_window_exported_until_timestamp_seconds{{{FAM}}})",
                          FAMILY)),
                clock=EVENT_LAG, span=6),
        _series("Window samples written per second", f"{_help('cxpulse_window_export_samples_total')} Rate per worker.",
                "short", _targets((f"sum by (instance) (rate(cxpulse_window_export_samples_total[{RATE}]))",
                                   "{{instance}}")), clock=ARRIVAL, span=6),
        _series("Export failures and dropped windows per minute", f"{_help('cxpulse_window_export_failures_total')} "
                f"{_help('cxpulse_window_export_dropped_total')} Failures for 10 min with a queue fire "
                "CxpulseWindowExportFailing.", "short",
                # a worker exports a reason once a write failed for it: 0, not "no data", before any did
                _targets((f"sum by (reason) (rate(cxpulse_window_export_failures_total[{RATE}])) * 60\n"
                          'or on () label_replace(0 * sum(cxpulse_window_export_queued), "reason", "none", "", "")',
                          "failed: {{reason}}"),
                         (f"sum(rate(cxpulse_window_export_dropped_total[{RATE}])) * 60", "dropped")),
                clock=ARRIVAL, span=6),
        _series("Windows waiting for export", f"{_help('cxpulse_window_export_queued')} Per worker: grows while the "
                "endpoint is down, drains after.", "short",
                _targets(("sum by (instance) (cxpulse_window_export_queued)", "{{instance}}")),
                clock=ARRIVAL_NOW, span=6),
    ]


def _throughput() -> list[timeseries.Panel]:
    """Events and messages per second, and events per message."""
    return [
        _series("Events per second by family", f"{_help('cxpulse_events_total')} Rate over 5 min "
                "(`family:cxpulse_events:rate5m`).", "short",
                _targets((f"family:cxpulse_events:rate5m{{{FAM}}}", FAMILY)), clock=ARRIVAL, span=8),
        _series("Messages per second by family", f"{_help('cxpulse_messages_total')} Rate over 5 min "
                "(`family:cxpulse_messages:rate5m`).", "short",
                _targets((f"family:cxpulse_messages:rate5m{{{FAM}}}", FAMILY)), clock=ARRIVAL, span=8),
        _series("Events per message", "Events read / messages read over 5 min: how many events a Kafka message "
                "carries. Batched messages are the fast path (each message costs the worker a fixed overhead).",
                "short", _targets((f"{READ}\n/ (family:cxpulse_messages:rate5m{{{FAM}}} > 0)", FAMILY)),
                clock=ARRIVAL, span=8),
    ]


def _lag() -> list[timeseries.Panel]:
    """Consumer lag, watermark lag and event freshness."""
    return [
        _series("Consumer lag by family", f"{_help('cxpulse_consumer_lag_messages')} Summed over partitions. "
                "Dashed line: the CxpulseConsumerLagHigh threshold.", "short",
                _targets((f"family:cxpulse_consumer_lag_messages:sum{{{FAM}}}", FAMILY)),
                thresholds=_steps((None, "transparent"), (rules.CONSUMER_LAG_MAX_MESSAGES, "red")),
                clock=ARRIVAL_NOW, span=8),
        _series("Watermark lag by family", f"{_help('cxpulse_watermark_lag_seconds')} The largest over partitions "
                "(`family:cxpulse_watermark_lag_seconds:max`): how far event time trails the wall clock, which "
                "includes producers' own delay and quiet periods.", "s",
                _targets((f"family:cxpulse_watermark_lag_seconds:max{{{FAM}}}", FAMILY)), clock=EVENT_WATERMARK,
                span=8),
        _series("Event freshness p50 / p99", f"{_help('cxpulse_event_freshness_seconds')} Quantiles over 5 min "
                "from the histogram (`job:cxpulse_event_freshness_seconds_bucket:rate5m`); the histogram tops out "
                "at 60 s. Dashed line: the CxpulseEventsStale threshold.", "s",
                _targets(("histogram_quantile(0.5, job:cxpulse_event_freshness_seconds_bucket:rate5m)", "p50"),
                         ("job:cxpulse_event_freshness_seconds:p99_rate5m", "p99")),
                thresholds=_steps((None, "transparent"), (rules.FRESHNESS_P99_MAX_S, "red")), clock=ARRIVAL, span=8),
    ]


def _not_counted() -> list[timeseries.Panel]:
    """Events not counted: rejected, late, duplicate, and labels beyond the budget."""
    return [
        _series("Dead-letter ratio by family", f"Rejected / events read over 5 min "
                f"(`family:cxpulse_events_rejected:ratio_rate5m`). {_help('cxpulse_events_rejected_total')}",
                "percentunit", _targets((REJECTED_RATIO, FAMILY)),
                thresholds=_steps((None, "transparent"), (rules.DEAD_LETTER_RATIO_MAX, "red")), clock=ARRIVAL, span=8),
        _series("Rejected per second by reason", f"{_help('cxpulse_events_rejected_total')} Rate by family and "
                "reason (`none` at 0 for a family that never had a rejected event).", "short",
                _targets((_alive(f"sum by (family, reason) (rate(cxpulse_events_rejected_total{{{FAM}}}[{RATE}]))",
                                "reason"), "{{family}} {{reason}}")), clock=ARRIVAL, span=8),
        _series("Late ratio by family", f"Late / events read over 5 min (`family:cxpulse_events_late:ratio_rate5m`). "
                f"{_help('cxpulse_events_late_total')}", "percentunit", _targets((LATE_RATIO, FAMILY)),
                thresholds=_steps((None, "transparent"), (rules.LATE_RATIO_MAX, "red")), clock=ARRIVAL, span=8),
        _series("Duplicates per second by family", f"{_help('cxpulse_events_duplicate_total')} Rate over 5 min "
                "(`family:cxpulse_events_duplicate:rate5m`).", "short",
                _targets((f"family:cxpulse_events_duplicate:rate5m{{{FAM}}}", FAMILY)), clock=ARRIVAL, span=12),
        _series("Label overflow per second", f"{_help('cxpulse_label_overflow_total')} Rate by family and label "
                "(`none` at 0 when nothing overflowed).", "short",
                _targets((_alive(f"sum by (family, label) (rate(cxpulse_label_overflow_total{{{FAM}}}[{RATE}]))",
                                "label"), "{{family}} {{label}}")), clock=ARRIVAL, span=12),
    ]


def _state() -> list[timeseries.Panel]:
    """State size, partitions, workers, the broker, sink failures and recovery."""
    return [
        _series("State size by family", f"Per family, summed over partitions: base windows "
                f"({_help('cxpulse_state_windows')}), open tickets ({_help('cxpulse_state_tickets')}), "
                f"sessions ({_help('cxpulse_state_sessions')}), dedupe ids ({_help('cxpulse_state_seen_ids')})",
                "short",
                _targets((f"sum by (family) (cxpulse_state_windows{{{FAM}}})", "{{family}} windows"),
                         (f"sum by (family) (cxpulse_state_tickets{{{FAM}}})", "{{family}} tickets"),
                         (f"sum by (family) (cxpulse_state_sessions{{{FAM}}})", "{{family}} sessions"),
                         (f"sum by (family) (cxpulse_state_seen_ids{{{FAM}}})", "{{family}} seen ids")),
                clock=ARRIVAL_NOW, span=8),
        _series("Assigned partitions by worker", f"{_help('cxpulse_assigned_partitions')} Summed over families, "
                "per worker instance; moves when workers join, leave or rebalance.", "short",
                _targets(("sum by (instance) (cxpulse_assigned_partitions)", "{{instance}}")),
                clock=ARRIVAL_NOW, span=8),
        _series("Workers up, ready and reaching the broker", f"Workers scraped (up), workers ready, and workers that "
                f"reach a Kafka broker. {_help('cxpulse_worker_ready')} {_help('cxpulse_broker_up')}",
                "short", _targets((f"sum(up{{{rules.JOB}}})", "up"), ("job:cxpulse_workers_ready:sum", "ready"),
                                  ("sum(cxpulse_broker_up)", "broker reachable")),
                clock=ARRIVAL_NOW, span=8),
        _series("Sink failures per minute by outcome", f"{_help('cxpulse_sink_failures_total')} Fenced writes are "
                "expected around a rebalance; failed ones mean the broker was lost or slow (the batch is replayed).",
                "short", _targets((f"sum by (outcome) (rate(cxpulse_sink_failures_total[{RATE}])) * 60",
                                   "{{outcome}}")), clock=ARRIVAL, span=8),
        _series("State recovery time by worker", f"{_help('cxpulse_state_recovery_seconds')} Per worker instance: "
                "how long the worker rebuilt its state from the changelog after its last assignment.", "s",
                _targets(("max by (instance) (cxpulse_state_recovery_seconds)", "{{instance}}")),
                clock=ARRIVAL_NOW, span=8),
        _series("Changelog records recovered per second", f"{_help('cxpulse_state_recovered_records_total')} Rate "
                "per worker instance.", "short",
                _targets((f"sum by (instance) (rate(cxpulse_state_recovered_records_total[{RATE}]))", "{{instance}}")),
                clock=ARRIVAL, span=8),
        _series("Partition states started over and positions corrected (last hour)",
                f"{_help('cxpulse_state_resets_total')} Non-zero means a source topic was recreated or the broker "
                "lost its data: those partitions' counters restarted (docs/operations.md). "
                f"{_help('cxpulse_position_corrections_total')}", "short",
                _targets(("sum by (instance) (increase(cxpulse_state_resets_total[1h]))", "{{instance}} resets"),
                         ("sum by (instance) (increase(cxpulse_position_corrections_total[1h]))",
                          "{{instance}} position corrections")), clock=ARRIVAL, span=24),
    ]
