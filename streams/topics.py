"""``cxpulse topics``: every topic cxpulse needs, created or checked on your Kafka cluster.

The topic plan is defined here, once: ``cxpulse topics`` creates it on a user's
cluster (or ``--check``s it, or prints the equivalent ``kafka-topics.sh``
commands with ``--dry-run``), the compose stack's ``topic-init`` runs
``cxpulse topics``, and the embedded test broker (``streams.devtools.broker``)
creates the same plan.

    cxpulse topics --bootstrap kafka-1:9092 --replication-factor 3
    cxpulse topics --check          # exit 1 and one line per difference
    cxpulse topics --dry-run        # kafka-topics.sh commands; touches nothing

An existing topic is never changed: a difference (partition count, replication,
a config) is reported with the command that would fix it, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any

from streams.config import Settings, format_duration

# Source topics: the broker stamps each record with its arrival time, which the workers
# can trust to bound a watermark against producers with skewed clocks.
SOURCE_TIMESTAMPS = {"message.timestamp.type": "LogAppendTime"}
KEPT_FOREVER = {"cleanup.policy": "compact", "retention.ms": "-1"}


@dataclass(frozen=True)
class TopicSpec:
    """A topic cxpulse needs: its role, name, partition count, replicas (None: the broker's
    default) and the configs it is created with (explicit on every topic: some clients,
    Quix Streams for one, need ``retention.ms`` described)."""

    role: str
    name: str
    partitions: int
    configs: dict[str, str]
    replication_factor: int | None = None
    partitions_from: str = ""  # what sets the count, for messages: "CXPULSE_PARTITIONS=4"


def topic_plan(settings: Settings) -> list[TopicSpec]:
    """Every topic cxpulse reads or writes, as ``cxpulse topics`` creates them.

        >>> [(t.role, t.partitions) for t in topic_plan(Settings(partitions=2))][-2:]
        [('state', 12), ('initiatives', 1)]
    """
    replicas, p = settings.replication_factor, settings.partitions
    per = f"CXPULSE_PARTITIONS={p}"
    kept = {"cleanup.policy": "delete", "retention.ms": str(settings.topic_retention_ms)}
    specs = [TopicSpec(family, name, p, {**kept, **SOURCE_TIMESTAMPS}, replicas, per)
             for family, name in settings.topics.items()]
    specs.append(TopicSpec("deadletter", settings.topic_deadletter, p, kept, replicas, per))
    # Facts re-keyed by customer (internal: the window stage writes, the customer stage reads).
    specs.append(TopicSpec("customers", settings.topic_customers, p, kept, replicas, per))
    # Closed windows re-keyed by storefront (internal: the window stage writes, the merge stage reads).
    specs.append(TopicSpec("windows", settings.topic_windows, p, kept, replicas, per))
    # The state changelog: compacted (latest value per key), kept forever, and one partition per
    # pipeline partition: 4 event families, the customer stage and the merge stage.
    specs.append(TopicSpec("state", settings.topic_state, settings.state_partitions, KEPT_FOREVER, replicas,
                           f"6 x {per}"))
    # Declared CX initiatives, keyed by name: the latest declaration wins, kept forever.
    specs.append(TopicSpec("initiatives", settings.topic_initiatives, 1, KEPT_FOREVER, replicas, "always 1"))
    return specs


def kafka_topics_commands(settings: Settings, plan: list[TopicSpec] | None = None) -> list[str]:
    """The ``kafka-topics.sh`` commands that create ``plan`` (default: the whole plan).

        >>> kafka_topics_commands(Settings(partitions=2, bootstrap_servers="k:9092"))[-1]
        'kafka-topics.sh --bootstrap-server k:9092 --create --if-not-exists --topic cx.initiatives --partitions 1 --config cleanup.policy=compact --config retention.ms=-1'
    """
    secured = settings.security_protocol != "PLAINTEXT"
    lines = []
    for spec in topic_plan(settings) if plan is None else plan:
        words = ["kafka-topics.sh", "--bootstrap-server", settings.bootstrap_servers]
        if secured:
            words += ["--command-config", "client.properties"]
        words += ["--create", "--if-not-exists", "--topic", spec.name, "--partitions", str(spec.partitions)]
        if spec.replication_factor is not None:
            words += ["--replication-factor", str(spec.replication_factor)]
        for key, value in spec.configs.items():
            words += ["--config", f"{key}={value}"]
        lines.append(shlex.join(words))
    return lines


@dataclass
class TopicState:
    """What the cluster has for one planned topic, and how it differs from the plan."""

    spec: TopicSpec
    exists: bool = False
    created: bool = False
    partitions: int | None = None
    replicas: int | None = None
    configs: dict[str, str | None] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.created:
            return "created"
        if not self.exists:
            return "missing"
        return "differs" if self.differences else "ok"


def _describe(admin: Any, plan: list[TopicSpec]) -> dict[str, TopicState]:
    from kafka.admin import ConfigResource, ConfigResourceType

    states = {spec.name: TopicState(spec) for spec in plan}
    for topic in admin.describe_topics([spec.name for spec in plan]):
        state = states.get(topic["name"])
        if state is None or topic["error_code"] != 0:
            continue
        state.exists = True
        state.partitions = len(topic["partitions"])
        state.replicas = min((len(p["replica_nodes"]) for p in topic["partitions"]), default=None)
    existing = [name for name, state in states.items() if state.exists]
    if existing:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in existing],
                                           config_filter="all")
        for name, configs in described.get("topic", {}).items():
            if name in states:
                states[name].configs = {key: entry.get("value") for key, entry in configs.items()}
    return states


def _compare(settings: Settings, state: TopicState) -> None:
    spec, name = state.spec, state.spec.name
    if not state.exists:
        state.differences.append(f"{name}: missing (cxpulse topics creates it)")
        return
    if state.partitions != spec.partitions:
        fix = ("recreate the topic" if spec.role == "initiatives"
               else "set CXPULSE_PARTITIONS to match the cluster, or recreate the topic")
        state.differences.append(f"{name}: {state.partitions} partitions, cxpulse needs {spec.partitions} "
                                 f"({spec.partitions_from}): {fix}")
    if spec.replication_factor is not None and state.replicas != spec.replication_factor:
        state.differences.append(
            f"{name}: {state.replicas} replica(s), --replication-factor / CXPULSE_REPLICATION_FACTOR asks for "
            f"{spec.replication_factor} (kafka-reassign-partitions.sh changes it)")
    for key, wanted in spec.configs.items():
        found = state.configs.get(key)
        if found == wanted:
            continue
        shown = "not reported by the broker" if found is None else f"{key}={found}"
        state.differences.append(
            f"{name}: {shown}, cxpulse needs {key}={wanted} (kafka-configs.sh --bootstrap-server "
            f"{settings.bootstrap_servers} --alter --entity-type topics --entity-name {name} "
            f"--add-config {key}={wanted})")


def check_topics(settings: Settings, admin: Any) -> list[TopicState]:
    """The planned topics as the cluster has them, each with its differences from the plan."""
    plan = topic_plan(settings)
    states = _describe(admin, plan)
    for state in states.values():
        _compare(settings, state)
    return [states[spec.name] for spec in plan]


def create_topics(settings: Settings, admin: Any, timeout_s: float = 30.0) -> list[TopicState]:
    """Create the planned topics that are missing (never changing one that exists), wait until
    they are usable, then check every planned topic against the plan."""
    from kafka.errors import TopicAlreadyExistsError, for_code

    from streams.reach import KafkaRequestFailed

    plan = topic_plan(settings)
    wanted = {spec.name: {"num_partitions": spec.partitions,
                          # -1: the broker's default.replication.factor (Kafka 2.4 and later)
                          "replication_factor": spec.replication_factor or -1,
                          "configs": dict(spec.configs)} for spec in plan}
    response = admin.create_topics(wanted, timeout_ms=int(timeout_s * 1000), raise_errors=False)
    created = set()
    for result in response["topics"]:
        error = for_code(result["error_code"])
        if result["error_code"] == 0:
            created.add(result["name"])
        elif error is not TopicAlreadyExistsError:
            raise KafkaRequestFailed(f"creating topic {result['name']!r} on {settings.bootstrap_servers} failed: "
                                     f"{error.__name__}: {result.get('error_message')}")
    admin.wait_for_topics(list(wanted), timeout_ms=int(timeout_s * 1000))
    states = check_topics(settings, admin)
    for state in states:
        state.created = state.spec.name in created
    return states


def admin_client(settings: Settings) -> Any:
    """A kafka-python admin client whose bootstrap gives up after CXPULSE_CONNECT_TIMEOUT."""
    from kafka import KafkaAdminClient

    from streams.reach import client_options

    return KafkaAdminClient(client_id=f"{settings.app_id}-topics", **client_options(settings))


# --- cxpulse topics ---------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="create nothing: report how the cluster differs from the plan (exit 1 if it does)")
    mode.add_argument("--dry-run", action="store_true",
                      help="touch nothing: print the equivalent kafka-topics.sh --create commands")
    parser.add_argument("--bootstrap", metavar="HOST:PORT",
                        help="Kafka bootstrap servers (default: CXPULSE_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")
    parser.add_argument("--partitions", type=int, metavar="P",
                        help="partitions per source topic; the state topic gets 6 x P (default: CXPULSE_PARTITIONS or 4)")
    parser.add_argument("--replication-factor", type=int, metavar="N",
                        help="replicas of every topic (default: CXPULSE_REPLICATION_FACTOR, else the broker's "
                             "default.replication.factor)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    flags: dict[str, str] = {}
    for arg, name, flag in (("bootstrap", "bootstrap_servers", "--bootstrap"),
                            ("partitions", "partitions", "--partitions"),
                            ("replication_factor", "replication_factor", "--replication-factor")):
        if getattr(args, arg) is not None:
            overrides[name], flags[name] = getattr(args, arg), flag
    return Settings.from_env(flags=flags, **overrides)


def _table(states: list[TopicState]) -> list[str]:
    lines = [f"{'role':<11} {'topic':<24} {'partitions':>10} {'replicas':>8}  {'status':<8} configs"]
    for state in states:
        spec = state.spec
        configs = " ".join(f"{k}={v}" for k, v in spec.configs.items())
        replicas = state.replicas if state.replicas is not None else (spec.replication_factor or "default")
        lines.append(f"{spec.role:<11} {spec.name:<24} {state.partitions or spec.partitions:>10} {replicas:>8}  "
                     f"{state.status:<8} {configs}")
    return lines


def run(args: argparse.Namespace) -> int:
    from streams.reach import bootstrap_source, kafka_boundary

    settings = settings_from_args(args)
    if args.dry_run:
        print(f"# cxpulse topics --dry-run: {len(topic_plan(settings))} topics for CXPULSE_PARTITIONS="
              f"{settings.partitions} (nothing was changed)")
        if settings.security_protocol != "PLAINTEXT":
            print(f"# client.properties: your client settings for {settings.security_protocol} "
                  "(security.protocol, sasl.mechanism, sasl.jaas.config, ssl.truststore...)")
        for line in kafka_topics_commands(settings):
            print(line)
        return 0
    source = bootstrap_source(args.bootstrap is not None)
    with kafka_boundary(settings, source, "the topic " + ("check" if args.check else "creation")):
        admin = admin_client(settings)
        try:
            states = check_topics(settings, admin) if args.check else create_topics(settings, admin)
        finally:
            admin.close()
    for line in _table(states):
        print(line)
    differences = [line for state in states for line in state.differences]
    retention = format_duration(settings.topic_retention_ms)
    if differences:
        print(f"cxpulse topics: {len(differences)} difference(s) from the plan on {settings.bootstrap_servers} "
              f"(existing topics are never changed):", file=sys.stderr)
        for line in differences:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"cxpulse topics: {len(states)} topics as planned on {settings.bootstrap_servers} "
          f"(CXPULSE_PARTITIONS={settings.partitions}, retention {retention})", file=sys.stderr)
    return 0
