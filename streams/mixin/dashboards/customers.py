"""The Customers dashboard (``cx-customers``): what a customer is worth and whether a good
experience makes them worth more (docs/customers.md).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.models import dashboard as dm

from streams.mixin import rules
from streams.mixin.dashboards.clocks import ARRIVAL, ARRIVAL_NOW, CUSTOMER_CLOCK
from streams.mixin.dashboards.common import SF, _help
from streams.mixin.dashboards.layout import _dashboard, _variables
from streams.mixin.dashboards.panels import (CURRENCY_LEGEND, Column, _alerts, _band_panel, _bars, _money,
                                             _sample_field, _series, _stat, _steps, _table, _target, _targets)
from streams.mixin.dashboards.queries import Band
from streams.mixin.rules import _indent

# Recorded series of rules.customer_rules() (docs/customers.md), written in full so grep finds them.
CUSTOMERS = "storefront:cxpulse_customer_cohort_customers:sum"
MATURE = "storefront:cxpulse_customer_cohort_mature_customers:sum"
REPEAT = "storefront:cxpulse_customer_repeat_purchase:ratio"
SUPPORTED = "storefront:cxpulse_customer_post_support_mature_customers:sum"
POST_SUPPORT = "storefront:cxpulse_customer_post_support_conversion:ratio"
COHORT_CUSTOMERS = "storefront_cohort:cxpulse_customer_cohort_customers:sum"
COHORT_REPEAT = "storefront_cohort:cxpulse_customer_repeat_purchase:ratio"
COHORT_SUPPORTED = "storefront_cohort:cxpulse_customer_post_support_customers:sum"
COHORT_POST_SUPPORT = "storefront_cohort:cxpulse_customer_post_support_conversion:ratio"
COHORT_LTV = "storefront_cohort_currency_horizon:cxpulse_customer_revenue_per_customer:ratio"
NPS_CUSTOMERS = "storefront_nps_category_horizon:cxpulse_customer_nps_customers:sum"
NPS_LTV = "storefront_nps_category_currency_horizon:cxpulse_customer_nps_revenue_per_customer:ratio"
NPS_PURCHASES_CUSTOMERS = "storefront_nps_category_purchases_horizon:cxpulse_customer_nps_customers:sum"
NPS_PURCHASES_LTV = "storefront_nps_category_purchases_currency_horizon:cxpulse_customer_nps_revenue_per_customer:ratio"
NPS_CATEGORIES = (("promoter", "promoters"), ("passive", "passives"), ("detractor", "detractors"))
CSAT_CUSTOMERS = "storefront_csat_band_horizon:cxpulse_customer_csat_customers:sum"
CSAT_LTV = "storefront_csat_band_currency_horizon:cxpulse_customer_csat_revenue_per_customer:ratio"
CSAT_PURCHASES_CUSTOMERS = "storefront_csat_band_purchases_horizon:cxpulse_customer_csat_customers:sum"
CSAT_PURCHASES_LTV = "storefront_csat_band_purchases_currency_horizon:cxpulse_customer_csat_revenue_per_customer:ratio"
CSAT_BANDS_SHOWN = (("satisfied", "satisfied (4-5)"), ("neutral", "neutral (3)"), ("unsatisfied", "unsatisfied (1-2)"))
RETENTION = "storefront_period_period_start:cxpulse_customer_retention:ratio"
CHURN = "storefront_period_period_start:cxpulse_customer_churn:ratio"
RETENTION_CUSTOMERS = "storefront_period_period_start:cxpulse_customer_retention_customers:sum"
COHORT_RETENTION = "storefront_cohort_period_period_start:cxpulse_customer_retention:ratio"
COHORT_RETENTION_CUSTOMERS = "storefront_cohort_period_period_start:cxpulse_customer_cohort_retention_customers:sum"
SUPPORT_REVENUE = "storefront_currency:cxpulse_customer_post_support_revenue:sum"
SUPPORT_ORDERS = "storefront_currency:cxpulse_customer_post_support_orders:sum"
COHORT_SUPPORT_REVENUE = "storefront_cohort_currency:cxpulse_customer_post_support_revenue:sum"
COHORT_SUPPORT_ORDERS = "storefront_cohort_currency:cxpulse_customer_post_support_orders:sum"

COHORTS = ("Cohorts are ISO weeks (`2026-W47`, UTC); the last CXPULSE_COHORT_WEEKS (26) are exported.")
WILSON = ("95% Wilson score interval: the range the true share lies in given the number of customers; a "
          "difference between two cohorts inside their intervals is noise.")
GROSS = " Money stays per currency, in major units, gross of refunds (refunds carry no customer id)."
NPS_JOIN = ("A customer counts for a horizon once their first order is that old (plus a day), so a category's "
            "LTV is never dragged down by customers too young to have spent it; the category is that of the "
            "customer's latest NPS answer (9-10 promoter, 7-8 passive, 0-6 detractor).")
CSAT_JOIN = ("A customer counts for a horizon once their first order is that old (plus a day); the band is that of "
             "the customer's latest CSAT answer (satisfied 4-5, neutral 3, unsatisfied 1-2).")
MATURE_NOTE = (" Only customers whose 90 days (and a day) have passed count, so young cohorts, still inside their "
               "90 days, do not pull it down; each cohort's own live rate is in the table below.")
PERIODS = ("A retention period is a block of `period` days (CXPULSE_RETENTION_PERIODS) counted from Monday "
           "1969-12-29 UTC, labelled by its first day (`period_start`): its customers ordered in the period before, "
           "retained ones ordered again in it, churned ones did not. Each length shows two periods: the one in "
           "progress (the newer `period_start`, still growing) and the last complete one (final).")
# The filter of the 90-day LTV panels, and the note of every tile that pools storefronts.
H90 = f'{SF}, horizon="90d"'
POOLED_NOTE = " The selected storefronts pooled into one number: their customers summed."


def _share(ratio: str, customers: str, by: str = "") -> str:
    # the selected storefronts pooled: their customers who did / their customers
    agg = f"sum by ({by}) " if by else "sum "
    return (f"{agg}(\n  {ratio}{{{SF}}}\n  * {customers}{{{SF}}}\n)\n"
            f"/ {agg}(\n  {customers}{{{SF}}}\n  and {ratio}{{{SF}}}\n)")


def _ltv(category: str, ltv_rule: str = NPS_LTV, customers_rule: str = NPS_CUSTOMERS,
         group: str = "nps_category") -> str:
    # 90-day revenue per customer of a category, pooled per currency over the storefronts
    # that had that revenue: the LTV rule x its customers is the category's revenue
    ratio = f'{ltv_rule}{{{H90}, {group}="{category}"}}'
    customers = f'{customers_rule}{{{H90}, {group}="{category}"}}'
    on = f"on (storefront, {group}, horizon) group_left ()"
    return (f"sum by (currency) (\n  {ratio}\n  * {on} {customers}\n)\n"
            f"/ sum by (currency) (\n  0 * {ratio}\n  + {on} {customers}\n)")


def _csat_ltv(band: str) -> str:
    return _ltv(band, CSAT_LTV, CSAT_CUSTOMERS, "csat_band")


def customers() -> dm.Dashboard:
    return _dashboard(
        "cx-customers", "Customers",
        "What a customer is worth and whether a good experience makes them worth more: repeat purchase by "
        "first-order cohort, retention and churn per period, 30- and 90-day revenue per customer, LTV by NPS "
        "category and by CSAT band at the same purchase count, post-support conversion and the revenue after "
        "support, each with its sample; and the customer stage that computes them.",
        _variables("storefront"),
        [
            ("Customers of the exported cohorts", _headline()),
            ("Repeat purchase and post-support conversion with their 95% interval: $storefront", _bands(),
             "storefront"),
            ("First-order and ticket cohorts: $storefront", _cohorts(), "storefront"),
            ("Retention, churn and revenue after support: $storefront", _retention(), "storefront"),
            ("LTV by NPS category: $storefront", _nps(), "storefront"),
            ("LTV by CSAT band: $storefront", _csat(), "storefront"),
            ("Customer stage (all storefronts)", _stage()),
            ("Alerts", [_alerts(["CxpulseConsumerLagHigh", "CxpulseNoWorkerReady", "CxpulseWorkerDown"])]),
        ],
    )


def _headline() -> list[stat.Panel]:
    """Customers, repeat purchase, post-support conversion, the LTV multiples of NPS and CSAT, and the
    revenue after support, the selected storefronts pooled."""
    return [
        _stat("Customers", f"Customers whose first order falls in an exported first-order cohort, summed over the "
              f"cohorts and the selected storefronts (`{CUSTOMERS}`). A customer is a (storefront, customer_id) pair; "
              f"the id never becomes a label. {COHORTS}", "short", [_target(f"sum({CUSTOMERS}{{{SF}}})", "customers")],
              clock=CUSTOMER_CLOCK, span=4, decimals=0),
        _stat("Repeat purchase rate", f"Customers who ordered again within 90 days of their first order / customers, "
              f"over the exported cohorts (`{REPEAT}`); its 95% interval is the band below, grey: n, the mature "
              f"customers it is computed on (`{MATURE}`).{MATURE_NOTE}{POOLED_NOTE}", "percentunit",
              [_target(_share(REPEAT, MATURE), "repeat purchase"), _target(f"sum({MATURE}{{{SF}}})", "n customers",
                                                                          "B")],
              clock=CUSTOMER_CLOCK, span=4, min_max=(0, 1)).override_by_name("n customers", _sample_field()),
        _stat("Post-support conversion", "Customers who ordered within CXPULSE_POST_SUPPORT (7 days) after the "
              "first ticket of an ISO week / customers with a ticket that week, over the exported ticket weeks whose "
              f"7 days (and a day) have passed (`{POST_SUPPORT}`); grey: n, those customers (`{SUPPORTED}`). Did "
              f"support leave them willing to buy?{POOLED_NOTE}", "percentunit",
              [_target(_share(POST_SUPPORT, SUPPORTED), "post-support conversion"),
               _target(f"sum({SUPPORTED}{{{SF}}})", "n customers", "B")], clock=CUSTOMER_CLOCK, span=4,
              min_max=(0, 1)).override_by_name("n customers", _sample_field()),
        _stat("Promoter / detractor LTV, 90 days", "How many times a promoter is worth a detractor: 90-day revenue "
              "per customer of promoters / that of detractors, per currency (`" + NPS_LTV + "`), the selected "
              "storefronts pooled (each category's revenue / its customers). " + NPS_JOIN,
              "suffix:x", [_target(f"(\n{_indent(_ltv('promoter'))}\n)\n/ (\n{_indent(_ltv('detractor'))}\n)",
                                   "x ({{currency}})")],
              clock=CUSTOMER_CLOCK, span=4, decimals=2),
        _stat("Satisfied / unsatisfied LTV, 90 days", "How many times a satisfied customer (latest CSAT 4-5) is "
              "worth an unsatisfied one (1-2): 90-day revenue per customer of each band, per currency (`" + CSAT_LTV
              + "`), the selected storefronts pooled. " + CSAT_JOIN,
              "suffix:x", [_target(f"(\n{_indent(_csat_ltv('satisfied'))}\n)\n/ (\n"
                                   f"{_indent(_csat_ltv('unsatisfied'))}\n)", "x ({{currency}})")],
              clock=CUSTOMER_CLOCK, span=4, decimals=2),
        _money(_stat("Revenue after support", "Support-generated revenue: orders placed within CXPULSE_POST_SUPPORT "
                     "(7 days) after the customer's latest ticket before them, each order once, over the exported "
                     f"ticket weeks, per currency (`{SUPPORT_REVENUE}`); grey: n, those orders (`{SUPPORT_ORDERS}`)."
                     f"{POOLED_NOTE}", "none",
                     [_target(f"sum by (currency) ({SUPPORT_REVENUE}{{{SF}}})", CURRENCY_LEGEND),
                      _target(f"sum({SUPPORT_ORDERS}{{{SF}}})", "n orders", "B")],
                     clock=CUSTOMER_CLOCK, span=4, decimals=2)).override_by_name("n orders", _sample_field()),
    ]


def _bands() -> list[timeseries.Panel]:
    """Repeat purchase and post-support conversion with their 95% interval."""
    return [
        _band_panel(
            "Repeat purchase rate with its 95% interval, $storefront",
            f"Customers of the exported first-order cohorts who ordered again within 90 days of their first order / "
            f"those customers. Line: `{REPEAT}`; band: its {WILSON} Bars (right axis): the customers it is "
            f"measured on (`{MATURE}`).{MATURE_NOTE}", "percentunit",
            Band((f"{REPEAT}{{{SF}}}", "repeat purchase rate"),
                 (f"{REPEAT}_lower{{{SF}}}", "repeat purchase 95% lower"),
                 (f"{REPEAT}_upper{{{SF}}}", "repeat purchase 95% upper")),
            (f"{MATURE}{{{SF}}}", "n (customers)"), clock=CUSTOMER_CLOCK),
        _band_panel(
            "Post-support conversion with its 95% interval, $storefront",
            f"Customers with a ticket who ordered within 7 days after their week's first ticket / customers with a "
            f"ticket, over the exported ticket weeks whose 7 days (and a day) have passed. Line: `{POST_SUPPORT}`; "
            f"band: its {WILSON} Bars (right axis): the customers with a ticket it is measured on (`{SUPPORTED}`).",
            "percentunit",
            Band((f"{POST_SUPPORT}{{{SF}}}", "post-support conversion"),
                 (f"{POST_SUPPORT}_lower{{{SF}}}", "post-support 95% lower"),
                 (f"{POST_SUPPORT}_upper{{{SF}}}", "post-support 95% upper")),
            (f"{SUPPORTED}{{{SF}}}", "n (customers with a ticket)"), clock=CUSTOMER_CLOCK),
    ]


def _cohorts() -> list[table.Panel]:
    """Repeat purchase, LTV and post-support conversion per cohort."""
    share = dict(unit="percentunit", decimals=1)
    return [
        _table("Repeat purchase by first-order cohort", (
            f"Per first-order cohort (the ISO week of each customer's first order): its customers, the share who "
            f"ordered again within 90 days of their first order (`{COHORT_REPEAT}`, the bar) and its {WILSON} "
            f"Recent cohorts are still inside their 90 days. {COHORTS}"),
            ["cohort"], [Column(f"{COHORT_CUSTOMERS}{{{SF}}}", "customers", "short", 0),
                         Column(f"{COHORT_REPEAT}{{{SF}}}", "repeat purchase rate", gauge=True, **share),
                         Column(f"{COHORT_REPEAT}_lower{{{SF}}}", "95% lower", **share),
                         Column(f"{COHORT_REPEAT}_upper{{{SF}}}", "95% upper", **share)],
            drop=("storefront",), sort=("cohort", True), span=8, height=10, clock=CUSTOMER_CLOCK),
        _table("Revenue per customer (LTV) by cohort, 30 and 90 days", (
            "Per first-order cohort and currency: revenue of the orders within 30 / 90 days of each customer's first "
            f"order / the cohort's customers (`{COHORT_LTV}`, horizon 30d and 90d).{GROSS} A cohort's values are "
            f"live: they grow until its customers are 90 days old. {COHORTS}"),
            ["cohort", "currency"], [Column(f'{COHORT_LTV}{{{SF}, horizon="30d"}}', "LTV 30 days", decimals=2),
                                     Column(f'{COHORT_LTV}{{{SF}, horizon="90d"}}', "LTV 90 days", decimals=2),
                                     Column(f"{COHORT_CUSTOMERS}{{{SF}}}", "customers", "short", 0)],
            drop=("storefront", "horizon"), sort=("cohort", True), span=8, height=10, clock=CUSTOMER_CLOCK),
        _table("Post-support conversion by ticket cohort", (
            "Per ticket cohort (the ISO week of a customer's tickets): customers with a ticket that week, the share "
            "who ordered within CXPULSE_POST_SUPPORT (7 days) after that week's first ticket "
            f"(`{COHORT_POST_SUPPORT}`, the bar) and its {WILSON} {COHORTS}"),
            ["cohort"], [Column(f"{COHORT_SUPPORTED}{{{SF}}}", "customers with a ticket", "short", 0),
                         Column(f"{COHORT_POST_SUPPORT}{{{SF}}}", "converted", gauge=True, **share),
                         Column(f"{COHORT_POST_SUPPORT}_lower{{{SF}}}", "95% lower", **share),
                         Column(f"{COHORT_POST_SUPPORT}_upper{{{SF}}}", "95% upper", **share)],
            drop=("storefront",), sort=("cohort", True), span=8, height=10, clock=CUSTOMER_CLOCK),
    ]


def _retention() -> list[stat.Panel | table.Panel]:
    """Retention and churn per period and per cohort, and the revenue after support per ticket week."""
    retention_now = [
        _stat("Customer retention, each period", f"Customers of the previous period who ordered again in this one / "
              f"customers of the previous period, per period length and period (`{RETENTION}`), the selected "
              f"storefronts pooled; churn is 1 - this. {PERIODS}", "percentunit",
              [_target(_share(RETENTION, RETENTION_CUSTOMERS, "period, period_start"),
                       "{{period}} from {{period_start}}")],
              clock=CUSTOMER_CLOCK, span=6, height=9, min_max=(0, 1)),
    ]
    return retention_now + [
        _table("Retention and churn by period", (
            f"Per period length and period: its customers (those who ordered in the period before, the sample n), "
            f"the share who ordered again in it (`{RETENTION}`, the bar) with its {WILSON} and the churn rate "
            f"(`{CHURN}`). {PERIODS}"),
            ["period", "period_start"],
            [Column(f"{RETENTION_CUSTOMERS}{{{SF}}}", "customers (n)", "short", 0),
             Column(f"{RETENTION}{{{SF}}}", "retention", gauge=True, unit="percentunit", decimals=1),
             Column(f"{RETENTION}_lower{{{SF}}}", "95% lower", unit="percentunit", decimals=1),
             Column(f"{RETENTION}_upper{{{SF}}}", "95% upper", unit="percentunit", decimals=1),
             Column(f"{CHURN}{{{SF}}}", "churn", unit="percentunit", decimals=1)],
            drop=("storefront",), sort=("period_start", True), span=18, height=9, clock=CUSTOMER_CLOCK),
        _table("Retention by first-order cohort", (
            f"The same per first-order cohort (the ISO week of each customer's first order): of a cohort's customers "
            f"who ordered in the period before, the share who ordered again in the period (`{COHORT_RETENTION}`) and "
            f"its {WILSON} {PERIODS} {COHORTS}"),
            ["cohort", "period", "period_start"],
            [Column(f"{COHORT_RETENTION_CUSTOMERS}{{{SF}}}", "customers (n)", "short", 0),
             Column(f"{COHORT_RETENTION}{{{SF}}}", "retention", gauge=True, unit="percentunit", decimals=1),
             Column(f"{COHORT_RETENTION}_lower{{{SF}}}", "95% lower", unit="percentunit", decimals=1),
             Column(f"{COHORT_RETENTION}_upper{{{SF}}}", "95% upper", unit="percentunit", decimals=1)],
            drop=("storefront",), sort=("cohort", True), span=14, height=9, clock=CUSTOMER_CLOCK),
        _table("Revenue after support by ticket week", (
            "Per ticket week (the ISO week of the customer's latest ticket before the order) and currency: orders "
            "placed within CXPULSE_POST_SUPPORT (7 days) after that ticket and their revenue "
            f"(`{COHORT_SUPPORT_REVENUE}`), beside post-support conversion (above): support that sells. Each order "
            f"counts once (last touch).{GROSS} {COHORTS}"),
            ["cohort", "currency"],
            [Column(f"{COHORT_SUPPORT_ORDERS}{{{SF}}}", "orders (n)", "short", 0),
             Column(f"{COHORT_SUPPORT_REVENUE}{{{SF}}}", "revenue", decimals=2)],
            drop=("storefront",), sort=("cohort", True), span=10, height=9, clock=CUSTOMER_CLOCK),
    ]


def _nps() -> list[bargauge.Panel | table.Panel]:
    """LTV by NPS category, also at the same number of purchases."""
    return [
        _money(_bars("LTV by NPS category, 90 days", (
            f"90-day revenue per customer by NPS category and currency (`{NPS_LTV}`, horizon 90d): revenue within 90 "
            f"days of the first order of the category's customers / those customers. {NPS_JOIN}{GROSS}"),
            [_target(f"{NPS_LTV}{{{H90}}}", f"{{{{nps_category}}}} {CURRENCY_LEGEND}")], span=6, unit="none",
            height=9, clock=CUSTOMER_CLOCK).decimals(2)),
        _table("LTV by NPS category, 30 and 90 days", (
            f"Revenue per customer within 30 / 90 days of the first order, by NPS category and currency (`{NPS_LTV}`),"
            f" and the customers behind each (`{NPS_CUSTOMERS}`): a category of a few customers is a small sample. "
            f"{NPS_JOIN}{GROSS}"),
            ["nps_category", "currency"],
            [Column(f'{NPS_LTV}{{{SF}, horizon="30d"}}', "LTV 30 days", decimals=2),
             Column(f'{NPS_LTV}{{{SF}, horizon="90d"}}', "LTV 90 days", decimals=2),
             Column(f'{NPS_CUSTOMERS}{{{SF}, horizon="30d"}}', "customers 30 days", "short", 0),
             Column(f'{NPS_CUSTOMERS}{{{SF}, horizon="90d"}}', "customers 90 days", "short", 0)],
            drop=("storefront", "horizon"), sort=("nps_category", False), span=8, height=9, clock=CUSTOMER_CLOCK),
        _table("LTV by NPS category and purchases, 90 days", (
            "The CX guide's \"LTV by NPS purchase cohorts\": 90-day revenue per customer of promoters, passives and "
            "detractors who made the same number of orders within 90 days of their first (1, 2, 3, 4+), per "
            f"currency (`{NPS_PURCHASES_LTV}`), and how many customers each cell holds "
            f"(`{NPS_PURCHASES_CUSTOMERS}`). Reading across a row compares customers who bought equally often: "
            f"promoters worth more there is value a purchase count does not explain. {NPS_JOIN}{GROSS}"),
            ["purchases", "currency"],
            [Column(f'{NPS_PURCHASES_LTV}{{{H90}, nps_category="{c}"}}', name, decimals=2)
             for c, name in NPS_CATEGORIES]
            + [Column(f'{NPS_PURCHASES_CUSTOMERS}{{{H90}, nps_category="{c}"}}', f"{name} n", "short", 0)
               for c, name in NPS_CATEGORIES],
            drop=("storefront", "horizon", "nps_category"), sort=("purchases", False), span=10, height=9,
            clock=CUSTOMER_CLOCK),
    ]


def _csat() -> list[bargauge.Panel | table.Panel]:
    """LTV by CSAT band, also at the same number of purchases."""
    return [
        _money(_bars("LTV by CSAT band, 90 days", (
            f"90-day revenue per customer by CSAT band and currency (`{CSAT_LTV}`, horizon 90d): revenue within 90 "
            f"days of the first order of the band's customers / those customers. {CSAT_JOIN}{GROSS}"),
            [_target(f"{CSAT_LTV}{{{H90}}}", f"{{{{csat_band}}}} {CURRENCY_LEGEND}")], span=6, unit="none",
            height=9, clock=CUSTOMER_CLOCK).decimals(2)),
        _table("LTV by CSAT band and purchases, 90 days", (
            "Satisfaction tied to value: 90-day revenue per customer of satisfied, neutral and unsatisfied customers "
            "(their latest CSAT answer) who made the same number of orders within 90 days of their first (1, 2, 3, "
            f"4+), per currency (`{CSAT_PURCHASES_LTV}`), and how many customers each cell holds "
            f"(`{CSAT_PURCHASES_CUSTOMERS}`): reading across a row compares customers who bought equally often. "
            f"{CSAT_JOIN}{GROSS}"),
            ["purchases", "currency"],
            [Column(f'{CSAT_PURCHASES_LTV}{{{H90}, csat_band="{b}"}}', name, decimals=2)
             for b, name in CSAT_BANDS_SHOWN]
            + [Column(f'{CSAT_PURCHASES_CUSTOMERS}{{{H90}, csat_band="{b}"}}', f"{name} n", "short", 0)
               for b, name in CSAT_BANDS_SHOWN],
            drop=("storefront", "horizon", "csat_band"), sort=("purchases", False), span=18, height=9,
            clock=CUSTOMER_CLOCK),
    ]


def _stage() -> list[timeseries.Panel]:
    """The customer stage that computes all this: its state, facts, lag, skips and evictions."""
    rate = "$__rate_interval"
    lag = 'family:cxpulse_consumer_lag_messages:sum{family="customer"}'
    return [
        _series("Customers and checkout sessions held in state", f"{_help('cxpulse_state_customers')} "
                f"{_help('cxpulse_state_checkout_sessions')} Summed over the customer-topic partitions. A customer "
                "inactive for CXPULSE_CUSTOMER_TTL (400 days) is forgotten; CXPULSE_CUSTOMER_MAX (500,000 per "
                "partition) bounds memory, for customers and for sessions each.", "short",
                _targets(("sum(cxpulse_state_customers)", "customers"),
                         ("sum(cxpulse_state_checkout_sessions)", "checkout sessions")), clock=ARRIVAL_NOW, span=8),
        _series("Customer facts read per second", f"{_help('cxpulse_customer_facts_total')} Rate over all "
                "partitions: the window stage emits one fact per counted order, ticket, NPS or CSAT answer that names "
                "a customer, per counted checkout and per counted order that names its session.", "short",
                _targets((f"sum(rate(cxpulse_customer_facts_total[{rate}]))", "facts")), clock=ARRIVAL, span=8),
        _series("Consumer lag, customer stage", f"{_help('cxpulse_consumer_lag_messages')} For the customer topic, "
                f"summed over its partitions (`{lag}`). Dashed line: the CxpulseConsumerLagHigh threshold.", "short",
                _targets((lag, "customer")),
                thresholds=_steps((None, "transparent"), (rules.CONSUMER_LAG_MAX_MESSAGES, "red")),
                clock=ARRIVAL_NOW, span=8),
        _series("Customer facts skipped per second by reason", f"{_help('cxpulse_customer_facts_skipped_total')} "
                "Duplicates are expected after a worker restart (the window stage resends its batch and the "
                "customer stage applies each fact once); dropped facts mean a customer passed 1,000 orders, tickets "
                "or answers.", "short",
                _targets((f"sum by (reason) (rate(cxpulse_customer_facts_skipped_total[{rate}]))", "{{reason}}")),
                clock=ARRIVAL, span=12),
        _series("Customers evicted per hour", f"{_help('cxpulse_customers_evicted_total')} Rate x 3600. A steady "
                "flow is the TTL at work; a burst with `event=customer_budget_reached` in the logs is the memory "
                "guard, and from then on which customer is forgotten may differ after a crash (docs/customers.md).",
                "short", _targets((f"sum(rate(cxpulse_customers_evicted_total[{rate}])) * 3600", "evicted")),
                clock=ARRIVAL, span=12),
    ]
