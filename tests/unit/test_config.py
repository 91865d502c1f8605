"""Settings fail at start-up naming what the user set: durations need units, dependent
defaults follow what was set, typos in variable names are reported, flags are checked."""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

import streams.config as config
from streams.config import NOT_SETTINGS, Settings
from streams.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def refusal(env: dict[str, str], **kwargs) -> str:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env, **kwargs)
    return str(raised.value)


# --- durations need a unit ------------------------------------------------------------------


@pytest.mark.parametrize("var, text", [
    ("CXPULSE_GRACE", "30"),
    ("CXPULSE_WINDOW", "60000"),
    ("CXPULSE_DEDUPE_HORIZON", "300"),
    ("CXPULSE_VIEWS", "1m,5"),
    ("CXPULSE_CONNECT_TIMEOUT", "5"),
])
def test_a_bare_number_for_a_duration_is_refused_naming_the_variable_and_examples(var: str, text: str) -> None:
    message = refusal({var: text})
    assert message.startswith(f"{var}={text!r} is not valid")
    assert "500ms, 90s, 5m" in message and f"{var}_MS" in message


def test_the_ms_variables_take_plain_milliseconds_and_units() -> None:
    assert Settings.from_env({"CXPULSE_GRACE_MS": "30"}).grace_ms == 30
    assert Settings.from_env({"CXPULSE_GRACE_MS": "90s"}).grace_ms == 90_000
    assert Settings.from_env({"CXPULSE_VIEWS_MS": "60000,300000"}).views_ms == (60_000, 300_000)
    assert Settings.from_env({"CXPULSE_GRACE": "30s"}).grace_ms == 30_000


def test_both_names_of_a_duration_must_agree() -> None:
    assert Settings.from_env({"CXPULSE_GRACE": "2m", "CXPULSE_GRACE_MS": "120000"}).grace_ms == 120_000
    message = refusal({"CXPULSE_GRACE": "2m", "CXPULSE_GRACE_MS": "30"})
    assert "CXPULSE_GRACE='2m'" in message and "CXPULSE_GRACE_MS='30'" in message


# --- dependent defaults follow what the user set ---------------------------------------------


def test_a_five_minute_grace_starts_with_defaults_that_fit_it() -> None:
    # docs/operations.md recommends it for mobile bursts; it used to fail on a variable nobody set.
    settings = Settings.from_env({"CXPULSE_GRACE": "5m"})

    assert settings.grace_ms == 300_000
    assert settings.dedupe_horizon_ms >= settings.grace_ms + settings.window_ms
    assert settings.retention_ms >= max(settings.views_ms) + settings.grace_ms + settings.window_ms


def test_derived_defaults_grow_with_window_views_grace_and_post_support() -> None:
    settings = Settings.from_env({"CXPULSE_GRACE": "1h", "CXPULSE_WINDOW": "5m", "CXPULSE_VIEWS": "5m,1h,6h",
                                  "CXPULSE_POST_SUPPORT": "400d"})

    assert settings.dedupe_horizon_ms == 3_600_000 + 300_000
    assert settings.retention_ms == 6 * 3_600_000 + 3_600_000 + 300_000
    assert settings.customer_ttl_ms == (90 + 400) * 86_400_000


def test_defaults_stay_when_nothing_they_depend_on_was_set() -> None:
    assert Settings.from_env({}) == Settings()


def test_an_invalid_combination_names_what_the_user_set() -> None:
    message = refusal({"CXPULSE_GRACE": "5m", "CXPULSE_DEDUPE_HORIZON": "5m"})
    assert "CXPULSE_DEDUPE_HORIZON='5m'" in message and "CXPULSE_GRACE='5m'" in message
    assert "_MS" not in message and "6m" in message  # grace + one window

    message = refusal({"CXPULSE_RETENTION": "1h"})
    assert message.startswith("CXPULSE_RETENTION='1h' is not valid")

    message = refusal({"CXPULSE_WINDOW": "7m"})
    assert message.startswith("CXPULSE_WINDOW='7m' is not valid with CXPULSE_VIEWS (default 1m,5m,15m,1h)")


def test_a_yearly_retention_period_raises_the_customer_ttl_to_two_years_and_a_day() -> None:
    # a customer of last year's period may next order at the end of this year's: 2 x 365 days apart
    settings = Settings.from_env({"CXPULSE_RETENTION_PERIODS": "30d,90d,365d"})
    assert settings.retention_periods_ms == (30 * 86_400_000, 90 * 86_400_000, 365 * 86_400_000)
    assert settings.customer_ttl_ms == 731 * 86_400_000
    message = refusal({"CXPULSE_RETENTION_PERIODS": "365d", "CXPULSE_CUSTOMER_TTL": "400d"})
    assert message.startswith("CXPULSE_CUSTOMER_TTL='400d' and CXPULSE_RETENTION_PERIODS='365d' are not valid")
    assert "730d" in message


@pytest.mark.parametrize("text", ["12h", "30d,36h", "30d,30d", "1d,2d,3d,4d,5d,6d", "0d"])
def test_retention_periods_are_a_few_different_whole_numbers_of_days(text: str) -> None:
    message = refusal({"CXPULSE_RETENTION_PERIODS": text})
    assert message.startswith(f"CXPULSE_RETENTION_PERIODS={text!r} is not valid: it accepts 1 to 5 different whole")


# --- unknown CXPULSE_* variables ------------------------------------------------------------


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "_warned_unknown", set())


def test_a_misspelt_variable_is_reported_with_the_closest_name(fresh_warnings, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="cxpulse.config"):
        Settings.from_env({"CXPULSE_GRACEE": "5m", "CXPULSE_SASL_PASWORD": "s3cr3t"})

    lines = [r.getMessage() for r in caplog.records if r.name == "cxpulse.config"]
    assert any("variable=CXPULSE_GRACEE did_you_mean=CXPULSE_GRACE " in line for line in lines), lines
    assert any("variable=CXPULSE_SASL_PASWORD did_you_mean=CXPULSE_SASL_PASSWORD " in line for line in lines), lines
    assert len(lines) == 2 and not any("s3cr3t" in line for line in lines)


def test_known_settings_and_the_listed_other_variables_are_not_reported(fresh_warnings, caplog) -> None:
    env = {**{var: "x" for var in NOT_SETTINGS}, "CXPULSE_GRACE": "5m", "CXPULSE_GRACE_MS": "300000",
           "CXPULSE_PARTITIONS": "4"}
    with caplog.at_level(logging.WARNING, logger="cxpulse.config"):
        Settings.from_env(env)
    assert not [r for r in caplog.records if r.name == "cxpulse.config"]


def test_every_cxpulse_variable_the_repository_reads_is_a_setting_or_listed() -> None:
    # A new CXPULSE_* variable read by a script, a test or the CI would otherwise be
    # reported as a typo on every start-up: it belongs in NOT_SETTINGS.
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True,
                           timeout=300).stdout.split()
    found: set[str] = set()
    for name in files:
        path = ROOT / name
        if path.suffix in {".py", ".yaml", ".yml", ".sh", ""} and path.is_file() and path != Path(__file__):
            text = path.read_text(errors="replace")
            found |= set(re.findall(r"\bCXPULSE_[A-Z0-9_]*[A-Z0-9]\b", text))
    known = set(Settings.variables()) | set(NOT_SETTINGS)
    assert "CXPULSE_CI_RUN" in found and "CXPULSE_GRACE_MS" in known  # the scan sees what it should
    assert sorted(found - known - {"CXPULSE_SASL", "CXPULSE_SSL"}) == []  # prefixes in prose: CXPULSE_SASL_*


# --- flags ----------------------------------------------------------------------------------


def test_log_level_accepts_the_four_levels_in_any_case_and_nothing_else() -> None:
    from streams.runtime.worker import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--log-level", "debug"]).log_level == "DEBUG"
    assert parser.parse_args(["--log-level", "Warning"]).log_level == "WARNING"
    assert parser.parse_args([]).log_level == "INFO"
    with pytest.raises(SystemExit):
        parser.parse_args(["--log-level", "LOUD"])


@pytest.mark.parametrize("servers, problem", [
    ("notahost", "'notahost' has no :port"),
    ("kafka:notaport", "is not host:port"),
    ("kafka:99999", "outside 1-65535"),
    ("kafka:9092,", "empty entry"),
    ("", "it is empty"),
])
def test_bootstrap_servers_must_be_host_port_pairs(servers: str, problem: str) -> None:
    message = refusal({"CXPULSE_BOOTSTRAP_SERVERS": servers})
    assert message.startswith(f"CXPULSE_BOOTSTRAP_SERVERS={servers!r} is not valid") and problem in message
    assert "host:port" in message

    message = refusal({}, flags={"bootstrap_servers": "--bootstrap"}, bootstrap_servers=servers)
    assert message.startswith(f"--bootstrap {servers!r} is not valid"), message


@pytest.mark.parametrize("servers", ["127.0.0.1:9092", "kafka-1:9092, kafka-2:9092", "b-1.kafka.example:9096",
                                     "[::1]:9092", "kafka_1:9092"])
def test_good_bootstrap_servers_pass(servers: str) -> None:
    assert Settings.from_env({"CXPULSE_BOOTSTRAP_SERVERS": servers}).bootstrap_servers == servers


@pytest.mark.parametrize("args, named", [
    (["worker", "--bootstrap", "notahost"], "--bootstrap 'notahost' is not valid"),
    (["worker", "--log-level", "LOUD"], "invalid choice: 'LOUD'"),
    (["simulate", "--kafka", "--events", "1", "--bootstrap", "notahost"], "--bootstrap 'notahost' is not valid"),
    (["initiative", "list", "--bootstrap", "notahost"], "--bootstrap 'notahost' is not valid"),
    (["topics", "--dry-run", "--bootstrap", "kafka"], "--bootstrap 'kafka' is not valid"),
    (["topics", "--dry-run", "--replication-factor", "0"], "--replication-factor 0 is not valid"),
])
def test_the_cli_refuses_bad_flags_in_one_line_with_exit_code_2(args: list[str], named: str) -> None:
    done = subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr, done.stderr
