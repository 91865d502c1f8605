"""The Support dashboard (``support``): first-response and resolution times, first-contact
resolution, reopen and ticket-to-order rates, by support channel, and why customers contact
support: the same KPIs by contact reason (``reasons``) and by product category (``categories``).
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from streams.mixin import rules
from streams.mixin.dashboards.clocks import ARRIVAL, DELAY_TEXT, EVENT_GRAPH
from streams.mixin.dashboards.common import SF, _about, _help
from streams.mixin.dashboards.layout import _dashboard, _variables
from streams.mixin.dashboards.panels import FCR_BANDS, _alerts, _band, _kpi_tile, _series, _steps, _targets
from streams.mixin.dashboards.queries import window_count, window_kpi


def support() -> dm.Dashboard:
    ssc = {"storefront": "$storefront", "support_channel": "$support_channel"}
    level = ("storefront", "support_channel")
    by = "{{storefront}} {{support_channel}}"
    frt_floor = _steps((None, "green"), (rules.FIRST_RESPONSE_P90_FLOOR_S, "red"))
    ttr_floor = _steps((None, "green"), (rules.RESOLUTION_P90_FLOOR_S, "red"))
    frt_note = (f" Red above {rules.FIRST_RESPONSE_P90_FLOOR_S // 60} min, the floor of CxpulseFirstResponseSlow. "
                "Quantiles come from the merge stage's sketch of the window (within 1%), not histogram interpolation.")
    ttr_note = (f" Red above {rules.RESOLUTION_P90_FLOOR_S // 3600} h, the floor of CxpulseResolutionSlow.")
    headline = [
        _kpi_tile("first_response_p50", level, ssc),
        _kpi_tile("first_response_p90", level, ssc, thresholds=frt_floor, note=frt_note),
        _kpi_tile("resolution_p50", level, ssc),
        _kpi_tile("resolution_p90", level, ssc, thresholds=ttr_floor, note=ttr_note),
        _kpi_tile("first_contact_resolution", level, ssc, thresholds=FCR_BANDS,
                  note=f" {_help('cxpulse_tickets_resolved_one_touch_total')} Red below 60%, yellow to 70%, green "
                       "above: around 70% is the usual contact-centre average (no alert judges FCR)."),
        _kpi_tile("ticket_to_order", ("storefront",), ssc,
                  note=" All support channels: orders carry none, so this tile ignores the support channel filter."),
    ]
    quantiles = {}
    for kind in ("first_response", "resolution"):
        quantiles[kind] = _targets(*((window_kpi(f"{kind}_{p}", level, ssc), f"{by} {p}") for p in ("p50", "p90")))
    times = [
        _series("First-response time p50 / p90 by support channel",
                f"{_help('cxpulse_ticket_first_response_seconds')} Median and 90th percentile of each window, from the "
                "merge stage's sketch (within 1%). Dashed line: the alert floor.", "s", quantiles["first_response"],
                thresholds=_steps((None, "transparent"), (rules.FIRST_RESPONSE_P90_FLOOR_S, "red")),
                dashed=".* p50", clock=EVENT_GRAPH),
        _series("Resolution time p50 / p90 by support channel",
                f"{_help('cxpulse_ticket_resolution_seconds')} Median and 90th percentile of each window. Dashed line: "
                "the alert floor.", "s", quantiles["resolution"],
                thresholds=_steps((None, "transparent"), (rules.RESOLUTION_P90_FLOOR_S, "red")),
                dashed=".* p50", clock=EVENT_GRAPH),
    ]
    business_note = (" Only the part of each wait inside the storefront's opening hours counts (its calendar in "
                     "CXPULSE_BUSINESS_HOURS: time zone, hours per weekday, holidays); storefronts without a calendar "
                     "have none.")
    business = [
        *(_kpi_tile(f"{kind}_business_{p}", level, ssc, note=business_note)
          for kind in ("first_response", "resolution") for p in ("p50", "p90")),
        _series("Samples with a calendar per $window window",
                "First responses and resolutions measured in business hours: the sample behind the quantiles "
                "beside.", "short", _targets(
                    (window_count("cxpulse_ticket_first_response_business_seconds_count", level, ssc),
                     f"{by} first responses"),
                    (window_count("cxpulse_ticket_resolution_business_seconds_count", level, ssc), f"{by} resolved")),
                clock=EVENT_GRAPH, span=8),
        *(_series(f"{name} in business hours p50 / p90 by support channel",
                  f"{_help(f'cxpulse_ticket_{kind}_business_seconds')} Median and 90th percentile of each window, "
                  "from the merge stage's sketch (within 1%). Beside the calendar-time graph above: a queue that "
                  "only grows overnight shows there, not here.", "s",
                  _targets(*((window_kpi(f"{kind}_business_{p}", level, ssc), f"{by} {p}") for p in ("p50", "p90"))),
                  dashed=".* p50", clock=EVENT_GRAPH, span=8)
          for kind, name in (("first_response", "First-response time"), ("resolution", "Resolution time"))),
    ]
    created = window_count("cxpulse_tickets_created_total", level, ssc)
    reopened = window_count("cxpulse_tickets_reopened_total", level, ssc)
    volume = [
        _series("Tickets created per $window window by support channel", _help("cxpulse_tickets_created_total"),
                "short", _targets((created, by)), clock=EVENT_GRAPH, span=8, bars=True),
        _series("FCR by support channel", f"{_about('first_contact_resolution')}", "percentunit",
                _targets((window_kpi("first_contact_resolution", level, ssc), by)), clock=EVENT_GRAPH, span=8),
        _series("Reopen rate by support channel", "Reopen rate = tickets reopened / tickets created in the window, "
                f"by support channel (one family, so both count the same window). "
                f"{_help('cxpulse_tickets_reopened_total')}", "percentunit",
                _targets((f"{reopened}\n/ ({created} > 0)", by)), clock=EVENT_GRAPH, span=8),
        _series("Ticket-to-order rate", f"{_about('ticket_to_order')} Per storefront (orders carry no support "
                "channel), only where the window is complete in both the ticket and the order family.",
                "percentunit", _targets((window_kpi("ticket_to_order", ("storefront",), ssc), "{{storefront}}")),
                clock=EVENT_GRAPH, span=12),
        _series("Resolutions and first responses per $window window (TTR, FCR and FRT sample)",
                "Resolutions of tickets whose creation cxpulse saw (the denominator of FCR and the sample behind TTR), "
                f"first responses (the sample behind FRT), and {_help('cxpulse_tickets_resolved_unmatched_total')}",
                "short", _targets(
                    (window_count("cxpulse_ticket_resolution_seconds_count", level, ssc), f"{by} resolved"),
                    (window_count("cxpulse_ticket_first_response_seconds_count", level, ssc), f"{by} first responses"),
                    (window_count("cxpulse_tickets_resolved_unmatched_total", level, ssc), f"{by} unmatched")),
                clock=EVENT_GRAPH, span=12),
    ]
    return _dashboard(
        "support", "Support",
        "Support desk speed and quality by event-time window: first-response and resolution times (median and p90, "
        "in calendar time and in business hours), "
        "first-contact resolution, reopen and ticket-to-order rates, by support channel, by contact reason and by "
        "product category.",
        _variables("storefront", "support_channel", "reason", "product_category", "window"),
        [
            (f"Last complete $window window of event time (ended ~{DELAY_TEXT} ago), selection pooled", headline),
            ("Response and resolution times per $window window", times),
            ("In business hours: the same times counting only the storefront's opening hours, per $window window",
             business),
            ("Volume and quality per $window window", volume),
            ("Why customers contact support: by contact reason, per $window window (all support channels)",
             reasons()),
            ("What the tickets are about: by product category, per $window window (tickets with a category)",
             categories()),
            ("FCR per $window window with its 95% interval (all support channels): $storefront",
             [_band("first_contact_resolution", span=24)], "storefront"),
            ("Live, by arrival time (not windowed)", [_series(
                "Tickets created per minute, by arrival time",
                "Tickets created per minute over the selected storefronts (all support channels), as the workers "
                "count them (recording rule `storefront:cxpulse_tickets_created:rate5m`, x 60): a surge shows here "
                "minutes before its windows complete.", "short",
                _targets((f"sum by (storefront) (storefront:cxpulse_tickets_created:rate5m{{{SF}}}) * 60",
                          "{{storefront}}")), clock=ARRIVAL, span=24)]),
            ("Alerts", [_alerts(["CxpulseFirstResponseSlow", "CxpulseResolutionSlow", "CxpulseEventsSilent",
                                 "CxpulseWindowsBehind"])]),
        ],
    )


def reasons() -> list:
    """The support KPIs by contact reason (docs/metrics.md rule 13), over every support channel: what
    customers get in touch about, how often per order, and how fast and well each reason is served."""
    return _breakdown(
        "reason", "reason",
        " Per storefront and reason over every support channel; `unknown`: tickets whose ticket.created carried no "
        "reason.",
        " A surge of one reason (say shipping) with the others flat points at its cause.",
        "orders carry no reason), so the reasons add up to the storefront's rate")


def categories() -> list:
    """The support KPIs by product category (docs/metrics.md rule 17), over every support channel and reason:
    which products customers get in touch about, how often per order, and how fast and well each is served."""
    return _breakdown(
        "product_category", "product category",
        " Per storefront and product category over every support channel and reason; only tickets whose events "
        "named a category (from the event that named it on), so the categories add up to the tickets with one.",
        " A surge in one category (a faulty batch) with the others flat points at the product.",
        "orders carry no category)")


def _breakdown(label: str, noun: str, note: str, surge: str, orders: str) -> list:
    """The row of the ticket KPIs per storefront and ``label`` (a reason, a product category): tickets created,
    ticket-to-order, FRT and TTR p90, FCR, and the sample behind each."""
    filters = {"storefront": "$storefront", label: f"${label}"}
    level = ("storefront", label)
    by = f"{{{{storefront}}}} {{{{{label}}}}}"
    created = window_count("cxpulse_tickets_created_total", level, filters)
    return [
        _series(f"Tickets created per $window window by {noun}", _help("cxpulse_tickets_created_total") + note + surge,
                "short", _targets((created, by)), clock=EVENT_GRAPH, span=12, bars=True, stacked=True),
        _series(f"Ticket-to-order rate by {noun}", f"{_about('ticket_to_order')} Here the {noun}'s tickets / every "
                f"order of the storefront ({orders}; only where the window is complete in both the ticket and the "
                "order family." + note,
                "percentunit", _targets((window_kpi("ticket_to_order", level, filters), by)), clock=EVENT_GRAPH,
                span=12),
        _series(f"First-response time p90 by {noun}",
                f"{_help('cxpulse_ticket_first_response_seconds')} 90th percentile of each window per {noun}, from "
                "the merge stage's sketch over every support channel (within 1%)." + note, "s",
                _targets((window_kpi("first_response_p90", level, filters), f"{by} p90")),
                thresholds=_steps((None, "transparent"), (rules.FIRST_RESPONSE_P90_FLOOR_S, "red")),
                clock=EVENT_GRAPH, span=8),
        _series(f"Resolution time p90 by {noun}",
                f"{_help('cxpulse_ticket_resolution_seconds')} 90th percentile of each window per {noun}." + note, "s",
                _targets((window_kpi("resolution_p90", level, filters), f"{by} p90")),
                thresholds=_steps((None, "transparent"), (rules.RESOLUTION_P90_FLOOR_S, "red")),
                clock=EVENT_GRAPH, span=8),
        _series(f"FCR by {noun}", _about("first_contact_resolution") + note, "percentunit",
                _targets((window_kpi("first_contact_resolution", level, filters), by)), clock=EVENT_GRAPH, span=8),
        _series(f"Sample size by {noun}: tickets, first responses and resolutions per $window window",
                f"The n behind each {noun}'s figures in the same window: tickets created (ticket-to-order), first "
                "responses (FRT) and resolutions of tickets whose creation cxpulse saw (TTR, and FCR's denominator). "
                f"A {noun} with a handful of tickets swings from window to window." + note, "short", _targets(
                    (created, f"{by} created"),
                    (window_count("cxpulse_ticket_first_response_seconds_count", level, filters),
                     f"{by} first responses"),
                    (window_count("cxpulse_ticket_resolution_seconds_count", level, filters), f"{by} resolved")),
                clock=EVENT_GRAPH, span=24),
    ]
