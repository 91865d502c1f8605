"""The PromQL of the panels: event-time windows at each point of a graph (``rules.window_kpi_expr``
narrowed by the dashboard's variables), a share with its 95% band, and a tile's KPI pooled over
the selected segments from the recording rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from streams.catalog import COUNTERS, HISTOGRAMS, WINDOW_COMPLETE, WINDOW_STOREFRONT_VISITORS, WINDOW_VISITORS
from streams.mixin import rules
from streams.mixin.dashboards.common import W, _short
from streams.mixin.rules import _indent, _kpi

# rules.window_kpi_expr reads each window with a range one millisecond short of a minute
# (rules.WINDOW_RANGE): at a point on a minute boundary (where Grafana puts a graph's points)
# it holds exactly the window ending there, on Prometheus 2.x (ranges closed at both ends) and
# 3.x (left-open) alike; a window not yet written stays absent instead of borrowing the one before.
LOOKBACK = rules.WINDOW_RANGE
# a selector's quoted values may hold braces (`window="${window}"`)
_WINDOW_RANGE = re.compile(r'(?P<name>cxpulse_window_\w+)\{(?P<labels>(?:[^{}"]|"[^"]*")*)\}\[59s999ms\]')


def _window_labels(name: str) -> tuple[str, ...]:
    """The labels (besides ``window``) a window series carries, to filter it by the variables."""
    for counter in COUNTERS:
        if name == counter.window_name:
            return counter.labels
        if name == counter.window_category_name:
            return ("storefront", "product_category")
    for hist in HISTOGRAMS:
        if name in (hist.window_name, hist.window_count_name, hist.window_name + "_sum"):
            return hist.window_labels
        if name.startswith(hist.window_storefront_name):
            return ("storefront",)
        if name.startswith(hist.window_reason_name):
            return ("storefront", "reason")
        if name.startswith(hist.window_category_name):
            return ("storefront", "product_category")
    if name == WINDOW_COMPLETE:
        return ("storefront", "family")
    if name == WINDOW_VISITORS:
        return ("storefront", "channel", "device")
    if name == WINDOW_STOREFRONT_VISITORS:
        return ("storefront",)
    raise KeyError(f"{name} is not an event-time window series")


def at_window_ends(expr: str, filters: Mapping[str, str]) -> str:
    """An expression over the window series for points on minute boundaries (see LOOKBACK),
    each window selector narrowed by ``filters`` ({label: regex}) where it has the label.

        >>> at_window_ends('sum(last_over_time(cxpulse_window_complete{window="5m"}[59s999ms]))', {"storefront": "$sf"})
        'sum(last_over_time(cxpulse_window_complete{window="5m", storefront=~"$sf"}[59s999ms]))'
    """
    def narrow(match: re.Match[str]) -> str:
        labels = _window_labels(match["name"])
        extra = [f'{label}=~"{value}"' for label, value in filters.items() if label in labels]
        return f"{match['name']}{{{', '.join([match['labels'], *extra])}}}[{LOOKBACK}]"

    out, found = _WINDOW_RANGE.subn(narrow, expr)
    if not found:
        raise ValueError(f"not a window expression of the rules: {expr}")
    return out


def window_kpi(key: str, level: rules.Level, filters: Mapping[str, str], offset: str = "") -> str:
    """A KPI per window ending at each point (``rules.window_kpi_expr``): complete windows only,
    so a cross-family ratio never divides a complete window by an incomplete one."""
    return at_window_ends(rules.window_kpi_expr(_kpi(key), level, W, offset), filters)


def window_count(metric: str, level: rules.Level, filters: Mapping[str, str], offset: str = "") -> str:
    """A counter (or a duration summary's ``_count``) summed over the window ending at each point."""
    return at_window_ends(rules.window_component(metric, level, W, offset), filters)


def complete_in(families: Iterable[str], filters: Mapping[str, str]) -> str:
    """``and on (storefront)`` every family's completeness mark: keeps a per-storefront value
    only where the window is complete in all ``families`` (a funnel that spans two families)."""
    return "".join(f"\nand on (storefront) {at_window_ends(rules.window_complete(family, W), filters)}"
                   for family in families)


@dataclass(frozen=True)
class Band:
    """A line and its 95% interval: (expr, legend) of the value and of each bound. Legends are
    fixed names, because Grafana's fillBelowTo pairs the upper series with the lower by name."""

    value: tuple[str, str]
    lower: tuple[str, str]
    upper: tuple[str, str]


def window_band(key: str, filters: Mapping[str, str], offset: str = "", name: str = "") -> tuple[Band, str]:
    """A share's (or the NPS's) value per window with its 95% interval, and its sample size n,
    at the storefront level: the formulas of the recorded ``..._lower`` / ``..._upper`` bounds
    (``rules._wilson_bound``, ``rules._nps_bound``) over the window ending at each point."""
    kpi = _kpi(key)
    level = rules.kpi_levels(kpi)[0]
    value = rules.window_kpi_expr(kpi, level, W, offset)
    n = rules.window_component(kpi.denominator, rules.component_level(kpi.denominator, level), W, offset)
    if kpi.shape == "nps":
        promoters, detractors = (rules.window_numerator(kpi, m, level, W, offset) for m in kpi.numerator)
        lower, upper = (rules._nps_bound(promoters, detractors, 1, n, side) for side in ("lower", "upper"))
    else:
        lower, upper = (rules._wilson_bound(f"clamp({value}, 0, 1)", n, side) for side in ("lower", "upper"))
    name = name or _short(kpi)
    return (Band((at_window_ends(value, filters), name),
                 (at_window_ends(lower, filters), f"{name} 95% lower"),
                 (at_window_ends(upper, filters), f"{name} 95% upper")),
            at_window_ends(n, filters))


# ------------------------------------------------------------------ tiles: pooled, from the rules
def _match(labels: Iterable[str], filters: Mapping[str, str]) -> str:
    """``{storefront=~"$storefront", ...}`` for the labels a recorded series carries."""
    parts = [f'{label}=~"{filters[label]}"' for label in labels if label in filters]
    return "{" + ", ".join(parts) + "}" if parts else ""


def pooled_total(key: str, level: rules.Level, filters: Mapping[str, str], offset: bool = False) -> tuple[str, str]:
    """(numerator, sample n) of a ratio KPI over the selected segments of ``level`` that have
    the KPI in the last complete window: sum(KPI x n) and sum(n), the KPI's own counts summed
    (revenue for AOV, orders for CVR). ``offset``: the same window a week earlier."""
    kpi = _kpi(key)
    suffix = "_offset1w" if offset else ""
    ratio = f"{rules.window_rule(kpi, level, W)}{suffix}{_match(level, filters)}"
    by = "sum by (currency) " if "currency" in level else "sum "
    den_level = rules.component_level(kpi.denominator, level)
    n = f"{rules.denominator_rule(kpi, level, W, offset)}{_match(den_level, filters)}"
    if den_level == level:
        return f"{by}(\n  {ratio}\n  * {n}\n)", f"{by}(\n  {n}\n  and {ratio}\n)"
    # revenue per visitor: revenue per currency over the storefront's sessions (no currency)
    on = ", ".join(den_level)
    return (f"{by}(\n  {ratio}\n  * on ({on}) group_left () {n}\n)",
            f"{by}(\n  0 * {ratio}\n  + on ({on}) group_left () {n}\n)")


def pooled(key: str, level: rules.Level, filters: Mapping[str, str], offset: bool = False) -> tuple[str, str]:
    """(KPI, sample n) of the last complete window for the selected segments as one number
    (per currency for money): sum(KPI x n) / sum(n), which is the KPI of their summed counts.
    A quantile cannot be pooled from per-storefront quantiles: the slowest segment's is
    shown, with the measurements of all of them as n.

        >>> kpi, n = pooled("conversion", ("storefront",), {"storefront": "$storefront"})
        >>> kpi.startswith("sum (") and kpi.endswith(n) and "storefront:cxpulse_conversion:ratio_window${window}" in n
        True
    """
    kpi = _kpi(key)
    if kpi.shape == "quantile":
        suffix = "_offset1w" if offset else ""
        ratio = f"{rules.window_rule(kpi, level, W)}{suffix}{_match(level, filters)}"
        count = rules.rule_name(level, rules.base(kpi.histogram + "_count"), f"window{W}{suffix}")
        return f"max ({ratio})", f"sum (\n  {count}{_match(level, filters)}\n  and {ratio}\n)"
    total, sample = pooled_total(key, level, filters, offset)
    return f"{total}\n/ {sample}", sample


def pooled_change(key: str, level: rules.Level, filters: Mapping[str, str], relative: bool) -> str:
    """This window against the same window a week earlier, pooled like ``pooled``: relative
    (this / last week - 1) or a difference. For a quantile, the largest per-segment change:
    what the spike alerts judge, segment by segment."""
    kpi = _kpi(key)
    if kpi.shape == "quantile":
        ratio = f"{rules.window_rule(kpi, level, W)}"
        return f"max (\n  {ratio}{_match(level, filters)}\n  / {ratio}_offset1w{_match(level, filters)}\n  - 1\n)"
    now, before = pooled(key, level, filters)[0], pooled(key, level, filters, offset=True)[0]
    return f"(\n{_indent(now)}\n)\n/ (\n{_indent(before)}\n)\n- 1" if relative else (
        f"(\n{_indent(now)}\n)\n- (\n{_indent(before)}\n)")
