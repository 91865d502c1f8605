"""The dashboards as files, ``grafana/dashboards/<slug>.json``, and their queries for the tests.

    >>> substitute('storefront:cxpulse_conversion:ratio_window${window}{storefront=~"$storefront"}')
    'storefront:cxpulse_conversion:ratio_window5m{storefront=~".*"}'
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from streams.mixin.dashboards.customers import customers
from streams.mixin.dashboards.initiatives import initiatives
from streams.mixin.dashboards.overview import cx_overview
from streams.mixin.dashboards.pipeline_health import pipeline_health
from streams.mixin.dashboards.revenue_funnel import revenue_funnel
from streams.mixin.dashboards.support import support
from streams.mixin.dashboards.voice_of_customer import voice_of_customer

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"

# Values the e2e test puts in for Grafana's variables before it runs a panel query against
# Prometheus (``substitute``): every segment and currency, the 5m windows.
TEST_VARIABLES: dict[str, str] = {
    "storefront": ".*",
    "channel": ".*",
    "support_channel": ".*",
    "reason": ".*",
    "product_category": ".*",
    "currency": ".*",
    "family": ".*",
    "initiative": ".*",
    "window": "5m",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
}
# Prometheus' own series the dashboards read besides cxpulse's catalog and recording rules.
PROMETHEUS_SERIES: frozenset[str] = frozenset({"ALERTS", "up"})
# Slug (file stem, dashboard uid) -> the function that builds the dashboard.
DASHBOARDS = {
    "cx-overview": cx_overview,
    "revenue-funnel": revenue_funnel,
    "support": support,
    "voice-of-customer": voice_of_customer,
    "pipeline-health": pipeline_health,
    "cx-customers": customers,
    "cx-initiatives": initiatives,
}


def dashboard_json(dashboard: dm.Dashboard) -> str:
    """Stable text of a dashboard: sorted keys, two-space indent, a final newline."""
    return json.dumps(dashboard, cls=JSONEncoder, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def dashboards() -> dict[str, dm.Dashboard]:
    """Slug (file stem, dashboard uid) -> dashboard model."""
    return {slug: build() for slug, build in DASHBOARDS.items()}


def outputs() -> dict[Path, str]:
    """Generated files of this package, for ``cxpulse render``: ``grafana/dashboards/<slug>.json``."""
    return {DASHBOARD_DIR / f"{slug}.json": dashboard_json(d) for slug, d in dashboards().items()}


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard title, panel title, expr) of every panel target, variables not substituted.

        >>> ("CX overview", "CVR · last complete $window") in {(d, p) for d, p, _ in panel_queries()}
        True
    """
    out = []
    for d in dashboards().values():
        for panel in d.panels or []:
            for target in getattr(panel, "targets", None) or []:
                out.append((d.title or "", panel.title or "", target.expr))
    return out


def annotation_queries() -> list[tuple[str, str, str]]:
    """(dashboard title, annotation name, expr) of every Prometheus annotation, variables not substituted."""
    return [(d.title or "", a.name, a.expr or "") for d in dashboards().values()
            for a in (d.annotations.list_val or []) if a.expr]


_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def substitute(expr: str, variables: dict[str, str] | None = None) -> str:
    """Replace ``$name`` and ``${name}`` with ``TEST_VARIABLES`` (or ``variables``) for a raw Prometheus query."""
    values = TEST_VARIABLES if variables is None else variables
    return _VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], expr)
