"""``cxpulse report`` against a real Prometheus holding two simulated weeks, checked three ways.

Fifteen days of simulator events (2026-11-08 to 2026-11-23, two storefronts, two partitions), the
last week changed on purpose: the app converts better, support is understaffed from Thursday, NPS
slips. The reference calculator tallies them; ``tests/backfill.py`` writes the counters a 5-minute
scrape would have read (partition 1 moves to the other worker mid-week, as in a rebalance), builds
TSDB blocks with promtool and serves them from ``prometheus``. Then ``cxpulse report`` runs as a
user runs it, for 2026-W47, and every headline figure must equal

- the same KPI computed here from direct PromQL sums of the raw counters at the two week ends, and
- the same KPI tallied here from the events of the week,

with the same sample sizes, week-over-week changes and 95% intervals; the Markdown must show them;
the charts must be real PNGs, embedded in the HTML.

Beside the counters, the backfill holds gauges stated here: the customer stage's cohorts, ticket
weeks and NPS cells, and the components of six initiatives (the ROI article's example among them),
split between two workers and changed just after the week before ended. The customer section and
the initiatives section (ROI with its interval, the arms' samples, the verdicts, only initiatives
active in the week) must equal direct PromQL over the raw gauges and the figures computed here.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import math
import re
import struct
import subprocess
import sys
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from streams.catalog import COUNTERS, HISTOGRAMS, KPIS
from streams.mixin.intervals import nps_interval, wilson
from streams.report.weeks import Week
from streams.devtools.simulate import CHANNELS, STOREFRONTS, SimConfig, generate
from streams.devtools.stack import ROOT, http_get
from tests.backfill import BackfilledPrometheus, Gauge, gauges, openmetrics, window_series
from tests.helpers import free_port
from tests.reference import BUCKETS_S, Params, Reference, major

# Module-scoped fixtures: the whole module runs in one test process (pytest-xdist loadgroup).
pytestmark = pytest.mark.xdist_group("test_report")

WEEK = Week.parse("2026-W47")
DAY_MS = 86_400_000
WEEK_END_MS = int(WEEK.end.timestamp() * 1000)
WEEK_START_MS = WEEK_END_MS - 7 * DAY_MS
FIRST_MS = WEEK_START_MS - 8 * DAY_MS  # a day before last week, so both weeks start with history
MOVE_MS = WEEK_START_MS + 2 * DAY_MS + 12 * 3_600_000  # partition 1 moves to worker 0 (Wednesday noon)
RATE = 0.1  # events per second of event time: ~21k sessions and ~800 orders a week
PARTITIONS = 2
STEP_MS = 300_000  # the scrape interval the backfill imitates
# The support calendars the workers measured with (the simulated agents work around the clock): a
# weekday desk in London, and a Saturday one in a half-hour zone (docs/operations.md, "Business hours")
CALENDARS = json.dumps({"north-outfitters": {"timezone": "Europe/London", "hours": {"mon-fri": "08:00-20:00"}},
                        "*": {"timezone": "Asia/Kolkata", "hours": {"mon-fri": "09:30-18:00", "sat": "10:00-14:00"},
                              "holidays": ["2026-11-19"]}})
REL = 1e-9  # float rounding: Prometheus sums float64 series, the tally sums integers


# ------------------------------------------------------------------------- the data
def simulated_events() -> list[dict[str, Any]]:
    """Eight ordinary days, then the report week with three things changed (a new run: its warm-up
    starts the funnels in steady state)."""
    before = SimConfig(seed=21, start_ms=FIRST_MS, rate_per_s=RATE, storefronts=STOREFRONTS[:2],
                       warmup_ms=6 * 3_600_000,
                       # fewer segments keep the backfill small: 2 channels, 3 support channels
                       channels={name: CHANNELS[name] for name in ("web", "app")},
                       support_mix=(("email", 0.45), ("chat", 0.35), ("phone", 0.20)))
    week = replace(before, seed=22, start_ms=WEEK_START_MS,
                   channels={"web": CHANNELS["web"], "app": replace(CHANNELS["app"], cvr=0.056)},
                   scenario="support-understaffed", incident_after_ms=3 * DAY_MS, understaffed_factor=3.0,
                   nps_mix=(0.45, 0.30, 0.25))
    events = list(itertools.islice(generate(before), int((WEEK_START_MS - FIRST_MS) // 1000 * RATE)))
    events += itertools.islice(generate(week), int((WEEK_END_MS - WEEK_START_MS) // 1000 * RATE))
    return events


def instance_of(family: str, partition: int, ts_ms: int) -> str:
    return "worker-0:9400" if partition == 0 or ts_ms >= MOVE_MS else "worker-1:9400"


# ------------------------------------------- what the customer stage and the initiatives exported
# Gauges, stated here: each value is split between the two workers (each exports its partitions'
# share; the report must sum), and changes once, just after W46's end. An hourly scrape carries
# them: the report reads gauges at the two week ends only, which are scrape instants.
WORKERS = ("worker-0:9400", "worker-1:9400")
GAUGE_STEP_MS = 3_600_000
CHANGED_MS = WEEK_START_MS + 1  # values at W46's end are the "before" ones
Z = 1.959964  # the normal quantile 0.975

# storefront -> currency; (storefront, first-order cohort) -> (customers, repeat customers, revenue within
# 30 days, within 90 days) at the end of W46 and at the end of W47 (None: the cohort did not exist yet)
SHOP_CURRENCY = {"north-outfitters": "EUR", "harbor-tea": "GBP"}
Cohort = tuple[int, int, float, float]
COHORTS: dict[tuple[str, str], tuple[Cohort | None, Cohort]] = {
    ("north-outfitters", "2026-W33"): ((400, 96, 24_000.00, 34_000.00), (400, 96, 24_000.00, 34_000.00)),
    ("north-outfitters", "2026-W34"): ((420, 105, 26_460.00, 37_800.00), (420, 105, 26_460.00, 37_800.00)),
    ("north-outfitters", "2026-W41"): ((380, 72, 22_800.00, 29_000.00), (380, 76, 22_800.00, 30_400.00)),
    ("north-outfitters", "2026-W42"): ((410, 80, 25_830.00, 29_500.00), (410, 90, 25_830.00, 31_000.00)),
    ("north-outfitters", "2026-W43"): ((390, 60, 21_000.00, 24_000.00), (390, 70, 23_000.00, 27_000.00)),
    ("north-outfitters", "2026-W46"): ((300, 3, 12_000.00, 12_000.00), (300, 9, 15_000.00, 15_500.00)),
    ("north-outfitters", "2026-W47"): (None, (350, 4, 14_000.00, 14_000.00)),
    ("harbor-tea", "2026-W42"): ((120, 28, 3_500.00, 4_200.00), (120, 30, 3_600.00, 5_000.00)),
    ("harbor-tea", "2026-W47"): (None, (100, 2, 2_400.00, 2_400.00)),
}
# The latest cohorts whose horizon (+ a day) had passed by each week's end: 90 days -> W34 (W33 a week
# earlier), 30 days -> W42 (W41); W43 is a day short of 30 days + 1. harbor-tea has no 90-day-old cohort.
MATURE = {("north-outfitters", "30d"): ("2026-W42", "2026-W41"), ("north-outfitters", "90d"): ("2026-W34", "2026-W33"),
          ("harbor-tea", "30d"): ("2026-W42", None)}
# (storefront, ticket week) -> (customers with a ticket, who ordered within 7 days) at W46's end, at W47's end
SUPPORT: dict[tuple[str, str], tuple[tuple[int, int] | None, tuple[int, int]]] = {
    ("north-outfitters", "2026-W45"): ((200, 50), (200, 50)),
    ("north-outfitters", "2026-W46"): ((220, 40), (220, 48)),
    ("north-outfitters", "2026-W47"): (None, (150, 20)),
    ("harbor-tea", "2026-W46"): ((40, 10), (40, 12)),
    ("harbor-tea", "2026-W47"): (None, (30, 6)),
}
# (storefront, horizon, purchases, NPS category) -> (customers, their revenue within the horizon); the same
# in both weeks. north-outfitters has no detractor with 3 purchases: that count is not compared.
NPS: dict[tuple[str, str, str, str], tuple[int, float]] = {
    ("north-outfitters", "90d", "1", "promoter"): (60, 3_000.00),
    ("north-outfitters", "90d", "1", "passive"): (40, 1_800.00),
    ("north-outfitters", "90d", "1", "detractor"): (50, 2_000.00),
    ("north-outfitters", "90d", "2", "promoter"): (30, 3_300.00),
    ("north-outfitters", "90d", "2", "passive"): (20, 2_000.00),
    ("north-outfitters", "90d", "2", "detractor"): (20, 1_800.00),
    ("north-outfitters", "90d", "3", "promoter"): (12, 2_040.00),
    ("north-outfitters", "90d", "4+", "promoter"): (8, 2_400.00),
    ("north-outfitters", "90d", "4+", "passive"): (5, 1_250.00),
    ("north-outfitters", "90d", "4+", "detractor"): (4, 960.00),
    ("north-outfitters", "30d", "1", "promoter"): (70, 2_800.00),
    ("north-outfitters", "30d", "1", "passive"): (45, 1_710.00),
    ("north-outfitters", "30d", "1", "detractor"): (60, 2_100.00),
    ("north-outfitters", "30d", "2", "promoter"): (35, 2_800.00),
    ("north-outfitters", "30d", "2", "detractor"): (25, 1_750.00),
    ("harbor-tea", "90d", "1", "promoter"): (10, 300.00),
    ("harbor-tea", "90d", "1", "detractor"): (8, 320.00),
}
# The mature part of the first-order cohorts (first order 90 days + 1 day old): (customers, repeat customers)
# at W46's end and at W47's end. harbor-tea has none yet: no storefront repeat purchase rate.
MATURE_COHORTS: dict[tuple[str, str], tuple[tuple[int, int] | None, tuple[int, int]]] = {
    ("north-outfitters", "2026-W33"): ((400, 96), (400, 96)),
    ("north-outfitters", "2026-W34"): ((250, 60), (420, 105)),
}
# The mature ticket weeks (7 days + 1 day after the week's first ticket): (customers, converted).
MATURE_SUPPORT: dict[tuple[str, str], tuple[tuple[int, int] | None, tuple[int, int]]] = {
    ("north-outfitters", "2026-W45"): ((200, 50), (200, 50)),
    ("north-outfitters", "2026-W46"): (None, (220, 48)),
    ("harbor-tea", "2026-W46"): (None, (40, 12)),
}
# (storefront, horizon, purchases, CSAT band) -> (customers, their revenue within the horizon), both weeks.
# Satisfied against unsatisfied at the unsatisfied customers' counts, by hand: (25 x 50 + 10 x 120) /
# (1,000 + 900) = 2,450 / 1,900: 28.9% more.
CSAT: dict[tuple[str, str, str, str], tuple[int, float]] = {
    ("north-outfitters", "90d", "1", "satisfied"): (80, 4_000.00),
    ("north-outfitters", "90d", "1", "neutral"): (20, 900.00),
    ("north-outfitters", "90d", "1", "unsatisfied"): (25, 1_000.00),
    ("north-outfitters", "90d", "2", "satisfied"): (40, 4_800.00),
    ("north-outfitters", "90d", "2", "unsatisfied"): (10, 900.00),
}
CSAT_PREMIUM = {("north-outfitters", "90d"): 2_450 / 1_900 - 1}
# (storefront, period, period_start) -> (customers of the period before, retained), both weeks. 30-day
# periods from 1969-12-29: 2026-11-23 is 20,783 days on, 692 x 30 + 23, so at W47's end 2026-10-31 is in
# progress and 2026-10-01 the latest complete; 90 days: 20,783 = 230 x 90 + 83, 2026-09-01 in progress,
# 2026-06-03 complete.
RETENTION: dict[tuple[str, str, str], tuple[int, int]] = {
    ("north-outfitters", "30d", "2026-10-01"): (500, 150),
    ("north-outfitters", "30d", "2026-10-31"): (520, 60),
    ("north-outfitters", "90d", "2026-06-03"): (900, 360),
    ("north-outfitters", "90d", "2026-09-01"): (950, 200),
    ("harbor-tea", "30d", "2026-10-01"): (80, 20),
    ("harbor-tea", "30d", "2026-10-31"): (85, 5),
}
# Wilson by hand (z^2 = 3.841459): 150 of 500: (151.920729 -+ 1.959964 sqrt(105.960365)) / 503.841459 =
# 26.1% .. 34.2%; 360 of 900: (361.920729 -+ 1.959964 sqrt(216.960365)) / 903.841459 = 36.8% .. 43.2%;
# 20 of 80: (21.920729 -+ 1.959964 sqrt(15.960365)) / 83.841459 = 16.8% .. 35.5%.
RETENTION_SHOWN = {("north-outfitters", "30d"): "2026-10-01", ("north-outfitters", "90d"): "2026-06-03",
                   ("harbor-tea", "30d"): "2026-10-01"}
# (storefront, ticket week, currency) -> (orders within 7 days after a ticket, their revenue) at W47's end
SUPPORT_REVENUE: dict[tuple[str, str, str], tuple[int, float]] = {
    ("north-outfitters", "2026-W45", "EUR"): (40, 3_000.00),
    ("north-outfitters", "2026-W46", "EUR"): (45, 3_600.00),
    ("north-outfitters", "2026-W47", "EUR"): (30, 2_400.00),
    ("harbor-tea", "2026-W47", "GBP"): (5, 150.00),
}
# The checkout join (docs/customers.md, "Checkouts"): (storefront, channel, device, day of the first
# checkout) -> ((decided, abandoned) at W46's end or None, the same at W47's end). The report sums the
# days of each week read at its end: north-outfitters W47 (70 + 50 + 60) = 180 decided, 28 + 20 + 30 = 78
# abandoned -> 43.3%, Wilson (79.920729 -+ 1.959964 sqrt(45.160365)) / 183.841459 = 36.3% .. 50.6%; W46
# (read at its end) 80 + 100 = 180, 20 + 30 = 50 -> 27.8%; 2026-11-08 (W45) counts in neither week.
# harbor-tea W47: 5 of 20 -> 25.0%, (6.920729 -+ 1.959964 sqrt(4.710365)) / 23.841459 = 11.2% .. 46.9%;
# no checkout day in W46.
CHECKOUTS: dict[tuple[str, str, str, str], tuple[tuple[int, int] | None, tuple[int, int]]] = {
    ("north-outfitters", "web", "mobile", "2026-11-08"): ((50, 10), (50, 10)),
    ("north-outfitters", "web", "mobile", "2026-11-10"): ((80, 20), (80, 20)),
    ("north-outfitters", "app", "desktop", "2026-11-15"): ((100, 30), (100, 30)),
    ("north-outfitters", "web", "mobile", "2026-11-16"): (None, (70, 28)),
    ("north-outfitters", "app", "desktop", "2026-11-16"): (None, (50, 20)),
    ("north-outfitters", "web", "mobile", "2026-11-22"): (None, (60, 30)),
    ("harbor-tea", "web", "desktop", "2026-11-18"): (None, (20, 5)),
}
# Promoters against detractors at the detractors' purchase counts, by hand from the table above:
# north-outfitters 90 days: (50 x 50 + 20 x 110 + 4 x 300) / (2,000 + 1,800 + 960) = 5,900 / 4,760;
# 30 days: (60 x 40 + 25 x 80) / (2,100 + 1,750) = 4,400 / 3,850; harbor-tea: 8 x 30 / 320 (worth less).
PREMIUM = {("north-outfitters", "90d"): 5_900 / 4_760 - 1, ("north-outfitters", "30d"): 4_400 / 3_850 - 1,
           ("harbor-tea", "90d"): 8 * 30 / 320 - 1}


@dataclass(frozen=True)
class Arm:
    """An arm's sessions and orders, as (number of orders, order value in the initiative's currency)."""

    sessions: int
    orders: tuple[tuple[int, float], ...]

    def components(self) -> dict[str, float]:
        return {"sessions": self.sessions, "orders": sum(n for n, _ in self.orders),
                "revenue": sum(n * v for n, v in self.orders),
                "revenue_squares": sum(n * v * v for n, v in self.orders)}


@dataclass(frozen=True)
class Declared:
    """An initiative as ``cxpulse initiative declare`` sets it, and its arms at W46's end and at W47's end."""

    name: str
    kpi: str
    treated: str
    control: str
    start: str  # first day
    end: str | None  # the day after the last
    investment: float
    margin: float
    before: tuple[Arm, Arm]  # treated, control
    now: tuple[Arm, Arm]


INITIATIVES = (
    # The ROI article: six months, 6,000 sessions per arm converting at 10%, $350 orders against $100,
    # 40% margin, $30,000 invested: ROI 100%, 95% interval [0.778949, 1.221051] (docs/initiatives.md).
    # A week earlier it had 5,000 sessions per arm: a report read at the wrong instant shows ROI 67%.
    Declared("live-chat", "revenue_per_visitor", "channel=app", "channel=web", "2026-05-25", None, 30_000.0, 0.4,
             (Arm(5_000, ((500, 350.0),)), Arm(5_000, ((500, 100.0),))),
             (Arm(6_000, ((600, 350.0),)), Arm(6_000, ((600, 100.0),)))),
    # tests/rules/initiatives_roi.test.yml's second case: ROI 150%, interval [-0.032348, 3.032348].
    Declared("free-shipping", "conversion", "device=mobile", "device=desktop", "2026-10-01", "2026-12-01", 1_000.0,
             0.5, (Arm(4_000, ((480, 50.0),)), Arm(4_000, ((400, 50.0),))),
             (Arm(5_000, ((600, 50.0),)), Arm(5_000, ((500, 50.0),)))),
    # AOV up $20 on 400 orders, 30% margin, $50,000 invested: ROI about -95%.
    Declared("price-match", "average_order_value", "storefront=north-outfitters", "before", "2026-11-02", None,
             50_000.0, 0.3, (Arm(2_000, ((100, 100.0), (100, 140.0))), Arm(4_000, ((200, 80.0), (200, 120.0)))),
             (Arm(4_000, ((200, 100.0), (200, 140.0))), Arm(4_000, ((200, 80.0), (200, 120.0))))),
    # Started on the report week's Sunday: nothing counted in its arms yet.
    Declared("new-banner", "conversion", "channel=web", "channel=app", "2026-11-22", None, 2_000.0, 0.4,
             (Arm(0, ()), Arm(0, ())), (Arm(0, ()), Arm(0, ()))),
    # Not active in W47: ended before it started, starts after it ended.
    Declared("old-promo", "revenue_per_visitor", "channel=web", "before", "2026-10-01", "2026-11-09", 5_000.0, 0.4,
             (Arm(3_000, ((300, 60.0),)), Arm(3_000, ((250, 60.0),))),
             (Arm(3_000, ((300, 60.0),)), Arm(3_000, ((250, 60.0),)))),
    Declared("next-quarter", "conversion", "channel=app", "channel=web", "2026-11-30", None, 8_000.0, 0.4,
             (Arm(0, ()), Arm(0, ())), (Arm(0, ()), Arm(0, ()))),
)
ACTIVE = ("free-shipping", "live-chat", "new-banner", "price-match")


def _day_s(day: str) -> float:
    return datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp()


def _halves(value: float | None, money: bool) -> tuple[float | None, float | None]:
    """A value split between the two workers (whole counts, whole cents)."""
    if value is None:
        return None, None
    unit = 100 if money else 1
    whole = round(value * unit)
    return whole // 2 / unit, (whole - whole // 2) / unit


def exported(name: str, labels: dict[str, str], before: float | None, after: float | None,
             money: bool = False, both: bool = False) -> list[Gauge]:
    """The series as the two workers export it: split between them, or (``both``) the same on each."""
    parts = [(before, after)] * 2 if both else list(zip(_halves(before, money), _halves(after, money)))
    return [Gauge(name, {**labels, "instance": worker}, {FIRST_MS: b, CHANGED_MS: a})
            for worker, (b, a) in zip(WORKERS, parts)]


def gauge_series() -> list[Gauge]:
    out: list[Gauge] = []
    for (shop, cohort), (before, after) in COHORTS.items():
        labels = {"storefront": shop, "cohort": cohort}
        for i, name in ((0, "cxpulse_customer_cohort_customers"), (1, "cxpulse_customer_cohort_repeat_customers")):
            out += exported(name, labels, before and before[i], after[i])
        for i, horizon in ((2, "30d"), (3, "90d")):
            out += exported("cxpulse_customer_cohort_revenue",
                            {**labels, "currency": SHOP_CURRENCY[shop], "horizon": horizon},
                            before and before[i], after[i], money=True)
    for (shop, cohort), (before, after) in SUPPORT.items():
        labels = {"storefront": shop, "cohort": cohort}
        out += exported("cxpulse_customer_post_support_customers", labels, before and before[0], after[0])
        out += exported("cxpulse_customer_post_support_converted", labels, before and before[1], after[1])
    for (shop, horizon, purchases, category), (customers, revenue) in NPS.items():
        labels = {"storefront": shop, "nps_category": category, "purchases": purchases, "horizon": horizon}
        out += exported("cxpulse_customer_nps_customers", labels, customers, customers)
        out += exported("cxpulse_customer_nps_revenue", {**labels, "currency": SHOP_CURRENCY[shop]}, revenue, revenue,
                        money=True)
    for (shop, cohort), (before, after) in MATURE_COHORTS.items():
        labels = {"storefront": shop, "cohort": cohort}
        out += exported("cxpulse_customer_cohort_mature_customers", labels, before and before[0], after[0])
        out += exported("cxpulse_customer_cohort_mature_repeat_customers", labels, before and before[1], after[1])
    for (shop, cohort), (before, after) in MATURE_SUPPORT.items():
        labels = {"storefront": shop, "cohort": cohort}
        out += exported("cxpulse_customer_post_support_mature_customers", labels, before and before[0], after[0])
        out += exported("cxpulse_customer_post_support_mature_converted", labels, before and before[1], after[1])
    for (shop, horizon, purchases, band), (customers, revenue) in CSAT.items():
        labels = {"storefront": shop, "csat_band": band, "purchases": purchases, "horizon": horizon}
        out += exported("cxpulse_customer_csat_customers", labels, customers, customers)
        out += exported("cxpulse_customer_csat_revenue", {**labels, "currency": SHOP_CURRENCY[shop]}, revenue,
                        revenue, money=True)
    for (shop, period, start), (customers, retained) in RETENTION.items():
        labels = {"storefront": shop, "period": period, "period_start": start}
        out += exported("cxpulse_customer_retention_customers", labels, customers, customers)
        out += exported("cxpulse_customer_retention_retained", labels, retained, retained)
    for (shop, cohort, currency), (orders, revenue) in SUPPORT_REVENUE.items():
        labels = {"storefront": shop, "cohort": cohort, "currency": currency}
        out += exported("cxpulse_customer_post_support_orders", labels, orders, orders)
        out += exported("cxpulse_customer_post_support_revenue", labels, revenue, revenue, money=True)
    for (shop, channel, device, day), (before, after) in CHECKOUTS.items():
        labels = {"storefront": shop, "channel": channel, "device": device, "day": day}
        out += exported("cxpulse_checkout_sessions_decided", labels, before and before[0], after[0])
        out += exported("cxpulse_checkout_sessions_abandoned", labels, before and before[1], after[1])
    for d in INITIATIVES:
        name = {"initiative": d.name}
        out += exported("cxpulse_initiative_info", {**name, "kpi": d.kpi, "treated": d.treated, "control": d.control},
                        1.0, 1.0, both=True)
        out += exported("cxpulse_initiative_investment", {**name, "currency": "USD"}, d.investment, d.investment,
                        both=True)
        out += exported("cxpulse_initiative_gross_margin_ratio", name, d.margin, d.margin, both=True)
        out += exported("cxpulse_initiative_start_timestamp_seconds", name, _day_s(d.start), _day_s(d.start),
                        both=True)
        if d.end:
            out += exported("cxpulse_initiative_end_timestamp_seconds", name, _day_s(d.end), _day_s(d.end), both=True)
        for arm, before, after in zip(("treated", "control"), d.before, d.now):
            for field, value in after.components().items():
                out += exported(f"cxpulse_initiative_{field}", {**name, "arm": arm}, before.components()[field],
                                value, money=field in ("revenue", "revenue_squares"))
    return out


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("report")
    ref = Reference.compute(simulated_events(), Params(partitions=PARTITIONS, business_hours=CALENDARS))
    tallies = Tallies(ref)
    documents = openmetrics(ref, FIRST_MS, WEEK_END_MS, STEP_MS, instance_of)
    documents.append(gauges(gauge_series(), FIRST_MS, WEEK_END_MS, GAUGE_STEP_MS))
    documents.append(window_series(ref, FIRST_MS, WEEK_END_MS))
    prometheus = BackfilledPrometheus.build(documents, workdir)
    yield tallies, prometheus
    prometheus.stop()


def cxpulse_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", "report", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def reported(backfilled, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    _, prometheus = backfilled
    out = {}
    for fmt in ("md", "html"):
        directory = tmp_path_factory.mktemp(f"report-{fmt}")
        done = cxpulse_report("--prometheus", prometheus.url, "--week", WEEK.label, "--format", fmt,
                              "--out", str(directory))
        assert done.returncode == 0, done.stderr
        out[fmt] = directory
        out[f"{fmt}_stderr"] = done.stderr
    out["json"] = json.loads((out["md"] / "report.json").read_text())
    return out


# ------------------------------------------------------------ what the week should show
Counts = dict[str, float]  # field -> count (money in major units) for one group and one week


class Tallies:
    """The reference's base windows indexed by field, for quick sums over any span of event time."""

    def __init__(self, ref: Reference) -> None:
        self.components: dict[str, list[tuple[int, dict[str, str], int]]] = defaultdict(list)
        self.samples: dict[str, list[tuple[int, dict[str, str], list[float]]]] = defaultdict(list)
        for (_, _, window, seg, field), value in ref.components.items():
            self.components[field].append((window, dict(seg), value))
        for (_, _, window, seg, field), values in ref.samples.items():
            self.samples[field].append((window, dict(seg), values))
        # rule 17: tickets created per (window, product category), over every storefront
        self.category_tickets = [(window, category, value) for (_, window, _, category, name), value
                                 in ref.category_counts.items() if name == "tickets_created"]


def _keeps(labels: dict[str, str], keep: dict[str, str] | None) -> bool:
    return not keep or all(labels.get(k, v) == v for k, v in keep.items())


def tally(tallies: Tallies, start_ms: int, end_ms: int, keep: dict[str, str] | None = None,
          money_currency: str | None = None) -> Counts:
    """Sum of every catalog counter field over the events of [start, end), in segments matching ``keep``;
    with ``money_currency``, order counters of that currency only (money in its major units)."""
    counts: Counts = defaultdict(float)
    for counter in COUNTERS:
        for window, labels, value in tallies.components[counter.field]:
            if not start_ms <= window < end_ms or not _keeps(labels, keep):
                continue
            if money_currency and labels.get("currency", money_currency) != money_currency:
                continue
            counts[counter.field] += float(major(value, labels["currency"])) if counter.money else value
    for histogram in HISTOGRAMS:
        values = [v for window, labels, found in tallies.samples[histogram.field]
                  if start_ms <= window < end_ms and _keeps(labels, keep) for v in found]
        counts[histogram.field + "_count"] = len(values)
        for le in BUCKETS_S:
            counts[f"{histogram.field}_le_{le}"] = sum(1 for v in values if v <= le)
    return counts


@functools.cache
def query(url: str, expr: str, at_ms: int) -> list[tuple[dict[str, str], float]]:
    status, body = http_get(f"{url}/api/v1/query?query={urllib.parse.quote(expr)}&time={at_ms / 1000}", 10)
    answer = json.loads(body)
    assert status == 200 and answer["status"] == "success", body[:300]
    return [(r["metric"], float(r["value"][1])) for r in answer["data"]["result"]]


def promql_counts(url: str, start_ms: int, end_ms: int, keep: dict[str, str] | None = None,
                  money_currency: str | None = None) -> Counts:
    """The same counts from Prometheus: raw counters summed over series at the week's end minus at its start."""
    counts: Counts = defaultdict(float)

    def matching(result: list[tuple[dict[str, str], float]]) -> float:
        return sum(value for labels, value in result
                   if all(labels.get(k, v) == v for k, v in (keep or {}).items())
                   and (money_currency is None or labels.get("currency", money_currency) == money_currency))

    for counter in COUNTERS:
        by = "storefront, currency" if counter.family == "order" else "storefront"
        expr = f'sum by ({by}) ({counter.name}{{job="cxpulse"}})'
        counts[counter.field] = matching(query(url, expr, end_ms)) - matching(query(url, expr, start_ms))
    for histogram in HISTOGRAMS:
        expr = f'sum by (storefront) ({histogram.name}_count{{job="cxpulse"}})'
        counts[f"{histogram.field}_count"] = matching(query(url, expr, end_ms)) - matching(query(url, expr, start_ms))
        expr = f'sum by (storefront, le) ({histogram.name}_bucket{{job="cxpulse"}})'
        for le in BUCKETS_S:
            def bucket(result: list[tuple[dict[str, str], float]], le: float = le) -> float:
                return matching([(labels, v) for labels, v in result if labels["le"] == str(float(le))])

            counts[f"{histogram.field}_le_{le}"] = bucket(query(url, expr, end_ms)) - bucket(query(url, expr, start_ms))
    return counts


def histogram_quantile(q: float, counts: Counts, field: str) -> float:
    """Prometheus's histogram_quantile: linear within the bucket holding rank q x count."""
    total = counts[f"{field}_count"]
    if total == 0:
        return math.nan
    rank, below, lower = q * total, 0.0, 0.0
    for le in BUCKETS_S:
        cumulative = counts[f"{field}_le_{le}"]
        if cumulative >= rank:
            return lower + (le - lower) * (rank - below) / (cumulative - below)
        below, lower = cumulative, le
    return float(BUCKETS_S[-1])  # in +Inf: the largest finite bound


def kpi_figures(c: Counts, sessions_of_storefront: float | None = None) -> dict[str, tuple[float, float, Any]]:
    """key -> (value, sample size, interval) from one week's counts; written from the brief's formulas."""
    def share(successes: float, n: float) -> tuple[float, float, Any]:
        return (successes / n, n, wilson(successes, n)) if n else (math.nan, n, None)

    def mean(total: float, n: float) -> tuple[float, float, Any]:
        return (total / n if n else math.nan, n, None)

    resolutions = c["resolution_count"]
    out = {
        "conversion": share(c["orders_placed"], c["sessions_started"]),
        "cart_abandonment": share(c["checkouts_started"] - c["orders_placed"], c["checkouts_started"]),
        "view_rate": share(c["sessions_viewed"], c["sessions_started"]),
        "add_to_cart_rate": share(c["sessions_carted"], c["sessions_viewed"]),
        "checkout_rate": share(c["sessions_checked_out"], c["sessions_carted"]),
        "refund_return_rate": share(c["refunds"] + c["returns"], c["orders_placed"]),
        "repeat_purchase": share(c["orders_placed"] - c["first_orders"], c["orders_placed"]),
        "ticket_to_order": mean(c["tickets_created"], c["orders_placed"]),
        "first_contact_resolution": share(c["tickets_resolved_one_touch"], resolutions),
        "nps": (100 * (c["nps_promoters"] - c["nps_detractors"]) / c["nps_responses"], c["nps_responses"],
                nps_interval(c["nps_promoters"], c["nps_detractors"], c["nps_responses"])),
        "csat": share(c["csat_satisfied"], c["csat_responses"]),
        "csat_mean": mean(c["csat_score_sum"], c["csat_responses"]),
        "ces": mean(c["ces_score_sum"], c["ces_responses"]),
        **{f"{kind}_response_rate": share(c[f"{kind}_responses"], c[f"{kind}_sent"])
           for kind in ("nps", "csat", "ces")},
        "average_order_value": mean(c["revenue_minor"], c["orders_placed"]),
    }
    if sessions_of_storefront is not None:
        out["revenue_per_visitor"] = mean(c["revenue_minor"], sessions_of_storefront)
    for field in ("first_response", "resolution", "first_response_business", "resolution_business"):
        for p, q in (("p50", 0.5), ("p90", 0.9)):
            out[f"{field}_{p}"] = (histogram_quantile(q, c, field), c[f"{field}_count"], None)
    return out


def expected(tallies: Tallies, url: str, labels: dict[str, str], source: str, week_end_ms: int) -> dict[str, tuple]:
    """KPI figures of the week ending at ``week_end_ms`` for a report row's labels, from the events
    (source="tally") or from direct PromQL (source="promql")."""
    start = week_end_ms - 7 * DAY_MS
    count = (lambda **kw: tally(tallies, start, week_end_ms, **kw)) if source == "tally" else (
        lambda **kw: promql_counts(url, start, week_end_ms, **kw))
    if "currency" in labels:
        money = count(keep={"storefront": labels["storefront"]}, money_currency=labels["currency"])
        sessions = count(keep={"storefront": labels["storefront"]})["sessions_started"]
        return kpi_figures(money, sessions)
    return kpi_figures(count())


def change(unit: str, value: float, previous: float) -> float:
    return {"pp": 100 * (value - previous), "pts": value - previous, "%": 100 * (value / previous - 1)}[unit]


# --------------------------------------------------------------------------- the tests
def test_every_headline_figure_equals_promql_and_the_events(backfilled, reported) -> None:
    tallies, prometheus = backfilled
    rows = reported["json"]["kpis"]
    assert {row["key"] for row in rows} == {k.key for k in KPIS}, "a KPI of the catalog is missing from the report"
    cache: dict[tuple, dict[str, tuple]] = {}
    checked = 0
    for row in rows:
        labels = row["labels"]
        for source in ("tally", "promql"):
            for end, value_key, n_key, interval_key in (
                    (WEEK_END_MS, "value", "n", "interval"),
                    (WEEK_END_MS - 7 * DAY_MS, "previous", "n_previous", "interval_previous")):
                key = (tuple(sorted(labels.items())), source, end)
                if key not in cache:
                    cache[key] = expected(tallies, prometheus.url, labels, source, end)
                assert row["key"] in cache[key], f"no formula in this test for the KPI {row['key']}"
                value, n, interval = cache[key][row["key"]]
                where = f"{row['key']} {labels} {value_key} vs {source}"
                assert row[value_key] == pytest.approx(value, rel=REL), where
                assert row[n_key] == pytest.approx(n, rel=REL), where
                if interval is None:
                    assert row[interval_key] is None, where
                else:
                    assert row[interval_key] == pytest.approx(list(interval), rel=REL, abs=1e-12), where
                checked += 1
        assert row["change"] == pytest.approx(change(row["change_unit"], row["value"], row["previous"]), rel=REL)
    money = [row for row in rows if row["labels"]]
    assert {tuple(sorted(r["labels"].items())) for r in money} == {
        (("currency", "EUR"), ("storefront", "north-outfitters")), (("currency", "GBP"), ("storefront", "harbor-tea"))}
    assert checked == 4 * len(rows)


def test_the_simulated_changes_show(reported) -> None:
    """The week was changed on purpose: the report must say so (and the movers must name the app)."""
    rows = {(r["key"], r["labels"].get("currency")): r for r in reported["json"]["kpis"]}
    assert rows["conversion", None]["change"] > 0
    assert rows["first_response_p90", None]["change"] > 25  # percent: understaffed from Thursday
    assert rows["nps", None]["change"] < 0
    conversion_movers = [m for m in reported["json"]["movers"] if m["kpi"] == "conversion"]
    assert conversion_movers[0]["segment"] in ("app", "mobile")


def test_the_markdown_shows_the_figures(reported) -> None:
    text = (reported["md"] / "report.md").read_text()
    assert text.startswith(f"# CX weekly report: {WEEK.label} (16-22 Nov 2026)")
    table = text.split("## Headline KPIs", 1)[1].split("\n\n")[1].splitlines()
    header, cells = table[0], [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    assert header == "| KPI | W47 | 95% interval | W46 | change | sample W47 / W46 |"
    by_name = {row["name"]: row for row in reported["json"]["kpis"]}
    assert [c[0] for c in cells] == [row["name"] for row in reported["json"]["kpis"]]
    for name, now, interval, before, moved, sample in cells:
        row = by_name[name]
        for shown, value in ((now, row["value"]), (before, row["previous"])):
            parsed, half = displayed(shown)
            assert abs(parsed - value) <= half + 1e-12, f"{name}: shows {shown}, the figure is {value}"
        counts = re.fullmatch(r"([\d,]+) / ([\d,]+)(?: [a-z ]+)?", sample)
        assert counts, sample
        assert (int(counts[1].replace(",", "")), int(counts[2].replace(",", ""))) == (row["n"], row["n_previous"])
        number = re.match(r"[+-][\d.]+", moved)[0]
        assert abs(float(number) - row["change"]) <= 0.5 * 10 ** -len(number.partition(".")[2]) + 1e-9, (name, moved)
        assert (interval == "-") == (row["interval"] is None), name
    assert "![Daily KPIs" in text and "(2026-W47-daily.png)" in text and "(2026-W47-movers.png)" in text


def displayed(text: str) -> tuple[float, float]:
    """A value as the report prints it -> (number in the KPI's unit, half its last digit)."""
    def half(digits: str) -> float:
        return 0.5 * 10 ** -len(digits.partition(".")[2])

    if m := re.fullmatch(r"([+-]?[\d.]+)%", text):
        return float(m[1]) / 100, half(m[1]) / 100
    if m := re.fullmatch(r"([\d,.]+) [A-Z]{3}", text):
        return float(m[1].replace(",", "")), half(m[1])
    if m := re.fullmatch(r"([\d.]+) (s|min|h|d)", text):
        factor = {"s": 1, "min": 60, "h": 3600, "d": 86400}[m[2]]
        return float(m[1]) * factor, half(m[1]) * factor
    m = re.fullmatch(r"[+-]?[\d.]+", text)
    assert m, f"cannot read the value {text!r}"
    return float(text), half(text)


def test_daily_points_equal_the_events_of_each_day(backfilled, reported) -> None:
    tallies, _ = backfilled
    row = next(r for r in reported["json"]["kpis"] if r["key"] == "conversion")
    for points, first_ms in ((row["daily"], WEEK_START_MS), (row["daily_previous"], WEEK_START_MS - 7 * DAY_MS)):
        for day, point in enumerate(points):
            c = tally(tallies, first_ms + day * DAY_MS, first_ms + (day + 1) * DAY_MS)
            assert point == pytest.approx(c["orders_placed"] / c["sessions_started"], rel=REL), (first_ms, day)


def test_movers_equal_the_events_and_are_ranked_by_weighted_change(backfilled, reported) -> None:
    tallies, _ = backfilled
    movers = [m for m in reported["json"]["movers"] if m["kpi"] == "conversion"]
    assert movers, "no conversion movers"
    totals = {"channel": 0.0, "device": 0.0}
    now_of, before_of = {}, {}
    for dimension in totals:
        for end, into in ((WEEK_END_MS, now_of), (WEEK_END_MS - 7 * DAY_MS, before_of)):
            for field in ("sessions_started", "orders_placed"):
                for window, labels, value in tallies.components[field]:
                    if end - 7 * DAY_MS <= window < end:
                        key = (dimension, labels[dimension], field)
                        into[key] = into.get(key, 0) + value
    for m in movers:
        d, s = m["dimension"], m["segment"]
        assert m["value"] == pytest.approx(now_of[d, s, "orders_placed"] / now_of[d, s, "sessions_started"], rel=REL)
        assert m["previous"] == pytest.approx(before_of[d, s, "orders_placed"] / before_of[d, s, "sessions_started"],
                                              rel=REL)
        assert m["n"] == now_of[d, s, "sessions_started"]
        total = sum(v for (dim, _, f), v in now_of.items() if dim == d and f == "sessions_started")
        assert m["weighted"] == pytest.approx((m["value"] - m["previous"]) * m["n"] / total, rel=REL)
    weights = [abs(m["weighted"]) for m in movers]
    assert weights == sorted(weights, reverse=True)


def test_product_categories_equal_the_events_of_each_week(backfilled, reported) -> None:
    """The product-category table (event time): each category's tickets created in the week's windows and
    the week's orders, equal to the reference's counts of the simulated events; the largest change first."""
    tallies, _ = backfilled
    found = reported["json"]["categories"]
    assert found, "no product category in the report"
    weeks = {"count": (WEEK_END_MS - 7 * DAY_MS, WEEK_END_MS), "previous": (WEEK_END_MS - 14 * DAY_MS,
                                                                           WEEK_END_MS - 7 * DAY_MS)}
    for row in found:
        for key, (start, end) in weeks.items():
            want = sum(v for window, category, v in tallies.category_tickets
                       if category == row["category"] and start <= window < end)
            assert row[key] == want, (row, key)
        orders = sum(v for window, _, v in tallies.components["orders_placed"] if weeks["count"][0] <= window
                     < weeks["count"][1])
        assert row["orders"] == orders
    changes = [abs(row["count"] - row["previous"]) for row in found]
    assert changes == sorted(changes, reverse=True)
    assert "### Product categories that moved most" in (reported["md"] / "report.md").read_text()


# ------------------------------------------------------------ initiatives and customers
def roi(kpi: str, margin: float, investment: float, t: dict[str, float], c: dict[str, float]) -> dict[str, float]:
    """The ROI article's arithmetic on the two arms' sums (docs/initiatives.md), written here from the article:
    the normal approximation of the difference of the arms' means for the interval."""
    def variance(arm: dict[str, float], per: str) -> float:  # of revenue per session or per order
        return arm["revenue_squares"] / arm[per] - (arm["revenue"] / arm[per]) ** 2

    if kpi == "revenue_per_visitor":
        now, base = t["revenue"] / t["sessions"], c["revenue"] / c["sessions"]
        incremental = (now - base) * t["sessions"]
        se = t["sessions"] * math.sqrt(variance(t, "sessions") / t["sessions"]
                                       + variance(c, "sessions") / c["sessions"])
    elif kpi == "conversion":
        now, base = t["orders"] / t["sessions"], c["orders"] / c["sessions"]
        aov = t["revenue"] / t["orders"]
        incremental = (now - base) * t["sessions"] * aov
        se = t["sessions"] * aov * math.sqrt(now * (1 - now) / t["sessions"] + base * (1 - base) / c["sessions"])
    else:
        now, base = t["revenue"] / t["orders"], c["revenue"] / c["orders"]
        incremental = (now - base) * t["orders"]
        se = t["orders"] * math.sqrt(variance(t, "orders") / t["orders"] + variance(c, "orders") / c["orders"])

    def back(profit: float) -> float:
        return (profit - investment) / investment

    return {"uplift": now - base, "uplift_ratio": (now - base) / base, "incremental_revenue": incremental,
            "incremental_profit": margin * incremental, "roi": back(margin * incremental),
            "roi_lower": back(margin * (incremental - Z * se)), "roi_upper": back(margin * (incremental + Z * se)),
            "treated_kpi": now, "control_kpi": base}


ROI_FIGURES = ("uplift", "uplift_ratio", "incremental_revenue", "incremental_profit", "roi", "roi_lower", "roi_upper")


def test_initiatives_equal_the_article_promql_and_the_declared_arms(backfilled, reported) -> None:
    _, prometheus = backfilled
    rows = reported["json"]["initiatives"]
    assert sorted(rows) == sorted(ACTIVE), "active in W47: started before its end, not ended by its start"
    live = rows["live-chat"]
    assert live["roi"] == pytest.approx(1.0, rel=REL)
    assert [live["roi_lower"], live["roi_upper"]] == pytest.approx([0.778949, 1.221051], abs=1e-6)
    assert [live[k] for k in ROI_FIGURES[:4]] == pytest.approx([25.0, 2.5, 150_000.0, 60_000.0], rel=REL)
    assert rows["free-shipping"]["roi"] == pytest.approx(1.5, rel=REL)
    assert [rows["free-shipping"]["roi_lower"], rows["free-shipping"]["roi_upper"]] == pytest.approx(
        [-0.032348, 3.032348], abs=1e-6)
    fields = ("sessions", "orders", "revenue", "revenue_squares")
    sums = {f: {(labels["initiative"], labels["arm"]): value for labels, value in query(
        prometheus.url, f'sum by (initiative, arm) (cxpulse_initiative_{f}{{job="cxpulse"}})', WEEK_END_MS)}
        for f in fields}
    assert rows["new-banner"]["verdict"] == "no data yet" and not set(ROI_FIGURES) & set(rows["new-banner"])
    for d in INITIATIVES:
        if d.name not in ACTIVE or d.name == "new-banner":
            continue
        row = rows[d.name]
        declared = roi(d.kpi, d.margin, d.investment, d.now[0].components(), d.now[1].components())
        promql = roi(d.kpi, d.margin, d.investment,
                     *({f: sums[f][d.name, arm] for f in fields} for arm in ("treated", "control")))
        for key in ROI_FIGURES:
            assert row[key] == pytest.approx(declared[key], rel=REL, abs=1e-9), (d.name, key, "declared")
            assert row[key] == pytest.approx(promql[key], rel=REL, abs=1e-9), (d.name, key, "promql")
        for i, arm in enumerate(("treated", "control")):
            figures = d.now[i].components()
            assert row["arms"][arm]["sessions"] == figures["sessions"] and row["arms"][arm]["orders"] == figures[
                "orders"], (d.name, arm)
            assert row["arms"][arm]["kpi"] == pytest.approx(declared[f"{arm}_kpi"], rel=REL), (d.name, arm)
        assert (row["kpi"], row["treated"], row["control"], row["currency"], row["investment"]) == (
            d.kpi, d.treated, d.control, "USD", d.investment)
        assert (row["start"], row["end"]) == (_day_s(d.start), _day_s(d.end) if d.end else None)
        lower, upper = declared["roi_lower"], declared["roi_upper"]
        assert row["verdict"] == ("pays off" if lower > 0 else "does not pay off" if upper < 0
                                  else "not enough evidence yet"), d.name
    assert {n: rows[n]["verdict"] for n in ACTIVE} == {
        "live-chat": "pays off", "free-shipping": "not enough evidence yet", "price-match": "does not pay off",
        "new-banner": "no data yet"}


def test_the_markdown_shows_the_initiatives(reported) -> None:
    text = (reported["md"] / "report.md").read_text()
    section = text.split("\n## Initiatives\n", 1)[1]
    rows = reported["json"]["initiatives"]
    price = rows["price-match"]
    for line in (
            "- live-chat pays off (ROI +100.0% to date, 95% interval +77.9% to +122.1%, above 0).",
            "- free-shipping: not enough evidence yet (ROI +150.0% to date, but its 95% interval -3.2% to +303.2% "
            "includes 0).",
            f"- price-match does not pay off (ROI {100 * price['roi']:+.1f}% to date, 95% interval "
            f"{100 * price['roi_lower']:+.1f}% to {100 * price['roi_upper']:+.1f}%, below 0).",
            "| live-chat | Revenue per visitor (RPV) | +25.00 USD (+250.0%) | +150,000.00 USD | +60,000.00 USD | "
            "30,000.00 USD | +100.0% | +77.9% to +122.1% | pays off |",
            "| free-shipping | Conversion rate (CVR) | +2.00 pp (+20.0%) | +5,000.00 USD | +2,500.00 USD | "
            "1,000.00 USD | +150.0% | -3.2% to +303.2% | not enough evidence yet |",
            "- new-banner: no data yet (an arm has no sessions or orders counted, so no ROI).",
            "| new-banner | Conversion rate (CVR) | - | - | - | 2,000.00 USD | - | - | no data yet |",
            "| new-banner | treated | channel=web | 2026-11-22 to now | 0 | 0 | - |",
            "| live-chat | treated | channel=app | 2026-05-25 to now | 6,000 | 600 | 35.00 USD |",
            "| live-chat | control | channel=web | the same days | 6,000 | 600 | 10.00 USD |",
            "| free-shipping | treated | device=mobile | 2026-10-01 to 2026-11-30 | 5,000 | 600 | 12.0% |",
            "| price-match | control | storefront=north-outfitters, before the start | the days before | 4,000 | 400 "
            "| 100.00 USD |",
            "![ROI of the initiatives active in 2026-W47](2026-W47-initiatives.png)"):
        assert line in section, line
    assert "old-promo" not in text and "next-quarter" not in text


def test_customer_figures_equal_promql_and_the_gauges(backfilled, reported) -> None:
    _, prometheus = backfilled
    url, data = prometheus.url, reported["json"]["customers"]

    def by_storefront(expr: str, at_ms: int) -> dict[str, float]:
        return {labels["storefront"]: value for labels, value in query(url, expr, at_ms)}

    # storefront shares: over the mature customers and ticket weeks only (the young ones do not dilute)
    shares = {(row["key"], row["storefront"]): row for row in data["shares"]}
    assert set(shares) == {("repeat_purchase", "north-outfitters"), ("post_support_conversion", "north-outfitters"),
                           ("post_support_conversion", "harbor-tea")}
    for (key, shop), row in shares.items():
        table, (part, whole) = (MATURE_COHORTS, ("cxpulse_customer_cohort_mature_repeat_customers",
                                                 "cxpulse_customer_cohort_mature_customers")) \
            if key == "repeat_purchase" else (MATURE_SUPPORT, ("cxpulse_customer_post_support_mature_converted",
                                                              "cxpulse_customer_post_support_mature_customers"))
        for at_ms, i, value_key, n_key, interval_key in ((WEEK_END_MS, 1, "value", "n", "interval"),
                                                        (WEEK_START_MS, 0, "previous", "n_previous",
                                                         "interval_previous")):
            cells = [v[i] for (s, _), v in table.items() if s == shop and v[i] is not None]
            n, successes = sum(c[0] for c in cells), sum(c[1] for c in cells)
            where = (key, shop, value_key)
            if not n:  # harbor-tea's first ticket week matured in W47
                assert row[n_key] == 0 and row[value_key] is None and row[interval_key] is None, where
                continue
            assert row[n_key] == n == by_storefront(f'sum by (storefront) ({whole}{{job="cxpulse"}})', at_ms)[shop]
            assert row[value_key] == pytest.approx(successes / n, rel=REL), where
            assert row[value_key] == pytest.approx(by_storefront(
                f'sum by (storefront) ({part}{{job="cxpulse"}}) / sum by (storefront) ({whole}{{job="cxpulse"}})',
                at_ms)[shop], rel=REL), where
            assert row[interval_key] == pytest.approx(list(wilson(successes, n)), rel=REL, abs=1e-12), where
        if row["previous"] is not None:
            assert row["change"] == pytest.approx(100 * (row["value"] - row["previous"]), rel=REL)

    revenue = {(l["storefront"], l["cohort"], l["horizon"]): v for l, v in query(
        url, 'sum by (storefront, cohort, currency, horizon) (cxpulse_customer_cohort_revenue{job="cxpulse"})',
        WEEK_END_MS)}
    customers = {(l["storefront"], l["cohort"]): v for l, v in query(
        url, 'sum by (storefront, cohort) (cxpulse_customer_cohort_customers{job="cxpulse"})', WEEK_END_MS)}
    cohorts = {(row["storefront"], row["horizon"]): row for row in data["cohort_ltv"]}
    assert sorted(cohorts) == sorted(MATURE)
    for (shop, horizon), (latest, previous) in MATURE.items():
        row, i = cohorts[shop, horizon], 2 if horizon == "30d" else 3
        assert (row["cohort"], row["previous_cohort"], row["currency"]) == (latest, previous, SHOP_CURRENCY[shop])
        for cohort, ltv_key, n_key in ((latest, "ltv", "customers"), (previous, "previous_ltv", "previous_customers")):
            if cohort is None:
                assert row[ltv_key] is None and row[n_key] is None
                continue
            figures = COHORTS[shop, cohort][1]
            assert row[n_key] == figures[0] == customers[shop, cohort]
            assert row[ltv_key] == pytest.approx(figures[i] / figures[0], rel=REL)
            assert row[ltv_key] == pytest.approx(revenue[shop, cohort, horizon] / customers[shop, cohort], rel=REL)

    nps_revenue = {(l["storefront"], l["horizon"], l["purchases"], l["nps_category"]): v for l, v in query(
        url, 'sum by (storefront, nps_category, purchases, currency, horizon) (cxpulse_customer_nps_revenue'
             '{job="cxpulse"})', WEEK_END_MS)}
    nps_customers = {(l["storefront"], l["horizon"], l["purchases"], l["nps_category"]): v for l, v in query(
        url, 'sum by (storefront, nps_category, purchases, horizon) (cxpulse_customer_nps_customers{job="cxpulse"})',
        WEEK_END_MS)}
    groups = {(row["storefront"], row["horizon"]): row for row in data["nps_ltv"]}
    assert set(groups) == set(PREMIUM)
    for (shop, horizon), row in groups.items():
        assert row["currency"] == SHOP_CURRENCY[shop]
        assert row["promoter_premium"] == pytest.approx(PREMIUM[shop, horizon], rel=REL), (shop, horizon)
        both = [b for b in ("1", "2", "3", "4+") if (shop, horizon, b, "promoter") in nps_customers
                and (shop, horizon, b, "detractor") in nps_customers]
        assert row["compared"] == both
        weighted = sum(nps_customers[shop, horizon, b, "detractor"] * nps_revenue[shop, horizon, b, "promoter"]
                       / nps_customers[shop, horizon, b, "promoter"] for b in both)
        own = sum(nps_revenue[shop, horizon, b, "detractor"] for b in both)
        assert row["promoter_premium"] == pytest.approx(weighted / own - 1, rel=REL), (shop, horizon)
        for purchases, categories in row["strata"].items():
            for category, figures in categories.items():
                n, money = NPS[shop, horizon, purchases, category]
                assert figures["customers"] == n == nps_customers[shop, horizon, purchases, category]
                assert figures["ltv"] == pytest.approx(money / n, rel=REL)
        assert sum(len(c) for c in row["strata"].values()) == sum(1 for k in NPS if k[:2] == (shop, horizon))

    groups = {(row["storefront"], row["horizon"]): row for row in data["csat_ltv"]}
    assert set(groups) == set(CSAT_PREMIUM)
    for (shop, horizon), row in groups.items():
        assert row["satisfied_premium"] == pytest.approx(CSAT_PREMIUM[shop, horizon], rel=REL)
        assert row["compared"] == ["1", "2"]
        for purchases, bands in row["strata"].items():
            for band, figures in bands.items():
                n, money = CSAT[shop, horizon, purchases, band]
                assert figures["customers"] == n and figures["ltv"] == pytest.approx(money / n, rel=REL)

    retention = {(row["storefront"], row["period"]): row for row in data["retention"]}
    assert {k: row["period_start"] for k, row in retention.items()} == RETENTION_SHOWN
    direct = {(l["storefront"], l["period"], l["period_start"]): v for l, v in query(
        url, 'sum by (storefront, period, period_start) (cxpulse_customer_retention_retained{job="cxpulse"}) / sum by '
             '(storefront, period, period_start) (cxpulse_customer_retention_customers{job="cxpulse"})', WEEK_END_MS)}
    for (shop, period), row in retention.items():
        customers, retained = RETENTION[shop, period, row["period_start"]]
        assert row["customers"] == customers
        assert row["value"] == pytest.approx(retained / customers, rel=REL)
        assert row["value"] == pytest.approx(direct[shop, period, row["period_start"]], rel=REL)
        assert row["churn"] == pytest.approx(1 - retained / customers, rel=REL)
        assert row["interval"] == pytest.approx(list(wilson(retained, customers)), rel=REL)

    support = {(row["storefront"], row["cohort"], row["currency"]): (row["orders"], row["revenue"])
               for row in data["support_revenue"]}
    assert support == {k: v for k, v in SUPPORT_REVENUE.items() if k[1] in ("2026-W46", "2026-W47")}

    days = {w.label: {(w.start + timedelta(days=i)).date().isoformat() for i in range(7)}
            for w in (WEEK, WEEK.previous())}
    expected: dict[str, list[int]] = {}
    for (shop, _, _, day), (before, after) in CHECKOUTS.items():
        for slot, label, figures in ((0, WEEK.label, after), (2, WEEK.previous().label, before)):
            if figures is not None and day in days[label]:
                row = expected.setdefault(shop, [0, 0, 0, 0])
                row[slot] += figures[0]
                row[slot + 1] += figures[1]
    checkouts = {row["storefront"]: row for row in data["checkouts"]}
    assert set(checkouts) == set(expected) == {"north-outfitters", "harbor-tea"}
    for shop, (decided, abandoned, decided_before, abandoned_before) in expected.items():
        row = checkouts[shop]
        assert (row["decided"], row["abandoned"]) == (decided, abandoned), shop
        assert (row["previous_decided"], row["previous_abandoned"]) == (decided_before, abandoned_before), shop
        assert row["value"] == pytest.approx(abandoned / decided, rel=REL)
        assert row["interval"] == pytest.approx(list(wilson(abandoned, decided)), rel=REL)
        assert row["previous"] == (pytest.approx(abandoned_before / decided_before, rel=REL) if decided_before
                                   else None)
    assert expected["north-outfitters"] == [180, 78, 180, 50]  # the worked figures above


def test_the_markdown_shows_the_customers(reported) -> None:
    text = (reported["md"] / "report.md").read_text()
    section = text.split("\n## Customers\n", 1)[1].split("\n## Initiatives\n", 1)[0]
    for line in (
            "| north-outfitters | 30 days | 2026-W42 | 63.00 EUR | 410 | 2026-W41 | 60.00 EUR | 380 | +5.0% |",
            "| north-outfitters | 90 days | 2026-W34 | 90.00 EUR | 420 | 2026-W33 | 85.00 EUR | 400 | +5.9% |",
            "| harbor-tea | 30 days | 2026-W42 | 30.00 GBP | 120 | - | - | - | - |",
            "- north-outfitters, 90-day revenue per customer in EUR: promoters are worth 23.9% more than detractors "
            "with the same number of purchases (98 promoters, 74 detractors with 1, 2 or 4+ purchases).",
            "- north-outfitters, 30-day revenue per customer in EUR: promoters are worth 14.3% more than detractors "
            "with the same number of purchases (105 promoters, 85 detractors with 1 or 2 purchases).",
            "- harbor-tea, 90-day revenue per customer in GBP: promoters are worth 25.0% less than detractors with "
            "the same number of purchases (10 promoters, 8 detractors with 1 purchase).",
            "| north-outfitters | 90 days | 1 | 50.00 EUR (60) | 45.00 EUR (40) | 40.00 EUR (50) | +25.0% |",
            "| north-outfitters | 90 days | 3 | 170.00 EUR (12) | - | - | - |",
            "- north-outfitters, 90-day revenue per customer in EUR: satisfied customers are worth 28.9% more than "
            "unsatisfied customers with the same number of purchases (120 satisfied customers, 35 unsatisfied "
            "customers with 1 or 2 purchases).",
            "| north-outfitters | 90 days | 2 | 120.00 EUR (40) | - | 90.00 EUR (10) | +33.3% |",
            "| north-outfitters | 30 days | 2026-10-01 | 500 | 30.0% | 26.1% to 34.2% | 70.0% |",
            "| north-outfitters | 90 days | 2026-06-03 | 900 | 40.0% | 36.8% to 43.2% | 60.0% |",
            "| harbor-tea | 30 days | 2026-10-01 | 80 | 25.0% | 16.8% to 35.5% | 75.0% |",
            "| north-outfitters | 180 | 43.3% | 36.3% to 50.6% | 180 | 27.8% |",
            "| harbor-tea | 20 | 25.0% | 11.2% to 46.9% | 0 | no data |",
            "| north-outfitters | 2026-W47 | 30 | 2,400.00 EUR |",
            "| harbor-tea | 2026-W47 | 5 | 150.00 GBP |"):
        assert line in section, line
    shares = {(CUSTOMER_TITLES[row["key"]], row["storefront"]): row for row in reported["json"]["customers"]["shares"]}
    table = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
             if line.startswith("| ") and line.split("|")[1].strip() in {t for t, _ in shares}]
    assert len(table) == len(shares) == 3
    for title, shop, now, interval, before, moved, sample in table:
        row = shares[title, shop]
        if row["previous"] is None:  # harbor-tea had no mature ticket week a week earlier
            assert before == "no data" and moved == "-", (title, shop)
        for shown, value in ((now, row["value"]), (before, row["previous"])):
            if value is None:
                continue
            parsed, half = displayed(shown)
            assert abs(parsed - value) <= half + 1e-12, (title, shop, shown, value)
        low, high = (displayed(x) for x in interval.split(" to "))
        assert abs(low[0] - row["interval"][0]) <= low[1] + 1e-12 and abs(high[0] - row["interval"][1]) <= high[1]
        assert moved == ("-" if row["change"] is None else f"{row['change']:+.2f} pp")
        assert sample == f"{row['n']:,.0f} / {row['n_previous']:,.0f}"


CUSTOMER_TITLES = {"repeat_purchase": "Repeat customers (2nd order within 90 days)",
                   "post_support_conversion": "Post-support conversion (order after a ticket)"}


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_charts_are_pngs_and_the_html_embeds_them(reported) -> None:
    charts = reported["json"]["charts"]
    assert set(charts) == {"daily", "movers", "initiatives"}
    page = (reported["html"] / "report.html").read_text()
    for name in charts.values():
        data = (reported["md"] / name).read_bytes()
        width, height = png_size(data)
        assert 800 <= width <= 2000 and 400 <= height <= 2000, (name, width, height)
        assert 20_000 < len(data) < 2_000_000, (name, len(data))
        embedded = base64.b64encode((reported["html"] / name).read_bytes()).decode()
        assert f'src="data:image/png;base64,{embedded}"' in page, f"{name} is not embedded in report.html"
    assert page.count("data:image/png;base64,") == 3
    assert '<img alt="Daily KPIs' in page and '<img alt="ROI of the initiatives active in 2026-W47"' in page
    assert "<li>live-chat pays off (ROI +100.0% to date" in page and "<h2>Customers</h2>" in page


def test_progress_is_one_line_per_step(reported) -> None:
    lines = reported["md_stderr"].strip().splitlines()
    assert all(line.startswith("cxpulse report: ") for line in lines), lines
    assert 5 <= len(lines) <= 8 and lines[-1].startswith("cxpulse report: wrote "), lines


def test_one_storefront(backfilled, tmp_path: Path) -> None:
    tallies, prometheus = backfilled
    done = cxpulse_report("--prometheus", prometheus.url, "--week", WEEK.label, "--storefront", "harbor-tea",
                          "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = {r["key"]: r for r in json.loads((tmp_path / "report.json").read_text())["kpis"]}
    c = tally(tallies, WEEK_START_MS, WEEK_END_MS, keep={"storefront": "harbor-tea"})
    assert rows["conversion"]["value"] == pytest.approx(c["orders_placed"] / c["sessions_started"], rel=REL)
    assert rows["revenue_per_visitor"]["labels"] == {"storefront": "harbor-tea", "currency": "GBP"}
    assert "Storefront harbor-tea, compared with 2026-W46" in (tmp_path / "report.md").read_text()
    customers = json.loads((tmp_path / "report.json").read_text())["customers"]
    assert {row["storefront"] for row in customers["shares"]} == {"harbor-tea"}
    assert [(row["storefront"], row["horizon"]) for row in customers["cohort_ltv"]] == [("harbor-tea", "30d")]
    assert [(row["storefront"], row["horizon"]) for row in customers["nps_ltv"]] == [("harbor-tea", "90d")]


def test_clear_errors(backfilled, tmp_path: Path) -> None:
    _, prometheus = backfilled
    nothing = f"http://127.0.0.1:{free_port()}"
    done = cxpulse_report("--prometheus", nothing, "--week", WEEK.label, "--out", str(tmp_path))
    assert done.returncode == 1 and f"cannot reach Prometheus at {nothing}" in done.stderr, done.stderr

    done = cxpulse_report("--prometheus", prometheus.url, "--week", WEEK.label, "--storefront", "no-such-shop",
                          "--out", str(tmp_path))
    assert done.returncode == 1, done.stderr
    assert "no data for 2026-W47" in done.stderr and "cxpulse_sessions_started_total" in done.stderr
    assert "storefront" in done.stderr and "retention" in done.stderr

    done = cxpulse_report("--prometheus", prometheus.url, "--week", "2026-W60", "--out", str(tmp_path))
    assert done.returncode == 2 and "not an ISO week: write YYYY-Www, e.g. 2026-W47" in done.stderr, done.stderr

    done = cxpulse_report("--prometheus", prometheus.url, "--week", "2099-W01", "--out", str(tmp_path))
    assert done.returncode == 1 and "has not ended yet" in done.stderr, done.stderr
    assert not list(tmp_path.iterdir()), "a failed report wrote files"


def test_the_default_week_is_the_last_complete_one() -> None:
    from datetime import datetime, timezone

    monday = datetime(2026, 11, 23, 0, 0, tzinfo=timezone.utc)
    assert Week.last_complete(monday).label == "2026-W47"
    assert Week.last_complete(monday - timedelta(seconds=1)).label == "2026-W46"
    assert Week.last_complete(datetime(2027, 1, 4, 9, tzinfo=timezone.utc)).label == "2026-W53"
