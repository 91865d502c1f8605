"""The two absolute URLs every alert links to, its runbook and its dashboard: the options of
``cxpulse render`` (``--runbook-base``, ``--grafana-url``) or their environment variables,
else placeholders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from streams.errors import ConfigError

# Links in every alert's annotations, read by people in Alertmanager, PagerDuty or Slack, so
# absolute URLs: where docs/alerts.md is published (runbook_url = this + "#" + the alert name in
# lower case, the heading's anchor) and Grafana's root URL (dashboard_url = this + "/d/" + the
# dashboard's uid). The defaults are placeholders: render with your own, `cxpulse render
# --runbook-base URL --grafana-url URL` or CXPULSE_RUNBOOK_BASE / CXPULSE_GRAFANA_URL (docs/alerts.md).
RUNBOOK_BASE_DEFAULT = "https://cxpulse.example.com/docs/alerts.md"
GRAFANA_URL_DEFAULT = "https://grafana.example.com"


def _absolute_url(setting: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{setting} must be an absolute http(s) URL (Alertmanager, PagerDuty and Slack "
                          f"show it as a link), got {value!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{setting} must have no query or #fragment (the alert's anchor is added), got {value!r}")
    return value.rstrip("/")


@dataclass(frozen=True)
class Links:
    """The two absolute URLs every alert links to: its runbook and its dashboard.

        >>> Links("https://wiki.example.org/cxpulse/alerts.md", "https://grafana.example.org/").runbook_url("CxpulseNpsDrop")
        'https://wiki.example.org/cxpulse/alerts.md#cxpulsenpsdrop'
        >>> Links(grafana_url="https://g.example.org").dashboard_url("support")
        'https://g.example.org/d/support{{ with $labels.storefront }}?var-storefront={{ . | urlquery }}{{ end }}'
    """

    runbook_base: str = RUNBOOK_BASE_DEFAULT  # where docs/alerts.md is published
    grafana_url: str = GRAFANA_URL_DEFAULT  # Grafana's root URL

    def __post_init__(self) -> None:
        object.__setattr__(self, "runbook_base", _absolute_url("the runbook base (CXPULSE_RUNBOOK_BASE)",
                                                               self.runbook_base))
        object.__setattr__(self, "grafana_url", _absolute_url("the Grafana URL (CXPULSE_GRAFANA_URL)",
                                                              self.grafana_url))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Links":
        env = os.environ if env is None else env
        return cls(env.get("CXPULSE_RUNBOOK_BASE") or RUNBOOK_BASE_DEFAULT,
                   env.get("CXPULSE_GRAFANA_URL") or GRAFANA_URL_DEFAULT)

    def runbook_url(self, alert: str) -> str:
        """The alert's section of docs/alerts.md (GitHub's and MkDocs' anchor of ``## <alert>``)."""
        return f"{self.runbook_base}#{alert.lower()}"

    def dashboard_url(self, slug: str) -> str:
        """The dashboard (its uid is the slug), on the alert's storefront when it has one (the
        dashboards' ``storefront`` variable; Grafana ignores a variable a dashboard lacks)."""
        return (f"{self.grafana_url}/d/{slug}"
                "{{ with $labels.storefront }}?var-storefront={{ . | urlquery }}{{ end }}")


LINKS = Links()  # what the committed rules file is rendered with: the placeholders
