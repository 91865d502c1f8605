"""Prometheus recording and alert rules, rendered from the catalog.

Sits beside ``render.py`` at the end of the flow: it reads ``catalog.py`` and
writes ``deploy/prometheus/rules/cxpulse.rules.yml`` (the monitoring-mixin
habit: one registry, rules and dashboards derived from it). Recording rules are
named ``level:metric:operation``; the level lists the labels kept after
``sum by (...)``. KPIs are read from the event-time windows the merge stage
remote-writes (``window_kpi_expr``), DELAY behind the evaluation; pipeline
health from the scraped counters (arrival time):

    storefront_channel:cxpulse_conversion:ratio_window1h       a KPI of the last complete hour, by segment
    storefront:cxpulse_conversion:ratio_window1h_offset1w      the same hour last week
    storefront:cxpulse_conversion:denominator_window1h         its sample size n (a count)
    storefront:cxpulse_conversion:ratio_window1h_lower         its 95% interval (also _upper, _lower_offset1w)
    family:cxpulse_window_complete_lag_seconds:max             how far behind now a family's windows are complete

Baselines read the windows a week back (``offset 1w``), not recorded series, so
alerts work from the first day the rules are loaded into a Prometheus that
already holds a week of windows. Alerts carry absolute ``runbook_url`` and
``dashboard_url`` annotations built from ``Links`` (options of ``cxpulse render``).

One module per part, each importing only those above it:

    thresholds.py   the alert thresholds (dashboards colour their tiles by them too)
    common.py       the scrape job, the KPI sets, recorded names, a KPI's formula over any components
    windows.py      the event-time window expressions and DELAY
    bounds.py       the 95% interval bounds in PromQL
    customers.py    the customer-level rules (docs/customers.md)
    recording.py    the recording groups
    links.py        the runbook and dashboard URLs of the alerts
    alerts.py       the alert rules and their groups
    output.py       the rules file

This package re-exports what the rest of cxpulse and the tests use: ``from streams.mixin
import rules`` then ``rules.window_kpi_expr``, ``rules.DELAY``, ``rules.rules_yaml``.

    >>> rule_name("storefront", "cxpulse_conversion", "ratio_window5m")
    'storefront:cxpulse_conversion:ratio_window5m'
"""

from __future__ import annotations

from streams.catalog import KPIS
from streams.mixin.rules.alerts import Alert, alert_groups, alerts
from streams.mixin.rules.common import (
    BASELINE_KPIS,
    FAMILY_ARRIVALS,
    INTERVAL_KPIS,
    JOB,
    NOT_PROPORTIONS,
    PROPORTION_KPIS,
    Level,
    base,
    bound_rule,
    component_level,
    denominator_rule,
    expected_orders_rule,
    kpi_components,
    kpi_expr,
    kpi_levels,
    numerator_rule,
    rule_name,
    window_denominator_rule,
    window_rule,
)
from streams.mixin.rules.customers import customer_expr, customer_rules
from streams.mixin.rules.links import GRAFANA_URL_DEFAULT, LINKS, RUNBOOK_BASE_DEFAULT, Links
from streams.mixin.rules.output import (GENERATED, ROOT, RULES_PATH, catalog_series, outputs, recorded_names,
                                        rules_yaml, series_names)
from streams.mixin.rules.recording import PIPELINE_COUNTERS, initiative_rules, recording_groups
from streams.mixin.rules.thresholds import (
    COLLAPSE_FACTOR,
    COLLAPSE_MIN_EXPECTED_ORDERS,
    CONSUMER_LAG_MAX_MESSAGES,
    CONVERSION_DROP,
    CSAT_DROP,
    DEAD_LETTER_RATIO_MAX,
    FIRST_RESPONSE_P90_FLOOR_S,
    FRESHNESS_P99_MAX_S,
    INTERVAL_Z,
    LATE_RATIO_MAX,
    LONG_DROP_FOR,
    LONG_DROPS,
    MIN_EVENTS_READ_5M,
    MIN_SESSIONS_PER_HOUR,
    MIN_SURVEY_RESPONSES_PER_HOUR,
    MIN_TICKET_TIMES_PER_HOUR,
    NPS_DROP_POINTS,
    ORDERS_STOPPED_LAMBDA,
    ORDERS_STOPPED_P,
    ORDERS_STOPPED_WINDOWS,
    RESOLUTION_P90_FLOOR_S,
    RESPONSE_SPIKE_FACTOR,
    RPV_DROP,
    SILENT_MIN_EVENTS,
    SILENT_WINDOW,
    WINDOWS_BEHIND_MARGIN_S,
)
from streams.mixin.rules.windows import (
    COLLAPSE_PAGE_AFTER,
    DELAY,
    LONG_WINDOW_KPIS,
    LONG_WINDOWS,
    VIEWS,
    WINDOW_RANGE,
    WINDOWS,
    visitor_conversion_expr,
    window_complete,
    window_component,
    window_kpi_expr,
    window_numerator,
    window_range,
)

# Helpers the dashboards and the tests share with the rules (each defined once, in its module).
from streams.mixin.rules.bounds import _nps_bound, _wilson_bound  # noqa: F401
from streams.mixin.rules.common import _LABELS, _indent, _kpi  # noqa: F401
from streams.mixin.rules.windows import _FAMILY_OF  # noqa: F401

__all__ = [
    # names and formulas (common.py)
    "BASELINE_KPIS", "FAMILY_ARRIVALS", "INTERVAL_KPIS", "JOB", "KPIS", "NOT_PROPORTIONS", "PROPORTION_KPIS",
    "Level", "base", "bound_rule", "component_level", "denominator_rule", "expected_orders_rule", "kpi_components",
    "kpi_expr", "kpi_levels", "numerator_rule", "rule_name", "window_denominator_rule", "window_rule",
    # thresholds (thresholds.py)
    "COLLAPSE_FACTOR", "COLLAPSE_MIN_EXPECTED_ORDERS", "CONSUMER_LAG_MAX_MESSAGES", "CONVERSION_DROP", "CSAT_DROP",
    "DEAD_LETTER_RATIO_MAX", "FIRST_RESPONSE_P90_FLOOR_S", "FRESHNESS_P99_MAX_S", "INTERVAL_Z", "LATE_RATIO_MAX",
    "LONG_DROP_FOR", "LONG_DROPS", "MIN_EVENTS_READ_5M", "MIN_SESSIONS_PER_HOUR", "MIN_SURVEY_RESPONSES_PER_HOUR",
    "MIN_TICKET_TIMES_PER_HOUR", "NPS_DROP_POINTS", "ORDERS_STOPPED_LAMBDA", "ORDERS_STOPPED_P",
    "ORDERS_STOPPED_WINDOWS", "RESOLUTION_P90_FLOOR_S", "RESPONSE_SPIKE_FACTOR", "RPV_DROP", "SILENT_MIN_EVENTS",
    "SILENT_WINDOW", "WINDOWS_BEHIND_MARGIN_S",
    # event-time windows (windows.py)
    "COLLAPSE_PAGE_AFTER", "DELAY", "LONG_WINDOW_KPIS", "LONG_WINDOWS", "VIEWS", "WINDOW_RANGE", "WINDOWS",
    "visitor_conversion_expr", "window_complete", "window_component", "window_kpi_expr", "window_numerator",
    "window_range",
    # recording rules (recording.py, customers.py)
    "PIPELINE_COUNTERS", "customer_expr", "customer_rules", "initiative_rules", "recording_groups",
    # alert rules and their links (alerts.py, links.py)
    "Alert", "GRAFANA_URL_DEFAULT", "LINKS", "Links", "RUNBOOK_BASE_DEFAULT", "alert_groups", "alerts",
    # the rules file (output.py)
    "GENERATED", "ROOT", "RULES_PATH", "catalog_series", "outputs", "recorded_names", "rules_yaml", "series_names",
]
