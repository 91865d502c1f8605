"""Every metric and KPI, defined once.

The collector exports from this list; ``cxpulse render`` writes
``docs/metrics.md``, the Prometheus recording and alert rules and the Grafana
dashboards from it. A metric name appears here in full, so grepping a dashboard
query finds its definition.

Three kinds of series:

* **Counters** (``_total``) and **histograms**: cumulative since the state began,
  one series per source partition (label ``partition``), so a partition moving
  between workers never looks like a counter reset. Use ``rate()``/``increase()``.
  Counters carry the family's whole segment; histograms all of it but the ticket's
  ``reason`` (``Histogram.labels``).
* **Window gauges** (``cxpulse_window_*``): the same components for the last
  closed and the current event-time window of each view (1m, 5m, 15m, 1h),
  summed over the worker's partitions, so ``sum()`` over workers is the total.
* **Pipeline health**: events processed, rejected, late, duplicate; watermark;
  freshness; state size; readiness.

    >>> COUNTERS_BY_FIELD["order", "revenue_minor"].name
    'cxpulse_order_revenue_total'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from streams.contract import Family
from streams.pipeline.families import BREAKDOWN, SEGMENT_LABELS

Unit = Literal["count", "currency", "seconds", "ratio", "score", "percent"]


@dataclass(frozen=True)
class Counter:
    """A cumulative count or exact money sum kept per window and segment."""

    name: str
    family: Family
    field: str
    help: str
    money: bool = False

    @property
    def window_name(self) -> str:
        return "cxpulse_window_" + self.name.removeprefix("cxpulse_").removesuffix("_total")

    @property
    def window_category_name(self) -> str:
        """A ticket counter per storefront and product category (``families.BREAKDOWN``) in the window."""
        return "cxpulse_window_category_" + self.name.removeprefix("cxpulse_").removesuffix("_total")

    @property
    def labels(self) -> tuple[str, ...]:
        return SEGMENT_LABELS[self.family]


@dataclass(frozen=True)
class Histogram:
    """A duration distribution (seconds) kept as a mergeable sketch per segment of its family.

    The cumulative histogram on /metrics has fewer labels than the segment (``labels``): no
    contact ``reason``. Its ~25 series (``le`` buckets, ``_count``, ``_sum``) per label set would
    otherwise be multiplied by up to 9 reasons per storefront, support channel and partition;
    the times by reason come from the event-time window summaries (``window_reason_name``).

        >>> first_response = HISTOGRAMS[0]
        >>> first_response.segment_labels, first_response.labels
        (('storefront', 'support_channel', 'reason'), ('storefront', 'support_channel'))
    """

    name: str
    family: Family
    field: str
    help: str

    @property
    def segment_labels(self) -> tuple[str, ...]:
        """The family's segment: what each cell (and so each window summary) is kept by."""
        return SEGMENT_LABELS[self.family]

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels of the cumulative histogram (besides ``partition`` and ``le``): the segment's
        but the reason, summed over reasons."""
        return tuple(label for label in self.segment_labels if label not in HISTOGRAM_DROPPED_LABELS)

    @property
    def window_name(self) -> str:
        """A summary per storefront and support channel (``window_labels``): the window's quantiles, with
        _count and _sum of its observations."""
        return "cxpulse_window_" + self.name.removeprefix("cxpulse_")

    @property
    def window_labels(self) -> tuple[str, ...]:
        """The labels of ``window_name``: the segment's but the reason (a quantile per storefront, support
        channel and reason would triple the summaries for a breakdown nobody reads)."""
        return tuple(label for label in self.segment_labels if label != "reason")

    @property
    def window_reason_name(self) -> str:
        """The same summary per storefront and contact reason (labels storefront, reason)."""
        return "cxpulse_window_reason_" + self.name.removeprefix("cxpulse_")

    @property
    def window_category_name(self) -> str:
        """The same summary per storefront and product category (a ticket's breakdown, not a segment label)."""
        return "cxpulse_window_category_" + self.name.removeprefix("cxpulse_")

    @property
    def window_count_name(self) -> str:
        return self.window_name + "_count"

    @property
    def window_storefront_name(self) -> str:
        """The same summary over every support channel of a storefront (quantiles do not add up)."""
        return "cxpulse_window_storefront_" + self.name.removeprefix("cxpulse_")


# Segment labels the cumulative histograms leave out (``Histogram.labels``): the window summaries
# by reason carry the times by reason at a fraction of the series.
HISTOGRAM_DROPPED_LABELS: tuple[str, ...] = ("reason",)

COUNTERS: tuple[Counter, ...] = (
    Counter("cxpulse_sessions_started_total", "session", "sessions_started",
            "Visitor sessions started (session.started)."),
    Counter("cxpulse_product_views_total", "session", "product_views", "Product pages viewed."),
    Counter("cxpulse_carts_added_total", "session", "carts_added", "Products added to a cart."),
    Counter("cxpulse_checkouts_started_total", "session", "checkouts_started", "Checkouts started."),
    Counter("cxpulse_sessions_viewed_total", "session", "sessions_viewed",
            "Sessions with a product view, each counted once, at its first product view (the funnel per session)."),
    Counter("cxpulse_sessions_carted_total", "session", "sessions_carted",
            "Sessions that added a product to a cart, each counted once, at its first cart add."),
    Counter("cxpulse_sessions_checked_out_total", "session", "sessions_checked_out",
            "Sessions that started a checkout, each counted once, at its first checkout."),
    Counter("cxpulse_orders_placed_total", "order", "orders_placed", "Orders placed (order.placed)."),
    Counter("cxpulse_order_revenue_total", "order", "revenue_minor",
            "Revenue of placed orders, in major units of the currency label (never summed across currencies).",
            money=True),
    Counter("cxpulse_orders_first_total", "order", "first_orders", "Orders that were the customer's first."),
    Counter("cxpulse_refunds_total", "order", "refunds", "Refunds (order.refunded)."),
    Counter("cxpulse_refund_amount_total", "order", "refund_minor", "Amount refunded, in major units.", money=True),
    Counter("cxpulse_returns_total", "order", "returns", "Returns (order.returned)."),
    Counter("cxpulse_return_amount_total", "order", "return_minor", "Value returned, in major units.", money=True),
    Counter("cxpulse_tickets_created_total", "ticket", "tickets_created", "Support tickets created."),
    Counter("cxpulse_tickets_resolved_one_touch_total", "ticket", "tickets_resolved_one_touch",
            "Resolutions of tickets with at most one public agent reply and never reopened (FCR numerator)."),
    Counter("cxpulse_tickets_reopened_total", "ticket", "tickets_reopened", "Tickets reopened."),
    Counter("cxpulse_tickets_resolved_unmatched_total", "ticket", "resolved_unmatched",
            "Resolutions of tickets whose creation this pipeline never saw (no resolution time)."),
    Counter("cxpulse_nps_responses_total", "survey", "nps_responses", "NPS answers (0-10)."),
    Counter("cxpulse_nps_promoters_total", "survey", "nps_promoters", "NPS answers of 9 or 10."),
    Counter("cxpulse_nps_detractors_total", "survey", "nps_detractors", "NPS answers of 0 to 6."),
    Counter("cxpulse_nps_score_points_total", "survey", "nps_score_sum", "Sum of NPS answers, in points (for the mean)."),
    Counter("cxpulse_csat_responses_total", "survey", "csat_responses", "CSAT answers (1-5)."),
    Counter("cxpulse_csat_satisfied_total", "survey", "csat_satisfied", "CSAT answers of 4 or 5."),
    Counter("cxpulse_csat_score_points_total", "survey", "csat_score_sum", "Sum of CSAT answers, in points (for the mean)."),
    Counter("cxpulse_ces_responses_total", "survey", "ces_responses", "CES answers (1-7)."),
    Counter("cxpulse_ces_score_points_total", "survey", "ces_score_sum", "Sum of CES answers, in points (for the mean)."),
    Counter("cxpulse_nps_surveys_sent_total", "survey", "nps_sent",
            "NPS surveys sent (survey.sent of kind nps): the NPS response-rate denominator."),
    Counter("cxpulse_csat_surveys_sent_total", "survey", "csat_sent",
            "CSAT surveys sent (survey.sent of kind csat): the CSAT response-rate denominator."),
    Counter("cxpulse_ces_surveys_sent_total", "survey", "ces_sent",
            "CES surveys sent (survey.sent of kind ces): the CES response-rate denominator."),
)

HISTOGRAMS: tuple[Histogram, ...] = (
    Histogram("cxpulse_ticket_first_response_seconds", "ticket", "first_response",
              "First-response time: ticket created -> first public agent reply (bots, customers and internal "
              "notes excluded), recorded in the window of that reply."),
    Histogram("cxpulse_ticket_resolution_seconds", "ticket", "resolution",
              "Resolution time: ticket created -> resolved, recorded at each resolve (a reopened ticket is "
              "measured again from creation to its last resolve)."),
    Histogram("cxpulse_ticket_first_response_business_seconds", "ticket", "first_response_business",
              "First-response time in business hours: the part of created -> first public agent reply that fell "
              "in the storefront's opening hours (CXPULSE_BUSINESS_HOURS), recorded with the calendar-time one."),
    Histogram("cxpulse_ticket_resolution_business_seconds", "ticket", "resolution_business",
              "Resolution time in business hours: the part of created -> resolved that fell in the storefront's "
              "opening hours (CXPULSE_BUSINESS_HOURS), recorded with the calendar-time one."),
)

# Labels of the window series a family writes per breakdown besides its segment (``families.BREAKDOWN``):
# the ticket counters and summaries per storefront and product category. A rule may read a ticket
# component at a level with product_category (the ``window_category_name`` series); nothing cumulative has it.
BREAKDOWN_LABELS: dict[str, tuple[str, ...]] = {"ticket": (BREAKDOWN,)}

COUNTERS_BY_FIELD = {(c.family, c.field): c for c in COUNTERS}
HISTOGRAMS_BY_FIELD = {(h.family, h.field): h for h in HISTOGRAMS}
WINDOW_QUANTILES = (0.5, 0.9)
# 1 at the end of every complete event-time window of a family, per storefront of the
# merge stage (also when the storefront had no event of the family in it): a KPI may read
# a family's window only where this says it is complete.
WINDOW_COMPLETE = "cxpulse_window_complete"
# Distinct visitors (visitor_id of session.started) of a complete session window: per segment, and per
# storefront (a visitor of two channels once). Distinct counts do not add up over windows or segments, so
# they exist only as window series, never as counters on /metrics (docs/metrics.md, rule 16).
WINDOW_VISITORS = "cxpulse_window_visitors"
WINDOW_STOREFRONT_VISITORS = "cxpulse_window_storefront_visitors"

# Minor-unit digits per currency where they are not 2 (ISO 4217).
CURRENCY_EXPONENT: dict[str, int] = {
    **{code: 0 for code in ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX",
                            "VND", "VUV", "XAF", "XOF", "XPF", "XXX")},
    **{code: 3 for code in ("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND")},
}


def major_units(amount_minor: int, currency: str) -> float:
    """Minor units -> the currency's major unit (cents -> euros).

        >>> major_units(1999, "EUR"), major_units(500, "JPY")
        (19.99, 500.0)
    """
    return amount_minor / 10 ** CURRENCY_EXPONENT.get(currency, 2)


# Pipeline health: names written in full; the collector builds them.
PIPELINE: dict[str, str] = {
    "cxpulse_events_total": "Valid, first-seen, on-time events counted into windows, per source partition.",
    "cxpulse_messages_total": "Kafka messages read (a batched message carries many events), per source partition.",
    "cxpulse_events_rejected_total": "Events refused by the decoder and parked in the dead-letter topic, by reason.",
    "cxpulse_events_late_total": "Events older than their window's grace period: counted, parked, not in windows.",
    "cxpulse_events_duplicate_total": "Events whose event_id was already counted within the dedupe horizon.",
    "cxpulse_label_overflow_total": "Events whose label value went to `other` (allow-list or cap), by label; "
                                    "label=segment when the family's segment cap was reached.",
    "cxpulse_watermark_timestamp_seconds": "Largest event time seen on the source partition (Unix seconds).",
    "cxpulse_watermark_lag_seconds": "Wall clock minus the watermark of the source partition.",
    "cxpulse_consumer_lag_messages": "Messages in the source partition not yet applied (high-water mark - next offset).",
    "cxpulse_event_freshness_seconds": "Message timestamp -> its effect visible on /metrics.",
    "cxpulse_state_windows": "Base windows held in state.",
    "cxpulse_state_tickets": "Open tickets followed in state.",
    "cxpulse_state_sessions": "Sessions whose funnel steps are followed in state (each until CXPULSE_SESSION_TIMEOUT "
                              "of event time after its last event).",
    "cxpulse_state_seen_ids": "Event ids held for dedupe.",
    "cxpulse_assigned_partitions": "Source partitions this worker owns.",
    "cxpulse_worker_ready": "1 once the worker owns partitions and has recovered their state, else 0.",
    "cxpulse_state_recovery_seconds": "Duration of the last state recovery from the changelog.",
    "cxpulse_state_recovered_records_total": "State changelog records read during recoveries.",
    "cxpulse_state_resets_total": "Partition states started over because their source partition was recreated or "
                                  "truncated (its end fell below the state's position).",
    "cxpulse_broker_up": "1 while a Kafka broker answers this worker (checked every second), else 0.",
    "cxpulse_sink_failures_total": "Partition writes that did not reach the broker, by outcome: fenced (another "
                                   "worker owns the partition now) or failed (broker lost or slow: replayed).",
    "cxpulse_position_corrections_total": "Partitions whose committed offset differed from their recovered "
                                          "state's position (the worker reads from the state's).",
    "cxpulse_window_closed_until_timestamp_seconds": "Event time up to which the source partition has closed its "
                                                     "windows (watermark - grace, on a window boundary).",
    "cxpulse_partition_idle": "1 while the source partition has had no message for CXPULSE_IDLE_PARTITION "
                              "(its watermark follows the worker's other partitions).",
    "cxpulse_window_complete_until_timestamp_seconds": "Event time up to which every source partition of the "
                                                       "family has closed its windows, per merge partition.",
    "cxpulse_window_exported_until_timestamp_seconds": "Event time up to which the TSDB has acknowledged the "
                                                       "family's complete windows, per merge partition.",
    "cxpulse_window_export_samples_total": "Event-time window samples written to the remote-write endpoint.",
    "cxpulse_window_export_failures_total": "Remote-write requests that failed, by reason (retried unless "
                                            "refused as invalid).",
    "cxpulse_window_export_dropped_total": "Complete windows not written: no CXPULSE_REMOTE_WRITE_URL, or "
                                           "refused by the endpoint as invalid or too old.",
    "cxpulse_window_export_queued": "Complete windows waiting for the remote-write endpoint.",
}


@dataclass(frozen=True)
class Kpi:
    """A KPI of the brief, computed in PromQL from exported components."""

    key: str  # used in recording-rule names: storefront:cxpulse_<key>:...
    title: str
    unit: Unit
    formula: str
    family: Family
    numerator: tuple[str, ...] = ()  # counter names (summed)
    denominator: str = ""  # counter name
    shape: Literal["ratio", "one_minus", "nps", "quantile"] = "ratio"
    histogram: str = ""  # for quantiles
    quantile: float = 0.0
    by: tuple[str, ...] = ("storefront",)
    higher_is_better: bool = True


KPIS: tuple[Kpi, ...] = (
    Kpi("conversion", "Conversion rate (CVR)", "ratio", "orders placed / sessions started", "order",
        ("cxpulse_orders_placed_total",), "cxpulse_sessions_started_total"),
    Kpi("average_order_value", "Average order value (AOV)", "currency", "revenue / orders placed", "order",
        ("cxpulse_order_revenue_total",), "cxpulse_orders_placed_total", by=("storefront", "currency")),
    Kpi("revenue_per_visitor", "Revenue per visitor (RPV)", "currency", "revenue / sessions started (= AOV x CVR)",
        "order", ("cxpulse_order_revenue_total",), "cxpulse_sessions_started_total", by=("storefront", "currency")),
    Kpi("cart_abandonment", "Cart abandonment, window estimate", "ratio",
        "1 - orders placed / checkouts started in the window (an estimate over all traffic: it counts orders "
        "without a checkout too; the per-session rate is the checkout join's, docs/customers.md)", "session",
        ("cxpulse_orders_placed_total",), "cxpulse_checkouts_started_total", shape="one_minus",
        higher_is_better=False),
    Kpi("view_rate", "Product view rate (sessions)", "ratio",
        "sessions with a first product view / sessions started, both counted in the window (the funnel's first step)",
        "session", ("cxpulse_sessions_viewed_total",), "cxpulse_sessions_started_total"),
    Kpi("add_to_cart_rate", "Add-to-cart rate (sessions)", "ratio",
        "sessions with a first cart add / sessions with a first product view, both counted in the window",
        "session", ("cxpulse_sessions_carted_total",), "cxpulse_sessions_viewed_total"),
    Kpi("checkout_rate", "Checkout rate (sessions)", "ratio",
        "sessions with a first checkout / sessions with a first cart add, both counted in the window",
        "session", ("cxpulse_sessions_checked_out_total",), "cxpulse_sessions_carted_total"),
    Kpi("refund_return_rate", "Refund & return rate", "ratio", "(refunds + returns) / orders placed", "order",
        ("cxpulse_refunds_total", "cxpulse_returns_total"), "cxpulse_orders_placed_total", higher_is_better=False),
    Kpi("repeat_purchase", "Repeat purchase rate", "ratio", "1 - first orders / orders placed", "order",
        ("cxpulse_orders_first_total",), "cxpulse_orders_placed_total", shape="one_minus"),
    Kpi("ticket_to_order", "Ticket-to-order rate", "ratio", "tickets created / orders placed", "ticket",
        ("cxpulse_tickets_created_total",), "cxpulse_orders_placed_total", higher_is_better=False),
    Kpi("first_response_p50", "First-response time, median", "seconds", "median of first-response times", "ticket",
        shape="quantile", histogram="cxpulse_ticket_first_response_seconds", quantile=0.5, higher_is_better=False),
    Kpi("first_response_p90", "First-response time, p90", "seconds", "90th percentile of first-response times",
        "ticket", shape="quantile", histogram="cxpulse_ticket_first_response_seconds", quantile=0.9,
        higher_is_better=False),
    Kpi("resolution_p50", "Resolution time, median", "seconds", "median of resolution times", "ticket",
        shape="quantile", histogram="cxpulse_ticket_resolution_seconds", quantile=0.5, higher_is_better=False),
    Kpi("resolution_p90", "Resolution time, p90", "seconds", "90th percentile of resolution times", "ticket",
        shape="quantile", histogram="cxpulse_ticket_resolution_seconds", quantile=0.9, higher_is_better=False),
    # The same times counting only the storefront's opening hours (docs/metrics.md rule 14).
    *(Kpi(f"{kind}_business_{p}", f"{title} in business hours, {label}", "seconds",
          f"{what} of {noun} counted in opening hours", "ticket", shape="quantile",
          histogram=f"cxpulse_ticket_{kind}_business_seconds", quantile=q, higher_is_better=False)
      for kind, title, noun in (("first_response", "First-response time", "first-response times"),
                                ("resolution", "Resolution time", "resolution times"))
      for p, label, what, q in (("p50", "median", "median", 0.5), ("p90", "p90", "90th percentile", 0.9))),
    Kpi("first_contact_resolution", "First-contact resolution (FCR)", "ratio",
        "one-touch resolutions / resolutions", "ticket",
        ("cxpulse_tickets_resolved_one_touch_total",), "cxpulse_ticket_resolution_seconds_count"),
    Kpi("nps", "Net Promoter Score (NPS)", "score", "100 x (promoters - detractors) / responses, on -100..100",
        "survey", ("cxpulse_nps_promoters_total", "cxpulse_nps_detractors_total"), "cxpulse_nps_responses_total",
        shape="nps"),
    Kpi("csat", "Customer satisfaction (CSAT)", "ratio", "answers of 4-5 / answers (1-5 scale)", "survey",
        ("cxpulse_csat_satisfied_total",), "cxpulse_csat_responses_total"),
    Kpi("csat_mean", "CSAT mean score", "score", "sum of CSAT answers / answers", "survey",
        ("cxpulse_csat_score_points_total",), "cxpulse_csat_responses_total"),
    Kpi("ces", "Customer effort score (CES)", "score", "mean of CES answers (1-7)", "survey",
        ("cxpulse_ces_score_points_total",), "cxpulse_ces_responses_total", higher_is_better=False),
    # Response rates: two counts of one event-time window, not a join by response_id (docs/metrics.md,
    # "Survey response rates"), so a falling score can be told from a falling response rate.
    *(Kpi(f"{kind}_response_rate", f"{kind.upper()} response rate", "ratio",
          f"{kind.upper()} answers / {kind.upper()} surveys sent, both counted in the window", "survey",
          (f"cxpulse_{kind}_responses_total",), f"cxpulse_{kind}_surveys_sent_total")
      for kind in ("nps", "csat", "ces")),
)


# Customer-level KPIs (customer_state.py): gauges summed over workers, no `partition` label.
# Label values are bounded: storefront as everywhere, cohort = the last CXPULSE_COHORT_WEEKS
# ISO weeks, nps_category and csat_band 3 values, purchases 1/2/3/4+, horizon 30d/90d, period
# one per CXPULSE_RETENTION_PERIODS (at most 5), period_start 2 per period (this one, the one before).
CUSTOMER: dict[str, tuple[str, tuple[str, ...], str]] = {
    # aggregate key kind -> (metric name, labels after storefront, help)
    "cohort_customers": ("cxpulse_customer_cohort_customers", ("cohort",),
                         "Customers whose first order fell in the ISO week `cohort` (first-order cohort)."),
    "cohort_repeat_customers": ("cxpulse_customer_cohort_repeat_customers", ("cohort",),
                                "Customers of the cohort who ordered again within 90 days of their first order."),
    "cohort_mature_customers": ("cxpulse_customer_cohort_mature_customers", ("cohort",),
                                "Customers of the cohort whose first order is at least 90 days + 1 day old (by the "
                                "customer partition's watermark): those whose repeat purchase is decided."),
    "cohort_mature_repeat_customers": ("cxpulse_customer_cohort_mature_repeat_customers", ("cohort",),
                                       "Of those mature customers, the ones who ordered again within 90 days of their "
                                       "first order (storefront repeat purchase rate = this / mature customers)."),
    "cohort_revenue": ("cxpulse_customer_cohort_revenue", ("cohort", "currency", "horizon"),
                       "Revenue of the cohort's orders within `horizon` (30d, 90d) of each customer's first order, "
                       "in major units (LTV = this / cohort customers)."),
    "nps_customers": ("cxpulse_customer_nps_customers", ("nps_category", "purchases", "horizon"),
                      "Customers with an NPS answer whose first order is at least `horizon` old, by the category "
                      "of their latest answer and their orders within 90 days of the first (1, 2, 3, 4+)."),
    "nps_revenue": ("cxpulse_customer_nps_revenue", ("nps_category", "purchases", "currency", "horizon"),
                    "Revenue within `horizon` of the first order of those customers, in major units "
                    "(LTV by NPS category = this / cxpulse_customer_nps_customers)."),
    "csat_customers": ("cxpulse_customer_csat_customers", ("csat_band", "purchases", "horizon"),
                       "Customers with a CSAT answer whose first order is at least `horizon` old, by the band of "
                       "their latest answer (satisfied 4-5, neutral 3, unsatisfied 1-2) and their orders within "
                       "90 days of the first (1, 2, 3, 4+)."),
    "csat_revenue": ("cxpulse_customer_csat_revenue", ("csat_band", "purchases", "currency", "horizon"),
                     "Revenue within `horizon` of the first order of those customers, in major units "
                     "(LTV by CSAT band = this / cxpulse_customer_csat_customers)."),
    "retention_customers": ("cxpulse_customer_retention_customers", ("period", "period_start"),
                            "Customers of the retention period starting `period_start` (UTC date) of length `period`: "
                            "those who ordered in the period before it."),
    "retention_retained": ("cxpulse_customer_retention_retained", ("period", "period_start"),
                           "Of those, the customers who ordered again in the period (retention = this / customers, "
                           "churn = 1 - retention)."),
    "cohort_retention_customers": ("cxpulse_customer_cohort_retention_customers",
                                   ("cohort", "period", "period_start"),
                                   "Customers of the retention period (as cxpulse_customer_retention_customers) by "
                                   "first-order cohort."),
    "cohort_retention_retained": ("cxpulse_customer_cohort_retention_retained", ("cohort", "period", "period_start"),
                                  "Of those, the customers who ordered again in the period, by first-order cohort."),
    "support_customers": ("cxpulse_customer_post_support_customers", ("cohort",),
                          "Customers who opened a ticket in the ISO week `cohort`."),
    "support_converted": ("cxpulse_customer_post_support_converted", ("cohort",),
                          "Of those, customers who ordered within CXPULSE_POST_SUPPORT (default 7d) after that "
                          "week's first ticket (post-support conversion = this / customers)."),
    "support_mature_customers": ("cxpulse_customer_post_support_mature_customers", ("cohort",),
                                 "Customers with a ticket in the week whose CXPULSE_POST_SUPPORT window after that "
                                 "week's first ticket has passed (+ 1 day, by the customer partition's watermark)."),
    "support_mature_converted": ("cxpulse_customer_post_support_mature_converted", ("cohort",),
                                 "Of those, the customers who ordered in the window (storefront post-support "
                                 "conversion = this / mature customers)."),
    "support_orders": ("cxpulse_customer_post_support_orders", ("cohort", "currency"),
                       "Orders placed within CXPULSE_POST_SUPPORT after the customer's latest ticket before them, "
                       "by the ISO week of that ticket (each order once)."),
    "support_revenue": ("cxpulse_customer_post_support_revenue", ("cohort", "currency"),
                        "Revenue of those orders, in major units (support-generated revenue)."),
    # The checkout join (same stage, keyed by session id; docs/customers.md, "Checkouts"): `day` is the
    # UTC date of the session's first checkout, the last 8 days exported; channel and device its own.
    "checkout_sessions": ("cxpulse_checkout_sessions", ("channel", "device", "day"),
                          "Sessions whose first checkout started on `day` (UTC date), by that checkout's channel "
                          "and device."),
    "checkout_decided": ("cxpulse_checkout_sessions_decided", ("channel", "device", "day"),
                         "Of those, the sessions whose outcome is known: an order of the session placed before "
                         "first checkout + CXPULSE_CHECKOUT_HORIZON (default 1h), or that deadline + the grace "
                         "passed (by the customer partition's watermark) without one."),
    "checkout_abandoned": ("cxpulse_checkout_sessions_abandoned", ("channel", "device", "day"),
                           "Of the decided sessions, those with no order in time: abandoned carts (cart abandonment "
                           "= this / decided; checkout-to-order = 1 - that)."),
}
# Kinds whose value is money in minor units (exported in major units of their `currency` label).
CUSTOMER_MONEY: frozenset[str] = frozenset({"cohort_revenue", "nps_revenue", "csat_revenue", "support_revenue"})



@dataclass(frozen=True)
class CustomerKpi:
    """A customer-level KPI: the recording rule that holds it (``rules.customer_rules``, which a
    test keeps in step) and the one that holds its sample size."""

    title: str
    formula: str
    record: str
    sample: str
    interval: bool = False  # a share with a 95% Wilson interval (``record``_lower / _upper)


CUSTOMER_KPIS: tuple[CustomerKpi, ...] = (
    CustomerKpi("Repeat purchase rate", "mature customers with a 2nd order within 90 days of the first / mature "
                "customers (first order at least 90 days + 1 day old), over the exported first-order cohorts",
                "storefront:cxpulse_customer_repeat_purchase:ratio",
                "storefront:cxpulse_customer_cohort_mature_customers:sum", True),
    CustomerKpi("Repeat purchase rate of a first-order cohort", "customers of the cohort with a 2nd order within 90 "
                "days of the first / customers of the cohort (live: grows until the cohort is 90 days old)",
                "storefront_cohort:cxpulse_customer_repeat_purchase:ratio",
                "storefront_cohort:cxpulse_customer_cohort_customers:sum", True),
    CustomerKpi("LTV of a first-order cohort, 30 / 90 days", "revenue of orders within 30 / 90 days of each "
                "customer's first order / customers of the cohort",
                "storefront_cohort_currency_horizon:cxpulse_customer_revenue_per_customer:ratio",
                "storefront_cohort:cxpulse_customer_cohort_customers:sum"),
    CustomerKpi("LTV by NPS category and purchases", "revenue within the horizon of the first order / customers, "
                "by the category of the latest NPS answer and orders within 90 days (1, 2, 3, 4+); a customer "
                "counts once first order + horizon + 1 day has passed",
                "storefront_nps_category_purchases_currency_horizon:cxpulse_customer_nps_revenue_per_customer:ratio",
                "storefront_nps_category_purchases_horizon:cxpulse_customer_nps_customers:sum"),
    CustomerKpi("LTV by CSAT band and purchases", "as by NPS category, by the band of the latest CSAT answer "
                "(satisfied 4-5, neutral 3, unsatisfied 1-2)",
                "storefront_csat_band_purchases_currency_horizon:cxpulse_customer_csat_revenue_per_customer:ratio",
                "storefront_csat_band_purchases_horizon:cxpulse_customer_csat_customers:sum"),
    CustomerKpi("Customer retention rate", "customers of the previous period who ordered again in this one / "
                "customers of the previous period (periods: blocks of `period` days from Monday 1969-12-29 UTC)",
                "storefront_period_period_start:cxpulse_customer_retention:ratio",
                "storefront_period_period_start:cxpulse_customer_retention_customers:sum", True),
    CustomerKpi("Churn rate", "1 - customer retention rate (customers of the previous period with no order in this "
                "one / customers of the previous period)",
                "storefront_period_period_start:cxpulse_customer_churn:ratio",
                "storefront_period_period_start:cxpulse_customer_retention_customers:sum", True),
    CustomerKpi("Customer retention rate of a first-order cohort", "the same, for the customers of one first-order "
                "cohort", "storefront_cohort_period_period_start:cxpulse_customer_retention:ratio",
                "storefront_cohort_period_period_start:cxpulse_customer_cohort_retention_customers:sum", True),
    CustomerKpi("Post-support conversion", "customers who ordered within CXPULSE_POST_SUPPORT after their week's first "
                "ticket / customers with a ticket, over the exported ticket weeks whose window + 1 day has passed",
                "storefront:cxpulse_customer_post_support_conversion:ratio",
                "storefront:cxpulse_customer_post_support_mature_customers:sum", True),
    CustomerKpi("Post-support conversion of a ticket week", "the same for one ISO week of tickets (live)",
                "storefront_cohort:cxpulse_customer_post_support_conversion:ratio",
                "storefront_cohort:cxpulse_customer_post_support_customers:sum", True),
    CustomerKpi("Cart abandonment (sessions) of a day", "sessions whose first checkout started that day and "
                "placed no order within CXPULSE_CHECKOUT_HORIZON / those sessions, over the decided ones (ordered, "
                "or horizon + grace passed); an order without a checkout counts nowhere",
                "storefront_day:cxpulse_checkout_abandonment:ratio",
                "storefront_day:cxpulse_checkout_sessions_decided:sum", True),
    CustomerKpi("Cart abandonment (sessions) by channel and device", "the same per channel and device of the "
                "first checkout", "storefront_channel_device_day:cxpulse_checkout_abandonment:ratio",
                "storefront_channel_device_day:cxpulse_checkout_sessions_decided:sum", True),
    CustomerKpi("Checkout-to-order rate (sessions)", "1 - cart abandonment: decided checkout sessions that "
                "ordered within the horizon / decided checkout sessions (the funnel's last step, per session)",
                "storefront_channel_device_day:cxpulse_checkout_to_order:ratio",
                "storefront_channel_device_day:cxpulse_checkout_sessions_decided:sum", True),
    CustomerKpi("Revenue after support", "revenue of the orders placed within CXPULSE_POST_SUPPORT after the "
                "customer's latest ticket before them (each order once), over the exported ticket weeks",
                "storefront_currency:cxpulse_customer_post_support_revenue:sum",
                "storefront_currency:cxpulse_customer_post_support_orders:sum"),
)
CUSTOMER_PIPELINE: dict[str, str] = {
    "cxpulse_customer_facts_total": "Facts (counted order, ticket, NPS and CSAT events naming a customer, "
                                    "checkouts and orders naming a session) read from the customer topic, per its "
                                    "partition.",
    "cxpulse_state_customers": "Customers held in the customer state, per customer-topic partition.",
    "cxpulse_state_checkout_sessions": "Sessions held by the checkout join, per customer-topic partition (each "
                                       "forgotten 8 days + horizon + grace after its last fact).",
    "cxpulse_customers_evicted_total": "Customers forgotten (their KPI contribution stays): inactive for "
                                       "CXPULSE_CUSTOMER_TTL, or the least recent beyond CXPULSE_CUSTOMER_MAX.",
    "cxpulse_customer_facts_skipped_total": "Customer facts not applied, by reason: duplicate (resent after a "
                                            "crash) or dropped (a customer past 1,000 orders, tickets or answers).",
}

# CX initiatives (initiatives.py): per worker, summed in the recording rules.
INITIATIVE: dict[str, str] = {
    "cxpulse_initiative_sessions": "Sessions started in the arm's segment and days (arm: treated, control).",
    "cxpulse_initiative_orders": "Orders placed in the initiative's currency in the arm's segment and days.",
    "cxpulse_initiative_revenue": "Revenue of those orders, in major units of the initiative's currency.",
    "cxpulse_initiative_revenue_squares": "Sum of squared order values (major units squared), for the interval.",
    "cxpulse_initiative_investment": "The declared investment, in major units of `currency`.",
    "cxpulse_initiative_gross_margin_ratio": "The declared gross margin (0-1).",
    "cxpulse_initiative_start_timestamp_seconds": "First day of the initiative (Unix seconds).",
    "cxpulse_initiative_end_timestamp_seconds": "End of the initiative's last day (absent while it runs).",
    "cxpulse_initiative_info": "1 per declared initiative; labels: kpi, treated and control segments.",
}
