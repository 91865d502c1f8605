"""The PromQL the report sends: the recording rules' own formulas, fed with week counts.

Between the client (``prometheus.py``) and the figures (``build.py``). Figures come
from the cumulative counters, not from ``increase()``: the count of a week is the
counter summed over partitions at the week's end minus the same sum a week earlier
(a segment with no series then counts from 0, ``counted``). The counters never
reset (state is recovered on restart, a partition moving to another worker keeps
its total), so that difference is exactly the events counted in the week, while
``increase()`` extrapolates to the range's edges and loses what a series that
starts inside the range (a moved partition, a new segment) had at its first
sample. The KPI formulas are the rules' own (``rules.kpi_expr``) over those
counts; customer-level and initiative figures are gauges, read with the rules'
expressions inlined over the raw series (``customer_query``,
``initiatives.rules.ROI_QUERIES``), so the report works on a Prometheus without
the rules and never keeps a second copy of a formula.
"""

from __future__ import annotations

import functools
from typing import Callable

from streams.catalog import Kpi
from streams.errors import ReportError
from streams.mixin.rules import JOB, Level, component_level, customer_expr, window_range


def selector(storefront: str | None) -> str:
    """Label matchers of every series the report reads: the workers' job, and the storefront if chosen."""
    return ", ".join([JOB, *_storefront(storefront)])


def window_selector(storefront: str | None) -> str:
    """The same for the event-time window series, which the merge stage writes (no job label): the 1-minute
    windows, of the storefront if chosen.

        >>> window_selector('shop "a"')
        'window="1m", storefront="shop \\\\"a\\\\""'
    """
    return ", ".join(['window="1m"', *_storefront(storefront)])


def _storefront(storefront: str | None) -> list[str]:
    if not storefront:
        return []
    escaped = storefront.replace("\\", "\\\\").replace('"', '\\"')
    return [f'storefront="{escaped}"']


def week_of_windows(name: str, sel: str, by: str) -> str:
    """A window series summed over the 1-minute windows that ended in the week before the evaluation time:
    event time, exact (each window's sample sits at its end; the range is a millisecond short of a week,
    so it holds 10,080 windows in Prometheus 2 and 3 alike, ``rules.window_range``)."""
    return f"sum by ({by}) (sum_over_time({name}{{{sel}}}[{window_range(7 * 24 * 60)}]))"


def counted(sel: str, span: str) -> Callable[[str, Level], str]:
    """``component(metric, level)`` for ``rules.kpi_expr``: what the counter counted in the ``span``
    before the evaluation time, summed to the level. Exact: cumulative counters at two instants.

        >>> print(counted('job="cxpulse"', "1w")("cxpulse_orders_placed_total", ("channel",)))
        (
          sum by (channel) (cxpulse_orders_placed_total{job="cxpulse"})
          - (
            sum by (channel) (cxpulse_orders_placed_total{job="cxpulse"} offset 1w)
            or 0 * sum by (channel) (cxpulse_orders_placed_total{job="cxpulse"})
          )
        )
    """
    def component(metric: str, level: Level) -> str:
        by = ", ".join(component_level(metric, level))
        now = f"sum by ({by}) ({metric}{{{sel}}})"
        before = f"sum by ({by}) ({metric}{{{sel}}} offset {span})"
        # `or 0 * now`: a segment with no series at the start of the span counted from 0
        return f"(\n  {now}\n  - (\n    {before}\n    or 0 * {now}\n  )\n)"

    return component


def headline_level(kpi: Kpi) -> Level:
    """Pooled over the storefronts read, except money: revenue never adds up across currencies and
    sessions carry none, so AOV and RPV keep the KPI's own level (storefront, currency)."""
    return tuple(kpi.by) if "currency" in kpi.by else ()


def sample_metric(kpi: Kpi) -> str:
    """The series whose count is the KPI's sample size n (its denominator)."""
    return kpi.histogram + "_count" if kpi.shape == "quantile" else kpi.denominator


# The arm KPIs of ROI_RULES, by the initiative's KPI: (treated, control) recorded names.
ARM_KPI_RULES: dict[str, tuple[str, str]] = {
    "revenue_per_visitor": ("initiative:cxpulse_initiative_treated_rpv:ratio",
                            "initiative:cxpulse_initiative_control_rpv:ratio"),
    "conversion": ("initiative:cxpulse_initiative_treated_conversion:ratio",
                   "initiative:cxpulse_initiative_control_conversion:ratio"),
    "average_order_value": ("initiative:cxpulse_initiative_treated_aov:ratio",
                            "initiative:cxpulse_initiative_control_aov:ratio"),
}

# The recording rules of customer_rules() the report reads, written in full for grep.
CUSTOMER_SHARES: dict[str, tuple[str, str, str]] = {  # key -> (title, ratio rule, customers rule)
    "repeat_purchase": ("Repeat customers (2nd order within 90 days)",
                        "storefront:cxpulse_customer_repeat_purchase:ratio",
                        "storefront:cxpulse_customer_cohort_mature_customers:sum"),
    "post_support_conversion": ("Post-support conversion (order after a ticket)",
                                "storefront:cxpulse_customer_post_support_conversion:ratio",
                                "storefront:cxpulse_customer_post_support_mature_customers:sum"),
}

COHORT_LTV_RULE = "storefront_cohort_currency_horizon:cxpulse_customer_revenue_per_customer:ratio"

COHORT_CUSTOMERS_RULE = "storefront_cohort:cxpulse_customer_cohort_customers:sum"

NPS_LTV_RULE = "storefront_nps_category_purchases_currency_horizon:cxpulse_customer_nps_revenue_per_customer:ratio"

NPS_CUSTOMERS_RULE = "storefront_nps_category_purchases_horizon:cxpulse_customer_nps_customers:sum"

CSAT_LTV_RULE = "storefront_csat_band_purchases_currency_horizon:cxpulse_customer_csat_revenue_per_customer:ratio"

CSAT_CUSTOMERS_RULE = "storefront_csat_band_purchases_horizon:cxpulse_customer_csat_customers:sum"

RETENTION_RULE = "storefront_period_period_start:cxpulse_customer_retention:ratio"

RETENTION_CUSTOMERS_RULE = "storefront_period_period_start:cxpulse_customer_retention_customers:sum"
# The checkout join (docs/customers.md, "Checkouts"): decided checkout sessions and cart abandonment per day.
CHECKOUT_DECIDED_RULE = "storefront_day:cxpulse_checkout_sessions_decided:sum"
CHECKOUT_ABANDONMENT_RULE = "storefront_day:cxpulse_checkout_abandonment:ratio"

SUPPORT_REVENUE_RULE = "storefront_cohort_currency:cxpulse_customer_post_support_revenue:sum"

SUPPORT_ORDERS_RULE = "storefront_cohort_currency:cxpulse_customer_post_support_orders:sum"


@functools.cache
def customer_query(record: str) -> str:
    """A recording rule of ``rules.customer_rules()`` as a self-contained query over the raw
    ``cxpulse_customer_*`` gauges (``rules.customer_expr``), so the report works on a Prometheus
    without the rules and never keeps a second copy of a formula.

        >>> customer_query("storefront:cxpulse_customer_cohort_customers:sum")
        'sum by (storefront) (cxpulse_customer_cohort_customers)'
    """
    try:
        return customer_expr(record)
    except KeyError:
        raise ReportError(f"{record} is not a recording rule of streams.mixin.rules.customer_rules(): the report and "
                          "the rules disagree on its name") from None
