"""The producer library: storefront services send contract events to Kafka.

It writes what the data path reads (bytes -> decode -> ...): every event is
checked with ``streams.decode.validate_event`` before it leaves the process, so
a wrong event fails in the sender's own stack trace (``InvalidEvent`` naming the
field) instead of landing in the dead-letter topic. Each event is keyed by the
id of its family (``contract.message_key``) and placed with Kafka's default
murmur2 partitioner (the Java client's and kafka-python's), so events batched
into one JSON-array message still sit on the partition their own key maps to,
and a session's funnel or a ticket's replies stay in one partition whichever
way they were sent. Batches are what make the workers fast (one message's cost
for many events); ``batch_events=1`` sends one keyed JSON object per event.

    with Producer(Settings.from_env(), storefront="shop-eu") as producer:
        producer.order_placed(order_id="ord-1", customer_id="cus-1", total_minor=4999,
                              currency="EUR", first_order=True)
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Literal

import orjson
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from streams.config import Settings
from streams.contract import EVENT_TYPES, SCHEMA_VERSION, message_key
from streams.decode import validate_event
from streams.errors import InvalidEvent

Device = Literal["desktop", "mobile", "tablet", "other"]
SupportChannel = Literal["email", "chat", "sms", "phone", "social"]
Author = Literal["agent", "customer", "bot"]
SurveyKind = Literal["nps", "csat", "ces"]
Timestamp = str | datetime

# Room for Kafka's record and batch framing: a batch's value stays this far under
# max_message_bytes, so it also fits a broker left at message.max.bytes=1048588.
BATCH_HEADROOM_BYTES = 16_384


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` (murmur2).

    Same answer as the Java client, kafka-python, and librdkafka/kcat with
    ``partitioner=murmur2_random`` (librdkafka's own default differs).

        >>> partition_for("sess-7f3a9c21", 4)
        2
    """
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


def pack_messages(encoded: list[bytes], max_events: int, max_bytes: int) -> list[bytes]:
    """Pack encoded events, in order, into message values of at most ``max_events``
    events and ``max_bytes`` bytes: a JSON array, or the plain object when alone.

        >>> pack_messages([b'{"a":1}', b'{"b":2}', b'{"c":3}'], 2, 100)
        [b'[{"a":1},{"b":2}]', b'{"c":3}']
    """
    messages: list[bytes] = []
    chunk: list[bytes] = []
    size = 2  # the brackets
    for event in encoded:
        if chunk and (len(chunk) >= max_events or size + 1 + len(event) > max_bytes):
            messages.append(_value(chunk))
            chunk, size = [], 2
        chunk.append(event)
        size += len(event) + 1  # the comma
    if chunk:
        messages.append(_value(chunk))
    return messages


def _value(chunk: list[bytes]) -> bytes:
    return chunk[0] if len(chunk) == 1 else b"[" + b",".join(chunk) + b"]"


def format_timestamp(moment: datetime) -> str:
    """An aware datetime -> RFC 3339 with offset, millisecond precision.

        >>> format_timestamp(datetime(2025, 3, 14, 8, 30, tzinfo=timezone.utc))
        '2025-03-14T08:30:00.000+00:00'
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidEvent("bad_timestamp", "occurred_at must be timezone-aware (a naive datetime has no offset)")
    return moment.isoformat(timespec="milliseconds")


@dataclass
class _Pending:
    """Events waiting for one (topic, partition), oldest first."""

    since: float  # monotonic seconds of the first event
    events: list[bytes] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    size: int = 2


class Producer:
    """Validates, keys, partitions and batches contract events; a context manager.

    ``batch_events``: most events per message (1: one keyed JSON object per
    event). ``linger_ms``: how long a partition's first event may wait for
    company. ``storefront``: the default for events that do not name one.
    Delivery errors surface from ``flush()`` and ``close()`` as kafka-python's
    ``KafkaError``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        batch_events: int = 100,
        linger_ms: int = 50,
        storefront: str | None = None,
        kafka: Any = None,
    ) -> None:
        if not 1 <= batch_events <= settings.max_batch_events:
            raise ValueError(f"batch_events must be 1..{settings.max_batch_events}, got {batch_events}")
        if linger_ms < 0:
            raise ValueError(f"linger_ms must be >= 0, got {linger_ms}")
        self.settings = settings
        self.batch_events = batch_events
        self.linger_ms = linger_ms
        self.storefront = storefront
        self._max_event_bytes = settings.max_message_bytes
        self._max_batch_bytes = max(settings.max_message_bytes - BATCH_HEADROOM_BYTES, 1)
        self._kafka = kafka if kafka is not None else KafkaProducer(
            bootstrap_servers=settings.bootstrap_servers.split(","),
            client_id=f"{settings.app_id}-producer",
            acks="all",
            linger_ms=5,
            max_request_size=settings.max_message_bytes + BATCH_HEADROOM_BYTES,
            **settings.kafka_security(),
        )
        self._partitions: dict[str, int] = {}
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._failures: list[BaseException] = []
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._timer: threading.Thread | None = None
        if batch_events > 1:
            self._timer = threading.Thread(target=self._linger_loop, name="cxpulse-producer-linger", daemon=True)
            self._timer.start()

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def flush(self, timeout_s: float | None = None) -> None:
        """Send every waiting event and wait for the broker's acknowledgements."""
        with self._lock:
            self._send_ready(force=True)
        self._kafka.flush(timeout=timeout_s)
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise failures[0]

    def close(self, timeout_s: float | None = None) -> None:
        """Flush, stop the linger timer and close the connection. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake.notify_all()
        if self._timer is not None:
            self._timer.join()
        try:
            self.flush(timeout_s)
        finally:
            self._kafka.close(timeout=timeout_s)

    # -------------------------------------------------------------- sending

    def send(self, event: dict[str, Any]) -> str:
        """Validate and queue one event (a dict of the contract); return its event_id.

        Fills ``event_id`` (uuid4 hex), ``occurred_at`` (now, UTC) and
        ``schema_version`` when absent, and ``storefront`` from the producer's
        default; the caller's dict is not changed.

            event_id = producer.send({"type": "ticket.resolved", "ticket_id": "tkt-1"})
            producer.flush()
        """
        event = dict(event)
        event.setdefault("event_id", uuid.uuid4().hex)
        event.setdefault("schema_version", SCHEMA_VERSION)
        if isinstance(event.get("occurred_at"), datetime):
            event["occurred_at"] = format_timestamp(event["occurred_at"])
        event.setdefault("occurred_at", format_timestamp(datetime.now(timezone.utc)))
        if self.storefront is not None:
            event.setdefault("storefront", self.storefront)
        validate_event(event)
        encoded = orjson.dumps(event)
        if len(encoded) > self._max_event_bytes:
            raise InvalidEvent("oversized", f"event of {len(encoded)} bytes is over {self._max_event_bytes}")
        key = message_key(event)
        topic = self.settings.topics[EVENT_TYPES[event["type"]].family]
        partition = partition_for(key, self._partition_count(topic))
        with self._lock:
            if self._closed:
                raise RuntimeError("the producer is closed")
            pending = self._pending.get((topic, partition))
            if pending is not None and (
                len(pending.events) >= self.batch_events
                or pending.size + 1 + len(encoded) > self._max_batch_bytes
            ):
                self._send_group(topic, partition, self._pending.pop((topic, partition)))
                pending = None
            if pending is None:
                pending = self._pending[(topic, partition)] = _Pending(time.monotonic())
            pending.events.append(encoded)
            pending.keys.append(key)
            pending.size += len(encoded) + 1
            if len(pending.events) >= self.batch_events:
                self._send_group(topic, partition, self._pending.pop((topic, partition)))
        return event["event_id"]

    def send_many(self, events: Iterable[dict[str, Any]]) -> list[str]:
        """``send`` for each event, in order; returns their event_ids."""
        return [self.send(event) for event in events]

    def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            partitions = self._kafka.partitions_for(topic)
            if not partitions:
                raise RuntimeError(f"topic {topic!r} has no partitions (does it exist?)")
            count = self._partitions[topic] = len(partitions)
        return count

    def _send_ready(self, *, force: bool) -> None:
        """Send groups that are full, or older than linger_ms (all when ``force``)."""
        deadline = time.monotonic() - self.linger_ms / 1000
        for where in [w for w, p in self._pending.items() if force or p.since <= deadline]:
            self._send_group(*where, self._pending.pop(where))

    def _send_group(self, topic: str, partition: int, pending: _Pending) -> None:
        # Called with the lock held, so a partition's messages leave in order.
        if len(pending.events) == 1:
            messages = [(pending.keys[0].encode("utf-8"), pending.events[0])]
        else:
            values = pack_messages(pending.events, self.batch_events, self._max_batch_bytes)
            # A batch has no single key: its partition is explicit, chosen by its events' keys.
            messages = [(None, value) for value in values]
        for key, value in messages:
            future = self._kafka.send(topic, value=value, key=key, partition=partition)
            future.add_errback(self._failures.append)

    def _linger_loop(self) -> None:
        with self._lock:
            while not self._closed:
                self._wake.wait(timeout=max(self.linger_ms, 1) / 1000 / 2)
                if not self._closed:
                    self._send_ready(force=False)

    # -------------------------------------------------------------- one method per event type

    def _emit(self, type_name: str, fields: dict[str, Any], envelope: dict[str, Any], extra: dict[str, Any]) -> str:
        event: dict[str, Any] = {"type": type_name}
        event.update((name, value) for name, value in envelope.items() if value is not None)
        event.update((name, value) for name, value in fields.items() if value is not None)
        event.update(extra)
        return self.send(event)

    def session_started(
        self, *, session_id: str, visitor_id: str, channel: str, device: Device, source: str | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        **extra: Any,
    ) -> str:
        """A visitor session starts. Returns the event_id."""
        return self._emit("session.started", dict(
            session_id=session_id, visitor_id=visitor_id, channel=channel, device=device, source=source,
        ), dict(storefront=storefront, occurred_at=occurred_at, event_id=event_id), extra)

    def product_viewed(
        self, *, session_id: str, channel: str, device: Device, product_id: str | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        **extra: Any,
    ) -> str:
        """A product page was viewed in a session."""
        return self._emit("session.product_viewed", dict(
            session_id=session_id, channel=channel, device=device, product_id=product_id,
        ), dict(storefront=storefront, occurred_at=occurred_at, event_id=event_id), extra)

    def cart_added(
        self, *, session_id: str, channel: str, device: Device, product_id: str | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        **extra: Any,
    ) -> str:
        """A product was added to the cart."""
        return self._emit("session.cart_added", dict(
            session_id=session_id, channel=channel, device=device, product_id=product_id,
        ), dict(storefront=storefront, occurred_at=occurred_at, event_id=event_id), extra)

    def checkout_started(
        self, *, session_id: str, channel: str, device: Device,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        **extra: Any,
    ) -> str:
        """Checkout started (the cart-abandonment denominator)."""
        return self._emit("session.checkout_started", dict(
            session_id=session_id, channel=channel, device=device,
        ), dict(storefront=storefront, occurred_at=occurred_at, event_id=event_id), extra)

    def order_placed(
        self, *, order_id: str, customer_id: str, total_minor: int, currency: str, first_order: bool,
        session_id: str | None = None, channel: str | None = None, device: Device | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        **extra: Any,
    ) -> str:
        """An order was placed; ``total_minor`` in minor units (cents), never a float."""
        return self._emit("order.placed", dict(
            order_id=order_id, customer_id=customer_id, session_id=session_id, total_minor=total_minor,
            currency=currency, first_order=first_order, channel=channel, device=device,
        ), dict(storefront=storefront, occurred_at=occurred_at, event_id=event_id), extra)

    def order_refunded(
        self, *, order_id: str, amount_minor: int, currency: str,
        channel: str | None = None, device: Device | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        **extra: Any,
    ) -> str:
        """An order was (partly) refunded; ``amount_minor`` in minor units."""
        return self._emit("order.refunded", dict(
            order_id=order_id, amount_minor=amount_minor, currency=currency, channel=channel, device=device,
        ), dict(storefront=storefront, occurred_at=occurred_at, event_id=event_id), extra)

    def order_returned(
        self, *, order_id: str, amount_minor: int | None = None, currency: str | None = None,
        channel: str | None = None, device: Device | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        **extra: Any,
    ) -> str:
        """Goods were returned; give ``amount_minor`` and ``currency`` together, or neither."""
        if (amount_minor is None) != (currency is None):
            raise InvalidEvent("missing_field", "order.returned needs currency with amount_minor")
        return self._emit("order.returned", dict(
            order_id=order_id, amount_minor=amount_minor, currency=currency, channel=channel, device=device,
        ), dict(storefront=storefront, occurred_at=occurred_at, event_id=event_id), extra)

    def ticket_created(
        self, *, ticket_id: str, support_channel: SupportChannel,
        customer_id: str | None = None, order_id: str | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        **extra: Any,
    ) -> str:
        """A support ticket was opened."""
        return self._emit("ticket.created", dict(
            ticket_id=ticket_id, support_channel=support_channel, customer_id=customer_id, order_id=order_id,
        ), dict(storefront=storefront, occurred_at=occurred_at, event_id=event_id), extra)

    def ticket_replied(
        self, *, ticket_id: str, author: Author, public: bool, support_channel: SupportChannel | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        **extra: Any,
    ) -> str:
        """A reply (``public=True``) or internal note was added to a ticket."""
        return self._emit("ticket.replied", dict(
            ticket_id=ticket_id, author=author, public=public, support_channel=support_channel,
        ), dict(storefront=storefront, occurred_at=occurred_at, event_id=event_id), extra)

    def ticket_resolved(
        self, *, ticket_id: str, support_channel: SupportChannel | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        **extra: Any,
    ) -> str:
        """A ticket was resolved."""
        return self._emit("ticket.resolved", dict(
            ticket_id=ticket_id, support_channel=support_channel,
        ), dict(storefront=storefront, occurred_at=occurred_at, event_id=event_id), extra)

    def ticket_reopened(
        self, *, ticket_id: str, support_channel: SupportChannel | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        **extra: Any,
    ) -> str:
        """A resolved ticket was reopened."""
        return self._emit("ticket.reopened", dict(
            ticket_id=ticket_id, support_channel=support_channel,
        ), dict(storefront=storefront, occurred_at=occurred_at, event_id=event_id), extra)

    def survey_answered(
        self, *, response_id: str, kind: SurveyKind, score: int, channel: str | None = None,
        ticket_id: str | None = None, order_id: str | None = None, customer_id: str | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        **extra: Any,
    ) -> str:
        """A survey was answered: nps 0-10, csat 1-5, ces 1-7."""
        return self._emit("survey.answered", dict(
            response_id=response_id, kind=kind, score=score, channel=channel,
            ticket_id=ticket_id, order_id=order_id, customer_id=customer_id,
        ), dict(storefront=storefront, occurred_at=occurred_at, event_id=event_id), extra)


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
    "survey.answered": "survey_answered",
}
