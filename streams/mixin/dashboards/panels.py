"""The panel builders every dashboard uses: queries and thresholds, money units per currency,
stat tiles (a KPI with its sample size), time series, bands with their 95% interval, tables,
bars and the alert-state timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from grafana_foundation_sdk.builders import bargauge, common as common_b, dashboard as db
from grafana_foundation_sdk.builders import prometheus as prom, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.models import common, dashboard as dm, prometheus as prom_m

from streams.catalog import Kpi
from streams.mixin import rules
from streams.mixin.dashboards.clocks import ALERTS_CLOCK, EVENT_BARS, EVENT_GRAPH, EVENT_LAST
from streams.mixin.dashboards.common import DATASOURCE, MAX_POINTS, W, _about, _sample_noun, _short
from streams.mixin.dashboards.queries import Band, pooled, window_band
from streams.mixin.rules import _kpi


def _target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> prom.Dataquery:
    query = prom.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE).legend_format(legend or "__auto")
    return query.instant() if instant else query.range()


def _table_target(expr: str, ref: str) -> prom.Dataquery:
    """An instant query in table format: one row per series, a column per label, ``Value #<ref>``."""
    return _target(expr, ref=ref, instant=True).format(prom_m.PromQueryFormat.TABLE)


def _targets(*specs: tuple[str, str]) -> list[prom.Dataquery]:
    return [_target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(specs)]


def _steps(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=value, color=color) for value, color in steps])


NEUTRAL = _steps((None, "blue"))
NPS_BANDS = _steps((None, "red"), (0, "yellow"), (30, "green"))
# No alert pages on the level of CSAT or FCR (their alerts, where they exist, compare with last
# week), so their tiles are banded by common service benchmarks instead: CSAT around 75-85% is
# ordinary for e-commerce, FCR around 70% is the usual contact-centre average. One place to edit.
CSAT_BANDS = _steps((None, "red"), (0.70, "yellow"), (0.80, "green"))
FCR_BANDS = _steps((None, "red"), (0.60, "yellow"), (0.70, "green"))

# ------------------------------------------------------------------ money
# Grafana cannot take a panel's unit from a variable or a label (grafana/grafana#82938 is
# open; `currency${currency}` stays a literal string), so a money panel carries one override
# per currency, matched on the series' display name, which ends in its `currency` label:
# each series (and its axis) gets its own symbol and a mix of currencies never shares one.
# Grafana's built-in currency units, then prefixes for common currencies it lacks; a
# currency outside this list shows as a plain number with its code in the legend.
CURRENCY_UNITS: dict[str, str] = {
    **{code: f"currency{code}" for code in ("USD", "EUR", "GBP", "JPY", "CHF", "SEK", "NOK", "DKK", "ISK", "PLN",
                                             "CZK", "BRL", "INR", "KRW", "ZAR", "RUB", "UAH")},
    "AUD": "currency:A$", "CAD": "currency:CA$", "NZD": "currency:NZ$", "HKD": "currency:HK$",
    "SGD": "currency:S$", "MXN": "currency:MX$", "CNY": "currency:CN¥", "TRY": "currency:₺", "ILS": "currency:₪",
}
CURRENCY_LEGEND = "{{currency}}"  # a money series' legend ends with this: the overrides match on it


def _money(panel: Any) -> Any:
    """Give every series whose name ends in a known currency code that currency's unit."""
    for code, unit in CURRENCY_UNITS.items():
        panel = panel.override_by_regexp(f"^(.* )?{code}$", [dm.DynamicConfigValue(id_val="unit", value=unit)])
    return panel


# ------------------------------------------------------------------ panels
def _stat(title: str, description: str, unit: str, targets: list[prom.Dataquery], *, clock: str,
          thresholds: db.ThresholdsConfig = NEUTRAL, span: int = 4, height: int = 5,
          decimals: float | None = None, min_max: tuple[float, float] | None = None) -> stat.Panel:
    panel = (
        stat.Panel().title(title).description(f"{description} {clock}").datasource(DATASOURCE).targets(targets)
        .unit(unit).thresholds(thresholds).span(span).height(height)
        .color_mode(common.BigValueColorMode.VALUE).graph_mode(common.BigValueGraphMode.AREA)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    if min_max is not None:
        panel = panel.min(min_max[0]).max(min_max[1])
    return panel


SAMPLE_COLOR = "#8e8e8e"


def _sample_field() -> list[dm.DynamicConfigValue]:
    """The sample size beside a KPI: a grey count, whatever the KPI's unit and thresholds."""
    return [dm.DynamicConfigValue(id_val="unit", value="short"), dm.DynamicConfigValue(id_val="decimals", value=0),
            dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": SAMPLE_COLOR}),
            dm.DynamicConfigValue(id_val="min", value=0)]


def _kpi_tile(key: str, level: rules.Level, filters: Mapping[str, str], *, thresholds: db.ThresholdsConfig = NEUTRAL,
              span: int = 4, note: str = "") -> stat.Panel:
    """The KPI of the last complete window, pooled over the selected segments, and beside it
    the sample n it is computed on (both from the recording rules the alerts read)."""
    kpi = _kpi(key)
    value, sample = pooled(key, level, filters)
    money = kpi.unit == "currency"
    short = _short(kpi)
    noun = _sample_noun(key)
    name = f"{short} in $currency" if money else short
    unit = {"ratio": "percentunit", "seconds": "s"}.get(kpi.unit, "none")
    pooling = ("the slowest of the selected segments (quantiles do not add up across storefronts), with the "
               "measurements of all of them" if kpi.shape == "quantile" else
               "pooled over the selected segments: sum(KPI x n) / sum(n), the KPI of their summed counts")
    description = (f"{_about(key)} {name} of the last complete $window window, {pooling}; from "
                   f"`{rules.window_rule(kpi, level, W)}`. Beside it, grey: n, the {noun} it is computed on "
                   f"(`{_sample_rule(kpi, level)}`): a small n is a noisy number.{note}")
    panel = _stat(f"{name} · last complete $window", description, unit,
                  [_target(value, CURRENCY_LEGEND if money else short, "A"),
                   _target(sample, f"n {noun}", "B")],
                  clock=EVENT_LAST, thresholds=thresholds, span=span,
                  decimals=2 if money else (1 if kpi.unit == "score" else None),
                  min_max=(-100, 100) if kpi.shape == "nps" else None)
    panel = panel.override_by_name(f"n {noun}", _sample_field())
    return _money(panel) if money else panel


def _sample_rule(kpi: Kpi, level: rules.Level) -> str:
    if kpi.shape == "quantile":
        return rules.rule_name(level, rules.base(kpi.histogram + "_count"), f"window{W}")
    return rules.denominator_rule(kpi, level, W)


def _series(title: str, description: str, unit: str, targets: list[prom.Dataquery], *, clock: str,
            thresholds: db.ThresholdsConfig | None = None, span: int = 12, height: int = 8,
            stacked: bool = False, min_max: tuple[float, float] | None = None,
            dashed: str = "", bars: bool = False) -> timeseries.Panel:
    """A time series; ``thresholds`` are drawn as dashed lines, ``dashed`` dashes matching series.
    An event-time graph steps by the window (``interval`` = ``$window``, enough points), so each
    point is one whole window and no window is drawn twice."""
    panel = (
        timeseries.Panel().title(title).description(f"{description} {clock}").datasource(DATASOURCE)
        .targets(targets).unit(unit).span(span).height(height).line_width(1).fill_opacity(10)
        .legend(common_b.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM).show_legend(True))
    )
    if clock == EVENT_GRAPH:
        panel = panel.interval(W).max_data_points(MAX_POINTS).show_points(common.VisibilityMode.ALWAYS).point_size(4)
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
    if thresholds is not None:
        panel = panel.thresholds(thresholds).thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
    if stacked:
        panel = panel.stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL)).fill_opacity(60)
    if min_max is not None:
        panel = panel.min(min_max[0]).max(min_max[1])
    if dashed:
        panel = panel.override_by_regexp(dashed, [
            dm.DynamicConfigValue(id_val="custom.lineStyle", value={"dash": [10, 10], "fill": "dash"})])
    return panel


BAND_COLOR, BASELINE_COLOR = "blue", "text"


def _band_panel(title: str, description: str, unit: str, main: Band, sample: tuple[str, str] | None = None,
                other: Band | None = None, span: int = 12, *, clock: str,
                thresholds: db.ThresholdsConfig | None = None) -> timeseries.Panel:
    """``main`` as a blue line in a shaded band (the upper series filled down to the lower),
    ``sample`` (expr, legend) as grey bars on the right axis, ``other`` dashed and grey in a
    lighter band. One storefront or initiative per panel: the row repeats per value."""
    specs = [main.value, main.lower, main.upper] + ([sample] if sample else [])
    if other is not None:
        specs += [other.value, other.lower, other.upper]
    panel = _series(title, description, unit, _targets(*specs), thresholds=thresholds, span=span, clock=clock)
    panel = panel.fill_opacity(0).legend(
        common_b.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM).show_legend(True).calcs(["lastNotNull"]))

    def fixed(color: str) -> dm.DynamicConfigValue:
        return dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color})

    def bound(color: str, fill_to: str = "", opacity: int = 0) -> list[dm.DynamicConfigValue]:
        props = [fixed(color), dm.DynamicConfigValue(id_val="custom.lineWidth", value=0),
                 dm.DynamicConfigValue(id_val="custom.fillOpacity", value=opacity),
                 dm.DynamicConfigValue(id_val="custom.showPoints", value="never")]
        if fill_to:
            props.append(dm.DynamicConfigValue(id_val="custom.fillBelowTo", value=fill_to))
        return props

    panel = (
        panel.override_by_name(main.value[1], [fixed(BAND_COLOR),
                                               dm.DynamicConfigValue(id_val="custom.lineWidth", value=2)])
        .override_by_name(main.lower[1], bound(BAND_COLOR))
        .override_by_name(main.upper[1], bound(BAND_COLOR, main.lower[1], 25))
    )
    if sample is not None:
        panel = panel.override_by_name(sample[1], [
            dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": SAMPLE_COLOR}),
            dm.DynamicConfigValue(id_val="unit", value="short"),
            dm.DynamicConfigValue(id_val="decimals", value=0),
            dm.DynamicConfigValue(id_val="custom.drawStyle", value="bars"),
            dm.DynamicConfigValue(id_val="custom.fillOpacity", value=15),
            dm.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
            dm.DynamicConfigValue(id_val="custom.axisLabel", value="sample n"),
            dm.DynamicConfigValue(id_val="min", value=0)])
    if other is not None:
        panel = (
            panel.override_by_name(other.value[1], [fixed(BASELINE_COLOR), dm.DynamicConfigValue(
                id_val="custom.lineStyle", value={"dash": [10, 10], "fill": "dash"})])
            .override_by_name(other.lower[1], bound(BASELINE_COLOR))
            .override_by_name(other.upper[1], bound(BASELINE_COLOR, other.lower[1], 12))
        )
    return panel


DROP_ALERTS = {"conversion": "CxpulseConversionDrop", "nps": "CxpulseNpsDrop", "csat": "CxpulseCsatDrop",
               "revenue_per_visitor": "CxpulseRevenuePerVisitorDrop"}


def _band(key: str, span: int = 12, baseline: bool = False, title: str = "") -> timeseries.Panel:
    """A share or NPS of one storefront (the row repeats per ``$storefront``, all channels) per
    window, with its 95% interval as a band and its sample size n as bars on the right axis;
    ``baseline`` adds the same windows a week earlier, dashed and grey in their own band."""
    kpi = _kpi(key)
    short = _short(kpi)
    filters = {"storefront": "$storefront"}
    main, n = window_band(key, filters)
    unit = "none" if kpi.shape == "nps" else "percentunit"
    method = ("adjusted-Wald interval (3/4 of a pseudo-answer added to promoters and to detractors)"
              if kpi.shape == "nps" else "Wilson score interval")
    alert = DROP_ALERTS.get(key)
    text = (f"{_about(key)} Line: the KPI of each $window window; band: its 95% {method}, the range the true value "
            f"lies in given the sample (the formula of the recorded "
            f"`{rules.bound_rule(kpi, ('storefront',), W, 'lower')}` and `..._upper`); bars (right axis): the "
            f"sample size n, the {_sample_noun(key)} in the window. A narrow band is a large sample; a move inside "
            "the band is noise.")
    other = None
    if baseline:
        other = window_band(key, filters, offset="1w", name="last week")[0]
        text += (" Dashed line and grey band: the same windows a week earlier and their interval"
                 + (f"; {alert} pages only while the two 1h bands are apart." if alert else "."))
    return _band_panel(title or f"{short} per $window window with its 95% interval, $storefront", text, unit, main,
                       (n, "n (sample)"), other, span=span, clock=EVENT_GRAPH)


@dataclass(frozen=True)
class Column:
    """A value column of a table: an instant query and how its number reads."""

    expr: str
    name: str
    unit: str = "none"
    decimals: int | None = None
    gauge: bool = False  # a bar in the cell, for shares on 0..1
    text: tuple[tuple[str, str], ...] = ()  # value -> text, e.g. (("0", "running"),)
    hidden: bool = False  # a query that only contributes label columns


def _table(title: str, description: str, labels: list[str], columns: list[Column], drop: tuple[str, ...] = (),
           sort: tuple[str, bool] | None = None, span: int = 12, height: int = 9, *, clock: str) -> table.Panel:
    """One row per value of ``labels`` (the label columns, in this order), one column per query.

    Each query is an instant table; Grafana drops its Time, ``__name__`` and the labels in ``drop``
    (constant within a query, e.g. ``horizon``), merges the rows that agree on the labels every
    query shares, then names and orders the columns. ``sort``: (column, descending). A money
    column's rows may be in different currencies: the ``currency`` label column says which.
    """
    refs = [chr(ord("A") + i) for i in range(len(columns))]
    values = ["Value" if len(columns) == 1 else f"Value #{ref}" for ref in refs]
    organize = {
        "excludeByName": {value: True for value, column in zip(values, columns) if column.hidden},
        "renameByName": {value: column.name for value, column in zip(values, columns) if not column.hidden},
        "indexByName": {name: i for i, name in enumerate([*labels, *values])},
    }
    steps = [dm.DataTransformerConfig(id_val="organize", options={
        "excludeByName": {name: True for name in ("Time", "__name__", *drop)}})]
    if len(columns) > 1:
        steps.append(dm.DataTransformerConfig(id_val="merge", options={}))
    steps.append(dm.DataTransformerConfig(id_val="organize", options=organize))
    panel = (
        table.Panel().title(title).description(f"{description} {clock}").datasource(DATASOURCE)
        .targets([_table_target(column.expr, ref) for column, ref in zip(columns, refs)])
        .transformations(steps).thresholds(NEUTRAL).span(span).height(height)
    )
    for column in columns:
        if column.hidden:
            continue
        props = [dm.DynamicConfigValue(id_val="unit", value=column.unit)]
        if column.decimals is not None:
            props.append(dm.DynamicConfigValue(id_val="decimals", value=column.decimals))
        if column.gauge:
            props += [dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "gauge", "mode": "basic"}),
                      dm.DynamicConfigValue(id_val="min", value=0), dm.DynamicConfigValue(id_val="max", value=1)]
        if column.text:
            props.append(dm.DynamicConfigValue(id_val="mappings", value=[{"type": "value", "options": {
                value: {"text": text, "index": i} for i, (value, text) in enumerate(column.text)}}]))
        panel = panel.override_by_name(column.name, props)
    if sort is not None:
        panel = panel.sort_by([common_b.TableSortByFieldState().display_name(sort[0]).desc(sort[1])])
    return panel


def _bars(title: str, description: str, targets: list[prom.Dataquery], span: int = 12, unit: str = "short",
          height: int = 8, *, clock: str) -> bargauge.Panel:
    """Horizontal bars, one per series, at its last value. On event time the points are the
    trailing windows ending every minute, so the last one is the newest complete window."""
    panel = (
        bargauge.Panel().title(title).description(f"{description} {clock}").datasource(DATASOURCE).targets(targets)
        .unit(unit).span(span).height(height).thresholds(NEUTRAL)
        .orientation(common.VizOrientation.HORIZONTAL).display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if clock == EVENT_BARS:
        panel = panel.interval(rules.VIEWS[0]).max_data_points(MAX_POINTS)
    return panel


def alert_state_expr(names: Iterable[str]) -> str:
    """One series per alert: 0 ok, 1 pending, 2 firing (``ALERTS`` only exists while one is active)."""
    names = list(names)
    match = f'alertname=~"{"|".join(names)}"'
    quiet = "".join(f'\nor label_replace(vector(0), "alertname", "{name}", "", "")' for name in names)
    return (
        "max by (alertname) (\n"
        f'  2 * ALERTS{{{match}, alertstate="firing"}}\n'
        f'  or ALERTS{{{match}, alertstate="pending"}}\n'
        ")" + quiet
    )


def _alerts(names: list[str], span: int = 24) -> statetimeline.Panel:
    known = {a.name: a for a in rules.alerts()}
    lines = "; ".join(f"{name} ({known[name].severity}, for {known[name].for_}): {known[name].summary}"
                      for name in names)
    description = (
        "State of the alerts that cover this dashboard (green ok, yellow pending, red firing), across all "
        "storefronts: open the alert in Prometheus or Alertmanager for its labels. Read from Prometheus' "
        f"ALERTS series; rules and runbooks in docs/alerts.md. {lines} {ALERTS_CLOCK}"
    )
    mappings: list[Any] = [dm.ValueMap(options={
        "0": dm.ValueMappingResult(text="ok", color="green", index=0),
        "1": dm.ValueMappingResult(text="pending", color="yellow", index=1),
        "2": dm.ValueMappingResult(text="firing", color="red", index=2),
    })]
    return (
        statetimeline.Panel().title("Alert state").description(description).datasource(DATASOURCE)
        .targets([_target(alert_state_expr(names), "{{alertname}}")])
        .mappings(mappings).thresholds(_steps((None, "green"), (1, "yellow"), (2, "red")))
        .merge_values(True).show_value(common.VisibilityMode.NEVER).span(span).height(max(4, len(names) + 2))
    )
