"""``cxpulse report``: its arguments, and the run from week to files.

The report's entry point and its last step: ``run`` picks the week (``--week`` or
the last complete one, UTC), checks Prometheus answers, builds the figures
(``build.py``) and ``write`` draws the charts (``charts.py``, matplotlib, imported
only then) and writes ``report.md`` or ``report.html`` with ``report.json`` into
``--out``. A ``ReportError`` ends it with one line on stderr and exit code 1.

    cxpulse report --prometheus http://127.0.0.1:9090 --week 2026-W47 --format html --out reports/2026-W47
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Literal

from streams.errors import ReportError
from streams.report.build import build, print_progress
from streams.report.figures import Report, figures_json
from streams.report.html import html_document
from streams.report.markdown import markdown
from streams.report.prometheus import Prometheus
from streams.report.weeks import Week


Format = Literal["md", "html"]


def write(report: Report, out: Path, fmt: Format, progress: Callable[[str], None] = print_progress) -> Path:
    """Draw the charts, then write ``report.md`` or ``report.html`` and ``report.json`` into ``out``."""
    from streams.report import charts  # matplotlib: only when charts are drawn

    out.mkdir(parents=True, exist_ok=True)
    report.charts.update(charts.draw(report, out))
    progress(f"charts: {', '.join(str(p) for p in report.charts.values()) or 'none (no data to draw)'}")
    document = out / f"report.{fmt}"
    document.write_text(markdown(report) if fmt == "md" else html_document(report), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(figures_json(report), indent=2) + "\n", encoding="utf-8")
    return document


def _week_arg(text: str) -> Week:
    try:
        return Week.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prometheus", required=True, metavar="URL",
                        help="base URL of the Prometheus that scrapes the workers, e.g. http://127.0.0.1:9090")
    parser.add_argument("--week", type=_week_arg, metavar="YYYY-Www",
                        help="ISO week to report, e.g. 2026-W47 (default: the last complete week, UTC)")
    parser.add_argument("--storefront", metavar="NAME", help="one storefront (default: all, pooled)")
    parser.add_argument("--format", choices=("md", "html"), default="md",
                        help="md: report.md with the PNGs beside it; html: one report.html with the charts embedded "
                             "(default md)")
    parser.add_argument("--out", type=Path, default=Path("."), metavar="DIR",
                        help="directory for the report, report.json and the PNG charts (default: .)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="per Prometheus query (default 30)")


def run(args: argparse.Namespace) -> int:
    now = datetime.now(timezone.utc)
    week: Week = args.week or Week.last_complete(now)
    try:
        if week.end > now:
            raise ReportError(f"{week.label} has not ended yet (it ends {week.end:%Y-%m-%d %H:%M} UTC); the last "
                              f"complete week is {Week.last_complete(now).label}")
        prom = Prometheus(args.prometheus, args.timeout)
        prom.ping()
        report = build(prom, week, args.storefront, now)
        document = write(report, args.out, args.format)
    except ReportError as exc:
        print(f"cxpulse report: error: {exc}", file=sys.stderr)
        return 1
    print_progress(f"wrote {document} ({prom.queries} queries)")
    return 0
