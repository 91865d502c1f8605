"""The Voice of customer dashboard (``voice-of-customer``): NPS, CSAT and CES by event-time
window, with the answers behind each, and each kind's response rate with the surveys sent behind it.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from streams.mixin import rules
from streams.mixin.dashboards.clocks import ARRIVAL, DELAY_TEXT, EVENT_GRAPH
from streams.mixin.dashboards.common import SF, _about
from streams.mixin.dashboards.layout import _dashboard, _variables
from streams.mixin.dashboards.panels import CSAT_BANDS, NPS_BANDS, _alerts, _band, _kpi_tile, _series, _targets
from streams.mixin.dashboards.queries import window_count, window_kpi


KINDS = ("nps", "csat", "ces")
RATE_NOTE = (" A ratio of two counts of the window, not a join of each answer to its survey: in a window shorter "
             "than the time customers take to answer it lags the sending and can pass 100% (answers to surveys "
             "sent before it); over an hour or more it is the share of surveys answered (docs/metrics.md, "
             "\"Survey response rates\").")


def voice_of_customer() -> dm.Dashboard:
    sfc = {"storefront": "$storefront", "channel": "$channel"}
    s, sc = ("storefront",), ("storefront", "channel")
    chan = "{{storefront}} {{channel}}"
    headline = [
        _kpi_tile("nps", sc, sfc, thresholds=NPS_BANDS, span=6,
                  note=f" Red below 0, yellow 0-30, green 30+; a fall of {rules.NPS_DROP_POINTS:g} points against last "
                       "week, beyond both hours' 95% intervals, pages (CxpulseNpsDrop)."),
        _kpi_tile("csat", sc, sfc, thresholds=CSAT_BANDS, span=6,
                  note=" Red below 70%, yellow to 80%, green above: common e-commerce benchmarks; a fall of "
                       f"{rules.CSAT_DROP:.0%} points against last week, beyond both hours' 95% intervals, pages "
                       "(CxpulseCsatDrop)."),
        _kpi_tile("csat_mean", sc, sfc, span=6, note=" On 1-5."),
        _kpi_tile("ces", sc, sfc, span=6, note=" On 1-7, lower is better."),
        *(_kpi_tile(f"{kind}_response_rate", sc, sfc, span=8, note=RATE_NOTE) for kind in KINDS),
    ]
    promoters, detractors, responses = (window_count(m, s, sfc) for m in (
        "cxpulse_nps_promoters_total", "cxpulse_nps_detractors_total", "cxpulse_nps_responses_total"))
    responses = f"({responses} > 0)"
    nps = [
        _series("NPS by channel", f"{_about('nps')}", "none", _targets((window_kpi("nps", sc, sfc), chan)),
                clock=EVENT_GRAPH, min_max=(-100, 100)),
        _series("Promoters, passives, detractors", (
            "Share of the NPS answers of each window per storefront (selected channels): promoters (9-10) / "
            "responses, passives (7-8) = 1 - promoters - detractors, detractors (0-6) / responses. NPS = 100 x "
            "(promoters - detractors)."), "percentunit",
            _targets((f"{promoters}\n/ {responses}", "{{storefront}} promoters"),
                     (f"(\n  {responses}\n  - {promoters}\n  - {detractors}\n)\n/ {responses}",
                      "{{storefront}} passives"),
                     (f"{detractors}\n/ {responses}", "{{storefront}} detractors")),
            clock=EVENT_GRAPH, stacked=True, min_max=(0, 1)),
    ]
    csat = [
        _series("CSAT by channel", f"{_about('csat')}", "percentunit", _targets((window_kpi("csat", sc, sfc), chan)),
                clock=EVENT_GRAPH, span=8),
        _series("CSAT mean by channel", f"{_about('csat_mean')}", "none",
                _targets((window_kpi("csat_mean", sc, sfc), chan)), clock=EVENT_GRAPH, span=8, min_max=(1, 5)),
        _series("CES by channel", f"{_about('ces')} Lower is better.", "none",
                _targets((window_kpi("ces", sc, sfc), chan)), clock=EVENT_GRAPH, span=8, min_max=(1, 7)),
        _series("Answers per $window window by channel", "NPS, CSAT and CES answers of each window: the denominators "
                "of the scores above.", "short",
                _targets(*((window_count(m, sc, sfc), f"{chan} {kind}")
                           for kind, m in (("NPS", "cxpulse_nps_responses_total"),
                                           ("CSAT", "cxpulse_csat_responses_total"),
                                           ("CES", "cxpulse_ces_responses_total")))),
                clock=EVENT_GRAPH, span=24, bars=True),
    ]
    rates = [
        _series("Response rate by channel", (
            "Answers / surveys sent of each kind (NPS, CSAT, CES) in each window, per storefront and channel "
            "(recorded as `storefront_channel:cxpulse_<kind>_response_rate:ratio_window<window>`). Beside the "
            "scores above: a score that falls while its response rate holds is the customers; one that moves as "
            f"the response rate falls may be who still answers.{RATE_NOTE}"), "percentunit",
            _targets(*((window_kpi(f"{kind}_response_rate", sc, sfc), f"{chan} {kind.upper()}") for kind in KINDS)),
            clock=EVENT_GRAPH),
        _series("Surveys sent per $window window by channel", "NPS, CSAT and CES surveys sent (survey.sent) of "
                "each window: the denominators of the response rates, their sample size n.", "short",
                _targets(*((window_count(f"cxpulse_{kind}_surveys_sent_total", sc, sfc), f"{chan} {kind.upper()}")
                           for kind in KINDS)),
                clock=EVENT_GRAPH, bars=True),
    ]
    arrivals = _targets(*((f"sum(storefront:cxpulse_{kind}_responses:rate5m{{{SF}}}) * 60", f"{kind.upper()} / min")
                          for kind in ("nps", "csat", "ces")))
    return _dashboard(
        "voice-of-customer", "Voice of customer",
        "What customers say, by event-time window: NPS with its promoters, passives and detractors, CSAT share and "
        "mean, CES, and the number of answers behind each; and how many answer: each kind's response rate, with "
        "the surveys sent behind it.",
        _variables("storefront", "channel", "window"),
        [
            (f"Last complete $window window of event time (ended ~{DELAY_TEXT} ago), selection pooled", headline),
            ("NPS per $window window", nps),
            ("CSAT and CES per $window window", csat),
            ("Response rates per $window window: answers / surveys sent", rates),
            ("NPS and CSAT per $window window with their 95% interval (all channels): $storefront",
             [_band("nps", span=12, baseline=True), _band("csat", span=12, baseline=True)], "storefront"),
            ("Response rates per $window window with their 95% interval (all channels): $storefront",
             [_band(f"{kind}_response_rate", span=8) for kind in KINDS], "storefront"),
            ("Live, by arrival time (not windowed)", [_series(
                "Survey answers per minute, by arrival time",
                "NPS, CSAT and CES answers per minute over the selected storefronts (all channels), as the workers "
                "count them (recording rules `storefront:cxpulse_<kind>_responses:rate5m`, x 60).", "short",
                arrivals, clock=ARRIVAL, span=24)]),
            ("Alerts", [_alerts(["CxpulseNpsDrop", "CxpulseCsatDrop", "CxpulseEventsSilent", "CxpulseWindowsBehind"])]),
        ],
    )
