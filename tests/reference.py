"""The independent reference calculator: what an analyst computes from the events that were sent.

Written from docs/metrics.md ("How events become numbers") alone, sharing no code with the
worker beyond the published contract (``streams.contract``), the metric names of
``streams.catalog`` and its ``CURRENCY_EXPONENT`` table. Partitions come from kafka-python's
murmur2 partitioner, i.e. Kafka's, not ours. The e2e tests compare the workers' /metrics with it.

Input: the events in send order (the simulator's JSON-lines file), which is per-partition offset
order when one producer sent them all. Everything is plain dicts and lists, slow and obvious:

    ref = Reference.compute(events, Params(partitions=4))
    ref.counter("cxpulse_orders_placed_total")   # {segment: value}, summed over partitions
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from kafka.partitioner.default import murmur2

from streams.catalog import COUNTERS, CURRENCY_EXPONENT, HISTOGRAMS
from streams.contract import EVENT_TYPES, FAMILY_KEY

# docs/metrics.md rule 6, in label order.
SEGMENT_LABELS: dict[str, tuple[str, ...]] = {
    "session": ("storefront", "channel", "device"),
    "order": ("storefront", "channel", "device", "currency"),
    "ticket": ("storefront", "support_channel", "reason"),
    "survey": ("storefront", "channel"),
}
# Histogram buckets of docs/metrics.md, in seconds: 15s ... 3d.
BUCKETS_S: tuple[float, ...] = (
    15, 30, 60, 120, 300, 600, 900, 1800, 2700, 3600, 5400, 7200, 10800, 14400, 21600, 28800,
    43200, 57600, 86400, 129600, 172800, 259200,
)
MONEY_FIELDS = ("revenue_minor", "refund_minor", "return_minor")

Segment = tuple[tuple[str, str], ...]  # (("storefront", "x"), ("channel", "web"), ...)


@dataclass(frozen=True)
class Params:
    """The settings the numbers depend on (defaults are the documented ones)."""

    partitions: int = 4
    window_ms: int = 60_000
    grace_ms: int = 120_000
    dedupe_horizon_ms: int = 300_000
    views_ms: tuple[int, ...] = (60_000, 300_000, 900_000, 3_600_000)
    business_hours: str = ""  # CXPULSE_BUSINESS_HOURS: JSON, or the path of a JSON file
    session_timeout_ms: int = 1_800_000  # CXPULSE_SESSION_TIMEOUT: a session idle this long is over

    @classmethod
    def of(cls, settings: Any) -> "Params":
        """From any object with these attribute names (e.g. ``streams.config.Settings``)."""
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


def partition_of(key: str, partitions: int) -> int:
    """Kafka's default partition of a message key (the Java client's and kafka-python's)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


_TS = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+\-]\d{2}:\d{2})$")


def event_ms(occurred_at: str) -> int:
    """RFC 3339 with an offset -> Unix ms (read to the microsecond, then floored to ms)."""
    match = _TS.match(occurred_at)
    assert match, f"not RFC 3339 with an offset: {occurred_at!r}"
    base, fraction, offset = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    moment = datetime.fromisoformat(base + ("+00:00" if offset == "Z" else offset))
    return (int(moment.timestamp()) * 1_000_000 + micros) // 1000


def exact_quantile(values: Iterable[float], q: float) -> float:
    """The smallest value with at least ceil(q x n) values at or below it (rule 9)."""
    ordered = sorted(values)
    assert ordered, "no values"
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def major(minor: int, currency: str) -> Decimal:
    """Exact minor units -> major units of the currency (cents -> euros, JPY as is)."""
    return Decimal(minor).scaleb(-CURRENCY_EXPONENT.get(currency, 2))


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class BusinessHours:
    """docs/operations.md, "Business hours", walked one minute at a time: a UTC minute counts where its
    local wall-clock minute (in the calendar's zone) is inside an opening range of its weekday and its
    local date is no holiday. Every zone offset is a whole number of minutes, so a UTC minute is all
    open or all closed; the ends of a wait count their part of a minute."""

    def __init__(self, text: str) -> None:
        text = text.strip()
        if text and not text.startswith("{"):
            with open(text) as file:
                text = file.read()
        self.calendars: dict[str, tuple[ZoneInfo, dict[int, list[tuple[int, int]]], set[str]]] = {}
        for storefront, spec in (json.loads(text) if text else {}).items():
            hours: dict[int, list[tuple[int, int]]] = defaultdict(list)
            for days, ranges in spec["hours"].items():
                first, _, last = days.partition("-")
                for day in range(_WEEKDAYS.index(first), _WEEKDAYS.index(last or first) + 1):
                    for part in (ranges.split(",") if isinstance(ranges, str) else ranges):
                        opens, closes = part.strip().split("-")
                        hours[day].append((_minutes(opens), _minutes(closes)))
            self.calendars[storefront] = (ZoneInfo(spec["timezone"]), hours, set(spec.get("holidays", [])))
        self._open: dict[tuple[str, int], bool] = {}

    def has(self, storefront: str) -> bool:
        return storefront in self.calendars or "*" in self.calendars

    def _is_open(self, storefront: str, minute: int) -> bool:
        known = self._open.get((storefront, minute))
        if known is None:
            zone, hours, holidays = self.calendars.get(storefront) or self.calendars["*"]
            local = datetime.fromtimestamp(minute * 60, zone)
            at = local.hour * 60 + local.minute
            known = (local.date().isoformat() not in holidays
                     and any(opens <= at < closes for opens, closes in hours.get(local.weekday(), ())))
            self._open[storefront, minute] = known
        return known

    def seconds(self, storefront: str, start_ms: int, end_ms: int) -> float:
        """Seconds of [start, end) the storefront was open."""
        total = 0
        for minute in range(start_ms // 60_000, -(-end_ms // 60_000)):
            if self._is_open(storefront, minute):
                total += min(end_ms, (minute + 1) * 60_000) - max(start_ms, minute * 60_000)
        return max(total, 0) / 1000


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _group(family: str, labels: dict[str, str], by: str | None) -> tuple[str, ...]:
    """The group a segment belongs to: its storefront, and its channel when ``by`` asks
    (a ticket's channel is its support channel), or its reason (tickets only)."""
    if by is None:
        return (labels["storefront"],)
    if by == "reason":
        return (labels["storefront"], labels.get("reason", "-"))
    return (labels["storefront"], labels["support_channel" if family == "ticket" else "channel"])


@dataclass
class _Ticket:
    created_ms: int | None = None
    channel: str | None = None
    reason: str | None = None
    category: str | None = None
    agent_replies: int = 0
    earliest_reply_ms: int | None = None
    first_response_done: bool = False
    reopened: bool = False


@dataclass
class Reference:
    """Every number docs/metrics.md says the events make, kept per source partition."""

    params: Params
    # per (family, partition)
    watermark_ms: dict[tuple[str, int], int]
    counted: dict[tuple[str, int], int]
    late: dict[tuple[str, int], int]
    duplicate: dict[tuple[str, int], int]
    # one decision per input event, in input order: "counted" | "late" | "duplicate"
    decisions: list[str]
    partitions_of: list[int]
    # (family, partition, window_start_ms, segment, field) -> int
    components: dict[tuple[str, int, int, Segment, str], int]
    # (family, partition, window_start_ms, segment, histogram field) -> [seconds, ...]
    samples: dict[tuple[str, int, int, Segment, str], list[float]]
    business: BusinessHours = BusinessHours("")
    # rule 16: (window_start_ms, (storefront, channel, device), visitor_id) of every counted session.started
    visits: list[tuple[int, tuple[str, str, str], str]] = field(default_factory=list)
    # rule 17: (partition, window_start_ms, storefront, product_category, field) -> count, and -> [seconds, ...]
    category_counts: dict[tuple[int, int, str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    category_samples: dict[tuple[int, int, str, str, str], list[float]] = field(
        default_factory=lambda: defaultdict(list))

    # ------------------------------------------------------------------ computing
    @classmethod
    def compute(cls, events: Iterable[dict[str, Any]], params: Params = Params()) -> "Reference":
        ref = cls(params, {}, defaultdict(int), defaultdict(int), defaultdict(int), [], [],
                  defaultdict(int), defaultdict(list))
        seen: dict[tuple[str, int], dict[str, int]] = defaultdict(dict)  # event_id -> its event time
        tickets: dict[tuple[int, str], _Ticket] = defaultdict(_Ticket)
        # rule 15: per (partition, session id) the funnel steps reached and the last event time
        sessions: dict[tuple[int, str], tuple[set[str], int]] = {}
        ref.business = BusinessHours(params.business_hours)
        for event in events:
            family = EVENT_TYPES[event["type"]].family
            partition = partition_of(event[FAMILY_KEY[family]], params.partitions)
            source = (family, partition)
            ts = event_ms(event["occurred_at"])
            ref.partitions_of.append(partition)
            watermark = ref.watermark_ms.get(source)
            remembered = seen[source].get(event["event_id"])
            if remembered is not None and watermark - remembered < params.dedupe_horizon_ms:
                ref.duplicate[source] += 1
                ref.decisions.append("duplicate")
                continue
            window_end = ts - ts % params.window_ms + params.window_ms
            if watermark is not None and watermark >= window_end + params.grace_ms:
                ref.late[source] += 1
                ref.decisions.append("late")
                continue
            ref.decisions.append("counted")
            ref.counted[source] += 1
            seen[source][event["event_id"]] = ts
            ref.watermark_ms[source] = ts if watermark is None else max(watermark, ts)
            if family == "ticket":
                ref._apply_ticket(partition, event, ts, tickets[partition, event["ticket_id"]],
                                  ref.watermark_ms[source])
            else:
                ref._apply_plain(family, partition, event, ts)
                if family == "session":
                    ref._apply_funnel(partition, event, ts, sessions, ref.watermark_ms[source])
        return ref

    def _apply_funnel(self, partition: int, event: dict[str, Any], ts: int,
                      sessions: dict[tuple[int, str], tuple[set[str], int]], watermark: int) -> None:
        """Rule 15: a session's first product view, cart add and checkout count it once each; a session
        whose last event is the session timeout behind the watermark (after this event) is over."""
        key = (partition, event["session_id"])
        steps, last = sessions.get(key, (set(), ts))
        if key in sessions and last < watermark - self.params.session_timeout_ms:
            steps, last = set(), ts
        sessions[key] = (steps, max(last, ts))
        step = {"session.product_viewed": "sessions_viewed", "session.cart_added": "sessions_carted",
                "session.checkout_started": "sessions_checked_out"}.get(event["type"])
        if step is not None and step not in steps:
            steps.add(step)
            seg = {"storefront": event["storefront"], "channel": event["channel"], "device": event["device"]}
            self._add("session", partition, ts, seg, step)

    def _window(self, ts: int) -> int:
        return ts - ts % self.params.window_ms

    def _add(self, family: str, partition: int, ts: int, segment: dict[str, str], field: str, value: int = 1) -> None:
        seg = tuple((label, segment[label]) for label in SEGMENT_LABELS[family])
        self.components[family, partition, self._window(ts), seg, field] += value

    def _apply_plain(self, family: str, partition: int, event: dict[str, Any], ts: int) -> None:
        kind = event["type"]
        if family == "session":
            seg = {"storefront": event["storefront"], "channel": event["channel"], "device": event["device"]}
            name = {"session.started": "sessions_started", "session.product_viewed": "product_views",
                    "session.cart_added": "carts_added", "session.checkout_started": "checkouts_started"}[kind]
            self._add(family, partition, ts, seg, name)
            if kind == "session.started":
                self.visits.append((self._window(ts), (seg["storefront"], seg["channel"], seg["device"]),
                                    event["visitor_id"]))
        elif family == "order":
            seg = {"storefront": event["storefront"], "channel": event.get("channel") or "unknown",
                   "device": event.get("device") or "unknown", "currency": event.get("currency") or "XXX"}
            if kind == "order.placed":
                self._add(family, partition, ts, seg, "orders_placed")
                self._add(family, partition, ts, seg, "revenue_minor", event["total_minor"])
                if event["first_order"]:
                    self._add(family, partition, ts, seg, "first_orders")
            elif kind == "order.refunded":
                self._add(family, partition, ts, seg, "refunds")
                self._add(family, partition, ts, seg, "refund_minor", event["amount_minor"])
            else:  # order.returned
                self._add(family, partition, ts, seg, "returns")
                self._add(family, partition, ts, seg, "return_minor", event.get("amount_minor") or 0)
        else:  # survey
            seg = {"storefront": event["storefront"], "channel": event.get("channel") or "unknown"}
            if kind == "survey.sent":  # rule 12: one survey sent of its kind, in its own window
                self._add(family, partition, ts, seg, f"{event['kind']}_sent")
                return
            kind, score = event["kind"], event["score"]
            self._add(family, partition, ts, seg, f"{kind}_responses")
            self._add(family, partition, ts, seg, f"{kind}_score_sum", score)
            if kind == "nps" and score >= 9:
                self._add(family, partition, ts, seg, "nps_promoters")
            if kind == "nps" and score <= 6:
                self._add(family, partition, ts, seg, "nps_detractors")
            if kind == "csat" and score >= 4:
                self._add(family, partition, ts, seg, "csat_satisfied")

    def _apply_ticket(self, partition: int, event: dict[str, Any], ts: int, ticket: _Ticket, watermark: int) -> None:
        kind = event["type"]
        if kind == "ticket.created" and ticket.created_ms is None:
            ticket.created_ms = ts
            ticket.channel = event["support_channel"]
            ticket.reason = event.get("reason") or ticket.reason  # rule 13: the creation's reason, if it has one
            ticket.category = event.get("product_category") or ticket.category  # rule 17: the same for the category
        else:
            if ticket.channel is None and event.get("support_channel"):
                ticket.channel = event["support_channel"]  # until the creation says otherwise
            if ticket.reason is None and event.get("reason"):
                ticket.reason = event["reason"]  # the first reason any of its events gave
            if ticket.category is None and event.get("product_category"):
                ticket.category = event["product_category"]
        seg = {"storefront": event["storefront"], "support_channel": ticket.channel or "unknown",
               "reason": ticket.reason or "unknown"}
        category = ticket.category  # rule 17: what the ticket has been about since this event, if anything

        def observe(field: str, at_ms: int, seconds: float) -> None:
            key = ("ticket", partition, self._window(at_ms),
                   tuple((label, seg[label]) for label in SEGMENT_LABELS["ticket"]), field)
            self.samples[key].append(seconds)
            if category is not None:
                self.category_samples[partition, self._window(at_ms), seg["storefront"], category, field].append(seconds)

        def count(field: str) -> None:
            self._add("ticket", partition, ts, seg, field)
            if category is not None:
                self.category_counts[partition, self._window(ts), seg["storefront"], category, field] += 1

        if kind == "ticket.created":
            count("tickets_created")
        elif kind == "ticket.replied" and event["author"] == "agent" and event["public"]:
            ticket.agent_replies += 1
            if ticket.earliest_reply_ms is None or ts < ticket.earliest_reply_ms:
                ticket.earliest_reply_ms = ts
        elif kind == "ticket.resolved":
            if ticket.created_ms is None:
                count("resolved_unmatched")
            else:
                observe("resolution", ts, (ts - ticket.created_ms) / 1000)
                if self.business.has(event["storefront"]):  # the same wait, in the storefront's opening hours
                    observe("resolution_business", ts, self.business.seconds(event["storefront"], ticket.created_ms, ts))
                if ticket.agent_replies <= 1 and not ticket.reopened:
                    count("tickets_resolved_one_touch")
        elif kind == "ticket.reopened":
            ticket.reopened = True
            count("tickets_reopened")
        if (not ticket.first_response_done and ticket.created_ms is not None
                and ticket.earliest_reply_ms is not None):
            ticket.first_response_done = True
            at = ticket.earliest_reply_ms
            if watermark >= self._window(at) + self.params.window_ms + self.params.grace_ms:
                at = ts  # rule 8: that reply's window has closed, so it counts where the pair completed
            observe("first_response", at, (ticket.earliest_reply_ms - ticket.created_ms) / 1000)
            if self.business.has(event["storefront"]):
                observe("first_response_business", at,
                        self.business.seconds(event["storefront"], ticket.created_ms, ticket.earliest_reply_ms))

    # ------------------------------------------------------------------ reading
    def families(self) -> set[str]:
        return {family for family, _ in self.counted} | {family for family, _ in self.late}

    def field_totals(self, family: str, field: str, partitions: Iterable[int] | None = None,
                     start_ms: int | None = None, end_ms: int | None = None) -> dict[Segment, int]:
        """Sum of one component per segment, over the given partitions and base windows in [start, end)."""
        wanted = None if partitions is None else set(partitions)
        totals: dict[Segment, int] = defaultdict(int)
        for (fam, partition, window, seg, name), value in self.components.items():
            if fam != family or name != field or (wanted is not None and partition not in wanted):
                continue
            if (start_ms is not None and window < start_ms) or (end_ms is not None and window >= end_ms):
                continue
            totals[seg] += value
        return dict(totals)

    def field_samples(self, field: str, partitions: Iterable[int] | None = None,
                      start_ms: int | None = None, end_ms: int | None = None) -> dict[Segment, list[float]]:
        """Observations (seconds) of a histogram field per segment, as ``field_totals`` selects them."""
        wanted = None if partitions is None else set(partitions)
        found: dict[Segment, list[float]] = defaultdict(list)
        for (_, partition, window, seg, name), values in self.samples.items():
            if name != field or (wanted is not None and partition not in wanted):
                continue
            if (start_ms is not None and window < start_ms) or (end_ms is not None and window >= end_ms):
                continue
            found[seg].extend(values)
        return dict(found)

    def counter(self, name: str, partitions: Iterable[int] | None = None) -> dict[Segment, float | int | Decimal]:
        """Expected value of a cumulative counter of the catalog, per segment, summed over partitions.

        Money counters come back as exact ``Decimal`` major units of the segment's currency.
        """
        spec = next(c for c in COUNTERS if c.name == name)
        totals = self.field_totals(spec.family, spec.field, partitions)
        if spec.field in MONEY_FIELDS:
            return {seg: major(value, dict(seg)["currency"]) for seg, value in totals.items()}
        return totals

    def histogram(self, name: str, partitions: Iterable[int] | None = None,
                  labels: Iterable[str] | None = None) -> dict[Segment, dict[str, float]]:
        """Expected ``le`` bucket counts (keys like "15.0", "+Inf"), ``count`` and ``sum`` per segment,
        or, given ``labels`` (some of the segment's, e.g. a histogram's own: no ticket reason), per
        value of those: counted from the observations of every segment that shares them, together."""
        spec = next(h for h in HISTOGRAMS if h.name == name)
        keep = None if labels is None else tuple(labels)
        grouped: dict[Segment, list[float]] = defaultdict(list)
        for seg, values in self.field_samples(spec.field, partitions).items():
            pairs = dict(seg)
            key = seg if keep is None else tuple((label, pairs[label]) for label in keep)
            grouped[key].extend(values)
        result = {}
        for seg, values in grouped.items():
            buckets = {str(float(le)): sum(1 for v in values if v <= le) for le in BUCKETS_S}
            buckets["+Inf"] = len(values)
            result[seg] = {**buckets, "count": len(values), "sum": sum(values)}
        return result

    def view(self, family: str, start_ms: int, view_ms: int,
             partitions: Iterable[int] | None = None) -> dict[str, dict[Segment, Any]]:
        """The window gauges of view window [start, start + view), restricted to ``partitions``.

        Keys are window gauge names (``cxpulse_window_*``): counts per segment, money in exact
        ``Decimal`` major units, and for histograms the sorted observations (list of seconds)
        under the gauge name of the quantiles.
        """
        assert start_ms % view_ms == 0, "views are aligned to the Unix epoch"
        parts = None if partitions is None else list(partitions)
        result: dict[str, dict[Segment, Any]] = {}
        for spec in COUNTERS:
            if spec.family != family:
                continue
            totals = self.field_totals(family, spec.field, parts, start_ms, start_ms + view_ms)
            if spec.field in MONEY_FIELDS:
                totals = {seg: major(v, dict(seg)["currency"]) for seg, v in totals.items()}
            result[spec.window_name] = totals
        for spec in HISTOGRAMS:
            if spec.family != family:
                continue
            found = self.field_samples(spec.field, parts, start_ms, start_ms + view_ms)
            result[spec.window_name] = {seg: sorted(values) for seg, values in found.items()}
            result[spec.window_count_name] = {seg: len(values) for seg, values in found.items()}
        return result

    def window_visitors(self, end_ms: int, view_ms: int) -> dict[tuple[str, tuple], int]:
        """Rule 16: distinct visitors of the counted session starts in [end - view, end), over every
        partition: ``("segment", (storefront, channel, device))`` and ``("storefront", (storefront,))``."""
        seen: dict[tuple[str, tuple], set[str]] = defaultdict(set)
        for window, segment, visitor in self.visits:
            if end_ms - view_ms <= window < end_ms:
                seen["segment", segment].add(visitor)
                seen["storefront", segment[:1]].add(visitor)
        return {key: len(visitors) for key, visitors in seen.items()}

    def window_kpis(self, end_ms: int, view_ms: int, by: str | None = None) -> dict[tuple[str, tuple], Any]:
        """Every KPI of docs/metrics.md ("KPIs") over the event-time window [end - view, end),
        summed over all partitions, per storefront (``by=None``) or per storefront and channel
        (``by="channel"``: the family's ``channel`` label, ``support_channel`` for tickets).

        Keys are (kpi key, group), the group being the label values in the order storefront,
        [channel | support_channel], [currency]. A KPI is absent where its denominator is 0.
        Money is exact (``Decimal``); quantiles are the exact rank quantile (rule 9).

        ``by="reason"``: the ticket KPIs per storefront and reason (rule 13), the ticket-to-order
        rate as the reason's tickets / all orders of the storefront; ``by="product_category"`` the same per
        storefront and product category (rule 17), of the tickets with one.
        """
        if by == "reason":
            return self._reason_kpis(end_ms, view_ms)
        if by == "product_category":
            return self._category_kpis(end_ms, view_ms)
        start = end_ms - view_ms
        sums: dict[tuple[str, str, tuple], int] = defaultdict(int)  # (field, family, group) -> total
        currencies: dict[tuple, set[str]] = defaultdict(set)
        for (family, _, window, seg, name), value in self.components.items():
            if not start <= window < end_ms:
                continue
            labels = dict(seg)
            group = _group(family, labels, by)
            sums[name, family, group] += value
            if family == "order":
                sums[name, "order$", (*group, labels["currency"])] += value
                currencies[group].add(labels["currency"])
        samples: dict[tuple[str, tuple], list[float]] = defaultdict(list)
        for (family, _, window, seg, name), values in self.samples.items():
            if start <= window < end_ms:
                samples[name, _group(family, dict(seg), by)].extend(values)

        def total(name: str, family: str, group: tuple) -> int:
            return sums.get((name, family, group), 0)

        out: dict[tuple[str, tuple], Any] = {}
        groups = {group for (_, family, group) in sums if family != "order$"} | {group for _, group in samples}
        for group in groups:
            sessions = total("sessions_started", "session", group)
            checkouts = total("checkouts_started", "session", group)
            orders = total("orders_placed", "order", group)
            tickets = total("tickets_created", "ticket", group)
            if sessions:
                out["conversion", group] = orders / sessions
                for currency in currencies.get(group, ()):
                    revenue = total("revenue_minor", "order$", (*group, currency))
                    out["revenue_per_visitor", (*group, currency)] = major(revenue, currency) / sessions
            if checkouts:
                out["cart_abandonment", group] = 1 - orders / checkouts
            # the funnel per session (rule 15): each step's sessions over the step before's
            for key, part, whole in (("view_rate", "sessions_viewed", "sessions_started"),
                                     ("add_to_cart_rate", "sessions_carted", "sessions_viewed"),
                                     ("checkout_rate", "sessions_checked_out", "sessions_carted")):
                if total(whole, "session", group):
                    out[key, group] = total(part, "session", group) / total(whole, "session", group)
            if orders:
                refunds = total("refunds", "order", group) + total("returns", "order", group)
                out["refund_return_rate", group] = refunds / orders
                out["repeat_purchase", group] = 1 - total("first_orders", "order", group) / orders
                out["ticket_to_order", group] = tickets / orders
            for currency in currencies.get(group, ()):
                placed = total("orders_placed", "order$", (*group, currency))
                if placed:
                    revenue = total("revenue_minor", "order$", (*group, currency))
                    out["average_order_value", (*group, currency)] = major(revenue, currency) / placed
            resolved = len(samples.get(("resolution", group), ()))
            if resolved:
                out["first_contact_resolution", group] = total("tickets_resolved_one_touch", "ticket", group) / resolved
            nps = total("nps_responses", "survey", group)
            if nps:
                promoters, detractors = total("nps_promoters", "survey", group), total("nps_detractors", "survey", group)
                out["nps", group] = 100 * (promoters - detractors) / nps
            csat = total("csat_responses", "survey", group)
            if csat:
                out["csat", group] = total("csat_satisfied", "survey", group) / csat
                out["csat_mean", group] = total("csat_score_sum", "survey", group) / csat
            ces = total("ces_responses", "survey", group)
            if ces:
                out["ces", group] = total("ces_score_sum", "survey", group) / ces
            for kind in ("nps", "csat", "ces"):  # answers / surveys sent, each counted in the window
                sent = total(f"{kind}_sent", "survey", group)
                if sent:
                    out[f"{kind}_response_rate", group] = total(f"{kind}_responses", "survey", group) / sent
        for (field, group), values in samples.items():
            prefix = field  # first_response, resolution and their _business twins
            out[f"{prefix}_p50", group] = exact_quantile(values, 0.5)
            out[f"{prefix}_p90", group] = exact_quantile(values, 0.9)
        return out

    def _reason_kpis(self, end_ms: int, view_ms: int) -> dict[tuple[str, tuple], Any]:
        """Rule 13: the ticket KPIs per (storefront, reason) in the window."""
        start = end_ms - view_ms
        tickets: dict[tuple[str, tuple], int] = defaultdict(int)  # (field, (storefront, reason)) -> total
        for (family, _, window, seg, name), value in self.components.items():
            if family == "ticket" and start <= window < end_ms:
                labels = dict(seg)
                tickets[name, (labels["storefront"], labels["reason"])] += value
        samples: dict[tuple[str, tuple], list[float]] = defaultdict(list)
        for (family, _, window, seg, name), values in self.samples.items():
            if start <= window < end_ms:
                labels = dict(seg)
                samples[name, (labels["storefront"], labels["reason"])].extend(values)
        return self._ticket_group_kpis(tickets, samples, start, end_ms)

    def _category_kpis(self, end_ms: int, view_ms: int) -> dict[tuple[str, tuple], Any]:
        """Rule 17: the ticket KPIs of the tickets about each (storefront, product category) in the window."""
        start = end_ms - view_ms
        tickets: dict[tuple[str, tuple], int] = defaultdict(int)
        samples: dict[tuple[str, tuple], list[float]] = defaultdict(list)
        for (_, window, storefront, category, name), value in self.category_counts.items():
            if start <= window < end_ms:
                tickets[name, (storefront, category)] += value
        for (_, window, storefront, category, name), values in self.category_samples.items():
            if start <= window < end_ms:
                samples[name, (storefront, category)].extend(values)
        return self._ticket_group_kpis(tickets, samples, start, end_ms)

    def _ticket_group_kpis(self, tickets: dict[tuple[str, tuple], int], samples: dict[tuple[str, tuple], list[float]],
                           start: int, end_ms: int) -> dict[tuple[str, tuple], Any]:
        """The ticket KPIs of groups (storefront, reason or category) from their counts and times in the window:
        ticket-to-order over every order of the storefront, the quantiles, FCR."""
        orders: dict[str, int] = defaultdict(int)  # storefront -> orders placed
        for (family, _, window, seg, name), value in self.components.items():
            if family == "order" and name == "orders_placed" and start <= window < end_ms:
                orders[dict(seg)["storefront"]] += value
        out: dict[tuple[str, tuple], Any] = {}
        # a group with any ticket event in the window has its series (0 tickets created, say)
        for group in {group for _, group in tickets} | {group for _, group in samples}:
            if orders.get(group[0]):
                out["ticket_to_order", group] = tickets.get(("tickets_created", group), 0) / orders[group[0]]
        for (name, group), values in samples.items():
            out[f"{name}_p50", group] = exact_quantile(values, 0.5)
            out[f"{name}_p90", group] = exact_quantile(values, 0.9)
            if name == "resolution":
                one_touch = tickets.get(("tickets_resolved_one_touch", group), 0)
                out["first_contact_resolution", group] = one_touch / len(values)
        return out

    def partitions_of_family(self, family: str) -> set[int]:
        return {p for fam, p in self.watermark_ms if fam == family}
