"""The CX overview dashboard (``cx-overview``): each headline KPI of the last complete window,
its change against the same window last week and its sample size, the small shops' long
windows, and each storefront's windows against last week's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from grafana_foundation_sdk.builders import dashboard as db, stat, table, timeseries
from grafana_foundation_sdk.models import dashboard as dm

from streams.mixin import rules
from streams.mixin.dashboards.clocks import ARRIVAL, DELAY_TEXT, EVENT_GRAPH, EVENT_LAST
from streams.mixin.dashboards.common import SF, W, _about, _sample_noun, _short
from streams.mixin.dashboards.layout import _dashboard, _variables
from streams.mixin.dashboards.panels import (CSAT_BANDS, CURRENCY_LEGEND, NEUTRAL, NPS_BANDS, Column, _alerts, _band,
                                             _money, _sample_rule, _series, _stat, _steps, _table, _target, _targets)
from streams.mixin.dashboards.queries import pooled, pooled_change, window_kpi
from streams.mixin.rules import _kpi


@dataclass(frozen=True)
class Headline:
    """A KPI of the overview: its change against last week is relative or in points, coloured
    from its alert's threshold; its sample tile turns yellow below the alert's volume guard."""

    key: str
    relative: bool
    change_steps: db.ThresholdsConfig
    value_steps: db.ThresholdsConfig = NEUTRAL
    guard: int | None = None
    alert: str = ""


def _headlines() -> list[Headline]:
    return [
        Headline("conversion", True, _steps((None, "red"), (-rules.CONVERSION_DROP, "green")),
                 guard=rules.MIN_SESSIONS_PER_HOUR, alert="CxpulseConversionDrop"),
        Headline("first_response_p90", True, _steps((None, "green"), (rules.RESPONSE_SPIKE_FACTOR - 1, "red")),
                 _steps((None, "green"), (rules.FIRST_RESPONSE_P90_FLOOR_S, "red")),
                 rules.MIN_TICKET_TIMES_PER_HOUR, "CxpulseFirstResponseSlow"),
        Headline("nps", False, _steps((None, "red"), (-rules.NPS_DROP_POINTS, "green")), NPS_BANDS,
                 rules.MIN_SURVEY_RESPONSES_PER_HOUR, "CxpulseNpsDrop"),
        Headline("csat", False, _steps((None, "red"), (-rules.CSAT_DROP, "green")), CSAT_BANDS,
                 rules.MIN_SURVEY_RESPONSES_PER_HOUR, "CxpulseCsatDrop"),
        Headline("revenue_per_visitor", True, _steps((None, "red"), (-rules.RPV_DROP, "green")),
                 guard=rules.MIN_SESSIONS_PER_HOUR, alert="CxpulseRevenuePerVisitorDrop"),
        # No alert watches AOV alone, but RPV = AOV x CVR: an AOV fall of RPV_DROP at steady
        # conversion is the RPV fall that pages CxpulseRevenuePerVisitorDrop.
        Headline("average_order_value", True, _steps((None, "red"), (-rules.RPV_DROP, "green"))),
    ]


def _overview_tiles(spec: Headline, filters: Mapping[str, str]) -> list[stat.Panel]:
    """Three tiles: the KPI of the last complete window, its change against the same window a
    week earlier, and its sample size, each pooled over the selected storefronts."""
    kpi = _kpi(spec.key)
    level = rules.kpi_levels(kpi)[0]
    money = kpi.unit == "currency"
    short = _short(kpi)
    name = f"{short} in $currency" if money else short
    legend = CURRENCY_LEGEND if money else short
    value, sample = pooled(spec.key, level, filters)
    unit = {"ratio": "percentunit", "seconds": "s"}.get(kpi.unit, "none")
    scale = {"nps": " NPS is on -100..100 (red below 0, yellow 0-30, green 30+).",
             "csat": " Red below 70%, yellow to 80%, green above: common e-commerce benchmarks (no alert judges the "
                     "level).",
             "first_response_p90": f" Red above {rules.FIRST_RESPONSE_P90_FLOOR_S // 60} min, the floor of "
                                   "CxpulseFirstResponseSlow."}.get(spec.key, "")
    pooling = ("the slowest selected storefront (quantiles do not add up across storefronts)"
               if kpi.shape == "quantile" else "pooled over the selected storefronts (the KPI of their summed counts)")
    value_tile = _stat(
        f"{name} · last complete $window",
        f"{_about(spec.key)} {pooling}; recording rule `{rules.window_rule(kpi, level, W)}`.{scale}",
        unit, [_target(value, legend)], clock=EVENT_LAST, thresholds=spec.value_steps,
        decimals=2 if money else (1 if kpi.unit == "score" else None),
        min_max=(-100, 100) if kpi.shape == "nps" else None)
    if spec.relative:
        how = ("the largest change among the selected storefronts, each this window / the same window last week - 1"
               if kpi.shape == "quantile" else "this window / the same window last week - 1, both pooled")
    else:
        how = ("this window - the same window last week, in points" if kpi.unit == "score"
               else "this window - the same window last week, in percentage points")
    why = (f" Red where {spec.alert} may fire (over 1h windows, with a volume guard"
           + (", and only when the 95% intervals of the two hours are apart: see the bands below)."
              if spec.key in rules.INTERVAL_KPIS else ").") if spec.alert else
           f" Red below -{rules.RPV_DROP:.0%}: at steady conversion that is the RPV fall CxpulseRevenuePerVisitorDrop "
           "pages on.")
    change_tile = _stat(
        f"{name} · vs last week", f"{short}, {how}; the baseline `{rules.window_rule(kpi, level, W)}_offset1w` reads "
        f"the window a week before the one shown.{why}",
        "none" if not spec.relative and kpi.unit == "score" else "percentunit",
        [_target(pooled_change(spec.key, level, filters, spec.relative), legend)], clock=EVENT_LAST,
        thresholds=spec.change_steps, decimals=1)
    noun = _sample_noun(spec.key)
    guard = (f" Yellow below {spec.guard}, the volume {spec.alert} needs in its 1h window before it may judge a drop: "
             "a smaller sample is noise." if spec.guard else "")
    sample_tile = _stat(
        f"{name} · sample n", f"The sample {short} is computed on: {noun} in the last complete $window window of the "
        f"storefronts that have {short} in it (`{_sample_rule(kpi, level)}`).{guard}",
        "short", [_target(sample, f"n {noun} ({CURRENCY_LEGEND})" if money else f"n {noun}")], clock=EVENT_LAST,
        thresholds=_steps((None, "yellow"), (spec.guard, "green")) if spec.guard else NEUTRAL, decimals=0)
    tiles = [value_tile, change_tile, sample_tile]
    return [_money(t) for t in tiles[:2]] + tiles[2:] if money else tiles


def _this_week_and_last(key: str, filters: Mapping[str, str]) -> timeseries.Panel:
    """A KPI per window for one storefront, solid, and the same windows a week earlier, dashed."""
    kpi = _kpi(key)
    level = rules.kpi_levels(kpi)[0]
    money = kpi.unit == "currency"
    short = _short(kpi)
    unit = {"ratio": "percentunit", "seconds": "s"}.get(kpi.unit, "none")
    legend = CURRENCY_LEGEND if money else short
    panel = _series(
        f"{short} per $window window: this week and last, $storefront",
        f"{_about(key)} Solid: each $window window; dashed: the same window a week earlier (`offset 1w`)."
        + (" Money per currency, never summed across currencies." if money else ""),
        unit, _targets((window_kpi(key, level, filters), legend),
                       (window_kpi(key, level, filters, "1w"), f"last week {legend}")),
        clock=EVENT_GRAPH, span=8, dashed="last week.*")
    return _money(panel) if money else panel


def _long_windows() -> table.Panel:
    """The windows the small shops' pages read (docs/alerts.md, "Small shops"), per storefront."""
    columns = []
    for window in rules.LONG_WINDOWS:
        conversion = f"storefront:cxpulse_conversion:ratio_window{window}{{{SF}}}"
        sessions = f"storefront:cxpulse_conversion:denominator_window{window}{{{SF}}}"
        columns += [
            Column(sessions, f"sessions {window} (n)", "short", 0),
            Column(f"{conversion}\n* on (storefront) {sessions}", f"orders {window}", "short", 0),
            Column(conversion, f"conversion {window}", "percentunit", 2),
            Column(f"{rules.expected_orders_rule(window)}{{{SF}}}", f"orders expected {window}", "short", 1),
        ]
    return _table(
        "Orders against the orders expected, last complete 6 and 24 hours", (
            "Per storefront, the windows CxpulseConversionDropSixHours / Day and CxpulseOrdersStopped read, summed from "
            "the 1-minute windows: sessions (the sample n), orders, conversion, and the orders expected "
            "(`storefront:cxpulse_conversion:expected_orders_window6h`: these sessions x last week's conversion of "
            f"the same window at the lower end of its 95% interval). No order where {rules.ORDERS_STOPPED_LAMBDA:.1f} "
            "or more were expected pages (P < 0.1%). For shops too small for the hourly pages."),
        ["storefront"], columns, sort=("storefront", False), span=24, height=7, clock=EVENT_LAST.replace(
            "$window window", "6h / 24h window"))


def cx_overview() -> dm.Dashboard:
    filters = {"storefront": "$storefront", "currency": "$currency"}
    tiles = {spec.key: _overview_tiles(spec, filters) for spec in _headlines()}
    arrivals = _targets(
        (f"sum(storefront:cxpulse_sessions_started:rate5m{{{SF}}}) * 60", "sessions / min"),
        (f"sum(storefront:cxpulse_orders_placed:rate5m{{{SF}}}) * 60", "orders / min"))
    return _dashboard(
        "cx-overview", "CX overview",
        "The executive view: each KPI of the last complete event-time window, its change against the same window "
        "last week and its sample size, pooled over the selected storefronts; then each storefront's windows "
        "against last week's.",
        _variables("storefront", "currency", "window"),
        [
            (f"Last complete $window window of event time (ended ~{DELAY_TEXT} ago), selected storefronts pooled",
             [t for key in ("conversion", "first_response_p90", "nps", "csat") for t in tiles[key]]),
            ("Money in $currency: last complete $window window, selected storefronts pooled",
             [t for key in ("revenue_per_visitor", "average_order_value") for t in tiles[key]], "currency"),
            ("Alerts", [_alerts(["CxpulseConversionDrop", "CxpulseConversionCollapse", "CxpulseConversionDropSixHours",
                                 "CxpulseConversionDropDay", "CxpulseOrdersStopped", "CxpulseRevenuePerVisitorDrop",
                                 "CxpulseNpsDrop", "CxpulseCsatDrop", "CxpulseFirstResponseSlow",
                                 "CxpulseEventsSilent", "CxpulseWindowsBehind", "CxpulseNoWorkerReady"])]),
            ("Small shops: the last complete 6 and 24 hours", [_long_windows()]),
            ("Per $window window, this week and last: $storefront",
             [*(_band(key, span=8, baseline=True,
                      title=f"{_short(_kpi(key))} per $window window: this week and last, $storefront")
                for key in ("conversion", "nps", "csat")),
              _this_week_and_last("first_response_p90", {"storefront": "$storefront"}),
              _this_week_and_last("revenue_per_visitor", {"storefront": "$storefront", "currency": "$currency"}),
              _this_week_and_last("average_order_value", {"storefront": "$storefront", "currency": "$currency"})],
             "storefront"),
            ("Live, by arrival time (not windowed)", [_series(
                "Sessions and orders per minute, by arrival time",
                "Sessions started and orders placed per minute over the selected storefronts, as the workers count "
                "them (recording rules `storefront:cxpulse_sessions_started:rate5m` and "
                "`storefront:cxpulse_orders_placed:rate5m`, x 60): the pulse of the shop right now, minutes before "
                "the event-time windows above complete. Not a KPI: a backlog shows when it is worked off.",
                "short", arrivals, clock=ARRIVAL, span=24)]),
        ],
    )
