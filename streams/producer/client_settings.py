"""The Kafka producer settings a caller may give, by Kafka's names, and the ones the producer sets.

Names as in Kafka's producer configs (``linger.ms``), kafka-python's (``linger_ms``)
or librdkafka's (``message.timeout.ms``) all become kafka-python's, checked in the
constructor without importing kafka-python; a typo fails with the closest known name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from streams.errors import ConfigError

if TYPE_CHECKING:
    from streams.config import Settings

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
