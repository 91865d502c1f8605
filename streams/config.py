"""Settings: read once at start-up from the environment, validated, frozen.

Every setting has an environment variable ``CXPULSE_<NAME>`` (upper case) and a
default that suits the local stack. A wrong value fails start-up with a
``ConfigError`` naming the variable and what it accepts.

    >>> Settings.from_env({"CXPULSE_GRACE": "90s"}).grace_ms
    90000
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from streams.contract import DEADLETTER_TOPIC, DEFAULT_TOPICS, Family
from streams.errors import ConfigError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str) -> int:
    """'90s' -> 90000. Units: ms, s, m, h, d.

        >>> parse_duration_ms("5m")
        300000
    """
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError("a duration like 500ms, 90s, 5m, 2h or 30d")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def format_duration(ms: int) -> str:
    """300000 -> '5m' (the largest unit that divides it)."""
    for unit in ("d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0 and ms >= _UNIT_MS[unit]:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


@dataclass(frozen=True)
class Settings:
    # Kafka connection (production points these at its own cluster)
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    # Topics
    topic_sessions: str = DEFAULT_TOPICS["session"]
    topic_orders: str = DEFAULT_TOPICS["order"]
    topic_tickets: str = DEFAULT_TOPICS["ticket"]
    topic_surveys: str = DEFAULT_TOPICS["survey"]
    topic_deadletter: str = DEADLETTER_TOPIC
    topic_state: str = "cxpulse.state"
    # Internal: counted events that name a customer, re-keyed by customer id (one hop
    # for every customer-level KPI), and the declared CX initiatives (compacted).
    topic_customers: str = "cxpulse.customers"
    # Internal: closed event-time windows of every source partition, re-keyed by storefront
    # (the merge stage sums them into complete windows for the TSDB).
    topic_windows: str = "cxpulse.windows"
    topic_initiatives: str = "cx.initiatives"
    partitions: int = 4  # per source topic; the most workers that can share the load
    app_id: str = "cxpulse"
    # Serving
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9400
    web_port: int = 6066  # Faust needs a port per worker even with its web server off
    # Optional TLS (and client-certificate check) and basic auth for /metrics;
    # /healthz and /ready stay open for probes.
    metrics_certfile: str | None = None
    metrics_keyfile: str | None = None
    metrics_client_cafile: str | None = None
    metrics_basic_auth_username: str | None = None
    metrics_basic_auth_password: str | None = field(default=None, repr=False)
    # Windows (event time)
    window_ms: int = 60_000
    views_ms: tuple[int, ...] = (60_000, 300_000, 900_000, 3_600_000)
    # Grace is 2 min because mobile apps send their queued events in batches.
    grace_ms: int = 120_000
    retention_ms: int = 7_200_000
    dedupe_horizon_ms: int = 300_000
    ticket_ttl_ms: int = 30 * 86_400_000
    max_clock_skew_ms: int = 300_000
    # The watermark moves at most this far past a message's Kafka timestamp: a producer whose
    # clock runs ahead cannot close everyone's windows early (docs/metrics.md, "Watermark").
    watermark_lead_ms: int = 5_000
    # A partition with no message for this long (processing time) stops holding back closed
    # windows: its watermark follows the worker's other partitions, this far behind.
    idle_partition_ms: int = 30_000
    # Day totals per segment (sessions, orders, revenue) for initiative ROI: how far back.
    day_retention_ms: int = 400 * 86_400_000
    # Customer-level state (never exported): a customer inactive this long is forgotten
    # (their contribution to the KPIs stays), and at most this many per partition.
    customer_ttl_ms: int = 400 * 86_400_000
    customer_max: int = 500_000
    post_support_ms: int = 7 * 86_400_000  # an order within this long after a ticket converts it
    cohort_weeks: int = 26  # first-order and ticket weeks exported as cohorts
    # Cardinality budget: label values outside an allow-list (comma-separated; empty
    # allows any) or beyond label_cap distinct values per partition go to `other`;
    # at most segment_cap label combinations per family and partition.
    allowed_storefronts: str = ""
    allowed_channels: str = ""
    allowed_currencies: str = ""
    label_cap: int = 50
    segment_cap: int = 500
    # Engine: "kafka" (a batch consumer, the default) or "faust" (the Faust agent)
    engine: Literal["kafka", "faust"] = "kafka"
    # Where complete event-time windows go: a Prometheus remote-write endpoint (Prometheus
    # with --web.enable-remote-write-receiver and an out-of-order window, Mimir, VictoriaMetrics).
    remote_write_url: str | None = None
    remote_write_username: str | None = None
    remote_write_password: str | None = field(default=None, repr=False)
    remote_write_bearer_token: str | None = field(default=None, repr=False)
    remote_write_ca_file: str | None = None
    # A counter series that appears mid-run is shown at 0 this long first, so rate() sees its
    # first increment (it never counts a series' first sample): keep above twice the scrape interval.
    new_series_hold_ms: int = 60_000
    # Dead letters larger than this are parked truncated, with their size and a digest.
    deadletter_max_bytes: int = 900_000
    # Hot path
    # Longest a fetch may wait for data. Faust hard-codes 1.5 s; a broker that holds a fetch
    # for the whole wait (Tansu does) then delays every event by up to that (measured:
    # median 0.36 s at 1.5 s, 2 ms at 100 ms). Real Kafka answers as soon as data arrives.
    fetch_wait_ms: int = 100
    batch_max: int = 2000
    batch_wait_s: float = 0.1
    max_message_bytes: int = 1_048_576
    max_batch_events: int = 10_000

    @property
    def topics(self) -> dict[Family, str]:
        return {
            "session": self.topic_sessions,
            "order": self.topic_orders,
            "ticket": self.topic_tickets,
            "survey": self.topic_surveys,
        }

    @property
    def state_partitions(self) -> int:
        """Partitions of the state changelog: one per partition of the 4 event topics, the
        customer topic and the window (merge) topic."""
        return 6 * self.partitions

    def kafka_security(self) -> dict[str, Any]:
        """Connection keyword arguments shared by kafka-python clients."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name):
                options[name] = getattr(self, name)
        return options

    def allowed_values(self, label: str) -> frozenset[str] | None:
        """The allow-list of a segment label, or None when any value may pass (up to the cap)."""
        text = {"storefront": self.allowed_storefronts, "channel": self.allowed_channels,
                "currency": self.allowed_currencies}.get(label, "")
        values = frozenset(v.strip() for v in text.split(",") if v.strip())
        return values or None

    def series_budget(self) -> int:
        """Upper bound of segment series per family: segments x partitions (see docs/operations.md)."""
        return self.segment_cap * self.partitions

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Build from ``CXPULSE_*`` variables (then ``overrides``); validate."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            var = f"CXPULSE_{f.name.upper()}"
            alias = f"CXPULSE_{f.name.upper().removesuffix('_MS')}"
            text = env.get(var, env.get(alias))
            if text is None:
                continue
            values[f.name] = _parse(f.name, var if var in env else alias, text, f.type)
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        def fail(name: str, accepts: str) -> None:
            raise ConfigError(f"CXPULSE_{name.upper()}={getattr(self, name)!r} is not valid: it accepts {accepts}")

        if self.security_protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            fail("security_protocol", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
                fail("sasl_mechanism", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 when security_protocol is SASL_*")
            if not self.sasl_username or not self.sasl_password:
                raise ConfigError("CXPULSE_SASL_USERNAME and CXPULSE_SASL_PASSWORD are required with SASL")
        elif self.sasl_mechanism:
            fail("sasl_mechanism", "nothing unless CXPULSE_SECURITY_PROTOCOL is SASL_PLAINTEXT or SASL_SSL")
        if bool(self.metrics_certfile) != bool(self.metrics_keyfile):
            raise ConfigError("CXPULSE_METRICS_CERTFILE and CXPULSE_METRICS_KEYFILE go together: set both for TLS "
                              "on /metrics, or neither")
        if self.metrics_client_cafile and not self.metrics_certfile:
            raise ConfigError("CXPULSE_METRICS_CLIENT_CAFILE checks client certificates and needs TLS: "
                              "set CXPULSE_METRICS_CERTFILE and CXPULSE_METRICS_KEYFILE too")
        if bool(self.metrics_basic_auth_username) != bool(self.metrics_basic_auth_password):
            raise ConfigError("CXPULSE_METRICS_BASIC_AUTH_USERNAME and CXPULSE_METRICS_BASIC_AUTH_PASSWORD go "
                              "together: set both to require basic auth on /metrics, or neither")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigError("CXPULSE_SSL_KEYFILE needs CXPULSE_SSL_CERTFILE (the client certificate it belongs to)")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "metrics_certfile", "metrics_keyfile",
                     "metrics_client_cafile"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                fail(name, "the path of a readable PEM file")
        if not self.bootstrap_servers.strip():
            fail("bootstrap_servers", "host:port[,host:port...]")
        for name in ("partitions", "metrics_port", "web_port", "batch_max", "max_message_bytes", "max_batch_events",
                     "fetch_wait_ms",
                     "label_cap", "segment_cap"):
            if getattr(self, name) < 1:
                fail(name, "a positive integer")
        if self.window_ms < 1000:
            fail("window_ms", "a duration of at least 1s")
        for view in self.views_ms:
            if view % self.window_ms:
                fail("views_ms", f"durations that are whole multiples of the base window ({format_duration(self.window_ms)})")
        if self.grace_ms < 0:
            fail("grace_ms", "a duration >= 0")
        if self.watermark_lead_ms < 0:
            fail("watermark_lead_ms", "a duration >= 0")
        if self.idle_partition_ms < 1000:
            fail("idle_partition_ms", "a duration of at least 1s")
        if self.engine not in ("kafka", "faust"):
            fail("engine", "kafka (the batch consumer) or faust")
        if self.remote_write_url and not self.remote_write_url.startswith(("http://", "https://")):
            fail("remote_write_url", "an http:// or https:// URL of a remote-write endpoint")
        if self.remote_write_ca_file and not os.path.isfile(self.remote_write_ca_file):
            fail("remote_write_ca_file", "the path of a readable PEM file")
        if bool(self.remote_write_username) != bool(self.remote_write_password):
            raise ConfigError("CXPULSE_REMOTE_WRITE_USERNAME and CXPULSE_REMOTE_WRITE_PASSWORD go together")
        if self.deadletter_max_bytes < 1024:
            fail("deadletter_max_bytes", "a size of at least 1024 bytes")
        if self.retention_ms < max(self.views_ms) + self.grace_ms + self.window_ms:
            fail("retention_ms", "a duration of at least the longest view + grace + one base window")
        if self.dedupe_horizon_ms < self.grace_ms + self.window_ms:
            fail("dedupe_horizon_ms", "a duration of at least grace + one base window")
        if self.customer_ttl_ms < 90 * 86_400_000 + self.post_support_ms:
            fail("customer_ttl_ms", "a duration of at least 90d + the post-support window (LTV looks 90 days ahead)")
        if self.customer_max < 1:
            fail("customer_max", "a positive number of customers per partition")
        if self.cohort_weeks < 1:
            fail("cohort_weeks", "a positive number of weeks")


def _parse(name: str, var: str, text: str, annotation: Any) -> Any:
    kind = str(annotation)
    try:
        if name == "views_ms":
            return tuple(parse_duration_ms(part) for part in text.split(",") if part.strip())
        if name.endswith("_ms"):
            return parse_duration_ms(text) if not text.strip().isdigit() else int(text)
        if kind == "int":
            return int(text)
        if kind == "str":
            return text
        if kind == "float":
            return float(text)
        return text or None
    except ValueError as exc:
        accepts = {"int": "an integer", "float": "a number"}.get(kind, kind)
        raise ConfigError(f"{var}={text!r} is not valid: it accepts {exc if 'duration' in str(exc) else accepts}") from None
