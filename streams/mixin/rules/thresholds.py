"""The alert thresholds, in one place: the alerts (``alerts.py``) page on them and the
dashboards colour their tiles and draw their dashed lines from them (docs/alerts.md explains
each). Also the interval level every recorded bound uses.

    >>> CONVERSION_DROP, MIN_SESSIONS_PER_HOUR
    (0.25, 200)
"""

from __future__ import annotations

from streams.mixin.intervals import Z95

# KPI drops compare the last hour with the same hour a week ago: shoppers and
# support queues follow a weekly rhythm, so last week's Tuesday 14:00 is the
# fair baseline for this Tuesday 14:00 (yesterday or an hour ago is not).
CONVERSION_DROP = 0.25  # relative fall of CVR vs last week that pages
# A sudden collapse (checkout broken by a deploy) pages within minutes and needs no
# history: CVR over the last 2 minutes below half of the 15 minutes before them,
# when at least 30 orders were expected (Poisson: a real halving is > 2.7 sigma).
COLLAPSE_FACTOR = 0.5
COLLAPSE_MIN_EXPECTED_ORDERS = 30
# A small shop (50 orders a day) never expects 30 orders in two minutes, nor 200 sessions in an hour:
# its pages read longer windows. No order at all in a window where at least ORDERS_STOPPED_LAMBDA were
# expected pages: by Poisson, P(0 orders | lambda expected) = exp(-lambda) < 0.1% from lambda = ln(1000)
# = 6.9. Expected = this window's sessions x the conversion of the same window last week, taken at the
# lower end of its 95% Wilson interval, so an unusually good last week does not make a normal lull
# look impossible (that needs ~15 orders last week in the window: at 50 a day, 6 daytime hours).
ORDERS_STOPPED_P = 0.001
ORDERS_STOPPED_LAMBDA = 6.907755  # -ln(ORDERS_STOPPED_P)
ORDERS_STOPPED_WINDOWS: tuple[str, ...] = ("1h", "6h", "24h")
LONG_DROP_FOR = {"1h": "15m", "6h": "30m", "24h": "1h"}  # conversion drop over each window
# The drop alert of each window (alert names are letters only), and the window it takes over from: a
# longer window pages only where the shorter one's sample guard fails, so a big shop gets one page.
LONG_DROPS: dict[str, tuple[str, str]] = {"6h": ("CxpulseConversionDropSixHours", "1h"),
                                          "24h": ("CxpulseConversionDropDay", "6h")}
RPV_DROP = 0.25  # relative fall of revenue per visitor vs last week
MIN_SESSIONS_PER_HOUR = 200  # below this, one order more or less moves CVR by >0.5 points
NPS_DROP_POINTS = 15.0  # fall on the -100..100 scale vs last week
CSAT_DROP = 0.10  # fall of the satisfied share (0-1) vs last week
MIN_SURVEY_RESPONSES_PER_HOUR = 30  # a 30-answer NPS has a ~+-27 point 95% interval already
# Beyond the noise: a drop alert on a share or on NPS (conversion, CSAT, NPS) also needs this
# hour's 95% interval to lie wholly below last week's (this hour's upper bound < last week's lower
# bound), which implies the value itself is below last week's lower bound too. Two 95% intervals
# of similar width part only when the values differ by more than 2 x 1.96 SE = 2.77 SE of the
# difference: by sampling noise alone that happens in ~0.3% of independent hours (one-sided),
# under 1% while the two hours' volumes are within 10x of each other (docs/alerts.md). `for`
# and the thresholds above (the smallest drop worth a page, which at high volume is the binding
# condition) cut that further. The old rule, thresholds alone, paged on noise in ~1 hour in 4 at
# the volume guard (6 orders expected: 4 or fewer is a 25% drop, P = 0.29).
INTERVAL_Z = Z95  # every recorded interval is 95%: the bands the dashboards draw, the ones alerts compare
RESPONSE_SPIKE_FACTOR = 1.5  # p90 this hour vs p90 same hour last week
FIRST_RESPONSE_P90_FLOOR_S = 900  # no page while the p90 first response stays under 15 min
RESOLUTION_P90_FLOOR_S = 4 * 3600  # ... or the p90 resolution under 4 h
MIN_TICKET_TIMES_PER_HOUR = 20  # first responses / resolutions measured in the hour
SILENT_WINDOW = "30m"  # no events of a family for this long ...
SILENT_MIN_EVENTS = 20  # ... while it had at least this many in the same span an hour or a week ago
WINDOWS_BEHIND_MARGIN_S = 30  # complete-window lag beyond the rules' DELAY that pages (2 minutes on)
CONSUMER_LAG_MAX_MESSAGES = 10_000  # per family, summed over partitions
FRESHNESS_P99_MAX_S = 30.0  # event in Kafka -> visible on /metrics (histogram tops out at 60 s)
DEAD_LETTER_RATIO_MAX = 0.05  # rejected / events read
LATE_RATIO_MAX = 0.05  # late / events read
MIN_EVENTS_READ_5M = 100  # below this, a handful of bad events is not a rate worth a page
