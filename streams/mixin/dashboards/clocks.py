"""Which clock a number counts by: every panel's description ends with one of these texts,
rendered from the settings ``rules.DELAY`` is rendered from (docs/dashboards.md).

    >>> _about_time(210_000), _about_time(30_000)
    ('3.5 min', '30 s')
"""

from __future__ import annotations

from streams.config import Settings, parse_duration_ms
from streams.mixin import rules

# Every panel's description ends with one of these, so a reader knows whether the number
# counts by event time (when it happened) or by arrival time (when a worker processed it)
# and what waiting for late events costs (STYLE.md, "Time: say which one").
_SETTINGS = Settings.from_env()  # the same settings rules.DELAY is rendered from
DELAY_S = parse_duration_ms(rules.DELAY) // 1000


def _about_time(ms: int) -> str:
    """``210_000`` -> ``3.5 min``, ``30_000`` -> ``30 s``: a delay as an ops lead says it."""
    seconds = ms / 1000
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


DELAY_TEXT = _about_time(DELAY_S * 1000)
_WAIT = (f"the grace period of {_about_time(_SETTINGS.grace_ms)} for late events, up to "
         f"{_about_time(_SETTINGS.idle_partition_ms)} more while a source partition is quiet, and the "
         f"{_about_time(_SETTINGS.window_ms)} step in which windows complete")
EVENT_LAST = (f"By event time: the last complete $window window of events, which the recording rules read "
              f"{rules.DELAY} behind now ({_WAIT}), so it ended ~{DELAY_TEXT} ago. Events that arrive up to the grace "
              "period late are in it; later ones are counted as late and left out.")
EVENT_GRAPH = (f"By event time: one point per whole $window window of events, drawn at the window's end (step "
               f"$window; over a range too long for one point per window, every n-th window). A window appears once "
               f"every source partition has closed it, ~{DELAY_TEXT} after it ends ({_WAIT}): the newest points are "
               "missing until then, never partial.")
EVENT_BARS = (f"By event time: the newest $window window complete in every family it reads (trailing windows end "
              f"every minute; a window is complete ~{DELAY_TEXT} after it ends: {_WAIT}).")
EVENT_LAG = (f"By event time against the wall clock: normally about {DELAY_TEXT} ({_WAIT}); more means windows "
             "wait on a partition, and every event-time KPI shows an older window.")
EVENT_CLOSED = (f"By event time against the wall clock: normally the grace period of "
                f"{_about_time(_SETTINGS.grace_ms)} plus up to the {_about_time(_SETTINGS.window_ms)} step; a quiet "
                f"partition's follows the others' after {_about_time(_SETTINGS.idle_partition_ms)}.")
EVENT_WATERMARK = ("By event time against the wall clock: the newest event time a partition has seen, so producers' "
                   "own delay and quiet periods; the grace period is not in it (windows close a grace period later: "
                   "see the completeness row).")
ARRIVAL = ("By arrival time: rate() of the workers' counters over 5 minutes, as events are processed, about a "
           "scrape behind. No grace period: nothing waits for late events, so a backlog or a replay shows when it is "
           "worked off, not when the events happened.")
ARRIVAL_NOW = ("By arrival time: the workers' own state as last scraped (processing time, not the events' time); the "
               "grace period adds no delay here.")
CUSTOMER_CLOCK = ("By event time: a cohort is the ISO week (UTC) of the customers' own events (first order, "
                  "ticket), and a fact counts as soon as the window stage has counted its event, without waiting for "
                  "the grace period: the newest cohorts still grow.")
CHECKOUT_CLOCK = ("By event time: a day is the UTC date of the session's first checkout, and a session counts as "
                  "soon as the window stage has counted its checkout, without waiting for the grace period; it is "
                  "decided when its order arrives, or once the customer partition's watermark (its newest fact "
                  "time) has passed the horizon plus the grace period: the newest day still grows.")
INITIATIVE_CLOCK = ("By event time: each arm sums the UTC days its events happened on, updated as the workers count "
                    "them, without waiting for the grace period: the current day still grows.")
ALERTS_CLOCK = (f"KPI alerts count by event time (the last complete hour, ~{DELAY_TEXT} behind: the grace period of "
                f"{_about_time(_SETTINGS.grace_ms)} included); pipeline alerts count by arrival time (rates of the "
                "workers' counters, no grace period delay).")
