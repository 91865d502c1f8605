"""Grafana dashboards as code, rendered from the catalog and the rule names.

Sits at the end of the flow beside ``rules/``: it reads ``catalog.py`` (KPI
titles, formulas, help texts) and ``rules`` (recorded series names, the
event-time window expressions, alert names and thresholds) and writes one JSON
file per dashboard into ``grafana/dashboards/``, built with the
grafana-foundation-sdk builders for Grafana 11.6 and serialised with sorted
keys, so a re-render is byte-stable.

Every number says which clock it counts by. Headline KPIs count by **event
time**: a tile shows the last complete ``$window`` window from the recording
rules the alerts read (``storefront:cxpulse_conversion:ratio_window${window}``),
pooled over the selected storefronts; a graph draws one point per whole window
from the windows the merge stage wrote (``rules.window_kpi_expr``, step =
``$window``). Throughput "live" views count by **arrival time** (``rate()`` of
the workers' counters) and sit in rows of their own.

One module per part, each importing only those above it:

    common.py       the datasource, the variable matchers, texts taken from the catalog
    clocks.py       the clock each panel's description ends with
    queries.py      event-time windows at each point, 95% bands, tiles pooled from the rules
    panels.py       the panel builders: tiles, time series, bands, tables, bars, alert state
    annotations.py  initiative starts and ends, deploys and incidents
    layout.py       a dashboard's variables, rows and notice
    overview.py, revenue_funnel.py, support.py, voice_of_customer.py, pipeline_health.py,
    customers.py, initiatives.py
                    one dashboard each
    output.py       the JSON files, and every query for the tests

This package re-exports what ``cxpulse render`` and the tests use.

    >>> sorted(p.name for p in outputs())[:2]
    ['cx-customers.json', 'cx-initiatives.json']
    >>> substitute('storefront:cxpulse_conversion:ratio_window${window}{storefront=~"$storefront"}')
    'storefront:cxpulse_conversion:ratio_window5m{storefront=~".*"}'
"""

from __future__ import annotations

from streams.mixin.dashboards.annotations import (GRAFANA, MARKS, TEAM_MARKS, PrometheusAnnotation,
                                                  initiative_annotations, load, team_annotations)
from streams.mixin.dashboards.clocks import (ALERTS_CLOCK, ARRIVAL, ARRIVAL_NOW, CUSTOMER_CLOCK, DELAY_S, DELAY_TEXT,
                                             EVENT_BARS, EVENT_CLOSED, EVENT_GRAPH, EVENT_LAG, EVENT_LAST,
                                             EVENT_WATERMARK, INITIATIVE_CLOCK)
from streams.mixin.dashboards.common import DATASOURCE, FAM, MAX_POINTS, SF, W
from streams.mixin.dashboards.layout import GENERATED, TAGS, WINDOW_DEFAULT, Rows
from streams.mixin.dashboards.output import (DASHBOARD_DIR, DASHBOARDS, PROMETHEUS_SERIES, ROOT, TEST_VARIABLES,
                                             annotation_queries, dashboard_json, dashboards, outputs, panel_queries,
                                             substitute)
from streams.mixin.dashboards.panels import (BAND_COLOR, BASELINE_COLOR, CSAT_BANDS, CURRENCY_LEGEND, CURRENCY_UNITS,
                                             DROP_ALERTS, FCR_BANDS, NEUTRAL, NPS_BANDS, SAMPLE_COLOR, Column,
                                             alert_state_expr)
from streams.mixin.dashboards.queries import (LOOKBACK, Band, at_window_ends, complete_in, pooled, pooled_change,
                                              pooled_total, window_band, window_count, window_kpi)

__all__ = [
    # common.py, clocks.py
    "DATASOURCE", "FAM", "MAX_POINTS", "SF", "W",
    "ALERTS_CLOCK", "ARRIVAL", "ARRIVAL_NOW", "CUSTOMER_CLOCK", "DELAY_S", "DELAY_TEXT", "EVENT_BARS", "EVENT_CLOSED",
    "EVENT_GRAPH", "EVENT_LAG", "EVENT_LAST", "EVENT_WATERMARK", "INITIATIVE_CLOCK",
    # queries.py
    "LOOKBACK", "Band", "at_window_ends", "complete_in", "pooled", "pooled_change", "pooled_total", "window_band",
    "window_count", "window_kpi",
    # panels.py
    "BAND_COLOR", "BASELINE_COLOR", "CSAT_BANDS", "CURRENCY_LEGEND", "CURRENCY_UNITS", "DROP_ALERTS", "FCR_BANDS",
    "NEUTRAL", "NPS_BANDS", "SAMPLE_COLOR", "Column", "alert_state_expr",
    # annotations.py, layout.py
    "GRAFANA", "MARKS", "TEAM_MARKS", "PrometheusAnnotation", "initiative_annotations", "load", "team_annotations",
    "GENERATED", "TAGS", "WINDOW_DEFAULT", "Rows",
    # output.py
    "DASHBOARD_DIR", "DASHBOARDS", "PROMETHEUS_SERIES", "ROOT", "TEST_VARIABLES", "annotation_queries",
    "dashboard_json", "dashboards", "outputs", "panel_queries", "substitute",
]
