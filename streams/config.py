"""Settings: read once at start-up from the environment, validated, frozen.

Every setting has an environment variable ``CXPULSE_<NAME>`` (upper case) and a
default that suits the local stack. A wrong value fails start-up with a
``ConfigError`` naming the variable the user set and what it accepts.

Durations: a setting kept in milliseconds (a field ending in ``_ms``) is read
from ``CXPULSE_<NAME>`` without the suffix, which needs a unit (``500ms``,
``90s``, ``5m``, ``2h``, ``30d``: a bare ``30`` is refused, it is ambiguous),
or from ``CXPULSE_<NAME>_MS``, which also takes a bare integer of milliseconds.

Dependent defaults follow what the user set: the dedupe horizon, the state
retention and the customer TTL default to at least what grace, window, views,
the post-support window and the retention periods require. An unknown ``CXPULSE_*`` variable (a typo)
is logged at start-up with the closest known name.

    >>> Settings.from_env({"CXPULSE_GRACE": "90s"}).grace_ms
    90000
    >>> Settings.from_env({"CXPULSE_GRACE": "5m"}).dedupe_horizon_ms   # grace + one window
    360000
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, NoReturn

from streams.business_hours import Calendars, parse_calendars
from streams.contract import DEADLETTER_TOPIC, DEFAULT_TOPICS, Family
from streams.days import DAY_MS
from streams.errors import ConfigError
from streams.syntax import DURATION_EXAMPLES, bootstrap_problem, format_duration, parse_duration_ms

log = logging.getLogger("cxpulse.config")

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

MAX_RETENTION_PERIODS = 5  # each period length is a label value of the retention gauges

# CXPULSE_* variables that are not settings but are read elsewhere: the start-up check for
# misspelt settings leaves them alone. Add one here when code starts reading a new one.
NOT_SETTINGS: dict[str, str] = {
    "CXPULSE_CI_RUN": ".ci/run: marks every process of one CI run, for its clean-up",
    "CXPULSE_RUNBOOK_BASE": "cxpulse render: base URL of the alert runbooks (streams/mixin/rules/links.py)",
    "CXPULSE_FUZZ_SECONDS": "tests/fuzz/test_atheris.py: how long the atheris fuzzer runs",
    "CXPULSE_GRAFANA_URL": "cxpulse render: base URL of Grafana for the alerts' dashboard links (streams/mixin/rules/links.py)",
}
_warned_unknown: set[str] = set()  # one warning per variable and process


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
    # Replicas of each topic `cxpulse topics` creates; None: the broker's default.replication.factor.
    replication_factor: int | None = None
    # retention.ms of the source, dead-letter and customer topics `cxpulse topics` creates
    # (the state changelog and the initiatives are compacted and kept forever).
    topic_retention_ms: int = 7 * 86_400_000
    app_id: str = "cxpulse"
    # How long a command (initiative, simulate, topics) waits to reach Kafka before it fails.
    # The worker instead waits for the broker with backoff, however long it takes.
    connect_timeout_ms: int = 5_000
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
    # A session with no event for this long (event time) is over: a later event of its id starts the
    # funnel afresh (the per-session funnel counts each step once per session, docs/metrics.md).
    session_timeout_ms: int = 30 * 60_000
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
    # Cart abandonment (the checkout join): a session that started a checkout and placed no order
    # within this long after its first checkout counts as abandoned.
    checkout_horizon_ms: int = 3_600_000
    # Support calendars per storefront (JSON, or the path of a JSON file; streams/business_hours.py):
    # first-response and resolution times in business hours beside calendar time. Empty: none.
    business_hours: str = ""
    cohort_weeks: int = 26  # first-order and ticket weeks exported as cohorts
    # Lengths of the periods customer retention compares (each period against the one before).
    # A year is opt-in (30d,90d,365d): it needs the customer TTL to cover two years (derived),
    # which holds nearly twice the customers in memory.
    retention_periods_ms: tuple[int, ...] = (30 * 86_400_000, 90 * 86_400_000)
    # Cardinality budget: label values outside an allow-list (comma-separated; empty
    # allows any) or beyond label_cap distinct values per partition go to `other`;
    # at most segment_cap label combinations per family and partition.
    allowed_storefronts: str = ""
    allowed_channels: str = ""
    allowed_currencies: str = ""
    allowed_product_categories: str = ""  # the tickets' product_category (a breakdown, not a segment label)
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
                "currency": self.allowed_currencies,
                "product_category": self.allowed_product_categories}.get(label, "")
        values = frozenset(v.strip() for v in text.split(",") if v.strip())
        return values or None

    @functools.cached_property
    def calendars(self) -> Calendars:
        """The support calendars of ``business_hours`` (checked by ``validate``)."""
        return parse_calendars(self.business_hours)

    def series_budget(self) -> int:
        """Upper bound of segment series per family: segments x partitions (see docs/operations.md)."""
        return self.segment_cap * self.partitions

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Every environment variable that sets a field: variable -> field name.

        A duration field ``grace_ms`` has two: ``CXPULSE_GRACE`` (with a unit) and
        ``CXPULSE_GRACE_MS`` (a bare integer of milliseconds allowed too)."""
        names: dict[str, str] = {}
        for f in dataclasses.fields(cls):
            full = f"CXPULSE_{f.name.upper()}"
            names[full] = f.name
            if f.name.endswith("_ms"):
                names[full.removesuffix("_MS")] = f.name
        return names

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, flags: Mapping[str, str] | None = None,
                 **overrides: Any) -> "Settings":
        """Build from ``CXPULSE_*`` variables (then ``overrides``, e.g. from command-line flags); validate.

        ``flags`` names the flag an override came from (``{"bootstrap_servers": "--bootstrap"}``)
        so that an error names what the user typed. Defaults that depend on other settings
        (dedupe horizon, retention, customer TTL) follow what was set."""
        env = os.environ if env is None else env
        warn_unknown_variables(env)
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}  # field -> how the user set it, for messages
        for f in dataclasses.fields(cls):
            full = f"CXPULSE_{f.name.upper()}"
            candidates = [full]
            if f.name.endswith("_ms"):
                candidates.insert(0, full.removesuffix("_MS"))
            given = [(var, env[var], _parse(f.name, var, env[var], f.type, bare_ms=var == full))
                     for var in candidates if var in env]
            if not given:
                continue
            if len(given) == 2 and given[0][2] != given[1][2]:
                raise ConfigError(f"{given[0][0]}={given[0][1]!r} and {given[1][0]}={given[1][1]!r} disagree: "
                                  f"set one of them")
            var, text, value = given[0]
            values[f.name] = value
            origins[f.name] = f"{var}={text!r}"
        for name, value in overrides.items():
            values[name] = value
            flag = (flags or {}).get(name)
            origins[name] = f"{flag} {value!r}" if flag else f"CXPULSE_{name.upper()}={value!r}"
        _derive_defaults(values)
        settings = cls(**values)
        settings.validate(origins)
        return settings

    def validate(self, origins: Mapping[str, str] | None = None) -> None:
        """Fail with a ConfigError naming the setting. ``origins`` (field -> how the user set it,
        e.g. ``CXPULSE_GRACE='5m'`` or ``--bootstrap 'x'``) says which settings the user chose:
        those are named first, the others are shown with their defaults. The checks go by group
        of settings, in this order; the first that fails raises."""
        problems = _Problems(self, origins or {})
        for check in (_check_security, _check_tls_and_auth, _check_cluster, _check_windows, _check_outputs,
                      _check_horizons, _check_customers):
            check(self, problems)
        self.calendars  # noqa: B018 (parses CXPULSE_BUSINESS_HOURS: a mistake fails at start-up)


class _Problems:
    """How ``Settings.validate`` words a refusal: a setting as the user set it (``origins``),
    else as its variable with its value or default."""

    def __init__(self, settings: Settings, origins: Mapping[str, str]) -> None:
        self.settings, self.origins = settings, origins

    def shown(self, name: str) -> str:
        if name in self.origins:
            return self.origins[name]
        value = getattr(self.settings, name)
        if name in ("views_ms", "retention_periods_ms"):
            text = ",".join(format_duration(v) for v in value)
        elif name.endswith("_ms"):
            text = format_duration(value)
        else:
            text = str(value)
        return f"CXPULSE_{name.upper().removesuffix('_MS')} (default {text})"

    def fail(self, name: str, accepts: str) -> NoReturn:
        what = self.origins.get(name, f"CXPULSE_{name.upper()}={getattr(self.settings, name)!r}")
        raise ConfigError(f"{what} is not valid: it accepts {accepts}")

    def conflict(self, names: tuple[str, ...], rule: str) -> NoReturn:
        """Settings valid alone but not together: lead with the ones the user set."""
        chosen = [n for n in names if n in self.origins] or list(names[:1])
        others = [n for n in names if n not in chosen]
        text = " and ".join(self.shown(n) for n in chosen)
        verb = "is" if len(chosen) == 1 else "are"
        text += f" {verb} not valid with " + ", ".join(self.shown(n) for n in others) if others else f" {verb} not valid"
        raise ConfigError(f"{text}: {rule}")



def _check_security(s: Settings, p: _Problems) -> None:
    """The Kafka connection's security protocol and SASL."""
    if s.security_protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        p.fail("security_protocol", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    if s.security_protocol.startswith("SASL"):
        if s.sasl_mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            p.fail("sasl_mechanism", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 when security_protocol is SASL_*")
        if not s.sasl_username or not s.sasl_password:
            raise ConfigError("CXPULSE_SASL_USERNAME and CXPULSE_SASL_PASSWORD are required with SASL")
    elif s.sasl_mechanism:
        p.fail("sasl_mechanism", "nothing unless CXPULSE_SECURITY_PROTOCOL is SASL_PLAINTEXT or SASL_SSL")


def _check_tls_and_auth(s: Settings, p: _Problems) -> None:
    """Settings that go in pairs (TLS and basic auth on /metrics, the Kafka client certificate), and PEM files."""
    if bool(s.metrics_certfile) != bool(s.metrics_keyfile):
        raise ConfigError("CXPULSE_METRICS_CERTFILE and CXPULSE_METRICS_KEYFILE go together: set both for TLS "
                          "on /metrics, or neither")
    if s.metrics_client_cafile and not s.metrics_certfile:
        raise ConfigError("CXPULSE_METRICS_CLIENT_CAFILE checks client certificates and needs TLS: "
                          "set CXPULSE_METRICS_CERTFILE and CXPULSE_METRICS_KEYFILE too")
    if bool(s.metrics_basic_auth_username) != bool(s.metrics_basic_auth_password):
        raise ConfigError("CXPULSE_METRICS_BASIC_AUTH_USERNAME and CXPULSE_METRICS_BASIC_AUTH_PASSWORD go "
                          "together: set both to require basic auth on /metrics, or neither")
    if s.ssl_keyfile and not s.ssl_certfile:
        raise ConfigError("CXPULSE_SSL_KEYFILE needs CXPULSE_SSL_CERTFILE (the client certificate it belongs to)")
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "metrics_certfile", "metrics_keyfile",
                 "metrics_client_cafile"):
        path = getattr(s, name)
        if path and not os.path.isfile(path):
            p.fail(name, "the path of a readable PEM file")


def _check_cluster(s: Settings, p: _Problems) -> None:
    """Brokers, counts and sizes that must be positive, the topics' replicas and retention."""
    problem = bootstrap_problem(s.bootstrap_servers)
    if problem:
        p.fail("bootstrap_servers", f"host:port[,host:port...], e.g. kafka-1:9092,kafka-2:9092 ({problem})")
    for name in ("partitions", "metrics_port", "web_port", "batch_max", "max_message_bytes", "max_batch_events",
                 "fetch_wait_ms", "connect_timeout_ms", "label_cap", "segment_cap"):
        if getattr(s, name) < 1:
            p.fail(name, "a positive integer" if not name.endswith("_ms") else "a positive duration")
    if s.replication_factor is not None and s.replication_factor < 1:
        p.fail("replication_factor", "a positive number of replicas (unset: the broker's default)")
    if s.topic_retention_ms < 3_600_000:
        p.fail("topic_retention_ms", "a duration of at least 1h (a day or more recommended)")


def _check_windows(s: Settings, p: _Problems) -> None:
    """Event-time windows: the base window, the views built from it, grace and the watermark."""
    if s.window_ms < 1000:
        p.fail("window_ms", "a duration of at least 1s")
    if not s.views_ms:
        p.fail("views_ms", "one or more durations, e.g. 1m,5m,15m,1h")
    for view in s.views_ms:
        if view % s.window_ms:
            p.conflict(("window_ms", "views_ms"), f"every view must be a whole multiple of the base window "
                                                  f"({format_duration(s.window_ms)}); set both to match")
    if s.grace_ms < 0:
        p.fail("grace_ms", "a duration >= 0")
    if s.watermark_lead_ms < 0:
        p.fail("watermark_lead_ms", "a duration >= 0")
    if s.idle_partition_ms < 1000:
        p.fail("idle_partition_ms", "a duration of at least 1s")


def _check_outputs(s: Settings, p: _Problems) -> None:
    """The engine, remote write and the dead-letter size."""
    if s.engine not in ("kafka", "faust"):
        p.fail("engine", "kafka (the batch consumer) or faust")
    if s.remote_write_url and not s.remote_write_url.startswith(("http://", "https://")):
        p.fail("remote_write_url", "an http:// or https:// URL of a remote-write endpoint")
    if s.remote_write_ca_file and not os.path.isfile(s.remote_write_ca_file):
        p.fail("remote_write_ca_file", "the path of a readable PEM file")
    if bool(s.remote_write_username) != bool(s.remote_write_password):
        raise ConfigError("CXPULSE_REMOTE_WRITE_USERNAME and CXPULSE_REMOTE_WRITE_PASSWORD go together")
    if s.deadletter_max_bytes < 1024:
        p.fail("deadletter_max_bytes", "a size of at least 1024 bytes")


def _check_horizons(s: Settings, p: _Problems) -> None:
    """How long state is kept, against what the windows and the post-support window need."""
    needed = max(s.views_ms) + s.grace_ms + s.window_ms
    if s.retention_ms < needed:
        p.conflict(("retention_ms", "views_ms", "grace_ms", "window_ms"),
                   f"the retention must be at least the longest view + grace + one window = "
                   f"{format_duration(max(s.views_ms))} + {format_duration(s.grace_ms)} + "
                   f"{format_duration(s.window_ms)} = {format_duration(needed)}; raise it, or leave "
                   f"CXPULSE_RETENTION unset (its default follows)")
    needed = s.grace_ms + s.window_ms
    if s.dedupe_horizon_ms < needed:
        p.conflict(("dedupe_horizon_ms", "grace_ms", "window_ms"),
                   f"the dedupe horizon must be at least grace + one window = {format_duration(s.grace_ms)} + "
                   f"{format_duration(s.window_ms)} = {format_duration(needed)}; raise it, or leave "
                   f"CXPULSE_DEDUPE_HORIZON unset (its default follows)")
    needed = 90 * DAY_MS + s.post_support_ms
    if s.customer_ttl_ms < needed:
        p.conflict(("customer_ttl_ms", "post_support_ms"),
                   f"the customer TTL must be at least 90d + the post-support window = {format_duration(needed)} "
                   f"(LTV looks 90 days ahead); raise it, or leave CXPULSE_CUSTOMER_TTL unset (its default follows)")


def _check_customers(s: Settings, p: _Problems) -> None:
    """Customer-level state: the retention periods, the customer TTL they need, the caps."""
    if (not s.retention_periods_ms or len(s.retention_periods_ms) > MAX_RETENTION_PERIODS
            or len(set(s.retention_periods_ms)) != len(s.retention_periods_ms)
            or any(d < DAY_MS or d % DAY_MS for d in s.retention_periods_ms)):
        # whole days: a period is a block of days (docs/customers.md); a few, each a label value
        p.fail("retention_periods_ms", f"1 to {MAX_RETENTION_PERIODS} different whole numbers of days, e.g. "
                                       "30d,90d,365d")
    needed = 2 * max(s.retention_periods_ms)
    if s.customer_ttl_ms < needed:
        p.conflict(("customer_ttl_ms", "retention_periods_ms"),
                   f"the customer TTL must be at least twice the longest retention period = "
                   f"{format_duration(needed)} (a customer of the previous period may next order at the end of "
                   f"this one); raise it, or leave CXPULSE_CUSTOMER_TTL unset (its default follows)")
    if s.customer_max < 1:
        p.fail("customer_max", "a positive number of customers per partition")
    if s.cohort_weeks < 1:
        p.fail("cohort_weeks", "a positive number of weeks")
    if not 60_000 <= s.session_timeout_ms <= DAY_MS:
        p.fail("session_timeout_ms", "a duration from 1m to 1d, e.g. 30m")
    if not 60_000 <= s.checkout_horizon_ms <= 7 * DAY_MS:
        p.fail("checkout_horizon_ms", "a duration from 1m to 7d, e.g. 1h")


def _derive_defaults(values: dict[str, Any]) -> None:
    """Fill the defaults that depend on other settings from what was set: a user who raises
    CXPULSE_GRACE to 5m gets a dedupe horizon and a retention that fit it, not an error
    about a variable they never set. A value set explicitly is never changed."""
    defaults = Settings.__dataclass_fields__

    def get(name: str) -> Any:
        return values[name] if name in values else defaults[name].default

    window, grace = get("window_ms"), get("grace_ms")
    if not all(isinstance(v, int) for v in (window, grace, get("post_support_ms"))):
        return  # a wrong type: validation names it
    if "dedupe_horizon_ms" not in values:
        values["dedupe_horizon_ms"] = max(defaults["dedupe_horizon_ms"].default, grace + window)
    if "retention_ms" not in values:
        longest = max(get("views_ms") or (window,))
        values["retention_ms"] = max(defaults["retention_ms"].default, longest + grace + window)
    if "customer_ttl_ms" not in values:
        periods = get("retention_periods_ms")
        longest = max(periods) if periods and all(isinstance(p, int) for p in periods) else 0
        # two periods and a day: the day covers facts that arrive behind the partition's watermark
        values["customer_ttl_ms"] = max(defaults["customer_ttl_ms"].default, 90 * DAY_MS + get("post_support_ms"),
                                        2 * longest + DAY_MS if longest else 0)


def warn_unknown_variables(env: Mapping[str, str]) -> list[str]:
    """Log one line per ``CXPULSE_*`` variable that is neither a setting nor in NOT_SETTINGS (a
    typo, GRACEE for GRACE, would otherwise be ignored in silence), with the closest
    known name. Values are never logged (one could be a password). Returns the unknown names."""
    known = Settings.variables()
    unknown = sorted(var for var in env if var.startswith("CXPULSE_") and var not in known
                     and var not in NOT_SETTINGS)
    for var in unknown:
        if var in _warned_unknown:
            continue
        _warned_unknown.add(var)
        closest = difflib.get_close_matches(var, list(known), n=1, cutoff=0.6)
        log.warning("event=config_unknown_variable variable=%s did_you_mean=%s action=ignored "
                    "hint=\"not a cxpulse setting (see streams/config.py)\"", var, closest[0] if closest else "-")
    return unknown


def _duration(var: str, text: str, bare_ms: bool) -> int:
    text = text.strip()
    if text.isdigit():
        if bare_ms:
            return int(text)
        raise ValueError(f"needs a unit, e.g. {DURATION_EXAMPLES} (a bare number is ambiguous; "
                         f"{var}_MS takes plain milliseconds)")
    return parse_duration_ms(text)


def _parse(name: str, var: str, text: str, annotation: Any, bare_ms: bool = False) -> Any:
    """The value of ``var=text`` for the field ``name``. ``bare_ms``: the variable is the
    ``..._MS`` one, where a bare integer means milliseconds."""
    kind = str(annotation)
    try:
        if name in ("views_ms", "retention_periods_ms"):
            return tuple(_duration(var, part, bare_ms) for part in text.split(",") if part.strip())
        if name.endswith("_ms"):
            return _duration(var, text, bare_ms)
        if kind in ("int", "int | None"):
            return int(text) if text.strip() or kind == "int" else None
        if kind == "str":
            return text
        if kind == "float":
            return float(text)
        return text or None
    except ValueError as exc:
        if name.endswith("_ms"):
            reason = str(exc) if str(exc).startswith("needs") else f"accepts {exc}"
        else:
            reason = "accepts " + {"int": "an integer", "int | None": "an integer", "float": "a number"}.get(kind, kind)
        raise ConfigError(f"{var}={text!r} is not valid: it {reason}") from None
