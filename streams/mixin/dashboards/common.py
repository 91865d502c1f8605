"""What every dashboard module shares: the datasource, the variable matchers and the
texts a panel takes from the catalog (a KPI's short name and formula, a series' help).

    >>> _about("conversion")
    'Conversion rate (CVR) = orders placed / sessions started.'
"""

from __future__ import annotations

import re

from grafana_foundation_sdk.models import dashboard as dm

from streams.catalog import COUNTERS, CUSTOMER, CUSTOMER_PIPELINE, HISTOGRAMS, INITIATIVE, PIPELINE, Kpi
from streams.mixin import rules
from streams.mixin.rules import _kpi

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="prometheus")

SF = 'storefront=~"$storefront"'
FAM = 'family=~"$family"'
W = "${window}"  # braces: `$window_offset1w` would name another variable
# Grafana and Prometheus both refuse more than 11,000 points per series: with this as
# maxDataPoints, Grafana's step stays at `$window` up to 38 days of 5m windows.
MAX_POINTS = 11_000


def _short(kpi: Kpi) -> str:
    """The name a tile or legend uses: the abbreviation in the title, else a short form."""
    match = re.search(r"\(([A-Z]+)\)", kpi.title)
    if match:
        return match.group(1)
    return {"first_response_p50": "FRT p50", "first_response_p90": "FRT p90", "resolution_p50": "TTR p50",
            "resolution_p90": "TTR p90", "first_response_business_p50": "FRT p50, business hours",
            "first_response_business_p90": "FRT p90, business hours", "resolution_business_p50": "TTR p50, business hours",
            "resolution_business_p90": "TTR p90, business hours", "csat_mean": "CSAT mean", "cart_abandonment": "Cart abandonment (window est.)",
            "refund_return_rate": "Refund & return rate", "repeat_purchase": "Repeat purchase rate",
            "ticket_to_order": "Ticket-to-order"}.get(kpi.key, kpi.title)


def _help(metric: str) -> str:
    for counter in COUNTERS:
        if metric == counter.name:
            return counter.help
    for hist in HISTOGRAMS:
        if metric.startswith(hist.name):
            return hist.help
    for name, _, text in CUSTOMER.values():
        if metric == name:
            return text
    return {**PIPELINE, **CUSTOMER_PIPELINE, **INITIATIVE}[metric]


def _about(key: str) -> str:
    kpi = _kpi(key)
    return f"{kpi.title} = {kpi.formula}."


def _noun(metric: str) -> str:
    """``cxpulse_sessions_started_total`` -> ``sessions started``: what a sample counts.

        >>> _noun("cxpulse_nps_surveys_sent_total")
        'NPS surveys sent'
    """
    found = re.fullmatch(r"cxpulse_([a-z]+)_surveys_sent_total", metric)
    if found:
        return f"{found.group(1).upper()} surveys sent"
    return {"cxpulse_ticket_first_response_seconds_count": "first responses",
            "cxpulse_ticket_resolution_seconds_count": "resolutions",
            "cxpulse_ticket_first_response_business_seconds_count": "first responses with a calendar",
            "cxpulse_ticket_resolution_business_seconds_count": "resolutions with a calendar"}.get(
        metric, rules.base(metric).removeprefix("cxpulse_").replace("_", " "))


def _sample_noun(key: str) -> str:
    kpi = _kpi(key)
    return _noun(kpi.histogram + "_count" if kpi.shape == "quantile" else kpi.denominator)
