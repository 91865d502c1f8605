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
Prometheus unreachable...) with 1, each as one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxpulse", description="Live customer-experience KPIs from Kafka events.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # import only the module that runs
            module = importlib.import_module(module_name)
            module.add_arguments(command)
            command.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    from streams.errors import ConfigError, CxpulseError

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
