"""``Producer``: connects to Kafka on first use, queues events per partition, sends and flushes.

Every event is validated, keyed (``contract.message_key``) and placed with Kafka's
murmur2 partitioner before it is queued; a partition's queue leaves as one
message when it holds ``batch_events`` events or has waited ``linger_ms``. The
per-event-type methods come from ``events.EventMethods``, the settings checks
from ``client_settings``.
"""

from __future__ import annotations

import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import orjson

from streams.contract import DEFAULT_TOPICS, EVENT_TYPES, SCHEMA_VERSION, message_key, partition_for
from streams.decode import DEFAULT_MAX_BATCH_EVENTS, DEFAULT_MAX_MESSAGE_BYTES, validate_event
from streams.errors import ConfigError, DeliveryError, InvalidEvent, ProducerError
from streams.producer.batches import BATCH_HEADROOM_BYTES, DeliveryCallback, DeliveryReport, _chunks, _value
from streams.producer.client_settings import CLIENT_DEFAULTS, _normalise_config, _settings_arguments
from streams.producer.events import _ALLOWED, EventMethods, Extra, _checked_extra, _unknown_fields, format_timestamp

if TYPE_CHECKING:
    from streams.config import Settings

# Failed reports kept for the DeliveryError of the next flush (the count is always exact).
_KEPT_FAILURES = 100
# How long past delivery.timeout.ms a flush without a timeout waits for the client to answer
# before it fails what the client still holds (``Producer._expire``).
FLUSH_MARGIN_S = 2.0


@dataclass
class _InFlight:
    """A message handed to the client: when, where, and whose events."""

    at: float  # monotonic seconds
    topic: str
    partition: int
    ids: list[str]
    callbacks: list[DeliveryCallback | None]


@dataclass
class _Pending:
    """Events waiting for one (topic, partition), oldest first."""

    since: float  # monotonic seconds of the first event
    events: list[bytes] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    callbacks: list[DeliveryCallback | None] = field(default_factory=list)
    size: int = 2


def _log_exception(message: str, *args: object) -> None:
    """Log the exception being handled on the ``cxpulse.producer`` logger, as from the caller.

    logging is imported here, on the error path, not with the package: with what it
    loads it was about a tenth of ``import streams.producer`` in a fresh interpreter
    (most services have imported it already; a script that only sends need not).
    """
    import logging

    logging.getLogger("cxpulse.producer").exception(message, *args, stacklevel=2)


def _describe(exc: BaseException) -> str:
    """``Name: message`` of an exception, once (kafka-python's messages often start with the name)."""
    text, name = str(exc), type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


class Producer(EventMethods):
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
        # Messages handed to the client and not yet answered, by a number of ours: a flush
        # without a timeout fails those the client still holds past delivery.timeout.ms itself
        # (``_expire``). Guarded by _failures_lock; whoever pops an entry reports it, once.
        self._in_flight: dict[int, _InFlight] = {}
        self._sent_count = 0
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

        Without a timeout the wait is bounded by ``delivery.timeout.ms`` (30 s by default) plus
        2 s; an event the client has still not answered then is reported failed like the others.
        Raises ``DeliveryError`` if any event sent since the last flush failed (all of them
        are counted, the first 100 kept in ``.reports``), ``ProducerError`` on the timeout.

            producer.send({"type": "ticket.resolved", "ticket_id": "tkt-1"})
            producer.flush(timeout_s=5)
        """
        with self._lock:
            self._send_ready(force=True)
        if self._kafka is not None:  # never connected: nothing was handed to a client
            started = time.monotonic()
            # Without a timeout, the bound is delivery.timeout.ms plus a margin: kafka-python
            # 3.0.12 can keep a batch it sent to a broker that died forever (a full suite run
            # hung in this flush), so what it still holds then is failed here (``_expire``).
            bound = timeout_s if timeout_s is not None else self.client_config["delivery_timeout_ms"] / 1000 + FLUSH_MARGIN_S
            try:
                self._kafka.flush(timeout=bound)
            except Exception as exc:
                if timeout_s is not None:
                    raise ProducerError(f"flush did not finish within {timeout_s} s against Kafka at "
                                        f"{self.bootstrap_servers}: {_describe(exc)}") from exc
                self._expire(started, exc)
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
            with self._failures_lock:
                self._sent_count += 1
                number = self._sent_count
                self._in_flight[number] = _InFlight(time.monotonic(), topic, partition, ids, callbacks)
            future.add_callback(self._delivered, number)
            future.add_errback(self._failed_delivery, number)

    def _answered(self, number: int) -> _InFlight | None:
        """The message's entry, taken out: None when it was already reported (``_expire``)."""
        with self._failures_lock:
            return self._in_flight.pop(number, None)

    def _delivered(self, number: int, metadata: Any) -> None:
        if (sent := self._answered(number)) is not None:
            self._report(sent.topic, metadata.partition, sent.ids, sent.callbacks, metadata.offset, None)

    def _failed_delivery(self, number: int, error: BaseException) -> None:
        if (sent := self._answered(number)) is not None:
            self._report(sent.topic, sent.partition, sent.ids, sent.callbacks, None, error)

    def _expire(self, flush_started: float, cause: BaseException) -> None:
        """Fail every message handed to the client before the flush began that it has not answered
        within the flush's bound: each has had at least delivery.timeout.ms. If the client delivers
        one later after all, its report is dropped (the event was reported failed; a resend is
        deduplicated by event_id downstream)."""
        with self._failures_lock:
            expired = [n for n, sent in self._in_flight.items() if sent.at <= flush_started]
            entries = [self._in_flight.pop(n) for n in expired]
        timeout_ms = self.client_config["delivery_timeout_ms"]
        for sent in entries:
            error = ProducerError(f"no answer from Kafka within delivery.timeout.ms={timeout_ms} "
                                  f"(+{FLUSH_MARGIN_S:g} s): {_describe(cause)}")
            self._report(sent.topic, sent.partition, sent.ids, sent.callbacks, None, error)

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
                _log_exception("on_delivery callback raised for event %s", report.event_id)

    def _linger_loop(self) -> None:
        with self._lock:
            while not self._closed:
                self._wake.wait(timeout=max(self.linger_ms, 1) / 1000 / 2)
                if not self._closed:
                    try:
                        self._send_ready(force=False)
                    except ProducerError:  # cannot happen once connected; never let the timer die
                        _log_exception("sending lingering events failed")
