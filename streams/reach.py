"""Reaching Kafka from a command: bounded waits, one-line failures.

Every command that talks to Kafka, except ``worker`` (which waits for the broker
with backoff by design), gives up after ``CXPULSE_CONNECT_TIMEOUT`` (default 5s)
when no bootstrap server answers, and says so in one line: the servers, where
they came from (``--bootstrap``, ``CXPULSE_BOOTSTRAP_SERVERS`` or the default)
and why each did not answer (unknown host, refused, silent). ``cxpulse`` prints
it and exits 1, instead of a kafka-python traceback 30 s later.

    with kafka_boundary(settings, bootstrap_source(args.bootstrap is not None)):
        consumer = KafkaConsumer(**client_options(settings))
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from typing import Any, Iterator, Mapping

from streams.config import Settings, format_duration
from streams.errors import ProducerError, CxpulseError

FLAG = "--bootstrap"
VARIABLE = "CXPULSE_BOOTSTRAP_SERVERS"


class KafkaUnreachable(CxpulseError):
    """No bootstrap server answered within the connect timeout (or the broker stopped answering)."""


class KafkaRequestFailed(CxpulseError):
    """Kafka answered, but refused what the command asked (authorization, a bad topic...)."""


def bootstrap_source(flag_given: bool, env: Mapping[str, str] | None = None) -> str:
    """Where the bootstrap servers came from, for messages.

        >>> bootstrap_source(True)
        '--bootstrap'
        >>> bootstrap_source(False, {})
        'the default; set --bootstrap or CXPULSE_BOOTSTRAP_SERVERS'
    """
    env = os.environ if env is None else env
    if flag_given:
        return FLAG
    if VARIABLE in env:
        return VARIABLE
    return f"the default; set {FLAG} or {VARIABLE}"


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for a kafka-python client a command uses: the servers, the
    security settings and a bootstrap bounded by the connect timeout (kafka-python waits 30 s)."""
    return {
        "bootstrap_servers": [server.strip() for server in settings.bootstrap_servers.split(",")],
        "bootstrap_timeout_ms": settings.connect_timeout_ms,
        **settings.kafka_security(),
    }


def diagnose(servers: str, budget_s: float = 2.0) -> str:
    """Why each bootstrap server did not answer, from a plain TCP connect (``budget_s`` in all).

        >>> diagnose("notahost.invalid:9092")
        'notahost.invalid:9092 unknown host'
    """
    parts = [part.strip() for part in servers.split(",") if part.strip()]
    timeout_s = max(0.2, budget_s / max(1, len(parts)))
    reasons = []
    for server in parts:
        host, _, port = server.rpartition(":")
        host = host.strip("[]")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_s):
                pass
        except socket.gaierror:
            reasons.append(f"{server} unknown host")
        except ConnectionRefusedError:
            reasons.append(f"{server} refused the connection (nothing listens there)")
        except (socket.timeout, TimeoutError):
            reasons.append(f"{server} did not answer (firewall, or a wrong address?)")
        except (OSError, ValueError) as exc:
            reasons.append(f"{server} {getattr(exc, 'strerror', None) or exc}")
        else:
            reasons.append(f"{server} accepts connections, yet Kafka did not answer (not a Kafka listener, "
                           "security settings that do not match it, or brokers advertising an address this "
                           "machine cannot reach?)")
    return "; ".join(reasons)


@contextlib.contextmanager
def quiet_kafka_logs() -> Iterator[None]:
    """kafka-python logs every failed attempt at WARNING/ERROR; a command says it once itself."""
    logger = logging.getLogger("kafka")
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        yield
        return
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextlib.contextmanager
def kafka_boundary(settings: Settings, source: str, doing: str = "the request") -> Iterator[None]:
    """Turn kafka-python's errors inside the block into one-line ``KafkaUnreachable`` or
    ``KafkaRequestFailed`` (``doing`` says what was asked), with kafka-python's own logging muted."""
    from kafka.errors import (KafkaConnectionError, KafkaError, KafkaTimeoutError, NodeNotReadyError,
                              RequestTimedOutError)

    began = time.monotonic()
    with quiet_kafka_logs():
        try:
            yield
        except (KafkaTimeoutError, KafkaConnectionError, NodeNotReadyError, RequestTimedOutError) as exc:
            waited = format_duration(max(1, round(time.monotonic() - began)) * 1000)
            why = diagnose(settings.bootstrap_servers)
            raise KafkaUnreachable(
                f"cannot reach Kafka at {settings.bootstrap_servers} ({source}): gave up after {waited} "
                f"({type(exc).__name__}); {why}") from exc
        except KafkaError as exc:
            detail = " ".join(str(exc).split())
            raise KafkaRequestFailed(f"Kafka at {settings.bootstrap_servers} refused {doing}: "
                                     f"{type(exc).__name__}: {detail}") from exc
        except ProducerError as exc:  # the producer library's own (it connects on its first send)
            raise KafkaRequestFailed(f"Kafka at {settings.bootstrap_servers} did not take {doing}: {exc}") from exc


def require_kafka(settings: Settings, source: str) -> None:
    """Fail fast (``KafkaUnreachable``, within the connect timeout) unless a bootstrap server
    answers a metadata request: for commands whose clients would otherwise wait 30 s or more."""
    from kafka import KafkaAdminClient

    with kafka_boundary(settings, source, "a metadata request"):
        KafkaAdminClient(client_id=f"{settings.app_id}-probe", **client_options(settings)).close()
