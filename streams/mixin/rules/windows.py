"""Event-time windows in PromQL: a KPI, a counter or a family's completeness over the
window ending at the evaluation time, read from the series the merge stage remote-writes
(docs/metrics.md, "Event-time windows in Prometheus"), and ``DELAY``, how far behind now
the rules read them.

    >>> window_complete("order", "5m")
    'sum by (storefront) (last_over_time(cxpulse_window_complete{family="order", window="5m"}[59s999ms]))'
"""

from __future__ import annotations

from streams.catalog import (COUNTERS, HISTOGRAMS, KPIS, WINDOW_COMPLETE, WINDOW_STOREFRONT_VISITORS,  # noqa: F401
                             Kpi)  # (KPIS: the doctests)
from streams.config import Settings, format_duration, parse_duration_ms
from streams.mixin.rules.common import Level, _kpi_expr, component_level

# The merge stage writes every complete window to Prometheus at its end (remote write):
# ``cxpulse_window_<counter>{window="5m", <segment>}`` holds the window [t - 5m, t) at t, one
# sample a minute for each view (trailing windows ending at every minute). A range one
# millisecond short of a minute, ending at t, holds exactly the window ending at t: not the
# one a minute earlier, which a ``[1m]`` range would also hold in Prometheus 2 (its ranges
# include their start; Prometheus 3's do not). Between minute boundaries it holds the newest
# window ending before (or, for 1 ms a minute, none: a rule reads nothing then, never wrong).
WINDOW_RANGE = "59s999ms"


def window_range(windows: int = 1) -> str:
    """The range holding the last ``windows`` one-minute samples ending at the evaluation time.

        >>> window_range(), window_range(2)
        ('59s999ms', '1m59s999ms')
    """
    return WINDOW_RANGE if windows == 1 else f"{windows - 1}m{WINDOW_RANGE}"


WINDOWS: tuple[str, ...] = ("5m", "1h")  # KPI windows recorded by the rules (views: 1m, 5m, 15m, 1h)
VIEWS: tuple[str, ...] = ("1m", "5m", "15m", "1h")
# Windows longer than every view, for the pages of small shops: read as the sum of their 1-minute
# windows (sum_over_time), not exported by the merge stage (docs/alerts.md, "Small shops": exporting
# 6h and 24h views would keep 12x the window state in every source partition). Conversion only.
LONG_WINDOWS: tuple[str, ...] = ("6h", "24h")
LONG_WINDOW_KPIS: tuple[str, ...] = ("conversion",)
_DEFAULTS = Settings.from_env()
# How far behind now the rules read. A window is complete once every source partition has
# closed it: its watermark past the window's end plus the grace period. An active partition's
# watermark is about now; a quiet one's follows the others CXPULSE_IDLE_PARTITION behind (and
# only after being quiet that long); the complete-until mark sits on a window boundary (up to a
# window earlier). So grace + idle + one window, in whole seconds: 3m30s by default. Rendered
# from the environment's settings: re-render the rules after changing them.
DELAY = format_duration(-(-(_DEFAULTS.grace_ms + _DEFAULTS.idle_partition_ms + _DEFAULTS.window_ms) // 1000) * 1000)
# The collapse alert reads a minute once it ends DELAY before an evaluation, needs two broken
# minutes, then holds for its `for` (1m): it fires DELAY + 2 minutes after the end of the first
# broken minute, or up to one evaluation interval later (docs/alerts.md, the checkout-broken test).
COLLAPSE_PAGE_AFTER = format_duration(parse_duration_ms(DELAY) + 120_000)
_FAMILY_OF = {c.name: c.family for c in COUNTERS} | {h.name + "_count": h.family for h in HISTOGRAMS}


def window_component(metric: str, level: Level, window: str, offset: str = "") -> str:
    """The sum of a counter (or a summary's ``_count``) over the ``window`` ending at the
    evaluation time (minus ``offset``), by ``level``: one sample per series, the whole window.

    A window longer than the views (``LONG_WINDOWS``) is the sum of its minutes, where its last
    minute is complete: windows complete in order, so the minutes before it are complete too, and
    a minute without a sample had no such event."""
    off = f" offset {offset}" if offset else ""
    by_category = "product_category" in level
    counter = next((c for c in COUNTERS if c.name == metric), None)
    if counter is not None:
        name = counter.window_category_name if by_category else counter.window_name
    else:  # a histogram's count: its per-channel summary's _count, or its per-reason or per-category one's
        hist = next(h for h in HISTOGRAMS if h.name + "_count" == metric)
        name = (hist.window_category_name if by_category else hist.window_reason_name if "reason" in level
                else hist.window_name) + "_count"
    if window not in LONG_WINDOWS:  # a view (or a dashboard's $window)
        return f'sum by ({", ".join(level)}) (last_over_time({name}{{window="{window}"}}[{WINDOW_RANGE}]{off}))'
    minutes = parse_duration_ms(window) // 60_000
    return (f'(\n    sum by ({", ".join(level)}) (sum_over_time({name}{{window="1m"}}[{window_range(minutes)}]{off}))'
            f"\n    and on (storefront) {window_complete(_FAMILY_OF[metric], window, offset)}\n  )")


def window_complete(family: str, window: str, offset: str = "") -> str:
    """1 per storefront whose ``family`` window is complete (also with no event of it); for a
    window longer than the views, its last minute."""
    off = f" offset {offset}" if offset else ""
    read = "1m" if window in LONG_WINDOWS else window
    return (f'sum by (storefront) (last_over_time({WINDOW_COMPLETE}{{family="{family}", window="{read}"}}'
            f"[{WINDOW_RANGE}]{off}))")


def window_numerator(kpi: Kpi, metric: str, level: Level, window: str, offset: str = "") -> str:
    """A numerator of ``kpi`` over the window, 0 where the storefront's window of its family is
    complete but held no such event, absent where it is not complete."""
    lvl = component_level(metric, level)
    expr = window_component(metric, lvl, window, offset)
    den_level = component_level(kpi.denominator, level)
    if den_level != lvl:  # revenue per currency: no currency without an order, nothing to fill
        return expr
    den = window_component(kpi.denominator, den_level, window, offset)
    zero = f"0 * {den}\n    and on (storefront) {window_complete(_FAMILY_OF[metric], window, offset)}"
    return f"(\n    {expr}\n    or on ({', '.join(lvl)})\n    {zero}\n  )"


def visitor_conversion_expr(window: str, offset: str = "") -> str:
    """Orders placed / distinct visitors of the storefront over the event-time ``window`` (a view:
    distinct counts do not add up over minutes), complete windows only (docs/metrics.md, rule 16).
    Not a share (a visitor may order twice), so no interval. 0 orders reads 0 where the order window is
    complete; absent where the session window is not (no visitor series) or had no visitor."""
    off = f" offset {offset}" if offset else ""
    orders = next(c.window_name for c in COUNTERS if c.field == "orders_placed")
    visitors = (f'sum by (storefront) (last_over_time({WINDOW_STOREFRONT_VISITORS}{{window="{window}"}}'
                f"[{WINDOW_RANGE}]{off}))")
    placed = f'sum by (storefront) (last_over_time({orders}{{window="{window}"}}[{WINDOW_RANGE}]{off}))'
    return (f"(\n    {placed}\n    or on (storefront)\n    0 * {visitors}\n"
            f"    and on (storefront) {window_complete('order', window, offset)}\n  )\n/ ({visitors} > 0)")


def window_kpi_expr(kpi: Kpi, level: Level, window: str, offset: str = "") -> str:
    """A KPI over the event-time ``window`` ending at the evaluation time minus ``offset``,
    exactly as docs/metrics.md defines it, from complete windows only.

    A numerator with no event in the window reads 0 where its family's window is complete
    (``cxpulse_window_complete``) and nothing where it is not: a lagging family makes the KPI
    absent, never wrong. Quantiles are the merge stage's, within its sketch's 1% (not bucket
    interpolation).

        >>> window_kpi_expr(next(k for k in KPIS if k.key == "csat_mean"), ("storefront",), "5m").count("last_over_time")
        4
    """
    off = f" offset {offset}" if offset else ""
    if kpi.shape == "quantile":
        hist = next(h for h in HISTOGRAMS if h.name == kpi.histogram)
        name = hist.window_storefront_name if tuple(level) == ("storefront",) else hist.window_name
        if "reason" in level:
            name = hist.window_reason_name
        elif "product_category" in level:
            name = hist.window_category_name
        return (f'max by ({", ".join(level)}) (last_over_time({name}{{window="{window}", '
                f'quantile="{kpi.quantile}"}}[{WINDOW_RANGE}]{off}))')

    def component(metric: str, lvl: Level) -> str:
        if metric == kpi.denominator:
            return window_component(metric, component_level(metric, lvl), window, offset)
        return window_numerator(kpi, metric, level, window, offset)

    return _kpi_expr(kpi, level, window, component)
