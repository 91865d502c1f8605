"""The one translation of cxpulse settings into librdkafka (confluent-kafka) client settings.

Every confluent-kafka client of the runtime (the batch source, the transactional sink,
the changelog reader) starts from ``client_config``: the bootstrap servers, the
security settings (SASL/TLS, named as in ``streams.config``) and the timeouts that
suit the test broker as well as a real cluster.

    >>> client_config(Settings(bootstrap_servers="k1:9092"))["bootstrap.servers"]
    'k1:9092'
"""

from __future__ import annotations

from typing import Any

from streams.config import Settings


def client_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """librdkafka settings for ``settings``; ``extra`` (librdkafka's dotted names, passed as
    ``**{"fetch.wait.max.ms": 100}``) wins."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": settings.app_id,
        "security.protocol": settings.security_protocol.lower(),
        # A lost broker is noticed in seconds, not minutes (librdkafka's socket default is 60 s).
        "socket.timeout.ms": 10_000,
        "reconnect.backoff.max.ms": 2_000,
        "log.connection.close": False,
        # librdkafka logs every failed connection attempt (several a second while a broker is
        # down); errors reach the clients' error callbacks, which say it once.
        "log_level": 2,
    }
    if settings.sasl_mechanism:
        config.update({"sasl.mechanism": settings.sasl_mechanism, "sasl.username": settings.sasl_username,
                       "sasl.password": settings.sasl_password})
    if settings.ssl_cafile:
        config["ssl.ca.location"] = settings.ssl_cafile
    if settings.ssl_certfile:
        config["ssl.certificate.location"] = settings.ssl_certfile
    if settings.ssl_keyfile:
        config["ssl.key.location"] = settings.ssl_keyfile
    config.update(extra)
    return config
