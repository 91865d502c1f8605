"""What the weekly report computes: every figure it shows, as plain data.

The model between the queries (``build.py`` fills it from Prometheus) and the
output (``document.py``, ``markdown.py``, ``html.py``, ``charts.py`` read it): each
KPI over the week and the week before with its sample size and 95% interval
(``Figure``), the segments that moved most (``Mover``, ``VolumeMover``), the
customer-level KPIs, the initiatives active in the week and their verdicts, all
held by one ``Report``. What a change means (percentage points, points or
relative; better or worse; beyond the noise or not) is decided here, and
``figures_json`` writes the figures unrounded for scripts. Pure: no I/O.

    >>> from streams.catalog import KPIS
    >>> conversion = next(k for k in KPIS if k.key == "conversion")
    >>> fig = Figure(conversion, {}, 0.031, 0.029, 20_000, 19_000)
    >>> round(fig.change, 2), fig.change_unit, fig.direction
    (0.2, 'pp', 'better')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from streams.catalog import Kpi
from streams.mixin.intervals import wilson
from streams.report.queries import sample_metric
from streams.report.weeks import Week


MIN_SEGMENT_SHARE = 0.02  # a segment under 2% of its dimension's volume (either week) is not a mover ...

MIN_SEGMENT_COUNT = 30  # ... nor one under 30 sessions / observations: one order moves it by > 3 points


NOTABLE_RELATIVE = 0.10  # "at a glance" lists a KPI without an interval when it moved by 10% or more


@dataclass
class Figure:
    """One KPI (and for money one storefront and currency) over the week and the week before."""

    kpi: Kpi
    labels: dict[str, str]
    value: float | None
    previous: float | None
    n: float
    n_previous: float
    interval: tuple[float, float] | None = None
    interval_previous: tuple[float, float] | None = None
    daily: list[float | None] = field(default_factory=list)
    daily_previous: list[float | None] = field(default_factory=list)

    @property
    def change_unit(self) -> Literal["pp", "pts", "%"]:
        """Shares change in percentage points, NPS and mean scores in points, money and times relatively."""
        if self.kpi.unit == "ratio":
            return "pp"
        return "pts" if self.kpi.unit == "score" else "%"

    @property
    def change(self) -> float | None:
        if self.value is None or self.previous is None:
            return None
        if self.change_unit == "pp":
            return 100 * (self.value - self.previous)
        if self.change_unit == "pts":
            return self.value - self.previous
        return 100 * (self.value / self.previous - 1) if self.previous else None

    @property
    def direction(self) -> Literal["better", "worse", "same", ""]:
        if self.change is None:
            return ""
        if self.change == 0:
            return "same"
        return "better" if (self.change > 0) == self.kpi.higher_is_better else "worse"

    @property
    def notable(self) -> bool:
        """Moved beyond the noise: the two weeks' 95% intervals do not overlap; without an
        interval, a relative change of NOTABLE_RELATIVE or more."""
        if self.change is None:
            return False
        if self.interval and self.interval_previous:
            return self.interval[0] > self.interval_previous[1] or self.interval[1] < self.interval_previous[0]
        if self.change_unit == "%":
            return abs(self.change) >= 100 * NOTABLE_RELATIVE
        return False

    @property
    def name(self) -> str:
        """``Average order value (AOV) in EUR, north-outfitters`` for money, else the KPI's title."""
        name = self.kpi.title
        if "currency" in self.labels:
            name += f" in {self.labels['currency']}"
        if "storefront" in self.labels:
            name += f", {self.labels['storefront']}"
        return name


@dataclass
class Mover:
    """One segment of a KPI whose value moved week over week.

    ``weighted`` = (this week - last week) x the segment's share of the dimension's volume this
    week: for conversion, the points of the overall conversion this segment's change is worth if
    the mix of traffic had stayed the same. Ranked by its size; segments under
    MIN_SEGMENT_SHARE of the volume or MIN_SEGMENT_COUNT in either week are left out.
    """

    kpi: Kpi
    dimension: str
    segment: str
    value: float
    previous: float
    n: float
    n_previous: float
    share: float

    @property
    def change(self) -> float:
        return self.value - self.previous

    @property
    def weighted(self) -> float:
        return self.change * self.share

    @property
    def better(self) -> bool:
        return (self.change > 0) == self.kpi.higher_is_better


@dataclass
class VolumeMover:
    """A segment's count (tickets created) this week and last; ranked by the size of the change."""

    metric: str
    dimension: str
    segment: str
    count: float
    previous: float

    @property
    def change(self) -> float:
        return self.count - self.previous


@dataclass
class ReasonMover:
    """A contact reason's tickets created this week and last, and the storefronts' orders in each week (the
    ticket-to-order rate of the reason: its tickets / all orders); ranked by the size of the change in tickets.

        >>> m = ReasonMover("shipping", 120, 60, 4000, 4000)
        >>> m.change, m.per_order, m.per_order_previous
        (60, 0.03, 0.015)
    """

    reason: str
    count: float
    previous: float
    orders: float
    orders_previous: float

    @property
    def change(self) -> float:
        return self.count - self.previous

    @property
    def per_order(self) -> float | None:
        return self.count / self.orders if self.orders else None

    @property
    def per_order_previous(self) -> float | None:
        return self.previous / self.orders_previous if self.orders_previous else None


@dataclass
class CategoryMover(ReasonMover):
    """The same for a product category (docs/metrics.md, rule 17; ``reason`` holds the category): tickets
    created with it and the storefronts' orders, both counted in the week's event-time windows.

        >>> CategoryMover("electronics", 90, 30, 3000, 3000).category
        'electronics'
    """

    @property
    def category(self) -> str:
        return self.reason


Verdict = Literal["pays off", "does not pay off", "not enough evidence yet", "no data yet"]


@dataclass
class Initiative:
    """One initiative active in the week, at the week's end: its declaration (``cxpulse_initiative_info``,
    investment, start, end), its ``ROI_QUERIES`` values and each arm's sample and KPI."""

    name: str
    kpi: str  # a key of catalog.KPIS: revenue_per_visitor, conversion, average_order_value
    treated: str  # segment, e.g. channel=app
    control: str  # a segment, or "before": the treated segment before the start
    currency: str
    investment: float | None
    start_s: float | None
    end_s: float | None  # None: running
    values: dict[str, float]  # ROI_QUERIES name -> value: uplift, uplift_ratio, incremental_revenue, ..., roi_upper
    arms: dict[str, dict[str, float]]  # treated / control -> sessions, orders, kpi (the arm's KPI value)

    @property
    def verdict(self) -> Verdict:
        """Whether the ROI's 95% interval excludes 0, and on which side."""
        lower, upper = self.values.get("roi_lower"), self.values.get("roi_upper")
        if lower is None or upper is None:
            return "no data yet"
        if lower > 0:
            return "pays off"
        if upper < 0:
            return "does not pay off"
        return "not enough evidence yet"


@dataclass
class Initiatives:
    """Initiatives active in the week (by name), or a note saying why there are none."""

    rows: list[Initiative]
    note: str = ""


@dataclass
class CustomerShare:
    """A customer-level share (repeat purchase, post-support conversion) of one storefront, at the
    week's end and a week earlier: the recording rule's value, its Wilson interval and its customers."""

    key: Literal["repeat_purchase", "post_support_conversion"]
    storefront: str
    value: float | None
    previous: float | None
    n: float
    n_previous: float
    interval: tuple[float, float] | None
    interval_previous: tuple[float, float] | None

    @property
    def change(self) -> float | None:
        """In percentage points."""
        return None if self.value is None or self.previous is None else 100 * (self.value - self.previous)


@dataclass
class CohortLtv:
    """Revenue per customer within ``horizon`` of the first order, of the latest first-order cohort
    whose horizon had passed for every customer by the week's end, and of the one before it (the
    latest mature a week earlier)."""

    storefront: str
    currency: str
    horizon: str  # 30d, 90d
    cohort: str
    ltv: float
    customers: float
    previous_cohort: str | None
    previous_ltv: float | None
    previous_customers: float | None

    @property
    def change(self) -> float | None:
        """Relative, in %."""
        if self.previous_ltv is None or not self.previous_ltv:
            return None
        return 100 * (self.ltv / self.previous_ltv - 1)


@dataclass
class NpsLtv:
    """LTV (revenue per customer within ``horizon``) by NPS category (or CSAT band), for one
    storefront, currency and horizon: per purchase count (1, 2, 3, 4+ orders within 90 days) and
    category, (customers, LTV). ``high`` and ``low`` are the categories compared."""

    storefront: str
    currency: str
    horizon: str
    strata: dict[str, dict[str, tuple[float, float]]]  # purchases -> category -> (customers, LTV)
    high: str = "promoter"
    low: str = "detractor"

    def compared(self) -> list[str]:
        """Purchase counts with both categories compared present."""
        return [b for b, cats in self.strata.items() if cats.get(self.high, (0, 0))[0] > 0
                and cats.get(self.low, (0, 0))[0] > 0]

    @property
    def premium(self) -> float | None:
        """How much more ``high`` customers (promoters) are worth than ``low`` ones (detractors) with
        the same number of purchases, as a ratio - 1: the high category's LTV per purchase count,
        weighted by the low category's customers at that count, over the low category's own (direct
        standardisation to the low category's mix).

            sum_b D_b x LTV(high, b) / sum_b D_b x LTV(low, b) - 1
        """
        high, low = self.high, self.low
        at_high_ltv = sum(self.strata[b][low][0] * self.strata[b][high][1] for b in self.compared())
        own = sum(self.strata[b][low][0] * self.strata[b][low][1] for b in self.compared())
        return at_high_ltv / own - 1 if own > 0 else None

    @property
    def promoter_premium(self) -> float | None:
        return self.premium

    def customers(self, category: str) -> float:
        """Customers of the category over the purchase counts compared."""
        return sum(self.strata[b][category][0] for b in self.compared())


@dataclass
class Retention:
    """Customer retention of the last retention period of ``period`` complete by the week's end, for
    one storefront: its customers (those of the period before), the share retained and its Wilson
    interval; churn is 1 - that."""

    storefront: str
    period: str  # 30d, 90d, ...
    period_start: str  # the period's first day, UTC
    customers: float
    value: float | None
    interval: tuple[float, float] | None

    @property
    def churn(self) -> float | None:
        return None if self.value is None else 1 - self.value


@dataclass
class SupportRevenue:
    """Revenue of the orders placed within CXPULSE_POST_SUPPORT after the customer's latest ticket
    before them, for the tickets of one ISO week (``cohort``), storefront and currency."""

    storefront: str
    currency: str
    cohort: str
    orders: float
    revenue: float


@dataclass
class CheckoutWeek:
    """Cart abandonment per session (the checkout join, docs/customers.md) of one storefront: the
    decided checkout sessions whose first checkout fell on a UTC day of the report week and how many
    were abandoned; the same for the week before."""

    storefront: str
    decided: float
    abandoned: float
    previous_decided: float
    previous_abandoned: float

    @property
    def value(self) -> float | None:
        return self.abandoned / self.decided if self.decided > 0 else None

    @property
    def previous(self) -> float | None:
        return self.previous_abandoned / self.previous_decided if self.previous_decided > 0 else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson(self.abandoned, self.decided) if self.decided > 0 else None


@dataclass
class Customers:
    """The customer-level KPIs (docs/customers.md) at the week's end, or a note saying why there are none."""

    shares: list[CustomerShare]
    cohorts: list[CohortLtv]
    nps: list[NpsLtv]
    csat: list[NpsLtv] = field(default_factory=list)
    retention: list[Retention] = field(default_factory=list)
    support_revenue: list[SupportRevenue] = field(default_factory=list)
    note: str = ""
    checkouts: list[CheckoutWeek] = field(default_factory=list)


@dataclass
class Report:
    week: Week
    storefront: str | None
    prometheus: str
    generated: datetime
    figures: list[Figure]
    movers: dict[str, list[Mover]]
    volume_movers: list[VolumeMover]
    initiatives: Initiatives
    customers: Customers
    notes: list[str]
    charts: dict[str, Path] = field(default_factory=dict)
    reasons: list[ReasonMover] = field(default_factory=list)  # contact reasons that moved, largest change first
    categories: list[CategoryMover] = field(default_factory=list)  # product categories, the same (event time)


def figures_json(report: Report) -> dict[str, Any]:
    """The report's figures unrounded, for scripts (``report.json`` beside the document)."""
    def clean(value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None

    return {
        "week": report.week.label, "previous_week": report.week.previous().label,
        "start": report.week.start.isoformat(), "end": report.week.end.isoformat(),
        "storefront": report.storefront, "prometheus": report.prometheus,
        "kpis": [{"key": f.kpi.key, "name": f.name, "title": f.kpi.title, "unit": f.kpi.unit, "labels": f.labels,
                  "value": clean(f.value), "previous": clean(f.previous), "change": clean(f.change),
                  "change_unit": f.change_unit, "n": f.n, "n_previous": f.n_previous,
                  "denominator": sample_metric(f.kpi), "interval": f.interval,
                  "interval_previous": f.interval_previous, "daily": f.daily, "daily_previous": f.daily_previous}
                 for f in report.figures],
        "movers": [{"kpi": m.kpi.key, "dimension": m.dimension, "segment": m.segment, "value": m.value,
                    "previous": m.previous, "n": m.n, "n_previous": m.n_previous, "share": m.share,
                    "weighted": m.weighted} for moved in report.movers.values() for m in moved],
        "volume_movers": [{"metric": m.metric, "dimension": m.dimension, "segment": m.segment, "count": m.count,
                           "previous": m.previous} for m in report.volume_movers],
        "reasons": [{"reason": m.reason, "count": m.count, "previous": m.previous, "orders": m.orders,
                     "orders_previous": m.orders_previous} for m in report.reasons],
        "categories": [{"category": m.category, "count": m.count, "previous": m.previous, "orders": m.orders,
                        "orders_previous": m.orders_previous} for m in report.categories],
        "customers": {
            "shares": [{"key": c.key, "storefront": c.storefront, "value": c.value, "previous": c.previous,
                        "change": c.change, "n": c.n, "n_previous": c.n_previous, "interval": c.interval,
                        "interval_previous": c.interval_previous} for c in report.customers.shares],
            "cohort_ltv": [{"storefront": c.storefront, "currency": c.currency, "horizon": c.horizon,
                            "cohort": c.cohort, "ltv": c.ltv, "customers": c.customers,
                            "previous_cohort": c.previous_cohort, "previous_ltv": c.previous_ltv,
                            "previous_customers": c.previous_customers} for c in report.customers.cohorts],
            "nps_ltv": [{"storefront": n.storefront, "currency": n.currency, "horizon": n.horizon,
                         "strata": {b: {cat: {"customers": v[0], "ltv": v[1]} for cat, v in cats.items()}
                                    for b, cats in n.strata.items()},
                         "compared": n.compared(), "promoter_premium": n.promoter_premium}
                        for n in report.customers.nps],
            "csat_ltv": [{"storefront": n.storefront, "currency": n.currency, "horizon": n.horizon,
                          "strata": {b: {cat: {"customers": v[0], "ltv": v[1]} for cat, v in cats.items()}
                                     for b, cats in n.strata.items()},
                          "compared": n.compared(), "satisfied_premium": n.premium}
                         for n in report.customers.csat],
            "retention": [{"storefront": r.storefront, "period": r.period, "period_start": r.period_start,
                           "customers": r.customers, "value": r.value, "interval": r.interval, "churn": r.churn}
                          for r in report.customers.retention],
            "support_revenue": [{"storefront": r.storefront, "currency": r.currency, "cohort": r.cohort,
                                 "orders": r.orders, "revenue": r.revenue} for r in report.customers.support_revenue],
            "checkouts": [{"storefront": c.storefront, "decided": c.decided, "abandoned": c.abandoned,
                           "value": c.value, "interval": c.interval, "previous_decided": c.previous_decided,
                           "previous_abandoned": c.previous_abandoned, "previous": c.previous}
                          for c in report.customers.checkouts],
            "note": report.customers.note,
        },
        "initiatives": {row.name: {"kpi": row.kpi, "treated": row.treated, "control": row.control,
                                   "currency": row.currency, "investment": row.investment, "start": row.start_s,
                                   "end": row.end_s, **row.values, "arms": row.arms, "verdict": row.verdict}
                        for row in report.initiatives.rows},
        "initiatives_note": report.initiatives.note,
        "notes": report.notes,
        "charts": {name: path.name for name, path in report.charts.items()},
    }
