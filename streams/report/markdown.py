"""The report as Markdown: ``report.md``, with the PNG charts beside it.

One of the report's outputs, after ``document.py``: the headline and movers
tables with their captions, the charts as image links (``Report.charts``, drawn
first by ``charts.py``), then the customer and initiative ``Block``s.
"""

from __future__ import annotations

from streams.report.document import (MOVERS_CAPTION, Block, customer_blocks, glance, initiative_blocks, scope,
                                     tables)
from streams.report.figures import Report


def markdown(report: Report) -> str:
    week, prev = report.week, report.week.previous()
    out = [f"# CX weekly report: {week.label} ({week.days()})", "",
           f"{scope(report).capitalize()}, compared with {prev.label} ({prev.days()}). Weeks run Monday to Sunday, "
           f"UTC. From Prometheus at {report.prometheus}, {report.generated:%Y-%m-%d %H:%M} UTC.", "",
           "## At a glance", ""]
    out += [f"- {line}" for line in glance(report)]
    moved_header = False
    for anchor, title, header, rows, caption in tables(report):
        if anchor.startswith("movers-") and not moved_header:
            out += ["", "## What moved most", "", MOVERS_CAPTION]
            moved_header = True
        out += ["", f"{'##' if anchor == 'headline' else '###'} {title}", ""]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
        out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        if caption:
            out += ["", caption]
        if anchor == "headline" and "daily" in report.charts:
            out += ["", f"![Daily KPIs, {week.label} against {prev.label}]({report.charts['daily'].name})"]
    if "movers" in report.charts:
        out += ["", f"![Segments that moved most]({report.charts['movers'].name})"]
    out += _md_blocks(customer_blocks(report) + initiative_blocks(report), report)
    if report.notes:
        out += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(out) + "\n"


def _md_blocks(blocks: list[Block], report: Report) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if block.kind in ("h2", "h3"):
            out += ["", f"{'##' if block.kind == 'h2' else '###'} {block.text}", ""]
        elif block.kind in ("p", "caption"):
            out += ([""] if out and out[-1] else []) + [block.text]
        elif block.kind == "ul":
            out += ([""] if out and out[-1] else []) + [f"- {item}" for item in block.items]
        elif block.kind == "table":
            out += ([""] if out and out[-1] else [])
            out.append("| " + " | ".join(block.header) + " |")
            out.append("|" + "|".join("---" if i < block.left else "---:" for i in range(len(block.header))) + "|")
            out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in block.rows]
        elif block.kind == "chart":
            out += ["", f"![{block.text}]({report.charts[block.chart].name})"]
    return out
