"""The producer library: storefront services send contract events to Kafka.

It writes what the data path reads (bytes -> decode -> ...): every event is
checked with ``streams.decode.validate_event`` before it leaves the process, so
a wrong event fails in the sender's own stack trace (``InvalidEvent`` naming the
field) instead of landing in the dead-letter topic. A top-level name the event
type does not have is refused too, with the closest documented name
(``sesion_id`` -> "did you mean session_id?"); a property the contract does not
name yet goes through the explicit ``extra={...}`` argument.

Each event is keyed by the id of its family (``contract.message_key``) and
placed with Kafka's default murmur2 partitioner (the Java client's and
kafka-python's), so events batched into one JSON-array message still sit on the
partition their own key maps to, and a session's funnel or a ticket's replies
stay in one partition whichever way they were sent. A batch carries the key of
its first event (every event in it maps to the same partition). Batches are what
make the workers fast (one message's cost for many events); ``batch_events=1``
sends one keyed JSON object per event.

Built like the Kafka clients people know: ``Producer(bootstrap_servers, config)``
with Kafka's producer setting names (``acks``, ``compression.type``,
``enable.idempotence``, ``linger.ms``, ...), or ``Producer.from_settings`` for
cxpulse ``Settings``. The constructor makes no network call: the connection is
opened by the first ``send``, which raises ``ProducerError`` when no broker
answers within ``max.block.ms`` (10 s by default). Every sent event gets a
``DeliveryReport`` (its partition and offset, or its error) through
``on_delivery``; ``flush()`` raises ``DeliveryError`` when any failed. Importing
this package loads neither kafka-python (imported at the first connection) nor
Faust, numpy, matplotlib or prometheus_client.

    with Producer("127.0.0.1:9092", {"compression.type": "gzip"}, storefront="shop-eu") as producer:
        producer.order_placed(order_id="ord-1", customer_id="cus-1", total_minor=4999,
                              currency="EUR", first_order=True)

Split by concept, in the order an event travels:

    events.py           one method per event type (``METHODS``), the field-name checks, timestamps
    client.py           ``Producer``: connecting, validating, queueing per partition, sending, flushing
    batches.py          events packed into message values (``pack_messages``), ``DeliveryReport``
    client_settings.py  Kafka's producer settings: names, aliases, defaults, the ones the producer owns
"""

from __future__ import annotations

from streams.errors import ConfigError, DeliveryError, InvalidEvent, ProducerError
from streams.producer.batches import BATCH_HEADROOM_BYTES, DeliveryCallback, DeliveryReport, pack_messages
from streams.producer.client import Producer
from streams.producer.client_settings import CLIENT_DEFAULTS, CLIENT_SETTING_ALIASES, CLIENT_SETTINGS
from streams.producer.events import (
    METHODS,
    Author,
    Device,
    Extra,
    SupportChannel,
    SurveyKind,
    Timestamp,
    format_timestamp,
)

__all__ = [
    "BATCH_HEADROOM_BYTES", "CLIENT_DEFAULTS", "CLIENT_SETTINGS", "CLIENT_SETTING_ALIASES", "METHODS",
    "Author", "ConfigError", "DeliveryCallback", "DeliveryError", "DeliveryReport", "Device", "Extra",
    "InvalidEvent", "Producer", "ProducerError", "SupportChannel", "SurveyKind", "Timestamp",
    "format_timestamp", "pack_messages",
]
