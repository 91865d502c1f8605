"""Security settings fail at start-up, naming the variable; secrets never show in messages or reprs.

The e2e half (no simulator id in /metrics or the worker logs) is
``tests/faults/test_privacy.py``: it needs a broker and a worker process.
"""

from __future__ import annotations

import pytest

from streams.config import Settings
from streams.errors import ConfigError

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize("env, names", [
    ({"CXPULSE_SECURITY_PROTOCOL": "TLS"}, ["CXPULSE_SECURITY_PROTOCOL"]),
    ({"CXPULSE_SECURITY_PROTOCOL": "SASL_SSL"}, ["CXPULSE_SASL_MECHANISM"]),
    ({"CXPULSE_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CXPULSE_SASL_MECHANISM": "GSSAPI",
      "CXPULSE_SASL_USERNAME": "u", "CXPULSE_SASL_PASSWORD": SECRET}, ["CXPULSE_SASL_MECHANISM"]),
    ({"CXPULSE_SECURITY_PROTOCOL": "SASL_SSL", "CXPULSE_SASL_MECHANISM": "SCRAM-SHA-512",
      "CXPULSE_SASL_USERNAME": "u"}, ["CXPULSE_SASL_PASSWORD"]),
    ({"CXPULSE_SECURITY_PROTOCOL": "SASL_SSL", "CXPULSE_SASL_MECHANISM": "PLAIN",
      "CXPULSE_SASL_PASSWORD": SECRET}, ["CXPULSE_SASL_USERNAME"]),
    ({"CXPULSE_SASL_MECHANISM": "PLAIN"}, ["CXPULSE_SASL_MECHANISM", "CXPULSE_SECURITY_PROTOCOL"]),
    ({"CXPULSE_SECURITY_PROTOCOL": "SSL", "CXPULSE_SSL_CAFILE": "/nonexistent/ca.pem"}, ["CXPULSE_SSL_CAFILE"]),
    ({"CXPULSE_SECURITY_PROTOCOL": "SSL", "CXPULSE_SSL_KEYFILE": "/nonexistent/key.pem"}, ["CXPULSE_SSL_KEYFILE",
                                                                                          "CXPULSE_SSL_CERTFILE"]),
    ({"CXPULSE_METRICS_CERTFILE": "/nonexistent/cert.pem"}, ["CXPULSE_METRICS_CERTFILE", "CXPULSE_METRICS_KEYFILE"]),
    ({"CXPULSE_METRICS_CLIENT_CAFILE": "/nonexistent/ca.pem"}, ["CXPULSE_METRICS_CLIENT_CAFILE"]),
    ({"CXPULSE_METRICS_BASIC_AUTH_USERNAME": "prom"}, ["CXPULSE_METRICS_BASIC_AUTH_PASSWORD"]),
    ({"CXPULSE_METRICS_BASIC_AUTH_PASSWORD": SECRET}, ["CXPULSE_METRICS_BASIC_AUTH_USERNAME"]),
    ({"CXPULSE_METRICS_PORT": "http"}, ["CXPULSE_METRICS_PORT"]),
    ({"CXPULSE_METRICS_PORT": "0"}, ["CXPULSE_METRICS_PORT"]),
])
def test_bad_security_settings_fail_naming_the_variable(env: dict[str, str], names: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    message = str(raised.value)
    for name in names:
        assert name in message, message
    assert SECRET not in message  # a password never appears in an error


@pytest.mark.parametrize("env", [
    {"CXPULSE_SECURITY_PROTOCOL": "SASL_SSL", "CXPULSE_SASL_MECHANISM": mechanism,
     "CXPULSE_SASL_USERNAME": "cxpulse", "CXPULSE_SASL_PASSWORD": SECRET}
    for mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
] + [{"CXPULSE_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CXPULSE_SASL_MECHANISM": "PLAIN",
      "CXPULSE_SASL_USERNAME": "cxpulse", "CXPULSE_SASL_PASSWORD": SECRET},
     {"CXPULSE_SECURITY_PROTOCOL": "SSL"},
     {"CXPULSE_METRICS_HOST": "0.0.0.0", "CXPULSE_METRICS_BASIC_AUTH_USERNAME": "prom",
      "CXPULSE_METRICS_BASIC_AUTH_PASSWORD": SECRET}])
def test_good_security_settings_pass_and_hide_secrets(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    assert SECRET not in repr(settings)
    assert settings.kafka_security()["security_protocol"] == env.get("CXPULSE_SECURITY_PROTOCOL", "PLAINTEXT")


def test_metrics_bind_address_defaults_to_loopback() -> None:
    assert Settings.from_env({}).metrics_host == "127.0.0.1"
    assert Settings.from_env({"CXPULSE_METRICS_HOST": "0.0.0.0"}).metrics_host == "0.0.0.0"
