"""The Revenue & funnel dashboard (``revenue-funnel``): where visitors drop out and what they
spend, by event-time window.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.models import dashboard as dm

from streams.mixin import rules
from streams.mixin.dashboards.clocks import ARRIVAL, CHECKOUT_CLOCK, DELAY_TEXT, EVENT_BARS, EVENT_GRAPH, EVENT_LAST
from streams.mixin.dashboards.common import SF, _about, _help
from streams.mixin.dashboards.layout import _dashboard, _variables
from streams.mixin.dashboards.panels import (CURRENCY_LEGEND, Column, _alerts, _band, _bars, _kpi_tile, _money, _series,
                                             _stat, _steps, _table, _target, _targets)
from streams.catalog import WINDOW_STOREFRONT_VISITORS
from streams.mixin.dashboards.common import W
from streams.mixin.dashboards.queries import at_window_ends, complete_in, pooled_total, window_count, window_kpi
from streams.mixin.rules import _indent

FUNNEL: tuple[tuple[str, str], ...] = (
    ("1 sessions", "cxpulse_sessions_started_total"),
    ("2 product views", "cxpulse_product_views_total"),
    ("3 added to cart", "cxpulse_carts_added_total"),
    ("4 checkouts", "cxpulse_checkouts_started_total"),
    ("5 orders", "cxpulse_orders_placed_total"),
)
# The same funnel per session: each session counted once at each step it reached (docs/metrics.md, rule 15).
SESSION_FUNNEL: tuple[tuple[str, str], ...] = (
    ("1 sessions", "cxpulse_sessions_started_total"),
    ("2 with a product view", "cxpulse_sessions_viewed_total"),
    ("3 with a cart add", "cxpulse_sessions_carted_total"),
    ("4 with a checkout", "cxpulse_sessions_checked_out_total"),
    ("5 orders", "cxpulse_orders_placed_total"),
)
STEP_RATES = (("view_rate", "view"), ("add_to_cart_rate", "cart"), ("checkout_rate", "checkout"))
# The dashboard's filters, and the levels and legends its panels share.
SFC = {"storefront": "$storefront", "channel": "$channel"}
MONEY_FILTERS = {**SFC, "currency": "$currency"}
SC, SCC = ("storefront", "channel"), ("storefront", "channel", "currency")
CHAN, CHAN_CUR = "{{storefront}} {{channel}}", "{{storefront}} {{channel}} {{currency}}"
# Recorded series of rules.customer_rules() for the checkout join (docs/customers.md, "Checkouts").
ABANDONMENT = "storefront_day:cxpulse_checkout_abandonment:ratio"
DECIDED = "storefront_day:cxpulse_checkout_sessions_decided:sum"
CHECKOUTS = "storefront_day:cxpulse_checkout_sessions:sum"
SEGMENT_ABANDONMENT = "storefront_channel_device_day:cxpulse_checkout_abandonment:ratio"
SEGMENT_DECIDED = "storefront_channel_device_day:cxpulse_checkout_sessions_decided:sum"
SEGMENT_TO_ORDER = "storefront_channel_device_day:cxpulse_checkout_to_order:ratio"
JOIN_TEXT = ("A checkout session is a session with a `session.checkout_started`; it is abandoned when no order naming "
             "the session (`order.placed` with its `session_id`) was placed before its first checkout + "
             "CXPULSE_CHECKOUT_HORIZON (1h), and decided once it ordered or that deadline and the grace have passed. "
             "Orders without a checkout count nowhere, unlike the window estimate above.")


def _step(metric: str) -> str:
    # both families complete for the storefront, so every step counts the same window
    per_storefront = window_count(metric, ("storefront",), SFC) + complete_in(("session", "order"), SFC)
    return f"sum (\n{_indent(per_storefront)}\n)"


def revenue_funnel() -> dm.Dashboard:
    arrivals = _targets((f"sum(storefront:cxpulse_sessions_started:rate5m{{{SF}}}) * 60", "sessions / min"),
                        (f"sum(storefront:cxpulse_orders_placed:rate5m{{{SF}}}) * 60", "orders / min"))
    return _dashboard(
        "revenue-funnel", "Revenue & funnel",
        "Where visitors drop out and what they spend, by event-time window: funnel, conversion, order value per "
        "currency, refunds, returns and repeat purchases, by channel and device.",
        _variables("storefront", "channel", "currency", "window"),
        [
            (f"Last complete $window window of event time (ended ~{DELAY_TEXT} ago), selection pooled", _headline()),
            ("Money in $currency: last complete $window window, selection pooled", _money_tiles(), "currency"),
            ("Funnel", _funnel()),
            ("Conversion per $window window", _conversion()),
            ("Order value per $window window (per currency)", _order_value()),
            ("After the order, per $window window", _after_order()),
            ("Cart abandonment by session (the checkout join), per day of the first checkout: $storefront",
             _checkout_join(), "storefront"),
            ("Funnel step rates per session, per $window window with their 95% interval (all channels): $storefront",
             [_band(key, span=8) for key, _ in STEP_RATES], "storefront"),
            ("Shares per $window window with their 95% interval (all channels): $storefront",
             [_band(key, span=6)
              for key in ("conversion", "cart_abandonment", "refund_return_rate", "repeat_purchase")],
             "storefront"),
            ("Live, by arrival time (not windowed)", [_series(
                "Sessions and orders per minute, by arrival time",
                "Sessions started and orders placed per minute over the selected storefronts (all channels: the "
                "arrival-time rules keep only the storefront), as the workers count them (recording rules "
                "`storefront:cxpulse_sessions_started:rate5m`, `storefront:cxpulse_orders_placed:rate5m`, x 60).",
                "short", arrivals, clock=ARRIVAL, span=24)]),
            ("Alerts", [_alerts(["CxpulseConversionDrop", "CxpulseConversionCollapse", "CxpulseConversionDropSixHours",
                                 "CxpulseConversionDropDay", "CxpulseOrdersStopped", "CxpulseRevenuePerVisitorDrop",
                                 "CxpulseEventsSilent", "CxpulseWindowsBehind"])]),
        ],
    )


def _headline() -> list[stat.Panel]:
    """The shares of the last complete window, pooled over the selection."""
    return [
        _kpi_tile(key, SC, SFC, span=6)
        for key in ("conversion", "cart_abandonment", "refund_return_rate", "repeat_purchase")
    ]


def _money_tiles() -> list[stat.Panel]:
    """RPV, AOV and revenue of the last complete window in one currency (the row repeats per currency)."""
    return [
        _kpi_tile("revenue_per_visitor", SCC, MONEY_FILTERS, span=8,
                  note=" Sessions count in RPV's n for the storefronts that sold in $currency in the window."),
        _kpi_tile("average_order_value", SCC, MONEY_FILTERS, span=8),
        _money(_stat("Revenue in $currency · last complete $window",
                     f"{_help('cxpulse_order_revenue_total')} Summed over the selected storefronts and channels: AOV x "
                     "orders of the last complete $window window, from the same recording rules as the tiles beside "
                     "it.", "none",
                     [_target(pooled_total("average_order_value", SCC, MONEY_FILTERS)[0], CURRENCY_LEGEND)],
                     clock=EVENT_LAST, span=8, decimals=2)),
    ]


def _funnel() -> list[bargauge.Panel | timeseries.Panel]:
    """The five steps from session to order, counted over the same windows."""
    steps = [(_step(metric), name) for name, metric in FUNNEL]
    funnel_text = ("Sessions started -> product views -> products added to a cart -> checkouts started -> orders "
                   "placed in the selected storefronts and channels, each a window's count, only where the window is "
                   "complete in both the session and the order family (so all five count the same window). Views and "
                   "carts count events, not sessions, so a step can exceed the one before it.")
    sessions = [(_step(metric), name) for name, metric in SESSION_FUNNEL]
    session_text = ("Sessions started -> sessions with a product view -> with a cart add -> with a checkout (each "
                    "session counted once per step, in the window of its first event of that step) -> orders placed, "
                    "in the selected storefronts and channels, where the window is complete in both families. A step "
                    "below the one before is a drop-out; the rates between them are the panels below.")
    by = {"channel": (SC, CHAN), "device": (("storefront", "device"), "{{storefront}} {{device}}")}
    rates = [
        _series(f"Funnel step rates by {label}", f"{_about('view_rate')} {_about('add_to_cart_rate')} "
                f"{_about('checkout_rate')} Per storefront and {label}.", "percentunit",
                _targets(*((window_kpi(key, level, SFC), f"{legend} {step}") for key, step in STEP_RATES)),
                clock=EVENT_GRAPH, span=12, min_max=(0, 1))
        for label, (level, legend) in by.items()]
    return [
        _bars("Funnel, last complete $window window", funnel_text, _targets(*steps), clock=EVENT_BARS),
        _series("Funnel per $window window", funnel_text, "short", _targets(*steps), clock=EVENT_GRAPH),
        _bars("Funnel by session, last complete $window window", session_text, _targets(*sessions),
              clock=EVENT_BARS),
        _series("Funnel by session per $window window", session_text, "short", _targets(*sessions),
                clock=EVENT_GRAPH),
        *rates,
    ]


def _conversion() -> list[timeseries.Panel]:
    """Conversion and cart abandonment per window, and the sessions and orders behind them."""
    return [
        _series("CVR by channel", f"{_about('conversion')} Per storefront and channel.", "percentunit",
                _targets((window_kpi("conversion", SC, SFC), CHAN)), clock=EVENT_GRAPH, span=8),
        _series("CVR by device", f"{_about('conversion')} Per storefront and device (orders without a device count "
                "as `unknown`).", "percentunit",
                _targets((window_kpi("conversion", ("storefront", "device"), SFC), "{{storefront}} {{device}}")),
                clock=EVENT_GRAPH, span=8),
        _series("Cart abandonment by channel", f"{_about('cart_abandonment')}", "percentunit",
                _targets((window_kpi("cart_abandonment", SC, SFC), CHAN)), clock=EVENT_GRAPH, span=8),
        _series("CVR per visitor and per session", (
            "Orders placed / distinct visitors of the storefront (`visitor_id` of the window's session starts, a "
            "returning visitor once; `storefront:cxpulse_visitor_conversion:ratio_window5m`), the CX guide's "
            "conversion rate, beside orders / sessions started (CVR). A visitor with several sessions in the window "
            "counts once, so the visitor rate is the higher one; the gap is the visitors' return. Per storefront: "
            "distinct visitors do not add up over channels or windows (docs/metrics.md, rule 16)."), "percentunit",
            _targets((at_window_ends(rules.visitor_conversion_expr(W), {"storefront": "$storefront"}),
                      "{{storefront}} per visitor"),
                     (window_kpi("conversion", ("storefront",), {"storefront": "$storefront"}),
                      "{{storefront}} per session")),
            clock=EVENT_GRAPH, span=12),
        _series("Distinct visitors and sessions per $window window", (
            "Distinct visitors (`cxpulse_window_storefront_visitors`: a visitor with several sessions in the window "
            "once) and sessions started per storefront: the denominators of CVR per visitor and per session."),
            "short", _targets((at_window_ends(f'sum by (storefront) (last_over_time({WINDOW_STOREFRONT_VISITORS}'
                                              f'{{window="{W}"}}[{rules.WINDOW_RANGE}]))', {"storefront": "$storefront"}),
                               "{{storefront}} visitors"),
                              (window_count("cxpulse_sessions_started_total", ("storefront",),
                                            {"storefront": "$storefront"}), "{{storefront}} sessions")),
            clock=EVENT_GRAPH, span=12, bars=True),
        _series("Sessions per $window window by channel (CVR and RPV sample)",
                f"{_help('cxpulse_sessions_started_total')} The denominator of CVR and RPV. The conversion and RPV "
                f"alerts need {rules.MIN_SESSIONS_PER_HOUR} in the hour (dashed line, for 1h windows).", "short",
                _targets((window_count("cxpulse_sessions_started_total", SC, SFC), CHAN)),
                thresholds=_steps((None, "transparent"), (rules.MIN_SESSIONS_PER_HOUR, "yellow")),
                clock=EVENT_GRAPH, span=12, bars=True),
        _series("Orders per $window window by channel and currency",
                f"{_help('cxpulse_orders_placed_total')} The denominator of AOV, the refund & return rate and the "
                "repeat purchase rate.", "short",
                _targets((window_count("cxpulse_orders_placed_total", SCC, MONEY_FILTERS), CHAN_CUR)),
                clock=EVENT_GRAPH, span=12, bars=True),
    ]


def _order_value() -> list[timeseries.Panel]:
    """RPV, AOV, revenue and refunded value per window, per currency."""
    per_currency = " Per currency (legend and unit): money is never summed across currencies."
    return [_money(panel) for panel in (
        _series("RPV by channel", f"{_about('revenue_per_visitor')}{per_currency} A drop of {rules.RPV_DROP:.0%} "
                "against last week pages (CxpulseRevenuePerVisitorDrop, over 1h windows).", "none",
                _targets((window_kpi("revenue_per_visitor", SCC, MONEY_FILTERS), CHAN_CUR)),
                clock=EVENT_GRAPH, span=6),
        _series("AOV by channel", f"{_about('average_order_value')}{per_currency}", "none",
                _targets((window_kpi("average_order_value", SCC, MONEY_FILTERS), CHAN_CUR)),
                clock=EVENT_GRAPH, span=6),
        _series("Revenue per $window window by channel", f"{_help('cxpulse_order_revenue_total')}{per_currency}",
                "none", _targets((window_count("cxpulse_order_revenue_total", SCC, MONEY_FILTERS), CHAN_CUR)),
                clock=EVENT_GRAPH, span=6, bars=True),
        _series("Refunded and returned value per $window window",
                f"{_help('cxpulse_refund_amount_total')} {_help('cxpulse_return_amount_total')} Per storefront, in the "
                f"window the refund or return happened (not the order's).{per_currency}", "none",
                _targets((window_count("cxpulse_refund_amount_total", ("storefront", "currency"), MONEY_FILTERS),
                          f"{{{{storefront}}}} refunded {CURRENCY_LEGEND}"),
                         (window_count("cxpulse_return_amount_total", ("storefront", "currency"), MONEY_FILTERS),
                          f"{{{{storefront}}}} returned {CURRENCY_LEGEND}")),
                clock=EVENT_GRAPH, span=6, bars=True),
    )]


def _after_order() -> list[timeseries.Panel]:
    """Refunds, returns and repeat purchases per window."""
    return [
        _series("Refund & return rate by channel", f"{_about('refund_return_rate')} Refunds and returns count in the "
                "window they happen, orders in theirs.", "percentunit",
                _targets((window_kpi("refund_return_rate", SC, SFC), CHAN)), clock=EVENT_GRAPH, span=8),
        _series("Repeat purchase rate by channel", f"{_about('repeat_purchase')}", "percentunit",
                _targets((window_kpi("repeat_purchase", SC, SFC), CHAN)), clock=EVENT_GRAPH, span=8),
        _series("Refunds and returns per $window window", f"{_help('cxpulse_refunds_total')} "
                f"{_help('cxpulse_returns_total')}", "short",
                _targets((window_count("cxpulse_refunds_total", SC, SFC), f"{CHAN} refunds"),
                         (window_count("cxpulse_returns_total", SC, SFC), f"{CHAN} returns")),
                clock=EVENT_GRAPH, span=8, bars=True),
    ]


def _checkout_join() -> list[stat.Panel | table.Panel]:
    """Cart abandonment as the guide defines it, per session: each day's, and by channel and device."""
    share = dict(unit="percentunit", decimals=1)
    pooled = (f"sum by (day) (\n  {ABANDONMENT}{{{SF}}}\n  * {DECIDED}{{{SF}}}\n)\n"
              f"/ sum by (day) (\n  {DECIDED}{{{SF}}}\n  and {ABANDONMENT}{{{SF}}}\n)")
    return [
        _stat("Cart abandonment by session, each day", f"Decided checkout sessions with no order in time / decided "
              f"checkout sessions, per UTC day of the first checkout (`{ABANDONMENT}`), the selected storefronts "
              f"pooled. {JOIN_TEXT}", "percentunit", [_target(pooled, "{{day}}")],
              clock=CHECKOUT_CLOCK, span=6, height=9, min_max=(0, 1)),
        _table("Cart abandonment by day", (
            f"Per UTC day of the first checkout: checkout sessions, the decided ones (the sample n), the share "
            f"abandoned (`{ABANDONMENT}`, the bar) and its 95% Wilson score interval. {JOIN_TEXT}"),
            ["day"], [Column(f'{CHECKOUTS}{{{SF}}}', "checkout sessions", "short", 0),
                      Column(f'{DECIDED}{{{SF}}}', "decided (n)", "short", 0),
                      Column(f'{ABANDONMENT}{{{SF}}}', "abandoned", gauge=True, **share),
                      Column(f'{ABANDONMENT}_lower{{{SF}}}', "95% lower", **share),
                      Column(f'{ABANDONMENT}_upper{{{SF}}}', "95% upper", **share)],
            drop=("storefront",), sort=("day", True), span=8, height=9, clock=CHECKOUT_CLOCK),
        _table("Checkout to order by channel and device", (
            f"Per UTC day, channel and device of the first checkout: decided checkout sessions (n), the share that "
            f"ordered within the horizon (`{SEGMENT_TO_ORDER}`, the funnel's last step per session, the bar) and the "
            f"share abandoned (`{SEGMENT_ABANDONMENT}`). {JOIN_TEXT}"),
            ["day", "channel", "device"],
            [Column(f'{SEGMENT_DECIDED}{{{SF}, channel=~"$channel"}}', "decided (n)", "short", 0),
             Column(f'{SEGMENT_TO_ORDER}{{{SF}, channel=~"$channel"}}', "checkout to order",
                    gauge=True, **share),
             Column(f'{SEGMENT_ABANDONMENT}{{{SF}, channel=~"$channel"}}', "abandoned", **share)],
            drop=("storefront",), sort=("day", True), span=10, height=9, clock=CHECKOUT_CLOCK),
    ]
