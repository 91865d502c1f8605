"""The event contract: every event type, its family, its fields and its key.

This is the first stop of the data path (bytes -> decode -> validate -> window
-> expose): the JSON Schemas in ``schemas/`` publish the same contract for
producers in any language, and ``tests/unit/test_schemas.py`` proves the two
agree on every example. Field checks are data here, so the decoder can compile
them into a fast validator and the docs can list them.

    >>> EVENT_TYPES["order.placed"].family
    'order'
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable, Literal

SCHEMA_VERSION = 1

Family = Literal["session", "order", "ticket", "survey"]
FAMILIES: tuple[Family, ...] = ("session", "order", "ticket", "survey")

# The id of the entity whose events must stay in one partition: the key of a
# message. A ticket's replies follow its creation; a session's funnel stays whole.
FAMILY_KEY: dict[Family, str] = {
    "session": "session_id",
    "order": "order_id",
    "ticket": "ticket_id",
    "survey": "response_id",
}

DEVICES = ("desktop", "mobile", "tablet", "other")
SUPPORT_CHANNELS = ("email", "chat", "sms", "phone", "social")
AUTHORS = ("agent", "customer", "bot")
SURVEY_KINDS = ("nps", "csat", "ces")
# Why the customer contacted support (the issue type): a fixed list, so the `reason` label is
# bounded without a cap; a ticket without one counts under `unknown`.
REASONS = ("order_status", "shipping", "returns_refunds", "product_question", "payment", "account", "technical",
           "other")
SCORE_RANGE: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
# ISO 4217's code for "no currency": the currency label of a return without an amount, which
# no money KPI reads.
NO_CURRENCY = "XXX"

# Patterns shared with schemas/ (the JSON Schemas repeat them verbatim).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
LABEL_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,62}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
TIMESTAMP_PATTERN = (
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+\-]\d{2}:\d{2})$"
)
MAX_MINOR = 10**12  # 10 billion in a two-decimal currency: far above any order

Kind = Literal["id", "label", "enum", "int", "bool", "currency", "minor", "timestamp", "version"]


@dataclass(frozen=True)
class Field:
    """One field of an event: its JSON kind, whether it is required, its limits."""

    name: str
    kind: Kind
    required: bool = True
    choices: tuple[str, ...] = ()
    doc: str = ""


@dataclass(frozen=True)
class EventType:
    name: str
    family: Family
    fields: tuple[Field, ...]
    doc: str = ""
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(f.name for f in self.fields))


ENVELOPE: tuple[Field, ...] = (
    Field("event_id", "id", doc="Unique id of this event; a resend keeps it (dedupe)."),
    Field("type", "enum", doc="One of the event types below, e.g. order.placed."),
    Field("schema_version", "version", doc=f"Contract version; this is version {SCHEMA_VERSION}."),
    Field("occurred_at", "timestamp", doc="When it happened: RFC 3339 with an offset."),
    Field("storefront", "label", doc="The store, a short lowercase label (a metric label)."),
)

_channel = Field("channel", "label", doc="Marketing/sales channel, e.g. web, app, social, marketplace.")
_device = Field("device", "enum", choices=DEVICES, doc="Device class of the visitor.")
_session = Field("session_id", "id", doc="The visitor's session (message key).")
_opt_channel = Field("channel", "label", required=False, doc="Channel of the session, when known.")
_opt_device = Field("device", "enum", required=False, choices=DEVICES, doc="Device of the session, when known.")
_support = Field("support_channel", "enum", choices=SUPPORT_CHANNELS, doc="Where the customer reached support.")
_opt_support = Field("support_channel", "enum", required=False, choices=SUPPORT_CHANNELS,
                     doc="Support channel; taken from ticket.created when absent.")
_reason = Field("reason", "enum", required=False, choices=REASONS,
                doc="Why the customer got in touch (issue type); `unknown` in metrics when absent.")
_opt_reason = Field("reason", "enum", required=False, choices=REASONS,
                    doc="Issue type; taken from ticket.created when that has one.")
_category = Field("product_category", "label", required=False,
                  doc="The product category the ticket is about (your catalog's, e.g. footwear): a breakdown "
                      "of ticket volume and support times, bounded like `channel`.")
_opt_category = Field("product_category", "label", required=False,
                      doc="Product category; taken from ticket.created when that has one.")
_ticket = Field("ticket_id", "id", doc="The support ticket (message key).")
_order = Field("order_id", "id", doc="The order (message key for order events).")
_customer = Field("customer_id", "id", doc="The customer; never exported as a label.")

_types = [
    EventType("session.started", "session", (
        _session, Field("visitor_id", "id", doc="Anonymous visitor id, the same on a returning visitor's sessions "
                                                "(distinct visitors, conversion per visitor)."), _channel, _device,
        Field("source", "label", required=False, doc="Traffic source, e.g. organic, paid, email."),
    ), "A visitor session starts (the CVR and RPV denominator)."),
    EventType("session.product_viewed", "session", (
        _session, _channel, _device, Field("product_id", "id", required=False, doc="Product viewed."),
    ), "A product page was viewed."),
    EventType("session.cart_added", "session", (
        _session, _channel, _device, Field("product_id", "id", required=False, doc="Product added."),
    ), "A product was added to the cart."),
    EventType("session.checkout_started", "session", (
        _session, _channel, _device,
    ), "Checkout started (the cart-abandonment denominator: joined by `session_id` with the orders that "
       "name the session, docs/customers.md, *Checkouts*)."),
    EventType("order.placed", "order", (
        _order, _customer, Field("session_id", "id", required=False,
                                  doc="Session of the order, when known: joins the order to the session's checkout "
                                      "(cart abandonment)."),
        Field("total_minor", "minor", doc="Order total in minor units of the currency (cents)."),
        Field("currency", "currency", doc="ISO 4217 code, e.g. EUR."),
        Field("first_order", "bool", doc="True for the customer's first order."),
        _opt_channel, _opt_device,
    ), "An order was placed (CVR numerator, revenue)."),
    EventType("order.refunded", "order", (
        _order, Field("amount_minor", "minor", doc="Refunded amount in minor units."),
        Field("currency", "currency", doc="ISO 4217 code."), _opt_channel, _opt_device,
    ), "An order was (partly) refunded."),
    EventType("order.returned", "order", (
        _order, Field("amount_minor", "minor", required=False, doc="Value returned, minor units."),
        Field("currency", "currency", required=False, doc="ISO 4217 code; required with amount_minor."),
        _opt_channel, _opt_device,
    ), "Goods of an order were returned."),
    EventType("ticket.created", "ticket", (
        _ticket, _support, Field("customer_id", "id", required=False, doc="The customer, when known."),
        Field("order_id", "id", required=False, doc="The order it is about, when known."), _reason, _category,
    ), "A support ticket was opened."),
    EventType("ticket.replied", "ticket", (
        _ticket, Field("author", "enum", choices=AUTHORS, doc="Who wrote: agent, customer or bot."),
        Field("public", "bool", doc="False for an internal note."), _opt_support, _opt_reason, _opt_category,
    ), "A reply or note was added to a ticket."),
    EventType("ticket.resolved", "ticket", (_ticket, _opt_support, _opt_reason, _opt_category),
              "A ticket was resolved."),
    EventType("ticket.reopened", "ticket", (_ticket, _opt_support, _opt_reason, _opt_category),
              "A resolved ticket was reopened."),
    EventType("survey.sent", "survey", (
        Field("response_id", "id", doc="The survey sent; its answers carry the same response_id (message key)."),
        Field("kind", "enum", choices=SURVEY_KINDS,
              doc="The question it asks: nps, csat or ces (one survey.sent per kind a survey asks)."),
        _opt_channel,
        Field("ticket_id", "id", required=False, doc="The ticket it asks about, when any."),
        Field("order_id", "id", required=False, doc="The order it asks about, when any."),
        Field("customer_id", "id", required=False, doc="The customer; never a label."),
    ), "A survey was sent to a customer (the response-rate denominator)."),
    EventType("survey.answered", "survey", (
        Field("response_id", "id", doc="The survey response (message key); that of its survey.sent, if any."),
        Field("kind", "enum", choices=SURVEY_KINDS, doc="nps (0-10), csat (1-5) or ces (1-7)."),
        Field("score", "int", doc="The answer, in the range of its kind."),
        _opt_channel,
        Field("ticket_id", "id", required=False, doc="The ticket it rates, when any."),
        Field("order_id", "id", required=False, doc="The order it rates, when any."),
        Field("customer_id", "id", required=False, doc="The customer; never a label."),
    ), "A customer answered a survey."),
]

EVENT_TYPES: dict[str, EventType] = {t.name: t for t in _types}

DEFAULT_TOPICS: dict[Family, str] = {
    "session": "cx.sessions",
    "order": "cx.orders",
    "ticket": "cx.tickets",
    "survey": "cx.surveys",
}
DEADLETTER_TOPIC = "cx.deadletter"


def message_key(event: dict) -> str:
    """The Kafka message key of an event: the id its family is keyed by.

        >>> message_key({"type": "ticket.replied", "ticket_id": "T-1"})
        'T-1'
    """
    return event[FAMILY_KEY[EVENT_TYPES[event["type"]].family]]


# Kafka's default partitioner (the Java client's, kafka-python's and librdkafka's
# murmur2_random): murmur2 of the key bytes, positive, modulo the partition count.
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS: dict[int, Callable[[bytes], tuple[int, ...]]] = {}


def _murmur2_python(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` (32 bits, unsigned; seed 0x9747b28c), in Python.

        >>> _murmur2_python(b"") & 0x7FFFFFFF
        275646681
    """
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    words = length >> 2
    if words:
        unpack = _WORDS.get(words)
        if unpack is None:
            unpack = _WORDS[words] = struct.Struct(f"<{words}I").unpack_from
        for k in unpack(data):
            k = (k * _M) & _MASK
            k ^= k >> 24
            h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    tail = length & 3
    if tail:
        i = words << 2
        if tail == 3:
            h ^= data[i + 2] << 16
        if tail >= 2:
            h ^= data[i + 1] << 8
        h ^= data[i]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


try:  # the same function in C (0.2 us a key instead of 2): the worker checks every batched event's key
    from murmurhash2 import murmurhash2 as _murmurhash2

    def murmur2(data: bytes) -> int:
        """Kafka's murmur2 hash of ``data`` (32 bits, unsigned; seed 0x9747b28c).

            >>> murmur2(b"") & 0x7FFFFFFF
            275646681
        """
        return _murmurhash2(data, 0x9747B28C)
except ImportError:  # a producer-only install need not compile anything
    murmur2 = _murmur2_python


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key``.

    Same answer as the Java client, kafka-python, and librdkafka/kcat with
    ``partitioner=murmur2_random`` (librdkafka's own default, consistent_random, differs).

        >>> partition_for("sess-7f3a9c21", 4)
        2
    """
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions
