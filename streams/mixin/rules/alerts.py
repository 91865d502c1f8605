"""Prometheus alert rules: a KPI that fell against the same window last week beyond the
noise, a checkout that collapsed or stopped, slow support, and a pipeline that stalls, lags
or drops events. Runbooks: docs/alerts.md; thresholds: ``thresholds.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from streams.catalog import COUNTERS, WINDOW_COMPLETE
from streams.mixin.rules.bounds import _num
from streams.mixin.rules.common import (FAMILY_ARRIVALS, INTERVAL_KPIS, JOB, _indent, _kpi, _seconds, base,
                                        bound_rule, component_level, denominator_rule, expected_orders_rule,
                                        kpi_levels, rule_name, window_rule)
from streams.mixin.rules.links import LINKS, Links
from streams.mixin.rules.thresholds import (
    COLLAPSE_FACTOR, COLLAPSE_MIN_EXPECTED_ORDERS, CONSUMER_LAG_MAX_MESSAGES, CONVERSION_DROP, CSAT_DROP,
    DEAD_LETTER_RATIO_MAX, FIRST_RESPONSE_P90_FLOOR_S, FRESHNESS_P99_MAX_S, LATE_RATIO_MAX, LONG_DROP_FOR, LONG_DROPS,
    MIN_EVENTS_READ_5M, MIN_SESSIONS_PER_HOUR, MIN_SURVEY_RESPONSES_PER_HOUR, MIN_TICKET_TIMES_PER_HOUR,
    NPS_DROP_POINTS, ORDERS_STOPPED_LAMBDA, ORDERS_STOPPED_P, ORDERS_STOPPED_WINDOWS, RESOLUTION_P90_FLOOR_S,
    RESPONSE_SPIKE_FACTOR, RPV_DROP, SILENT_MIN_EVENTS, SILENT_WINDOW, WINDOWS_BEHIND_MARGIN_S,
)
from streams.mixin.rules.windows import COLLAPSE_PAGE_AFTER, DELAY, window_kpi_expr, window_range


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: Literal["critical", "warning"]
    summary: str
    description: str
    dashboard: str  # slug (= uid) of the dashboard to open first (docs/alerts.md, runbook)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def runbook_url(self) -> str:
        return LINKS.runbook_url(self.name)


def _drop_alert(name: str, key: str, change: str, threshold: float, guard: int,
                what: str, fmt: str, summary: str, window: str = "1h") -> Alert:
    """A KPI over the last complete ``window`` (an hour) of event time fell against the same window
    last week by more than ``threshold``, with a sample of at least ``guard`` in both; for a KPI
    with an interval (INTERVAL_KPIS) also beyond the noise: this window's 95% interval wholly below
    last week's. Reads complete windows only: a family that lags makes it silent, never wrong."""
    kpi = _kpi(key)
    level = kpi_levels(kpi)[0]
    span = "hour" if window == "1h" else f"{window.removesuffix('h')} hours"
    now, before = window_rule(kpi, level, window), window_rule(kpi, level, window) + "_offset1w"
    n_now, n_before = denominator_rule(kpi, level, window), denominator_rule(kpi, level, window, offset=True)
    on = ", ".join(component_level(kpi.denominator, level))
    noise = key in INTERVAL_KPIS
    live_now = now
    if tuple(component_level(kpi.denominator, level)) != tuple(level):
        # Revenue per currency: a currency with no order this hour has no revenue series, so no
        # RPV at all, and a payment method of one currency that fails completely would never page.
        # It is 0 where last week had that currency and this hour's orders are complete (the
        # storefront's conversion exists: its order window is complete and it had sessions).
        conversion = window_rule(_kpi("conversion"), level[:1], window)
        live_now = (f"(\n    {now}\n    or on ({', '.join(level)})\n    0 * {before}\n"
                    f"    and on (storefront) {conversion}\n  )")
    if change == "relative":
        delta = f"{live_now}\n  / {before}\n  - 1"
    else:
        delta = f"{live_now}\n  - {before}"
    beyond = (f"and on ({', '.join(level)})\n  {bound_rule(kpi, level, window, 'upper')}\n"
              f"  < {bound_rule(kpi, level, window, 'lower', offset=True)}\n") if noise else ""
    expr = (
        f"(\n  {delta}\n) < -{threshold}\n"
        f"{beyond}"
        f"and on ({on}) {n_now} >= {guard}\n"
        f"and on ({on}) {n_before} >= {guard}"
    )
    shorter = LONG_DROPS[window][1] if window in LONG_DROPS else None
    if shorter is not None:  # the shorter window's alert judges this storefront: it pages, not this one
        expr += (f"\nunless on ({on}) (\n  {denominator_rule(kpi, level, shorter)} >= {guard}\n"
                 f"  and on ({on}) {denominator_rule(kpi, level, shorter, offset=True)} >= {guard}\n)")
    labels = ", ".join(f"{lbl}='%s'" for lbl in level)
    args = " ".join(f"$labels.{lbl}" for lbl in level)

    def show(series: str, absent: str = "") -> str:
        otherwise = f"{{{{ else }}}}{absent}" if absent else ""
        return (f'{{{{ with printf "{series}{{{labels}}}" {args} | query }}}}'
                f"{{{{ . | first | value | {fmt} }}}}{otherwise}{{{{ end }}}}")

    live, was = show(now, "0 (no order in this currency)" if live_now != now else ""), show(before)
    if noise:
        live += (f" (95% interval {show(bound_rule(kpi, level, window, 'lower'))} to "
                 f"{show(bound_rule(kpi, level, window, 'upper'))})")
        was += (f" ({show(bound_rule(kpi, level, window, 'lower', offset=True))} to "
                f"{show(bound_rule(kpi, level, window, 'upper', offset=True))})")
    if change == "relative":
        value = "{{ $value | humanizePercentage }}"
    elif kpi.unit == "ratio":  # a share: the change in percentage points
        value = '{{ $value | humanizePercentage | reReplaceAll "%" " pp" }}'
    else:
        value = '{{ $value | printf "%.1f" }} points'
    beyond_text = (" The intervals do not overlap: the drop is beyond sampling noise." if noise else "")
    return Alert(
        name=name, expr=expr, for_=LONG_DROP_FOR[window],
        severity="critical" if key in ("conversion", "revenue_per_visitor") else "warning",
        summary=summary + f" ({value} vs same {span} last week)",
        description=(f"{what} over the last complete {span} of event time (the {span} ending {DELAY} ago) is "
                     f"{live}, against {was} in the same {span} last week ({value}).{beyond_text} Formula: "
                     f"{kpi.formula}. Sample guard: at least {guard} ({base(kpi.denominator)}) in the {span}, now "
                     "and last week." + (f" Only where the {LONG_DROPS[window][1]} window's guard fails (that "
                                         "window's alert judges the others)." if window in LONG_DROPS else "")),
        dashboard="cx-overview", labels={"kind": "kpi", "family": kpi.family},
    )


def _orders_stopped_expr() -> str:
    """No order in the last complete window of a storefront whose window should have held at least
    ORDERS_STOPPED_LAMBDA, for each of ORDERS_STOPPED_WINDOWS; the value is the orders expected."""
    conversion = _kpi("conversion")
    branches = []
    for window in ORDERS_STOPPED_WINDOWS:
        branches.append(
            f"label_replace(\n"
            f"  {expected_orders_rule(window)} >= {_num(ORDERS_STOPPED_LAMBDA)}\n"
            f"  and on (storefront) {window_rule(conversion, ('storefront',), window)} == 0,\n"
            f'  "window", "{window}", "", ""\n'
            f")")
    return "\nor\n".join(branches)


def _collapse_expr() -> str:
    """Conversion of the newest two complete minutes of event time below half of the 15 minutes
    before them, on a storefront whose two minutes are complete in both families.

    Completeness is read from the windows themselves (``cxpulse_window_complete`` of both minutes,
    order and session), per storefront: an order minute not in the TSDB yet (a family that lags, a
    remote write still queued) would otherwise read as zero orders against the sessions of that
    minute, a collapse that is not there. So a lag never pages here; CxpulseWindowsBehind does."""
    two = f"{_seconds(DELAY) + 120}s"  # offset of the 15 minutes before the two minutes

    def minutes(metric: str) -> str:
        name = next(c.window_name for c in COUNTERS if c.name == metric)
        return f'sum by (storefront) (sum_over_time({name}{{window="1m"}}[{window_range(2)}] offset {DELAY}))'

    def complete(family: str) -> str:  # 2 where both minutes of the family are complete
        return (f'sum by (storefront) (sum_over_time({WINDOW_COMPLETE}{{family="{family}", window="1m"}}'
                f"[{window_range(2)}] offset {DELAY})) == 2")

    before = window_kpi_expr(_kpi("conversion"), ("storefront",), "15m", two)
    return (
        f"(\n  {minutes('cxpulse_orders_placed_total')}\n"
        f"  or on (storefront) 0 * {minutes('cxpulse_sessions_started_total')}\n)\n"
        f"/ ({minutes('cxpulse_sessions_started_total')} > 0)\n"
        f"< {COLLAPSE_FACTOR} * (\n{_indent(before)}\n)\n"
        f"and on (storefront)\n"
        f"  {minutes('cxpulse_sessions_started_total')}\n"
        f"  * (\n{_indent(before, 4)}\n  ) >= {COLLAPSE_MIN_EXPECTED_ORDERS}\n"
        f"and on (storefront) {complete('order')}\n"
        f"and on (storefront) {complete('session')}"
    )


def _spike_alert(name: str, key: str, floor_s: int, dashboard: str, what: str) -> Alert:
    kpi = _kpi(key)
    level = kpi_levels(kpi)[0]
    now, before = window_rule(kpi, level, "1h"), window_rule(kpi, level, "1h") + "_offset1w"
    count = base(kpi.histogram + "_count")
    vol_now = rule_name(level, count, "window1h")
    vol_before = rule_name(level, count, "window1h_offset1w")
    expr = (
        f"{now} > {floor_s}\n"
        f"and {now} > {RESPONSE_SPIKE_FACTOR} * {before}\n"
        f"and on (storefront) {vol_now} >= {MIN_TICKET_TIMES_PER_HOUR}\n"
        f"and on (storefront) {vol_before} >= {MIN_TICKET_TIMES_PER_HOUR}"
    )
    was = (f'{{{{ with printf "{before}{{storefront=\'%s\'}}" $labels.storefront | query }}}}'
           f"{{{{ . | first | value | humanizeDuration }}}}{{{{ end }}}}")
    return Alert(
        name=name, expr=expr, for_="30m", severity="warning",
        summary=f"{what} p90 on {{{{ $labels.storefront }}}} is {{{{ $value | humanizeDuration }}}}",
        description=(f"The 90th percentile of {what.lower()} over the last complete hour of event time is "
                     f"{{{{ $value | humanizeDuration }}}}, more than {RESPONSE_SPIKE_FACTOR}x the {was} of the same "
                     f"hour last week and above {floor_s // 60} min (the merge stage's quantile, within 1%)."),
        dashboard=dashboard, labels={"kind": "kpi", "family": kpi.family},
    )


def _silent_expr() -> str:
    # `+` of the survey counters is safe: the collector exports every counter of a family
    # for every segment it has seen (0 when that answer type never came).
    branches = []
    for family, metrics in FAMILY_ARRIVALS.items():
        def total(offset: str = "", metrics: tuple[str, ...] = metrics) -> str:
            off = f" offset {offset}" if offset else ""
            return " + ".join(f"sum by (storefront) (increase({m}[{SILENT_WINDOW}]{off}))" for m in metrics)

        # Last week at this time is the baseline (a shop that closes at night stays quiet); an
        # hour ago only counts for a storefront with no history a week back.
        branches.append(
            f'label_replace(\n'
            f'  ({total()}) == 0\n'
            f'  and on (storefront) (\n'
            f'    ({total("1w")}) >= {SILENT_MIN_EVENTS}\n'
            f'    or (\n'
            f'      ({total("1h")}) >= {SILENT_MIN_EVENTS}\n'
            f'      unless on (storefront) ({total("1w")})\n'
            f'    )\n'
            f'  ),\n'
            f'  "family", "{family}", "", ""\n'
            f')'
        )
    return "\nor\n".join(branches)


def alerts() -> list[Alert]:
    """Every alert, in the order of the rules file: the KPI and support alerts, then the pipeline's."""
    return [*_kpi_alerts(), *_pipeline_alerts()]


def _kpi_alerts() -> list[Alert]:
    """Alerts on the KPIs, by event time: drops against last week, a collapse, no orders, slow support."""
    return [
        _drop_alert("CxpulseConversionDrop", "conversion", "relative", CONVERSION_DROP, MIN_SESSIONS_PER_HOUR,
                    "Conversion (orders / sessions)", "humanizePercentage",
                    "Conversion on {{ $labels.storefront }} dropped"),
        Alert(
            name="CxpulseConversionCollapse", expr=_collapse_expr(), for_="1m", severity="critical",
            summary="Conversion on {{ $labels.storefront }} collapsed to {{ $value | humanizePercentage }}",
            description=("Orders / sessions over the newest two complete minutes of event time (ending "
                         f"{DELAY} ago or earlier) is {{{{ $value | humanizePercentage }}}}, below "
                         f"{COLLAPSE_FACTOR:.0%} of the 15 minutes before, with at least "
                         f"{COLLAPSE_MIN_EXPECTED_ORDERS} orders expected at the earlier rate: a broken checkout, "
                         "payment provider or deploy, not noise. Needs no history, unlike CxpulseConversionDrop. "
                         "Reads only minutes complete in both families: a delayed family pages as "
                         f"CxpulseWindowsBehind instead. Fires {COLLAPSE_PAGE_AFTER} ({DELAY} + 2 minutes) after the end "
                         "of the first broken minute, or up to one evaluation interval later."),
            dashboard="cx-overview", labels={"kind": "kpi", "family": "order"},
        ),
        *(_drop_alert(name, "conversion", "relative", CONVERSION_DROP, MIN_SESSIONS_PER_HOUR,
                      "Conversion (orders / sessions)", "humanizePercentage",
                      "Conversion on {{ $labels.storefront }} dropped over " + window, window)
          for window, (name, _) in LONG_DROPS.items()),
        Alert(
            name="CxpulseOrdersStopped", expr=_orders_stopped_expr(), for_="5m", severity="critical",
            summary=("No order on {{ $labels.storefront }} for {{ $labels.window }} of event time, "
                     "{{ $value | printf \"%.1f\" }} expected"),
            description=("Not one order in the last complete {{ $labels.window }} of event time (ending "
                         f"{DELAY} ago), while that window's sessions at last week's conversion of the same window "
                         "(the lower end of its 95% interval) make {{ $value | printf \"%.1f\" }} expected: by "
                         f"Poisson, no order at all then has a probability below {ORDERS_STOPPED_P:.1%} "
                         f"(e^-λ, λ >= {ORDERS_STOPPED_LAMBDA:.1f}). A broken checkout, payment provider or order "
                         "feed at a shop too small for CxpulseConversionCollapse. Windows: "
                         f"{', '.join(ORDERS_STOPPED_WINDOWS)}; a shop of 50 orders a day pages on the 6h one "
                         "(docs/alerts.md)."),
            dashboard="cx-overview", labels={"kind": "kpi", "family": "order"},
        ),
        _drop_alert("CxpulseRevenuePerVisitorDrop", "revenue_per_visitor", "relative", RPV_DROP,
                    MIN_SESSIONS_PER_HOUR,
                    "Revenue per visitor in {{ $labels.currency }}", 'printf "%.2f"',
                    "Revenue per visitor on {{ $labels.storefront }} ({{ $labels.currency }}) dropped"),
        _drop_alert("CxpulseNpsDrop", "nps", "absolute", NPS_DROP_POINTS, MIN_SURVEY_RESPONSES_PER_HOUR,
                    "NPS (-100..100)", 'printf "%.1f"', "NPS on {{ $labels.storefront }} fell"),
        _drop_alert("CxpulseCsatDrop", "csat", "absolute", CSAT_DROP, MIN_SURVEY_RESPONSES_PER_HOUR,
                    "CSAT (share of 4-5 answers)", "humanizePercentage",
                    "CSAT on {{ $labels.storefront }} fell"),
        _spike_alert("CxpulseFirstResponseSlow", "first_response_p90", FIRST_RESPONSE_P90_FLOOR_S, "support",
                     "First-response time"),
        _spike_alert("CxpulseResolutionSlow", "resolution_p90", RESOLUTION_P90_FLOOR_S, "support",
                     "Resolution time"),
    ]


def _pipeline_alerts() -> list[Alert]:
    """Alerts on the pipeline, by arrival time: silent producers, lagging windows, the broker, the
    export, lag, freshness, rejected and late events, and the workers."""
    return [
        Alert(
            name="CxpulseEventsSilent", expr=_silent_expr(), for_="10m", severity="critical",
            summary="No {{ $labels.family }} events from {{ $labels.storefront }} for " + SILENT_WINDOW,
            description=("cxpulse counted no {{ $labels.family }} events of storefront {{ $labels.storefront }} "
                         f"in the last {SILENT_WINDOW}, although it had at least {SILENT_MIN_EVENTS} in the same "
                         f"span a week ago (an hour ago for a storefront with no history a week back). The producer, the topic or the decoder stopped them."),
            dashboard="pipeline-health",
        ),
        Alert(
            name="CxpulseWindowsBehind",
            expr=f"family:cxpulse_window_complete_lag_seconds:max > {_seconds(DELAY) + WINDOWS_BEHIND_MARGIN_S}",
            for_="2m", severity="critical",
            summary="{{ $labels.family }} windows are complete only up to {{ $value | humanizeDuration }} ago",
            description=("The event-time windows of {{ $labels.family }} are complete (every source partition "
                         "past them) only up to {{ $value | humanizeDuration }} ago, against at most "
                         f"{DELAY} normally (grace + idle partition + one window): a producer sends late, a topic "
                         "has a backlog, or a partition's worker is down or rebalancing. KPIs that read this "
                         "family show the last complete window and their alerts stay silent (they read complete "
                         "windows only) until it catches up: this is a pipeline problem, not a drop in the KPI."),
            dashboard="pipeline-health",
        ),
        Alert(
            name="CxpulseBrokerUnreachable", expr="max by (instance) (cxpulse_broker_up == 0)", for_="1m",
            severity="critical",
            summary="cxpulse worker {{ $labels.instance }} cannot reach Kafka",
            description=("The worker {{ $labels.instance }} has not reached a Kafka broker for a minute: it counts "
                         "nothing, /ready answers 503, and it resumes by itself (replaying what it had not "
                         "written) when the broker is back."),
            dashboard="pipeline-health",
        ),
        Alert(
            name="CxpulseWindowExportFailing",
            # Failing writes while windows wait (retried), or windows given up: no remote-write URL, or
            # refused as invalid or too old (older than the TSDB's out-of-order window). Dropped windows
            # never reach the TSDB and the complete-until mark moves on, so nothing else pages for them.
            expr=("(\n  sum by (instance) (increase(cxpulse_window_export_failures_total[10m])) > 0\n"
                  "  and on (instance) cxpulse_window_export_queued > 0\n)\n"
                  "or sum by (instance) (increase(cxpulse_window_export_dropped_total[10m])) > 0"),
            for_="10m", severity="warning",
            summary="cxpulse worker {{ $labels.instance }} cannot write event-time windows",
            description=("The worker's remote writes to Prometheus have failed for 10 minutes, with complete "
                         "windows waiting in its queue (retried with backoff), or it gave windows up "
                         "({{ $value | humanize }} failed or dropped in the last 10 minutes): no "
                         "CXPULSE_REMOTE_WRITE_URL, or the endpoint refused them as invalid or older than its "
                         "out-of-order window. Event-time panels and KPI alerts stop at the last window "
                         "written, or have holes. Check CXPULSE_REMOTE_WRITE_URL, that Prometheus runs with "
                         "--web.enable-remote-write-receiver and an out_of_order_time_window, and the "
                         "worker's remote_write_failed log lines."),
            dashboard="pipeline-health",
        ),
        Alert(
            name="CxpulseConsumerLagHigh",
            expr=f"family:cxpulse_consumer_lag_messages:sum > {CONSUMER_LAG_MAX_MESSAGES}",
            for_="10m", severity="warning",
            summary="cxpulse is {{ $value | humanize }} messages behind on {{ $labels.family }}",
            description=("Workers are {{ $value | humanize }} messages behind the end of the {{ $labels.family }} "
                         f"topic (sum over partitions; threshold {CONSUMER_LAG_MAX_MESSAGES}) for 10 minutes: "
                         "dashboards show the past, and alerts on KPIs are late."),
            dashboard="pipeline-health",
        ),
        Alert(
            name="CxpulseEventsStale",
            expr=f"job:cxpulse_event_freshness_seconds:p99_rate5m > {FRESHNESS_P99_MAX_S}",
            for_="10m", severity="warning",
            summary="Events take {{ $value | humanizeDuration }} (p99) to reach /metrics",
            description=("99% of events became visible on /metrics within {{ $value | humanizeDuration }} of their "
                         f"Kafka timestamp over the last 5 minutes (threshold {FRESHNESS_P99_MAX_S:g} s). "
                         "Computed from the cxpulse_event_freshness_seconds histogram."),
            dashboard="pipeline-health",
        ),
        Alert(
            name="CxpulseDeadLetterRateHigh",
            expr=(f"family:cxpulse_events_rejected:ratio_rate5m > {DEAD_LETTER_RATIO_MAX}\n"
                  f"and family:cxpulse_events_read:rate5m * 300 >= {MIN_EVENTS_READ_5M}"),
            for_="10m", severity="warning",
            summary="{{ $value | humanizePercentage }} of {{ $labels.family }} events go to the dead-letter topic",
            description=("{{ $value | humanizePercentage }} of the {{ $labels.family }} events read in the last "
                         f"5 minutes were rejected by the decoder (threshold {DEAD_LETTER_RATIO_MAX:.0%}): they "
                         "are parked in the dead-letter topic with a reason and missing from every KPI."),
            dashboard="pipeline-health",
        ),
        Alert(
            name="CxpulseLateEventsHigh",
            expr=(f"family:cxpulse_events_late:ratio_rate5m > {LATE_RATIO_MAX}\n"
                  f"and family:cxpulse_events_read:rate5m * 300 >= {MIN_EVENTS_READ_5M}"),
            for_="15m", severity="warning",
            summary="{{ $value | humanizePercentage }} of {{ $labels.family }} events arrive after the grace period",
            description=("{{ $value | humanizePercentage }} of the {{ $labels.family }} events read in the last "
                         f"5 minutes were later than their window's grace period (threshold {LATE_RATIO_MAX:.0%}): "
                         "they are counted and parked, never in a window, so KPIs under-count."),
            dashboard="pipeline-health",
        ),
        Alert(
            name="CxpulseWorkerDown", expr=f"up{{{JOB}}} == 0", for_="5m", severity="warning",
            summary="cxpulse worker {{ $labels.instance }} is down",
            description=("Prometheus could not scrape the cxpulse worker {{ $labels.instance }} for 5 minutes. "
                         "Its partitions move to the other workers after the session timeout; if none is left, "
                         "CxpulseNoWorkerReady fires too."),
            dashboard="pipeline-health",
        ),
        Alert(
            name="CxpulseNoWorkerReady", expr=f"absent(cxpulse_worker_ready{{{JOB}}} == 1)", for_="5m",
            severity="critical",
            summary="No cxpulse worker is ready",
            description=("No cxpulse worker has reported cxpulse_worker_ready 1 for 5 minutes: no worker owns "
                         "recovered partitions, so no event is being counted and every KPI is frozen."),
            dashboard="pipeline-health",
        ),
    ]


def alert_groups(links: Links | None = None) -> list[dict[str, Any]]:
    links = links or LINKS
    groups: dict[str, list[Alert]] = {"cxpulse.6.alerts.kpi": [], "cxpulse.6.alerts.support": [],
                                      "cxpulse.6.alerts.pipeline": []}
    for alert in alerts():
        key = ("support" if alert.dashboard == "support" else
               "kpi" if alert.dashboard == "cx-overview" else "pipeline")
        groups[f"cxpulse.6.alerts.{key}"].append(alert)
    return [
        {"name": name, "rules": [
            {
                "alert": a.name,
                "expr": a.expr,
                "for": a.for_,
                "labels": {"severity": a.severity, **a.labels},
                "annotations": {"summary": a.summary, "description": a.description,
                                "runbook_url": links.runbook_url(a.name), "dashboard_url": links.dashboard_url(a.dashboard)},
            }
            for a in items
        ]}
        for name, items in groups.items()
    ]
