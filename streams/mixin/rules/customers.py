"""Recording rules of the customer-level KPIs (docs/customers.md): the customer stage's
gauges summed over workers and divided, a 95% Wilson interval for every share; and each rule
as one self-contained query over the raw gauges, for the weekly report and docs/metrics.md.
"""

from __future__ import annotations

import re

from streams.catalog import CUSTOMER
from streams.mixin.rules.bounds import _wilson_bound
from streams.mixin.rules.common import Level, rule_name


def customer_rules() -> list[dict[str, str]]:
    """Customer-level KPIs from the customer stage's gauges (docs/customers.md): summed over
    workers, divided, and for every share a 95% Wilson interval. A count the worker does not
    export (no repeat customer in a cohort yet) reads as 0 through ``or 0 * denominator``.

    Storefront-level repeat purchase and post-support conversion read the *mature* counts (the
    customers and ticket weeks whose 90 / 7 days have passed), so young cohorts do not dilute
    them; a cohort's own rate is live. Churn is 1 - retention, its interval the retention's
    swapped (Wilson's is symmetric in p and 1 - p)."""
    def total(kind: str, by: Level) -> str:
        return f"sum by ({', '.join(by)}) ({CUSTOMER[kind][0]})"

    out: list[dict[str, str]] = []

    def share(level: Level, key: str, part: str, whole: str, metric: str = "") -> str:
        """The share ``part / whole`` at ``level``, its sample size and interval; returns the ratio's name
        (``cxpulse_customer_<key>``, or ``metric``)."""
        name = "_".join(level)
        n = rule_name(name, CUSTOMER[whole][0], "sum")
        ratio = rule_name(name, metric or f"cxpulse_customer_{key}", "ratio")
        out.append({"record": n, "expr": total(whole, level)})
        out.append({"record": ratio, "expr": f"(\n  {total(part, level)}\n  or 0 * {n}\n)\n/ ({n} > 0)"})
        for side in ("lower", "upper"):
            out.append({"record": f"{ratio}_{side}", "expr": _wilson_bound(ratio, n, side)})
        return ratio

    sf, cohort = ("storefront",), ("storefront", "cohort")
    out.append({"record": rule_name("storefront", CUSTOMER["cohort_customers"][0], "sum"),
                "expr": total("cohort_customers", sf)})
    out.append({"record": rule_name("storefront", CUSTOMER["support_customers"][0], "sum"),
                "expr": total("support_customers", sf)})
    share(sf, "repeat_purchase", "cohort_mature_repeat_customers", "cohort_mature_customers")
    share(sf, "post_support_conversion", "support_mature_converted", "support_mature_customers")
    share(cohort, "repeat_purchase", "cohort_repeat_customers", "cohort_customers")
    share(cohort, "post_support_conversion", "support_converted", "support_customers")
    for level, part, whole in ((("storefront", "period", "period_start"), "retention_retained", "retention_customers"),
                               (("storefront", "cohort", "period", "period_start"), "cohort_retention_retained",
                                "cohort_retention_customers")):
        retention = share(level, "retention", part, whole)
        churn = rule_name("_".join(level), "cxpulse_customer_churn", "ratio")
        out.append({"record": churn, "expr": f"1 - {retention}"})
        for side, other in (("lower", "upper"), ("upper", "lower")):
            out.append({"record": f"{churn}_{side}", "expr": f"1 - {retention}_{other}"})
    cohorts = rule_name("storefront_cohort", CUSTOMER["cohort_customers"][0], "sum")
    out.append({
        "record": rule_name("storefront_cohort_currency_horizon", "cxpulse_customer_revenue_per_customer", "ratio"),
        "expr": f"{total('cohort_revenue', ('storefront', 'cohort', 'currency', 'horizon'))}\n"
                f"/ on (storefront, cohort) group_left ()\n  ({cohorts} > 0)"})
    for survey, group in (("nps", "nps_category"), ("csat", "csat_band")):
        for by in (("storefront", group, "horizon"), ("storefront", group, "purchases", "horizon")):
            level = "_".join(label for label in (*by[:-1], "currency", "horizon"))
            n = rule_name("_".join(by), CUSTOMER[f"{survey}_customers"][0], "sum")
            out.append({"record": n, "expr": total(f"{survey}_customers", by)})
            out.append({
                "record": rule_name(level, f"cxpulse_customer_{survey}_revenue_per_customer", "ratio"),
                "expr": f"{total(f'{survey}_revenue', (*by[:-1], 'currency', 'horizon'))}\n"
                        f"/ on ({', '.join(by)}) group_left ()\n  ({n} > 0)"})
    # The checkout join: cart abandonment over the decided checkout sessions of a day, and its complement
    # (the funnel's checkout -> order step), per storefront and per channel and device.
    for level in (("storefront", "day"), ("storefront", "channel", "device", "day")):
        out.append({"record": rule_name("_".join(level), CUSTOMER["checkout_sessions"][0], "sum"),
                    "expr": total("checkout_sessions", level)})
        abandonment = share(level, "", "checkout_abandoned", "checkout_decided", "cxpulse_checkout_abandonment")
        step = rule_name("_".join(level), "cxpulse_checkout_to_order", "ratio")
        out.append({"record": step, "expr": f"1 - {abandonment}"})
        for side, other in (("lower", "upper"), ("upper", "lower")):
            out.append({"record": f"{step}_{side}", "expr": f"1 - {abandonment}_{other}"})
    # Revenue after support: sums (money per currency), over every exported ticket week and per week.
    for level in (("storefront", "currency"), ("storefront", "cohort", "currency")):
        for kind in ("support_orders", "support_revenue"):
            out.append({"record": rule_name("_".join(level), CUSTOMER[kind][0], "sum"), "expr": total(kind, level)})
    return out


def customer_expr(record: str) -> str:
    """A recording rule of ``customer_rules()`` as a self-contained query over the raw
    ``cxpulse_customer_*`` gauges (every recorded series it reads replaced by its own expression),
    for a Prometheus without the rules (the report) and for docs/metrics.md. KeyError if unknown.

        >>> customer_expr("storefront:cxpulse_customer_cohort_customers:sum")
        'sum by (storefront) (cxpulse_customer_cohort_customers)'
    """
    rules = {rule["record"]: rule["expr"] for rule in customer_rules()}
    names = re.compile(r"(?<![\w:])(" + "|".join(map(re.escape, sorted(rules, key=len, reverse=True)))
                       + r")(?![\w:])")

    def expand(expr: str) -> str:
        return names.sub(lambda found: "(" + expand(rules[found[1]]) + ")", expr)

    return expand(rules[record])
