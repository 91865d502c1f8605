"""One method per event type, and the checks of the names a caller gives.

``EventMethods`` gives ``Producer`` its keyword-only method per event type
(``order_placed(order_id=..., ...)``; ``METHODS`` maps each type to its method):
each builds the event and hands it to ``Producer.send``. A top-level name the
event type does not have is refused with the closest documented name
(``sesion_id`` -> "did you mean session_id?"); a property the contract does not
name yet goes through ``extra={...}``.
"""

from __future__ import annotations

from datetime import datetime, timezone  # noqa: F401  (timezone: the doctest)
from typing import Any, Callable, Iterable, Literal, Mapping, Never

from streams.contract import ENVELOPE, EVENT_TYPES
from streams.errors import InvalidEvent
from streams.producer.batches import DeliveryCallback

Device = Literal["desktop", "mobile", "tablet", "other"]
SupportChannel = Literal["email", "chat", "sms", "phone", "social"]
Author = Literal["agent", "customer", "bot"]
SurveyKind = Literal["nps", "csat", "ces"]
Reason = Literal["order_status", "shipping", "returns_refunds", "product_question", "payment", "account", "technical",
                 "other"]
Timestamp = str | datetime
Extra = Mapping[str, Any]


def format_timestamp(moment: datetime) -> str:
    """An aware datetime -> RFC 3339 with offset, millisecond precision.

        >>> format_timestamp(datetime(2025, 3, 14, 8, 30, tzinfo=timezone.utc))
        '2025-03-14T08:30:00.000+00:00'
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidEvent("bad_timestamp", "occurred_at must be timezone-aware (a naive datetime has no offset)")
    return moment.isoformat(timespec="milliseconds")


# ---------------------------------------------------------------- field names

# What a caller may name at the top level of each event type: the envelope and the
# type's fields. Anything else is a typo or an extra, and an extra must say so.
_ALLOWED: dict[str, frozenset[str]] = {
    name: frozenset(f.name for f in ENVELOPE) | t.names for name, t in EVENT_TYPES.items()
}
# What the per-type methods accept (the producer sets type and schema_version itself).
_SETTABLE: dict[str, frozenset[str]] = {
    name: allowed - {"type", "schema_version"} for name, allowed in _ALLOWED.items()
}


def _unknown_fields(type_name: str, names: Iterable[Any], known: Iterable[str]) -> InvalidEvent:
    """The refusal of top-level names ``type_name`` does not have, each with its closest known name."""
    import difflib  # only on the error path

    candidates = sorted(known)
    parts = []
    for name in sorted(str(n) for n in names):
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
        parts.append(f"{name} (did you mean {close[0]}?)" if close else name)
    what = "is not a field" if len(parts) == 1 else "are not fields"
    return InvalidEvent("unknown_field", f"{', '.join(parts)} {what} of {type_name}; a property the contract "
                                         f"does not name goes in extra={{...}}")


def _checked_extra(type_name: str, extra: Extra) -> Extra:
    """``extra`` if it only holds names the contract does not give ``type_name``."""
    if not isinstance(extra, Mapping):
        raise InvalidEvent("wrong_type", f"extra must be a mapping of property names to values, got {type(extra).__name__}")
    if any(not isinstance(name, str) for name in extra):
        raise InvalidEvent("wrong_type", "extra property names must be strings")
    # A contract field in extra would skip the signature (and its type hints): send it as the field.
    shadowed = sorted(name for name in extra if name in _ALLOWED[type_name])
    if shadowed:
        what = "is a field" if len(shadowed) == 1 else "are fields"
        raise InvalidEvent("field_in_extra", f"{', '.join(shadowed)} {what} of {type_name}: pass "
                                             f"{'it' if len(shadowed) == 1 else 'them'} as such, not in extra")
    return extra


# ---------------------------------------------------------------- one method per event type


class EventMethods:
    """The per-event-type methods of ``Producer``: each builds its event and calls ``send``."""

    send: Callable[..., str]  # Producer.send

    def _emit(self, type_name: str, values: dict[str, Any], extra: Extra | None,
              on_delivery: DeliveryCallback | None, unknown: dict[str, Any]) -> str:
        if unknown:  # a misspelt keyword: refuse it here, or the event would go out without that field
            raise _unknown_fields(type_name, unknown, _SETTABLE[type_name])
        event: dict[str, Any] = {"type": type_name}
        for name in ("event_id", "storefront", "occurred_at"):
            if values.get(name) is not None:
                event[name] = values.pop(name)
        event.update((name, value) for name, value in values.items() if value is not None)
        return self.send(event, extra=extra, on_delivery=on_delivery)

    # Each method's `**unknown: Never` makes a type checker flag a misspelt keyword, and at
    # run time _emit turns it into InvalidEvent naming the closest field (a plain TypeError
    # would not say which name was meant).

    def session_started(
        self, *, session_id: str, visitor_id: str, channel: str, device: Device, source: str | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        extra: Extra | None = None, on_delivery: DeliveryCallback | None = None, **unknown: Never,
    ) -> str:
        """A visitor session starts. Returns the event_id.

            producer.session_started(session_id="sess-1", visitor_id="vis-1", channel="web", device="mobile",
                                     source="paid", extra={"campaign": "spring"})
        """
        return self._emit("session.started", dict(
            session_id=session_id, visitor_id=visitor_id, channel=channel, device=device, source=source,
            storefront=storefront, occurred_at=occurred_at, event_id=event_id,
        ), extra, on_delivery, unknown)

    def product_viewed(
        self, *, session_id: str, channel: str, device: Device, product_id: str | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        extra: Extra | None = None, on_delivery: DeliveryCallback | None = None, **unknown: Never,
    ) -> str:
        """A product page was viewed in a session. Returns the event_id.

            producer.product_viewed(session_id="sess-1", channel="web", device="mobile", product_id="sku-9")
        """
        return self._emit("session.product_viewed", dict(
            session_id=session_id, channel=channel, device=device, product_id=product_id,
            storefront=storefront, occurred_at=occurred_at, event_id=event_id,
        ), extra, on_delivery, unknown)

    def cart_added(
        self, *, session_id: str, channel: str, device: Device, product_id: str | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        extra: Extra | None = None, on_delivery: DeliveryCallback | None = None, **unknown: Never,
    ) -> str:
        """A product was added to the cart. Returns the event_id.

            producer.cart_added(session_id="sess-1", channel="web", device="mobile", product_id="sku-9")
        """
        return self._emit("session.cart_added", dict(
            session_id=session_id, channel=channel, device=device, product_id=product_id,
            storefront=storefront, occurred_at=occurred_at, event_id=event_id,
        ), extra, on_delivery, unknown)

    def checkout_started(
        self, *, session_id: str, channel: str, device: Device,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        extra: Extra | None = None, on_delivery: DeliveryCallback | None = None, **unknown: Never,
    ) -> str:
        """Checkout started (the cart-abandonment denominator). Returns the event_id.

            producer.checkout_started(session_id="sess-1", channel="web", device="mobile")
        """
        return self._emit("session.checkout_started", dict(
            session_id=session_id, channel=channel, device=device,
            storefront=storefront, occurred_at=occurred_at, event_id=event_id,
        ), extra, on_delivery, unknown)

    def order_placed(
        self, *, order_id: str, customer_id: str, total_minor: int, currency: str, first_order: bool,
        session_id: str | None = None, channel: str | None = None, device: Device | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        extra: Extra | None = None, on_delivery: DeliveryCallback | None = None, **unknown: Never,
    ) -> str:
        """An order was placed; ``total_minor`` in minor units (cents), never a float. Returns the event_id.

            producer.order_placed(order_id="ord-1", customer_id="cus-1", total_minor=4999, currency="EUR",
                                  first_order=True, session_id="sess-1", channel="web")
        """
        return self._emit("order.placed", dict(
            order_id=order_id, customer_id=customer_id, session_id=session_id, total_minor=total_minor,
            currency=currency, first_order=first_order, channel=channel, device=device,
            storefront=storefront, occurred_at=occurred_at, event_id=event_id,
        ), extra, on_delivery, unknown)

    def order_refunded(
        self, *, order_id: str, amount_minor: int, currency: str,
        channel: str | None = None, device: Device | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        extra: Extra | None = None, on_delivery: DeliveryCallback | None = None, **unknown: Never,
    ) -> str:
        """An order was (partly) refunded; ``amount_minor`` in minor units. Returns the event_id.

            producer.order_refunded(order_id="ord-1", amount_minor=1500, currency="EUR")
        """
        return self._emit("order.refunded", dict(
            order_id=order_id, amount_minor=amount_minor, currency=currency, channel=channel, device=device,
            storefront=storefront, occurred_at=occurred_at, event_id=event_id,
        ), extra, on_delivery, unknown)

    def order_returned(
        self, *, order_id: str, amount_minor: int | None = None, currency: str | None = None,
        channel: str | None = None, device: Device | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        extra: Extra | None = None, on_delivery: DeliveryCallback | None = None, **unknown: Never,
    ) -> str:
        """Goods were returned; ``amount_minor`` (minor units) and ``currency`` together, or neither.

            producer.order_returned(order_id="ord-1", amount_minor=1500, currency="EUR")
        """
        if (amount_minor is None) != (currency is None):
            raise InvalidEvent("missing_field", "order.returned needs currency with amount_minor")
        return self._emit("order.returned", dict(
            order_id=order_id, amount_minor=amount_minor, currency=currency, channel=channel, device=device,
            storefront=storefront, occurred_at=occurred_at, event_id=event_id,
        ), extra, on_delivery, unknown)

    def ticket_created(
        self, *, ticket_id: str, support_channel: SupportChannel,
        customer_id: str | None = None, order_id: str | None = None, reason: Reason | None = None,
        product_category: str | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        extra: Extra | None = None, on_delivery: DeliveryCallback | None = None, **unknown: Never,
    ) -> str:
        """A support ticket was opened, ``reason`` its issue type and ``product_category`` what it is
        about, when known. Returns the event_id.

            producer.ticket_created(ticket_id="tkt-1", support_channel="chat", order_id="ord-1", reason="shipping",
                                    product_category="footwear")
        """
        return self._emit("ticket.created", dict(
            ticket_id=ticket_id, support_channel=support_channel, customer_id=customer_id, order_id=order_id,
            reason=reason, product_category=product_category,
            storefront=storefront, occurred_at=occurred_at, event_id=event_id,
        ), extra, on_delivery, unknown)

    def ticket_replied(
        self, *, ticket_id: str, author: Author, public: bool, support_channel: SupportChannel | None = None,
        reason: Reason | None = None, product_category: str | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        extra: Extra | None = None, on_delivery: DeliveryCallback | None = None, **unknown: Never,
    ) -> str:
        """A reply (``public=True``) or internal note was added to a ticket. Returns the event_id.

            producer.ticket_replied(ticket_id="tkt-1", author="agent", public=True, support_channel="chat")
        """
        return self._emit("ticket.replied", dict(
            ticket_id=ticket_id, author=author, public=public, support_channel=support_channel, reason=reason,
            product_category=product_category,
            storefront=storefront, occurred_at=occurred_at, event_id=event_id,
        ), extra, on_delivery, unknown)

    def ticket_resolved(
        self, *, ticket_id: str, support_channel: SupportChannel | None = None, reason: Reason | None = None,
        product_category: str | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        extra: Extra | None = None, on_delivery: DeliveryCallback | None = None, **unknown: Never,
    ) -> str:
        """A ticket was resolved. Returns the event_id.

            producer.ticket_resolved(ticket_id="tkt-1")
        """
        return self._emit("ticket.resolved", dict(
            ticket_id=ticket_id, support_channel=support_channel, reason=reason,
            product_category=product_category,
            storefront=storefront, occurred_at=occurred_at, event_id=event_id,
        ), extra, on_delivery, unknown)

    def ticket_reopened(
        self, *, ticket_id: str, support_channel: SupportChannel | None = None, reason: Reason | None = None,
        product_category: str | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        extra: Extra | None = None, on_delivery: DeliveryCallback | None = None, **unknown: Never,
    ) -> str:
        """A resolved ticket was reopened. Returns the event_id.

            producer.ticket_reopened(ticket_id="tkt-1", support_channel="email")
        """
        return self._emit("ticket.reopened", dict(
            ticket_id=ticket_id, support_channel=support_channel, reason=reason,
            product_category=product_category,
            storefront=storefront, occurred_at=occurred_at, event_id=event_id,
        ), extra, on_delivery, unknown)

    def survey_sent(
        self, *, response_id: str, kind: SurveyKind, channel: str | None = None,
        ticket_id: str | None = None, order_id: str | None = None, customer_id: str | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        extra: Extra | None = None, on_delivery: DeliveryCallback | None = None, **unknown: Never,
    ) -> str:
        """A survey asking one question (nps, csat or ces) was sent; its answer, if any, comes as
        ``survey_answered`` with the same ``response_id``. Returns the event_id.

            producer.survey_sent(response_id="resp-1", kind="csat", ticket_id="tkt-1")
        """
        return self._emit("survey.sent", dict(
            response_id=response_id, kind=kind, channel=channel,
            ticket_id=ticket_id, order_id=order_id, customer_id=customer_id,
            storefront=storefront, occurred_at=occurred_at, event_id=event_id,
        ), extra, on_delivery, unknown)

    def survey_answered(
        self, *, response_id: str, kind: SurveyKind, score: int, channel: str | None = None,
        ticket_id: str | None = None, order_id: str | None = None, customer_id: str | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        extra: Extra | None = None, on_delivery: DeliveryCallback | None = None, **unknown: Never,
    ) -> str:
        """A survey was answered: nps 0-10, csat 1-5, ces 1-7. Returns the event_id.

            producer.survey_answered(response_id="resp-1", kind="nps", score=9, ticket_id="tkt-1")
        """
        return self._emit("survey.answered", dict(
            response_id=response_id, kind=kind, score=score, channel=channel,
            ticket_id=ticket_id, order_id=order_id, customer_id=customer_id,
            storefront=storefront, occurred_at=occurred_at, event_id=event_id,
        ), extra, on_delivery, unknown)


# The method that sends each event type (docs and tests walk this).
METHODS: dict[str, str] = {
    "session.started": "session_started",
    "session.product_viewed": "product_viewed",
    "session.cart_added": "cart_added",
    "session.checkout_started": "checkout_started",
    "order.placed": "order_placed",
    "order.refunded": "order_refunded",
    "order.returned": "order_returned",
    "ticket.created": "ticket_created",
    "ticket.replied": "ticket_replied",
    "ticket.resolved": "ticket_resolved",
    "ticket.reopened": "ticket_reopened",
    "survey.sent": "survey_sent",
    "survey.answered": "survey_answered",
}
