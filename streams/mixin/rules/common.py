"""Names and formulas every rule shares: the levels a KPI is recorded at, the
``level:metric:operation`` names of the recorded series, and a KPI's formula in PromQL over
any components (``kpi_expr``). Also the scrape job and the KPI sets (with a baseline, with
an interval) that recording rules, alerts, dashboards and the weekly report read.

    >>> window_rule(_kpi("conversion"), ("storefront",), "1h")
    'storefront:cxpulse_conversion:ratio_window1h'
"""

from __future__ import annotations

from typing import Any, Literal

from streams.catalog import BREAKDOWN_LABELS, COUNTERS, HISTOGRAMS, KPIS, Kpi
from streams.config import parse_duration_ms

# The scrape job of the workers: `cxpulse` in deploy/prometheus and deploy/compose;
# the Prometheus Operator names a PodMonitor's job `<namespace>/cxpulse`.
JOB = 'job=~"(.+/)?cxpulse"'

# Families and the counters whose arrival says "this family is flowing".
FAMILY_ARRIVALS: dict[str, tuple[str, ...]] = {
    "session": ("cxpulse_sessions_started_total",),
    "order": ("cxpulse_orders_placed_total",),
    "ticket": ("cxpulse_tickets_created_total",),
    "survey": ("cxpulse_nps_responses_total", "cxpulse_csat_responses_total", "cxpulse_ces_responses_total"),
}
# KPIs that get a same-time-last-week baseline (alerts and the overview's "vs last week").
BASELINE_KPIS: tuple[str, ...] = (
    "conversion", "average_order_value", "revenue_per_visitor", "first_response_p90", "resolution_p90", "nps", "csat",
)
# KPIs that are a share of trials (0-1) and get a Wilson interval (streams/mixin/intervals.py); NPS gets
# its own. Not shares: ticket_to_order (tickets are not trials of orders, it has no upper bound).
# Conversion, cart abandonment and the refund & return rate are treated as shares of the window's
# sessions, checkouts or orders although an order may lack a tracked session or checkout and a
# refund may be of an earlier order: the interval clamps the observed share to [0, 1]. So are the
# survey response rates, of the window's surveys sent, although an answer may be to an earlier one.
PROPORTION_KPIS: tuple[str, ...] = (
    "conversion", "cart_abandonment", "refund_return_rate", "repeat_purchase", "first_contact_resolution", "csat",
    "nps_response_rate", "csat_response_rate", "ces_response_rate", "view_rate", "add_to_cart_rate", "checkout_rate",
)
NOT_PROPORTIONS: tuple[str, ...] = ("ticket_to_order",)  # ratio KPIs without an interval, on purpose
INTERVAL_KPIS: tuple[str, ...] = (*PROPORTION_KPIS, "nps")

# ------------------------------------------------------------------ names
Level = tuple[str, ...]


def rule_name(level: str | Level, metric: str, operation: str) -> str:
    """``level:metric:operation``; a tuple level is joined with ``_`` (``le`` goes without saying)."""
    if not isinstance(level, str):
        level = "_".join(label for label in level if label != "le")
    return f"{level}:{metric}:{operation}"


def base(metric: str) -> str:
    """Counter name without ``_total`` (recording rules name the rate, not the counter)."""
    return metric.removesuffix("_total")


# The labels a rule may break a component down by. The rules read the event-time window series, where a
# histogram's counts and quantiles exist per support channel and per reason (the summaries): its segment
# labels. The cumulative histogram carries ``h.labels`` only (no reason): a query over it (the weekly
# report's) must not ask for a level with reason (tests/unit/test_report_reasons.py checks it does not).
# A ticket component also exists per storefront and product category (``BREAKDOWN_LABELS``: window series only).
_LABELS = {c.name: (*c.labels, *BREAKDOWN_LABELS.get(c.family, ())) for c in COUNTERS}
_LABELS.update({h.name + "_count": (*h.segment_labels, *BREAKDOWN_LABELS.get(h.family, ())) for h in HISTOGRAMS})
_LABELS.update({h.name + "_bucket": (*h.segment_labels, *BREAKDOWN_LABELS.get(h.family, ())) for h in HISTOGRAMS})


def kpi_components(kpi: Kpi) -> tuple[str, ...]:
    """The exported series a KPI divides (counters, or a histogram's ``_bucket``)."""
    if kpi.shape == "quantile":
        return (kpi.histogram + "_bucket", kpi.histogram + "_count")
    return (*kpi.numerator, kpi.denominator)


def kpi_levels(kpi: Kpi) -> tuple[Level, ...]:
    """Storefront (plus currency for money), the segment every component carries, and the contact
    reason and the product category wherever every numerator carries them (tickets by reason / all
    orders of the storefront).

        >>> kpi_levels(_kpi("ticket_to_order"))[1:], kpi_levels(_kpi("first_response_p90"))[1]
        ((('storefront', 'reason'), ('storefront', 'product_category')), ('storefront', 'support_channel'))
    """
    first: Level = tuple(kpi.by)
    levels = [first]
    for segment in ("channel", "support_channel"):
        if all(segment in _LABELS[m] for m in kpi_components(kpi)):
            levels.append((*first[:1], segment, *first[1:]))
    numerators = kpi_components(kpi)[:1] if kpi.shape == "quantile" else kpi.numerator
    for breakdown in ("reason", "product_category"):
        if all(breakdown in _LABELS[m] for m in numerators):
            levels.append((*first[:1], breakdown, *first[1:]))
    return tuple(levels)


def component_level(metric: str, level: Level) -> Level:
    """The level a component is recorded at for a KPI level (sessions carry no currency)."""
    return tuple(label for label in level if label in _LABELS[metric] or label == "le")


def denominator_rule(kpi: Kpi, level: Level, window: str, offset: bool = False) -> str:
    """The KPI's sample size n in the window, e.g. ``storefront:cxpulse_csat:denominator_window1h``."""
    return window_denominator_rule(kpi, level, window) + ("_offset1w" if offset else "")


def bound_rule(kpi: Kpi, level: Level, window: str, side: Literal["lower", "upper"], offset: bool = False) -> str:
    """A bound of the KPI's 95% interval, e.g. ``storefront:cxpulse_csat:ratio_window1h_lower_offset1w``."""
    return window_rule(kpi, level, window) + f"_{side}" + ("_offset1w" if offset else "")


def numerator_rule(kpi: Kpi, metric: str, level: Level, window: str, offset: bool = False) -> str:
    """A numerator's count in the window, recorded where an interval needs it apart (NPS)."""
    return rule_name(level, base(metric), f"window{window}" + ("_offset1w" if offset else ""))


def expected_orders_rule(window: str) -> str:
    """``storefront:cxpulse_conversion:expected_orders_window6h``: this window's sessions x last week's
    conversion of the same window at the lower end of its 95% interval."""
    return rule_name("storefront", "cxpulse_conversion", f"expected_orders_window{window}")


def window_rule(kpi: Kpi, level: Level, window: str) -> str:
    """The recorded KPI of the last complete window, e.g. ``storefront:cxpulse_conversion:ratio_window5m``."""
    return rule_name(level, f"cxpulse_{kpi.key}", f"{'quantile' if kpi.shape == 'quantile' else 'ratio'}_window{window}")


def window_denominator_rule(kpi: Kpi, level: Level, window: str) -> str:
    """Its sample size n (sessions, orders, answers in the window), e.g. ``storefront:cxpulse_csat:denominator_window1h``."""
    return rule_name(level, f"cxpulse_{kpi.key}", f"denominator_window{window}")


# ------------------------------------------------------------------ formulas
def _kpi_expr(kpi: Kpi, level: Level, range_: str, component: Any) -> str:
    """KPI expression over components; ``component(metric, level)`` returns the series expr."""
    if kpi.shape == "quantile":
        # `>= 0` drops the NaN of a segment with no observation in the range
        return f"histogram_quantile({kpi.quantile}, {component(kpi.histogram + '_bucket', (*level, 'le'))}) >= 0"
    den_metric = kpi.denominator
    den = f"({component(den_metric, level)} > 0)"  # no 0/0 for a segment without volume
    if component_level(den_metric, level) != level:  # revenue per currency / sessions per storefront
        on = ", ".join(component_level(den_metric, level))
        den = f"on ({on}) group_left ()\n  {den}"  # `()`: else the parenthesis reads as a label list
    nums = [component(m, level) for m in kpi.numerator]
    if kpi.shape == "nps":
        return f"100 * (\n  {nums[0]}\n  - {nums[1]}\n)\n/ {den}"
    num = nums[0] if len(nums) == 1 else "(\n  " + "\n  + ".join(nums) + "\n)"
    ratio = f"{num}\n/ {den}"
    return f"1 - (\n{_indent(ratio)}\n)" if kpi.shape == "one_minus" else ratio


def kpi_expr(kpi: Kpi, level: Level, component: Any) -> str:
    """A KPI's formula (docs/metrics.md) in PromQL over any components: ``component(metric, level)``
    returns the series of one counter the KPI reads (a histogram's ``_bucket`` with ``le``), summed
    to ``level``. The rules feed it windows; the weekly report, counts between two instants.

        >>> print(kpi_expr(next(k for k in KPIS if k.key == "conversion"), (), lambda metric, level: metric))
        cxpulse_orders_placed_total
        / (cxpulse_sessions_started_total > 0)
    """
    return _kpi_expr(kpi, level, "", component)


def _indent(text: str, spaces: int = 2) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())


def _kpi(key: str) -> Kpi:
    return next(k for k in KPIS if k.key == key)


def _seconds(range_: str) -> int:
    return parse_duration_ms(range_) // 1000
