"""``cxpulse topics``: the one topic plan, created, checked (against the real test broker) and
printed as kafka-topics.sh commands; docs/deploy.md shows the same plan."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from streams.config import Settings
from streams.devtools.broker import LocalBroker
from streams.devtools.stack import ROOT, settings_env
from streams.topics import kafka_topics_commands, topic_plan
from tests.helpers import free_port

DEPLOY_DOC = ROOT / "docs" / "deploy.md"


def cxpulse_topics(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_") or k == "CXPULSE_CI_RUN"}
    env.update(settings_env(settings))
    return subprocess.run([sys.executable, "-m", "streams.cli", "topics", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=90)


def fresh(broker: LocalBroker, **overrides) -> Settings:
    """Settings with topic names of their own, none of them created yet."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    names = {name: prefix + getattr(Settings(), name) for name in (
        "topic_sessions", "topic_orders", "topic_tickets", "topic_surveys", "topic_deadletter", "topic_state",
        "topic_customers", "topic_windows", "topic_initiatives")}
    return Settings.from_env({}, bootstrap_servers=broker.bootstrap, partitions=2, **{**names, **overrides})


def existing_topics(settings: Settings) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def described(settings: Settings, topic: str) -> dict[str, str]:
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    finally:
        admin.close()
    return {key: entry["value"] for key, entry in found["topic"][topic].items()}


def test_the_plan_has_every_topic_with_its_settings() -> None:
    plan = {spec.role: spec for spec in topic_plan(Settings(partitions=8, replication_factor=3))}

    assert list(plan) == ["session", "order", "ticket", "survey", "deadletter", "customers", "windows", "state",
                          "initiatives"]
    # state: one changelog partition per (stage, source partition) of the six stages
    assert [plan[r].partitions for r in plan] == [8] * 7 + [48, 1]
    assert {spec.replication_factor for spec in plan.values()} == {3}
    for role in ("session", "order", "ticket", "survey"):  # the broker stamps arrival time on source topics
        assert plan[role].configs["message.timestamp.type"] == "LogAppendTime"
    for role in ("deadletter", "customers", "windows", "state", "initiatives"):
        assert "message.timestamp.type" not in plan[role].configs
    for role in ("state", "initiatives"):
        assert plan[role].configs == {"cleanup.policy": "compact", "retention.ms": "-1"}
    for role in ("customers", "windows"):
        assert plan[role].configs == {"cleanup.policy": "delete", "retention.ms": str(7 * 86_400_000)}


def test_dry_run_prints_kafka_topics_commands_and_touches_nothing(broker: LocalBroker) -> None:
    settings = fresh(broker, replication_factor=1)

    done = cxpulse_topics(settings, "--dry-run")

    assert done.returncode == 0, done.stderr
    commands = [line for line in done.stdout.splitlines() if not line.startswith("#")]
    assert len(commands) == 9
    prefix = f"kafka-topics.sh --bootstrap-server {broker.bootstrap} --create --if-not-exists --topic "
    assert commands[1] == (prefix + f"{settings.topic_orders} --partitions 2 --replication-factor 1 "
                           "--config cleanup.policy=delete --config retention.ms=604800000 "
                           "--config message.timestamp.type=LogAppendTime")
    assert commands[7] == (prefix + f"{settings.topic_state} --partitions 12 --replication-factor 1 "
                           "--config cleanup.policy=compact --config retention.ms=-1")
    assert commands == kafka_topics_commands(settings)
    assert not {spec.name for spec in topic_plan(settings)} & existing_topics(settings)


def test_dry_run_needs_no_broker_and_marks_secured_clusters() -> None:
    settings = Settings.from_env({}, bootstrap_servers=f"127.0.0.1:{free_port()}")
    assert cxpulse_topics(settings, "--dry-run").returncode == 0

    secured = kafka_topics_commands(dataclasses.replace(settings, security_protocol="SSL"))
    assert all("--command-config client.properties" in line for line in secured)


def test_deploy_doc_shows_the_plan_as_the_dry_run_prints_it() -> None:
    # The documented example: 8 partitions, 3 replicas, broker kafka-1:9092.
    settings = Settings.from_env({}, bootstrap_servers="kafka-1:9092", partitions=8, replication_factor=3)
    doc = DEPLOY_DOC.read_text()
    for line in kafka_topics_commands(settings):
        assert line in doc, line
    for spec in topic_plan(settings):
        assert f"`{spec.name}`" in doc, spec.name


def test_create_then_check_on_the_test_broker(broker: LocalBroker) -> None:
    settings = fresh(broker)

    missing = cxpulse_topics(settings, "--check")
    assert missing.returncode == 1 and missing.stderr.count(": missing") == 9, missing.stderr

    created = cxpulse_topics(settings)
    assert created.returncode == 0, created.stderr
    assert created.stdout.count(" created ") == 9, created.stdout
    assert described(settings, settings.topic_state)["cleanup.policy"] == "compact"
    # Tansu records (and describes) the config, yet stamps CreateTime: see docs/deploy.md.
    assert described(settings, settings.topic_orders)["message.timestamp.type"] == "LogAppendTime"

    again = cxpulse_topics(settings)
    assert again.returncode == 0 and again.stdout.count(" ok ") == 9, again.stdout + again.stderr
    checked = cxpulse_topics(settings, "--check")
    assert checked.returncode == 0 and checked.stdout.count(" ok ") == 9, checked.stdout + checked.stderr


def test_check_reports_every_difference_and_changes_nothing(settings: Settings) -> None:
    # `settings`: this test's topics, created as planned with 4 partitions.
    assert cxpulse_topics(settings, "--check").returncode == 0

    wider = cxpulse_topics(settings, "--check", "--partitions", "8")
    assert wider.returncode == 1
    assert f"{settings.topic_orders}: 4 partitions, cxpulse needs 8 (CXPULSE_PARTITIONS=8)" in wider.stderr
    assert f"{settings.topic_state}: 24 partitions, cxpulse needs 48 (6 x CXPULSE_PARTITIONS=8)" in wider.stderr
    assert settings.topic_initiatives not in wider.stderr  # always 1 partition

    replicated = cxpulse_topics(settings, "--check", "--replication-factor", "2")
    assert replicated.returncode == 1 and replicated.stderr.count("asks for 2") == 9, replicated.stderr
    assert cxpulse_topics(settings, "--check", "--replication-factor", "1").returncode == 0

    # Creating over existing topics that differ: reported, exit 1, nothing changed.
    shorter = cxpulse_topics(dataclasses.replace(settings, topic_retention_ms=86_400_000))
    assert shorter.returncode == 1
    assert f"{settings.topic_sessions}: retention.ms=604800000, cxpulse needs retention.ms=86400000" in shorter.stderr
    assert described(settings, settings.topic_sessions)["retention.ms"] == "604800000"


def test_check_notices_a_topic_created_without_the_plan(broker: LocalBroker) -> None:
    settings = fresh(broker)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:  # as an auto-created topic would be: right count, no configs
        admin.create_topics({settings.topic_state: {"num_partitions": settings.state_partitions,
                                                    "replication_factor": -1}})
    finally:
        admin.close()

    done = cxpulse_topics(settings)

    assert done.returncode == 1, done.stderr
    assert f"{settings.topic_state}: not reported by the broker, cxpulse needs cleanup.policy=compact" in done.stderr
    assert "--alter --entity-type topics" in done.stderr
    assert {spec.name for spec in topic_plan(settings)} <= existing_topics(settings)  # the rest was created
