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
this module loads neither kafka-python (imported at the first connection) nor
Faust, numpy, matplotlib or prometheus_client.

    with Producer("127.0.0.1:9092", {"compression.type": "gzip"}, storefront="shop-eu") as producer:
        producer.order_placed(order_id="ord-1", customer_id="cus-1", total_minor=4999,
                              currency="EUR", first_order=True)
"""

from __future__ import annotations

import logging
import struct
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping, Never, Sequence

import orjson

from streams.contract import DEFAULT_TOPICS, ENVELOPE, EVENT_TYPES, SCHEMA_VERSION, message_key, partition_for
from streams.decode import DEFAULT_MAX_BATCH_EVENTS, DEFAULT_MAX_MESSAGE_BYTES, validate_event
from streams.errors import ConfigError, DeliveryError, InvalidEvent, ProducerError

if TYPE_CHECKING:
    from streams.config import Settings

log = logging.getLogger("cxpulse.producer")

Device = Literal["desktop", "mobile", "tablet", "other"]
SupportChannel = Literal["email", "chat", "sms", "phone", "social"]
Author = Literal["agent", "customer", "bot"]
SurveyKind = Literal["nps", "csat", "ces"]
Timestamp = str | datetime
Extra = Mapping[str, Any]

# Room for Kafka's record and batch framing: a batch's value stays this far under
# max_message_bytes, so it also fits a broker left at message.max.bytes=1048588.
BATCH_HEADROOM_BYTES = 16_384

# ---------------------------------------------------------------- packing


def _chunks(encoded: list[bytes], max_events: int, max_bytes: int) -> list[tuple[int, int]]:
    """[start, end) ranges of ``encoded`` that each fit one message (see pack_messages)."""
    ranges: list[tuple[int, int]] = []
    start = 0
    size = 2  # the brackets
    for i, event in enumerate(encoded):
        if i > start and (i - start >= max_events or size + 1 + len(event) > max_bytes):
            ranges.append((start, i))
            start, size = i, 2
        size += len(event) + 1  # the comma
    if start < len(encoded):
        ranges.append((start, len(encoded)))
    return ranges


def pack_messages(encoded: list[bytes], max_events: int, max_bytes: int) -> list[bytes]:
    """Pack encoded events, in order, into message values of at most ``max_events``
    events and ``max_bytes`` bytes: a JSON array, or the plain object when alone.

        >>> pack_messages([b'{"a":1}', b'{"b":2}', b'{"c":3}'], 2, 100)
        [b'[{"a":1},{"b":2}]', b'{"c":3}']
    """
    return [_value(encoded[start:end]) for start, end in _chunks(encoded, max_events, max_bytes)]


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


# ---------------------------------------------------------------- client settings

# The producer settings kafka-python 3.0 accepts (KafkaProducer.DEFAULT_CONFIG), listed here
# so a typo fails in the constructor without importing kafka-python;
# tests/unit/test_producer.py keeps the list equal to kafka-python's.
CLIENT_SETTINGS: frozenset[str] = frozenset({
    "acks", "allow_auto_create_topics", "api_version", "batch_size", "bootstrap_servers", "bootstrap_timeout_ms",
    "client_dns_lookup", "client_id", "compression_type",
    "connections_max_idle_ms", "delivery_timeout_ms", "enable_idempotence", "kafka_client", "key_serializer",
    "linger_ms", "max_block_ms", "max_in_flight_requests_per_connection", "max_request_size",
    "metadata_max_age_ms", "metric_reporters", "metrics_enabled", "metrics_num_samples",
    "metrics_sample_window_ms", "partitioner", "proxy_url", "receive_buffer_bytes", "reconnect_backoff_max_ms",
    "reconnect_backoff_ms", "receive_message_max_bytes", "request_timeout_ms", "retries", "retry_backoff_ms", "sasl_kerberos_domain_name",
    "sasl_kerberos_name", "sasl_kerberos_service_name", "sasl_mechanism", "sasl_oauth_token_provider",
    "sasl_plain_password", "sasl_plain_username", "security_protocol", "selector", "send_buffer_bytes",
    "socket_options", "socks5_proxy", "ssl_cafile", "ssl_certfile", "ssl_check_hostname", "ssl_ciphers",
    "ssl_context", "ssl_crlfile", "ssl_keyfile", "ssl_password", "transaction_timeout_ms", "transactional_id",
    "value_serializer",
})

# librdkafka's names for the same things (confluent-kafka, Quix Streams), so a config
# copied from those clients works here.
CLIENT_SETTING_ALIASES: dict[str, str] = {
    "message_timeout_ms": "delivery_timeout_ms",
    "queue_buffering_max_ms": "linger_ms",
    "compression_codec": "compression_type",
    "sasl_mechanisms": "sasl_mechanism",
    "sasl_username": "sasl_plain_username",
    "sasl_password": "sasl_plain_password",
    "ssl_ca_location": "ssl_cafile",
    "ssl_certificate_location": "ssl_certfile",
    "ssl_key_location": "ssl_keyfile",
}

# Settings the producer owns, and why a caller cannot set them.
_OWNED: dict[str, str] = {
    "bootstrap_servers": "pass the brokers as the first argument, bootstrap_servers",
    "key_serializer": "the producer writes each message's key itself",
    "value_serializer": "the producer writes each message's value itself (JSON)",
    "partitioner": "the producer places every event with Kafka's murmur2 partitioner itself",
    "max_request_size": "it follows max_message_bytes (CXPULSE_MAX_MESSAGE_BYTES)",
    "transactional_id": "the producer does not run transactions",
}

# The defaults that differ from kafka-python's, and why. Everything else is kafka-python's
# (enable_idempotence=True among them).
CLIENT_DEFAULTS: dict[str, Any] = {
    "client_id": "cxpulse-producer",
    "acks": "all",  # an event counts once the in-sync replicas have it
    # A storefront request should not hang for kafka-python's 60 s when Kafka is down:
    # send() raises after this long without a broker (connecting, then the topic's partitions).
    "max_block_ms": 10_000,
    # An event's DeliveryReport comes within this long of handing it to the client, delivered or
    # not (kafka-python: 120 s). It must cover request_timeout_ms + the client's linger.
    "delivery_timeout_ms": 30_000,
    "request_timeout_ms": 10_000,
}

_INT_SETTINGS = frozenset({"acks", "retries", "batch_size", "max_in_flight_requests_per_connection",
                           "metrics_num_samples"})
_BOOL_SETTINGS = frozenset({"enable_idempotence", "allow_auto_create_topics", "metrics_enabled", "ssl_check_hostname"})


def _coerce(name: str, value: Any) -> Any:
    """A setting written as text (as librdkafka configs are) -> the type kafka-python wants."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if name == "compression_type":
        return None if text.lower() in ("", "none") else text.lower()
    if name in _BOOL_SETTINGS and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if (name in _INT_SETTINGS or name.endswith(("_ms", "_bytes"))) and text.lstrip("-").isdigit():
        return int(text)
    return value


def _normalise_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Kafka's dotted names (``linger.ms``) or kafka-python's (``linger_ms``) -> kafka-python's.

    Unknown names fail here, in the constructor, with the closest known name.
    """
    out: dict[str, Any] = {}
    for raw, value in config.items():
        if not isinstance(raw, str):
            raise ConfigError(f"producer setting names are strings, got {raw!r}")
        name = raw.strip().lower().replace(".", "_").replace("-", "_")
        name = CLIENT_SETTING_ALIASES.get(name, name)
        if name not in CLIENT_SETTINGS:
            import difflib  # only on the error path

            close = difflib.get_close_matches(name, sorted(CLIENT_SETTINGS | set(CLIENT_SETTING_ALIASES)), n=1)
            hint = f"; did you mean {close[0].replace('_', '.')}?" if close else ""
            raise ConfigError(f"{raw!r} is not a Kafka producer setting{hint} (names as in Kafka's producer "
                              f"configs, e.g. acks, compression.type, enable.idempotence, linger.ms)")
        if name in _OWNED:
            raise ConfigError(f"{raw!r} cannot be set: {_OWNED[name]}")
        out[name] = _coerce(name, value)
    return out


def _describe(exc: BaseException) -> str:
    """``Name: message`` of an exception, once (kafka-python's messages often start with the name)."""
    text, name = str(exc), type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


# ---------------------------------------------------------------- delivery reports


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What became of one sent event: where Kafka wrote it, or why it was not written.

    ``offset`` is the offset of the Kafka message that holds the event and ``index``
    its position in that message's JSON array (0 for a message of one event), so
    ``(topic, partition, offset, index)`` finds it again. A failed event has
    ``offset=None`` and its ``error``.

        producer.send(event, on_delivery=lambda r: print(r.event_id, r.partition, r.offset, r.error))
        producer.flush()
    """

    event_id: str
    topic: str
    partition: int
    offset: int | None
    index: int
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """True when the broker acknowledged the event."""
        return self.error is None


DeliveryCallback = Callable[[DeliveryReport], None]

# Failed reports kept for the DeliveryError of the next flush (the count is always exact).
_KEPT_FAILURES = 100


@dataclass
class _Pending:
    """Events waiting for one (topic, partition), oldest first."""

    since: float  # monotonic seconds of the first event
    events: list[bytes] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    callbacks: list[DeliveryCallback | None] = field(default_factory=list)
    size: int = 2


def _settings_arguments(settings: "Settings", config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Producer arguments from cxpulse Settings; ``config`` wins over what they imply."""
    implied = {"client_id": f"{settings.app_id}-producer", **settings.kafka_security()}
    return {
        "bootstrap_servers": settings.bootstrap_servers,
        "config": {**implied, **_normalise_config(config or {})},
        "topics": settings.topics,
        "max_message_bytes": settings.max_message_bytes,
        "max_batch_events": settings.max_batch_events,
    }


class Producer:
    """Validates, keys, partitions and batches contract events; a context manager.

    ``bootstrap_servers``: ``"host:port[,host:port...]"`` or a list of them.
    ``config``: Kafka producer settings, by Kafka's names (``acks``, ``compression.type``,
    ``enable.idempotence``, ``linger.ms``, ``max.block.ms``, ``delivery.timeout.ms``,
    ``security.protocol``, ``sasl.*``, ``ssl.*``, ...) or kafka-python's (``linger_ms``); a few
    librdkafka names are understood too (``message.timeout.ms``, ``sasl.username``, ...).
    ``linger_ms`` (or ``linger.ms`` in config): how long, in ms, an event may wait for
    others of its partition before it is sent; 50 when batching, 5 with ``batch_events=1``.
    ``batch_events``: most events per message (1: one keyed JSON object per event).
    ``storefront``: the default for events that do not name one. ``on_delivery``: called
    with a ``DeliveryReport`` for every sent event (a per-call ``on_delivery`` replaces it).
    ``topics``: family -> topic, default ``cx.sessions`` etc. ``kafka``: a ready client with
    kafka-python's ``KafkaProducer`` interface (tests).

        producer = Producer("kafka-1:9092,kafka-2:9092", {"acks": "all", "compression.type": "gzip"})
        producer.ticket_created(ticket_id="tkt-1", support_channel="chat", storefront="shop-eu")
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        config: Mapping[str, Any] | None = None,
        *,
        storefront: str | None = None,
        batch_events: int = 100,
        linger_ms: int | None = None,
        on_delivery: DeliveryCallback | None = None,
        topics: Mapping[str, str] | None = None,
        max_message_bytes: int | None = None,
        max_batch_events: int | None = None,
        kafka: Any = None,
    ) -> None:
        if not isinstance(bootstrap_servers, (str, list, tuple)):
            # The constructor took Settings before it took bootstrap_servers; keep such callers working.
            from streams.config import Settings

            if not isinstance(bootstrap_servers, Settings):
                raise TypeError(f"bootstrap_servers must be 'host:port[,...]' or a list of them, "
                                f"got {type(bootstrap_servers).__name__}")
            warnings.warn("Producer(settings, ...) is deprecated: use Producer.from_settings(settings, ...)",
                          DeprecationWarning, stacklevel=2)
            implied = _settings_arguments(bootstrap_servers, config)
            bootstrap_servers, config = implied["bootstrap_servers"], implied["config"]
            topics = implied["topics"] if topics is None else topics
            max_message_bytes = max_message_bytes or implied["max_message_bytes"]
            max_batch_events = max_batch_events or implied["max_batch_events"]
        servers = bootstrap_servers.split(",") if isinstance(bootstrap_servers, str) else list(bootstrap_servers)
        servers = [s.strip() for s in servers if s.strip()]
        if not servers:
            raise ConfigError("bootstrap_servers is empty: it accepts host:port[,host:port...]")
        self.bootstrap_servers = ",".join(servers)
        self.max_message_bytes = max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES
        max_batch_events = max_batch_events or DEFAULT_MAX_BATCH_EVENTS
        if not 1 <= batch_events <= max_batch_events:
            raise ValueError(f"batch_events must be 1..{max_batch_events}, got {batch_events}")
        client = _normalise_config(config or {})
        configured_linger = client.pop("linger_ms", None)
        if linger_ms is not None and configured_linger is not None and linger_ms != configured_linger:
            raise ConfigError(f"linger_ms={linger_ms} and linger.ms={configured_linger} disagree: give one")
        linger = linger_ms if linger_ms is not None else configured_linger
        if linger is None:
            linger = 50 if batch_events > 1 else 5
        if not isinstance(linger, int) or linger < 0:
            raise ValueError(f"linger_ms must be an integer >= 0, got {linger!r}")
        self.batch_events = batch_events
        self.linger_ms = linger
        self.storefront = storefront
        self.on_delivery = on_delivery
        self.topics: dict[str, str] = {**DEFAULT_TOPICS, **(topics or {})}
        self.client_config: dict[str, Any] = {
            **CLIENT_DEFAULTS,
            **client,
            "bootstrap_servers": servers,
            "max_request_size": self.max_message_bytes + BATCH_HEADROOM_BYTES,
            # When batching, events already waited linger_ms here to be packed; the client adds at
            # most 5 ms so messages for several partitions of one broker can share a request.
            "linger_ms": linger if batch_events == 1 else min(linger, 5),
        }
        # Connecting is bounded like every other wait of send(): by max.block.ms, unless the
        # caller bounds it on its own (bootstrap.timeout.ms).
        self._connect_setting = "bootstrap.timeout.ms" if "bootstrap_timeout_ms" in client else "max.block.ms"
        self.client_config.setdefault("bootstrap_timeout_ms", self.client_config["max_block_ms"])
        delivery, request = self.client_config["delivery_timeout_ms"], self.client_config["request_timeout_ms"]
        if delivery < request + self.client_config["linger_ms"]:
            raise ConfigError(f"delivery.timeout.ms={delivery} must be at least request.timeout.ms={request} "
                              f"+ the client's linger ({self.client_config['linger_ms']} ms)")
        self._max_batch_bytes = max(self.max_message_bytes - BATCH_HEADROOM_BYTES, 1)
        self._kafka = kafka  # None until the first send connects
        self._connect_lock = threading.Lock()
        self._partitions: dict[str, int] = {}
        self._pending: dict[tuple[str, int], _Pending] = {}
        # Its own lock: reports arrive on the client's I/O thread, which must never wait for
        # self._lock (a send holding it may itself be waiting for that thread to free buffer).
        self._failures_lock = threading.Lock()
        self._failed_reports: list[DeliveryReport] = []
        self._failed = 0
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._timer: threading.Thread | None = None
        if batch_events > 1:
            self._timer = threading.Thread(target=self._linger_loop, name="cxpulse-producer-linger", daemon=True)
            self._timer.start()

    @classmethod
    def from_settings(cls, settings: "Settings", config: Mapping[str, Any] | None = None, **options: Any) -> "Producer":
        """A producer for cxpulse ``Settings``: their brokers, security, topics and size limits.

        ``config`` adds or overrides Kafka producer settings; ``options`` are the
        constructor's keywords (``storefront``, ``batch_events``, ``linger_ms``, ...).

            with Producer.from_settings(Settings.from_env(), storefront="shop-eu") as producer:
                producer.send({"type": "ticket.resolved", "ticket_id": "tkt-1"})
        """
        return cls(**{**_settings_arguments(settings, config), **options})

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def flush(self, timeout_s: float | None = None) -> None:
        """Send every waiting event and wait, at most ``timeout_s`` seconds, for Kafka's answers.

        Without a timeout the wait is bounded by ``delivery.timeout.ms`` (30 s by default).
        Raises ``DeliveryError`` if any event sent since the last flush failed (all of them
        are counted, the first 100 kept in ``.reports``), ``ProducerError`` on the timeout.

            producer.send({"type": "ticket.resolved", "ticket_id": "tkt-1"})
            producer.flush(timeout_s=5)
        """
        with self._lock:
            self._send_ready(force=True)
        if self._kafka is not None:  # never connected: nothing was handed to a client
            try:
                self._kafka.flush(timeout=timeout_s)
            except Exception as exc:
                raise ProducerError(f"flush did not finish within {timeout_s} s against Kafka at "
                                    f"{self.bootstrap_servers}: {_describe(exc)}") from exc
        with self._failures_lock:
            reports, failed = self._failed_reports, self._failed
            self._failed_reports, self._failed = [], 0
        if failed:
            first = reports[0]
            raise DeliveryError(
                f"{failed} event{'s were' if failed > 1 else ' was'} not delivered to Kafka at "
                f"{self.bootstrap_servers} (an event is given up after delivery.timeout.ms="
                f"{self.client_config['delivery_timeout_ms']}); first: {first.event_id} for {first.topic}"
                f"[{first.partition}]: {_describe(first.error)}",
                reports, failed,
            ) from first.error

    def close(self, timeout_s: float | None = None) -> None:
        """Flush (see ``flush``), stop the linger timer and close the connection. Idempotent.

            producer.close(timeout_s=10)  # or leave a `with Producer(...)` block
        """
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
            with self._connect_lock:
                if self._kafka is not None:
                    self._kafka.close(timeout=timeout_s)

    def _client(self) -> Any:
        """The Kafka client, connected on first use (within bootstrap.timeout.ms, by default max.block.ms)."""
        if self._kafka is not None:
            return self._kafka
        with self._connect_lock:
            if self._kafka is None:
                # Imported here, not at module import: kafka-python costs most of this
                # module's import time, and a service that never sends should not pay it.
                from kafka import KafkaProducer

                try:
                    self._kafka = KafkaProducer(**self.client_config)
                except (ValueError, TypeError, RuntimeError) as exc:  # kafka-python refusing a setting's value
                    raise ConfigError(f"kafka-python refused the producer settings: {exc}") from exc
                except Exception as exc:
                    raise ProducerError(
                        f"cannot connect to Kafka at {self.bootstrap_servers} within "
                        f"{self.client_config['bootstrap_timeout_ms']} ms ({self._connect_setting}): {_describe(exc)}"
                    ) from exc
        return self._kafka

    # -------------------------------------------------------------- sending

    def send(self, event: Mapping[str, Any], *, extra: Extra | None = None,
             on_delivery: DeliveryCallback | None = None) -> str:
        """Validate and queue one event (a dict of the contract); return its event_id.

        Fills ``event_id`` (uuid4 hex), ``occurred_at`` (now, UTC) and
        ``schema_version`` when absent, and ``storefront`` from the producer's
        default; the caller's dict is not changed. A top-level name the event type
        does not have raises ``InvalidEvent`` (``unknown_field``); properties the
        contract does not name go in ``extra``. The first send connects, and raises
        ``ProducerError`` when Kafka does not answer within ``max.block.ms``.

            event_id = producer.send({"type": "ticket.resolved", "ticket_id": "tkt-1"}, extra={"macro": "m-7"})
            producer.flush()
        """
        if self._closed:
            raise RuntimeError("the producer is closed")
        event = dict(event)
        type_name = event.get("type")
        if isinstance(type_name, str) and type_name in _ALLOWED:
            unknown = [name for name in event if name not in _ALLOWED[type_name]]
            if unknown:
                raise _unknown_fields(type_name, unknown, _ALLOWED[type_name])
            if extra:
                event.update(_checked_extra(type_name, extra))
        # (an absent or unknown type is refused by validate_event below)
        event.setdefault("event_id", uuid.uuid4().hex)
        event.setdefault("schema_version", SCHEMA_VERSION)
        if isinstance(event.get("occurred_at"), datetime):
            event["occurred_at"] = format_timestamp(event["occurred_at"])
        event.setdefault("occurred_at", format_timestamp(datetime.now(timezone.utc)))
        if self.storefront is not None:
            event.setdefault("storefront", self.storefront)
        validate_event(event)
        try:
            encoded = orjson.dumps(event)
        except TypeError as exc:  # an extra value JSON cannot hold (a set, an object)
            raise InvalidEvent("wrong_type", f"the event cannot be written as JSON: {exc}") from None
        if len(encoded) > self.max_message_bytes:
            raise InvalidEvent("oversized", f"event of {len(encoded)} bytes is over {self.max_message_bytes}")
        key = message_key(event)
        topic = self.topics[EVENT_TYPES[event["type"]].family]
        partition = partition_for(key, self._partition_count(topic))
        event_id: str = event["event_id"]
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
            pending.ids.append(event_id)
            pending.callbacks.append(on_delivery if on_delivery is not None else self.on_delivery)
            pending.size += len(encoded) + 1
            if len(pending.events) >= self.batch_events:
                self._send_group(topic, partition, self._pending.pop((topic, partition)))
        return event_id

    def send_many(self, events: Iterable[Mapping[str, Any]], *,
                  on_delivery: DeliveryCallback | None = None) -> list[str]:
        """``send`` for each event, in order; returns their event_ids.

            ids = producer.send_many([{"type": "ticket.resolved", "ticket_id": t} for t in ("tkt-1", "tkt-2")])
            producer.flush()
        """
        return [self.send(event, on_delivery=on_delivery) for event in events]

    def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            client = self._client()
            try:
                partitions = client.partitions_for(topic)
            except Exception as exc:
                raise ProducerError(
                    f"no partitions for topic {topic!r} from Kafka at {self.bootstrap_servers} within "
                    f"max.block.ms={self.client_config['max_block_ms']}: {_describe(exc)}"
                ) from exc
            if not partitions:
                raise ProducerError(f"topic {topic!r} has no partitions (does it exist?)")
            count = self._partitions[topic] = len(partitions)
        return count

    def _send_ready(self, *, force: bool) -> None:
        """Send groups that are full, or older than linger_ms (all when ``force``)."""
        deadline = time.monotonic() - self.linger_ms / 1000
        for where in [w for w, p in self._pending.items() if force or p.since <= deadline]:
            self._send_group(*where, self._pending.pop(where))

    def _send_group(self, topic: str, partition: int, pending: _Pending) -> None:
        # Called with the lock held, so a partition's messages leave in order.
        client = self._client()
        for start, end in _chunks(pending.events, self.batch_events, self._max_batch_bytes):
            ids, callbacks = pending.ids[start:end], pending.callbacks[start:end]
            # Every event of the message maps to this partition, so the first one's key does too:
            # tools and consumers that expect a key get a true one, and placement is unchanged.
            key = pending.keys[start].encode("utf-8")
            try:
                future = client.send(topic, value=_value(pending.events[start:end]), key=key, partition=partition)
            except Exception as exc:  # the client refused it (buffer full past max.block.ms, closed)
                self._report(topic, partition, ids, callbacks, None, exc)
                continue
            future.add_callback(self._delivered, topic, partition, ids, callbacks)
            future.add_errback(self._failed_delivery, topic, partition, ids, callbacks)

    def _delivered(self, topic: str, partition: int, ids: list[str], callbacks: list[DeliveryCallback | None],
                   metadata: Any) -> None:
        self._report(topic, metadata.partition, ids, callbacks, metadata.offset, None)

    def _failed_delivery(self, topic: str, partition: int, ids: list[str],
                         callbacks: list[DeliveryCallback | None], error: BaseException) -> None:
        self._report(topic, partition, ids, callbacks, None, error)

    def _report(self, topic: str, partition: int, ids: list[str], callbacks: list[DeliveryCallback | None],
                offset: int | None, error: BaseException | None) -> None:
        reports = [DeliveryReport(event_id, topic, partition, offset, index, error) for index, event_id in enumerate(ids)]
        if error is not None:
            with self._failures_lock:
                self._failed += len(reports)
                self._failed_reports.extend(reports[:max(_KEPT_FAILURES - len(self._failed_reports), 0)])
        for report, callback in zip(reports, callbacks):
            if callback is None:
                continue
            try:
                callback(report)
            except Exception:  # a caller's bug must not stop the reports of the other events
                log.exception("on_delivery callback raised for event %s", report.event_id)

    def _linger_loop(self) -> None:
        with self._lock:
            while not self._closed:
                self._wake.wait(timeout=max(self.linger_ms, 1) / 1000 / 2)
                if not self._closed:
                    try:
                        self._send_ready(force=False)
                    except ProducerError:  # cannot happen once connected; never let the timer die
                        log.exception("sending lingering events failed")

    # -------------------------------------------------------------- one method per event type

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
        customer_id: str | None = None, order_id: str | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        extra: Extra | None = None, on_delivery: DeliveryCallback | None = None, **unknown: Never,
    ) -> str:
        """A support ticket was opened. Returns the event_id.

            producer.ticket_created(ticket_id="tkt-1", support_channel="chat", order_id="ord-1")
        """
        return self._emit("ticket.created", dict(
            ticket_id=ticket_id, support_channel=support_channel, customer_id=customer_id, order_id=order_id,
            storefront=storefront, occurred_at=occurred_at, event_id=event_id,
        ), extra, on_delivery, unknown)

    def ticket_replied(
        self, *, ticket_id: str, author: Author, public: bool, support_channel: SupportChannel | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        extra: Extra | None = None, on_delivery: DeliveryCallback | None = None, **unknown: Never,
    ) -> str:
        """A reply (``public=True``) or internal note was added to a ticket. Returns the event_id.

            producer.ticket_replied(ticket_id="tkt-1", author="agent", public=True, support_channel="chat")
        """
        return self._emit("ticket.replied", dict(
            ticket_id=ticket_id, author=author, public=public, support_channel=support_channel,
            storefront=storefront, occurred_at=occurred_at, event_id=event_id,
        ), extra, on_delivery, unknown)

    def ticket_resolved(
        self, *, ticket_id: str, support_channel: SupportChannel | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        extra: Extra | None = None, on_delivery: DeliveryCallback | None = None, **unknown: Never,
    ) -> str:
        """A ticket was resolved. Returns the event_id.

            producer.ticket_resolved(ticket_id="tkt-1")
        """
        return self._emit("ticket.resolved", dict(
            ticket_id=ticket_id, support_channel=support_channel,
            storefront=storefront, occurred_at=occurred_at, event_id=event_id,
        ), extra, on_delivery, unknown)

    def ticket_reopened(
        self, *, ticket_id: str, support_channel: SupportChannel | None = None,
        storefront: str | None = None, occurred_at: Timestamp | None = None, event_id: str | None = None,
        extra: Extra | None = None, on_delivery: DeliveryCallback | None = None, **unknown: Never,
    ) -> str:
        """A resolved ticket was reopened. Returns the event_id.

            producer.ticket_reopened(ticket_id="tkt-1", support_channel="email")
        """
        return self._emit("ticket.reopened", dict(
            ticket_id=ticket_id, support_channel=support_channel,
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
    "survey.answered": "survey_answered",
}
