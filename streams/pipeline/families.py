"""What each event type adds to the base windows: the KPI meaning of the four families.

The window state (``window_state.py``) decides *whether* an event counts (dedupe,
lateness, label bounds) and persists the result; the handlers here decide *what* it
counts. Each calls ``add(window start, segment, field, amount, duration_ms or None)``
once per field it adds (docs/metrics.md defines the fields), and tickets keep a small
record between their events (``Ticket``) to pair creation, first reply and resolution.

    >>> SEGMENT_LABELS["ticket"]
    ('storefront', 'support_channel', 'reason')
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from streams.contract import NO_CURRENCY, Family
from streams.pipeline.windows import is_late, window_start

UNKNOWN = "unknown"  # an optional label the event left out

# Label names of each family's segment, in the order of the segment tuple.
SEGMENT_LABELS: dict[Family, tuple[str, ...]] = {
    "session": ("storefront", "channel", "device"),
    "order": ("storefront", "channel", "device", "currency"),
    "ticket": ("storefront", "support_channel", "reason"),
    "survey": ("storefront", "channel"),
}


def widen(family: str, segment: Any) -> tuple:
    """A segment as this version labels it: one recorded before the family's segment gained a label
    (the ticket's ``reason``) gets ``unknown`` for it, so state written by an older worker restores.

        >>> widen("ticket", ["shop", "chat"]), widen("ticket", ["shop", "chat", "shipping"])
        (('shop', 'chat', 'unknown'), ('shop', 'chat', 'shipping'))
    """
    missing = len(SEGMENT_LABELS.get(family, segment)) - len(segment)  # type: ignore[call-overload]
    return tuple(segment) + (UNKNOWN,) * missing if missing > 0 else tuple(segment)


# Day totals kept per segment (for initiative ROI over months): field -> also kept.
DAY_FIELDS = frozenset({"sessions_started", "orders_placed", "revenue_minor"})
# Counted events that name a customer become facts for the customer state (customer_state.py):
# event type (and survey kind) -> fact kind. CES answers are no customer fact.
FACT_KINDS = {"order.placed": "o", "ticket.created": "t", "nps": "n", "csat": "c"}
# Event types that may make facts: those above, and the two sides of the checkout join (a checkout
# started, an order that names its session), which travel keyed by session id.
FACT_TYPES = frozenset({"order.placed", "ticket.created", "survey.answered", "session.checkout_started"})

# add(window start, segment, field, amount, duration_ms or None[, also: one more count of another field]
#     [, breakdown: a ticket's product category: the same addition to ``breakdown_field`` in the window only])
Add = Callable[..., None]
# The ticket family's breakdown by product category (docs/metrics.md, rule 17): not a segment label
# (storefront x support channel x reason x category would overrun the segment budget) but fields of the
# ticket's window cell named ``<field>|<category>``, summed by the merge stage like any field and written
# per (storefront, product_category) only. Windows only: the running totals and /metrics never carry it.
BREAKDOWN = "product_category"
BREAKDOWN_SEPARATOR = "|"


def breakdown_field(name: str, category: str) -> str:
    """The cell field of ``name`` for one product category.

        >>> breakdown_field("tickets_created", "footwear"), split_breakdown("tickets_created|footwear")
        ('tickets_created|footwear', ('tickets_created', 'footwear'))
    """
    return name + BREAKDOWN_SEPARATOR + category


def split_breakdown(field: str) -> tuple[str, str] | None:
    """(field, category) of a breakdown field, None for a field of the segment."""
    name, separator, category = field.partition(BREAKDOWN_SEPARATOR)
    return (name, category) if separator else None

_SESSION_FIELD = {
    "session.started": "sessions_started",
    "session.product_viewed": "product_views",
    "session.cart_added": "carts_added",
    "session.checkout_started": "checkouts_started",
}
# The funnel per session: the first event of each step in a session counts the session once
# (bit in the session's mask, field counted), so a step rate is sessions over sessions.
_FUNNEL_STEP = {"session.product_viewed": (1, "sessions_viewed"), "session.cart_added": (2, "sessions_carted"),
                "session.checkout_started": (4, "sessions_checked_out")}
_SURVEY_FIELDS = {kind: (f"{kind}_responses", f"{kind}_score_sum") for kind in ("nps", "csat", "ces")}
# Surveys sent, per kind: the response-rate denominator (answers / surveys sent in one window).
_SENT_FIELD = {kind: f"{kind}_sent" for kind in ("nps", "csat", "ces")}


@dataclass
class Ticket:
    """What a partition remembers of one open ticket (never exported)."""

    through: int = 0
    created_ms: int | None = None
    channel: str | None = None
    storefront: str = UNKNOWN
    first_reply_ms: int | None = None  # earliest public agent reply seen
    frt_recorded: bool = False
    agent_replies: int = 0
    reopened: bool = False
    last_ms: int = 0
    reason: str | None = None  # the issue type (contract.REASONS); last, so older records restore without it
    category: str | None = None  # its product_category as bounded (labels.LabelBounds.value), or None

    def to_json(self) -> bytes:
        return orjson.dumps([self.through, self.created_ms, self.channel, self.storefront, self.first_reply_ms,
                             self.frt_recorded, self.agent_replies, self.reopened, self.last_ms, self.reason,
                             self.category])

    @classmethod
    def from_json(cls, data: bytes) -> "Ticket":
        """A ticket record; one written before tickets had a reason (9 fields) or a product category
        (10) restores with none.

            >>> Ticket.from_json(b'[5,1000,"chat","shop",null,false,0,false,1000]').reason is None
            True
            >>> Ticket.from_json(b'[5,1000,"chat","shop",null,false,0,false,1000,"payment"]').category is None
            True
        """
        return cls(*orjson.loads(data))


def facts(body: Any, ts_ms: int, bound: Callable[[str, str], str]) -> list[list[Any]]:
    """What the customer stage needs of a counted event (``FACT_TYPES``), in the customer fact's
    wire format (``exchange``, read by ``customer_state``), label values bounded like the segment's
    by ``bound(label, value)`` (storefront, currency and channel become labels there):

    * an event that names a customer: ``[kind, storefront, customer_id, event_id, ts_ms, ...]``,
      kind ``o`` (order: amount, currency), ``t`` (ticket), ``n`` / ``c`` (NPS / CSAT answer: score);
    * a checkout started: ``["k", storefront, session_id, event_id, ts_ms, channel, device]``;
    * an order that names its session: ``["s", storefront, session_id, event_id, ts_ms]``.
    """
    kind = body.TYPE
    if kind == "session.checkout_started":
        return [["k", bound("storefront", body.storefront), body.session_id, body.event_id, ts_ms,
                 bound("channel", body.channel), body.device]]
    out: list[list[Any]] = []
    customer_id = getattr(body, "customer_id", None)
    short = FACT_KINDS.get(body.kind if kind == "survey.answered" else kind)
    storefront = bound("storefront", body.storefront)
    if customer_id is not None and short is not None:
        found = [short, storefront, customer_id, body.event_id, ts_ms]
        if short == "o":
            found += [body.total_minor, bound("currency", body.currency)]
        elif short in ("n", "c"):
            found.append(body.score)
        out.append(found)
    if kind == "order.placed" and body.session_id is not None:
        out.append(["s", storefront, body.session_id, body.event_id, ts_ms])
    return out


# One handler per family: handler(state, body, ts_ms, offset, touched ticket ids, add).
def on_session(state: Any, body: Any, ts_ms: int, offset: int, touched: set[str], add: Add) -> None:
    """Each session event counts in its window; the first product view, cart add and checkout of a
    session also count the session once (``state.funnels``: session id -> [steps mask, last event
    time]). A session whose last event is ``session_timeout_ms`` behind the watermark is over: a
    later event of its id starts a new one (decided per event, so a replay decides the same way)."""
    kind = body.TYPE
    session_id = body.session_id
    funnel = state.funnels.get(session_id)
    if funnel is None:
        funnel = state.funnels[session_id] = [0, ts_ms]
        heapq.heappush(state.funnel_expiry, (ts_ms, session_id))  # eviction's entry (``_evict_sessions``)
    elif funnel[1] < state.meta.watermark_ms - state.session_timeout_ms:
        funnel = state.funnels[session_id] = [0, ts_ms]  # its entry stays, behind the timeout already
    elif ts_ms > funnel[1]:
        funnel[1] = ts_ms
    touched.add(session_id)
    step = _FUNNEL_STEP.get(kind)
    first = None
    if step is not None and not funnel[0] & step[0]:
        funnel[0] |= step[0]
        first = step[1]
    start = ts_ms - ts_ms % state.window_ms
    segment = (body.storefront, body.channel, body.device)
    add(start, segment, _SESSION_FIELD[kind], 1, None, first)
    if kind == "session.started":  # distinct visitors of the window (docs/metrics.md, rule 16)
        state.visit(start, segment, body.visitor_id)


def on_order(state: Any, body: Any, ts_ms: int, offset: int, touched: set[str], add: Add) -> None:
    segment = (body.storefront, body.channel or UNKNOWN, body.device or UNKNOWN, body.currency or NO_CURRENCY)
    start = ts_ms - ts_ms % state.window_ms
    kind = body.TYPE
    if kind == "order.placed":
        add(start, segment, "orders_placed", 1, None)
        add(start, segment, "revenue_minor", body.total_minor, None)
        if body.first_order:
            add(start, segment, "first_orders", 1, None)
    elif kind == "order.refunded":
        add(start, segment, "refunds", 1, None)
        add(start, segment, "refund_minor", body.amount_minor, None)
    else:
        add(start, segment, "returns", 1, None)
        add(start, segment, "return_minor", body.amount_minor or 0, None)


def on_survey(state: Any, body: Any, ts_ms: int, offset: int, touched: set[str], add: Add) -> None:
    segment = (body.storefront, body.channel or UNKNOWN)
    start = ts_ms - ts_ms % state.window_ms
    if body.TYPE == "survey.sent":  # an invitation, counted in its own window: never joined to its answer
        add(start, segment, _SENT_FIELD[body.kind], 1, None)
        return
    kind, score = body.kind, body.score
    responses, score_sum = _SURVEY_FIELDS[kind]
    add(start, segment, responses, 1, None)
    add(start, segment, score_sum, score, None)
    if kind == "nps":
        if score >= 9:
            add(start, segment, "nps_promoters", 1, None)
        elif score <= 6:
            add(start, segment, "nps_detractors", 1, None)
    elif kind == "csat" and score >= 4:
        add(start, segment, "csat_satisfied", 1, None)


def on_ticket(state: Any, body: Any, ts_ms: int, offset: int, touched: set[str], add: Add) -> None:
    ticket_id = body.ticket_id
    ticket = state.tickets.get(ticket_id)
    if ticket is None:
        ticket = state.tickets[ticket_id] = Ticket()
    if offset < ticket.through:
        # This ticket's record already holds the event; so do the windows
        # its observations went to (they are written before tickets).
        return
    touched.add(ticket_id)
    ticket.storefront = body.storefront
    ticket.last_ms = max(ticket.last_ms, ts_ms)
    if ticket.channel is None and body.support_channel:
        ticket.channel = body.support_channel
    kind = body.TYPE
    if kind == "ticket.created":  # the creation decides the reason and category; later events only fill one in
        ticket.reason = body.reason or ticket.reason
        if body.product_category:
            ticket.category = state.category(body.product_category)
    else:
        if ticket.reason is None and body.reason:
            ticket.reason = body.reason
        if ticket.category is None and body.product_category:
            ticket.category = state.category(body.product_category)
    start = ts_ms - ts_ms % state.window_ms
    segment = (ticket.storefront, ticket.channel or UNKNOWN, ticket.reason or UNKNOWN)
    category = ticket.category
    if kind == "ticket.created":
        ticket.created_ms = ts_ms
        ticket.channel = body.support_channel
        segment = (ticket.storefront, ticket.channel, ticket.reason or UNKNOWN)
        add(start, segment, "tickets_created", 1, None, None, category)
    elif kind == "ticket.replied":
        if body.author == "agent" and body.public:
            ticket.agent_replies += 1
            if ticket.first_reply_ms is None or ts_ms < ticket.first_reply_ms:
                ticket.first_reply_ms = ts_ms
    elif kind == "ticket.reopened":
        ticket.reopened = True
        add(start, segment, "tickets_reopened", 1, None, None, category)
    elif kind == "ticket.resolved" and ticket.created_ms is not None:
        add(start, segment, "resolution", 1, ts_ms - ticket.created_ms, None, category)
        calendar = state.calendars.get(ticket.storefront) if state.calendars else None
        if calendar is not None:  # the same wait, counting only the storefront's business hours
            add(start, segment, "resolution_business", 1, calendar.business_ms(ticket.created_ms, ts_ms), None,
                category)
        if ticket.agent_replies <= 1 and not ticket.reopened:
            add(start, segment, "tickets_resolved_one_touch", 1, None, None, category)
    elif kind == "ticket.resolved":
        add(start, segment, "resolved_unmatched", 1, None, None, category)
    if not ticket.frt_recorded and ticket.created_ms is not None and ticket.first_reply_ms is not None:
        _first_response(state, ticket, ts_ms, segment, add)


def _first_response(state: Any, ticket: Ticket, ts_ms: int, segment: tuple, add: Add) -> None:
    """The ticket's first response time, once creation and first agent reply are both known."""
    ticket.frt_recorded = True
    window_ms = state.window_ms
    start = window_start(ticket.first_reply_ms, window_ms)
    watermark = state.meta.watermark_ms
    if watermark is not None and is_late(ticket.first_reply_ms, watermark, window_ms, state.grace_ms):
        # A reply dated before its ticket's creation arrived first and that window has
        # closed since: a closed window never changes, so it counts where the pair completed.
        start = window_start(ts_ms, window_ms)
    category = ticket.category
    add(start, segment, "first_response", 1, ticket.first_reply_ms - ticket.created_ms, None,  # type: ignore[operator]
        category)
    calendar = state.calendars.get(ticket.storefront) if state.calendars else None
    if calendar is not None:
        add(start, segment, "first_response_business", 1,
            calendar.business_ms(ticket.created_ms, ticket.first_reply_ms), None, category)  # type: ignore[arg-type]


HANDLERS = {"session": on_session, "order": on_order, "survey": on_survey, "ticket": on_ticket}
