"""``cxpulse render``: write the files derived from the catalog.

Generated files say so in their first line; ``tests/unit/test_render.py``
re-renders and fails if a committed file differs. Today: ``docs/metrics.md`` (its text is
``metrics_doc.py``'s), the rules file (``rules/``), the dashboards (``dashboards/``) and the
Kubernetes manifests that embed them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# docs/metrics.md is written by metrics_doc.py; these names are re-exported for the tests.
from streams.mixin.metrics_doc import GENERATED, kpi_promql, metrics_doc  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def outputs(links=None) -> dict[Path, str]:
    """Every generated file and its content; ``links`` (``rules.Links``) are the absolute URLs the
    alerts link to, the placeholders of ``rules.LINKS`` by default (what the committed files hold)."""
    from streams.mixin import dashboards, rules

    return {ROOT / "docs" / "metrics.md": metrics_doc(), **rules.outputs(links), **dashboards.outputs()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from streams.mixin.rules import GRAFANA_URL_DEFAULT, RUNBOOK_BASE_DEFAULT

    parser.add_argument("--check", action="store_true", help="fail if a generated file is out of date")
    parser.add_argument(
        "--runbook-base", metavar="URL",
        help="absolute URL where docs/alerts.md is published; every alert's runbook_url is URL#<alert name in "
             f"lower case> (default: $CXPULSE_RUNBOOK_BASE, else the placeholder {RUNBOOK_BASE_DEFAULT})")
    parser.add_argument(
        "--grafana-url", metavar="URL",
        help="Grafana's absolute root URL; every alert's dashboard_url is URL/d/<dashboard uid> (default: "
             f"$CXPULSE_GRAFANA_URL, else the placeholder {GRAFANA_URL_DEFAULT})")


def links_from_args(args: argparse.Namespace, env: dict[str, str] | None = None):
    """The alert links of a render: the options, else the environment, else the placeholders."""
    from dataclasses import replace

    from streams.mixin.rules import Links

    links = Links.from_env(env)
    if getattr(args, "runbook_base", None):
        links = replace(links, runbook_base=args.runbook_base)
    if getattr(args, "grafana_url", None):
        links = replace(links, grafana_url=args.grafana_url)
    return links


def run(args: argparse.Namespace) -> int:
    from streams.errors import CxpulseError
    from streams.mixin.rules import LINKS

    if not (ROOT / "deploy" / "kubernetes" / "render.py").is_file():  # an installed copy, not a clone
        raise CxpulseError(f"cxpulse render rewrites the generated files of a source checkout (docs/, deploy/, "
                           f"grafana/), and {ROOT} is not one: run it in a clone of cxpulse installed with "
                           "`pip install -e '.[render]'`")
    links = links_from_args(args)
    if links != LINKS:
        print(f"alert links: runbooks at {links.runbook_base}, dashboards at {links.grafana_url}")
    else:
        print(f"alert links: the placeholders {LINKS.runbook_base} and {LINKS.grafana_url}; render with "
              "--runbook-base and --grafana-url (or CXPULSE_RUNBOOK_BASE, CXPULSE_GRAFANA_URL) for your own")
    stale = []
    for path, content in outputs(links).items():
        current = path.read_text() if path.exists() else None
        if current == content:
            continue
        if args.check:
            stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        print(f"wrote {path.relative_to(ROOT)}")
    # The Kubernetes manifests embed the rules and dashboards just written.
    kubernetes = _kubernetes_renderer()
    if args.check:
        stale += [ROOT / "deploy" / "kubernetes" / "generated" / name for name in kubernetes.stale(ROOT)]
    else:
        for name in kubernetes.write(ROOT):
            print(f"wrote deploy/kubernetes/generated/{name}")
    if stale:
        print("out of date (run `cxpulse render`): " + ", ".join(str(p.relative_to(ROOT)) for p in stale))
        return 1
    return 0


def _kubernetes_renderer():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cxpulse_k8s_render", ROOT / "deploy" / "kubernetes" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
