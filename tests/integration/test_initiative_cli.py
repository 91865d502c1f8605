"""``cxpulse initiative`` against the real test broker: declare, list, delete, and a topic that
does not exist (never auto-created: it would not be compacted)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

from kafka import KafkaAdminClient

from streams.config import Settings
from streams.devtools.stack import ROOT, settings_env

DECLARE = ["declare", "live-chat", "--start", "2026-01-01", "--treated", "channel=app", "--investment", "1000",
           "--currency", "USD", "--margin", "0.4"]


def initiative(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_") or k == "CXPULSE_CI_RUN"}
    env.update(settings_env(settings))
    return subprocess.run([sys.executable, "-m", "streams.cli", "initiative", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=90)


def test_declare_list_delete(settings: Settings) -> None:
    assert "no initiatives declared" in initiative(settings, "list").stderr

    declared = initiative(settings, *DECLARE)
    assert declared.returncode == 0 and "declared live-chat" in declared.stderr, declared.stderr
    listed = initiative(settings, "list")
    assert listed.returncode == 0 and listed.stdout.startswith("live-chat\trevenue_per_visitor\t"), listed.stderr

    deleted = initiative(settings, "delete", "live-chat")
    assert deleted.returncode == 0, deleted.stderr
    listed = initiative(settings, "list")
    assert listed.stdout == "" and "no initiatives declared" in listed.stderr


def test_a_missing_topic_is_named_and_not_auto_created(settings: Settings) -> None:
    missing = dataclasses.replace(settings, topic_initiatives=settings.topic_initiatives + ".missing")

    for args in (DECLARE, ["list"], ["delete", "live-chat"]):
        done = initiative(missing, *args)
        assert done.returncode == 2, done.stderr
        assert f"topic {missing.topic_initiatives} (CXPULSE_TOPIC_INITIATIVES) does not exist" in done.stderr
        assert "cxpulse topics" in done.stderr and "Traceback" not in done.stderr

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        assert missing.topic_initiatives not in admin.list_topics()
    finally:
        admin.close()
