"""The report as one HTML file: ``report.html``, inline styles, the charts embedded as data URLs.

One of the report's outputs, after ``document.py``: the same tables, lines and
``Block``s as the Markdown, for mail clients and chat tools that show HTML but
not attachments; a better or worse change is coloured.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from streams.report.document import (MOVERS_CAPTION, Block, customer_blocks, glance, initiative_blocks, scope,
                                     tables)
from streams.report.figures import Report


def _html_blocks(blocks: list[Block], report: Report) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if block.kind in ("h2", "h3", "p"):
            out.append(f"<{block.kind}>{html.escape(block.text)}</{block.kind}>")
        elif block.kind == "caption":
            out.append(f'<p style="{HTML_STYLE["caption"]}">{html.escape(block.text)}</p>')
        elif block.kind == "ul":
            out += ["<ul>"] + [f"<li>{html.escape(item)}</li>" for item in block.items] + ["</ul>"]
        elif block.kind == "table":
            out.append(_html_table(list(block.header), [list(r) for r in block.rows], block.left))
        elif block.kind == "chart":
            out.append(_img(report.charts[block.chart], block.text))
    return out


HTML_STYLE = {
    "body": "font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1f2328;max-width:1000px",
    "table": "border-collapse:collapse;font-size:14px;margin:8px 0",
    "th": "border-bottom:2px solid #d0d7de;padding:4px 10px;text-align:right;background:#f6f8fa",
    "td": "border-bottom:1px solid #eaeef2;padding:4px 10px;text-align:right",
    "caption": "font-size:12px;color:#57606a;max-width:900px",
    "better": "color:#1a7f37", "worse": "color:#cf222e",
}


def _html_table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    def cell(tag: str, text: str, first: bool) -> str:
        style = HTML_STYLE[tag] + (";text-align:left" if first else "")
        for word in ("better", "worse"):
            if text.endswith(f"({word})"):
                style += ";" + HTML_STYLE[word]
        return f'<{tag} style="{style}">{html.escape(text)}</{tag}>'

    head = "".join(cell("th", h, i < left) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", c, i < left) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table style="{HTML_STYLE["table"]}"><tr>{head}</tr>{body}</table>'


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" style="max-width:100%"></p>'


def html_document(report: Report) -> str:
    week, prev = report.week, report.week.previous()
    cap = HTML_STYLE["caption"]
    out = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8">',
           f"<title>CX weekly report {week.label}</title></head>", f'<body style="{HTML_STYLE["body"]}">',
           f"<h1>CX weekly report: {week.label} ({html.escape(week.days())})</h1>",
           f"<p>{html.escape(scope(report).capitalize())}, compared with {prev.label} ({html.escape(prev.days())}). "
           f"Weeks run Monday to Sunday, UTC. From Prometheus at {html.escape(report.prometheus)}, "
           f"{report.generated:%Y-%m-%d %H:%M} UTC.</p>", "<h2>At a glance</h2>", "<ul>"]
    out += [f"<li>{html.escape(line)}</li>" for line in glance(report)]
    out.append("</ul>")
    moved_header = False
    for anchor, title, header, rows, caption in tables(report):
        if anchor.startswith("movers-") and not moved_header:
            out += ["<h2>What moved most</h2>", f'<p style="{cap}">{html.escape(MOVERS_CAPTION)}</p>']
            moved_header = True
        tag = "h2" if anchor == "headline" else "h3"
        out.append(f"<{tag}>{html.escape(title)}</{tag}>")
        out.append(_html_table(header, rows))
        if caption:
            out.append(f'<p style="{cap}">{html.escape(caption)}</p>')
        if anchor == "headline" and "daily" in report.charts:
            out.append(_img(report.charts["daily"], f"Daily KPIs, {week.label} against {prev.label}"))
    if "movers" in report.charts:
        out.append(_img(report.charts["movers"], "Segments that moved most"))
    out += _html_blocks(customer_blocks(report) + initiative_blocks(report), report)
    if report.notes:
        out += ["<h2>Notes</h2>", "<ul>"] + [f"<li>{html.escape(n)}</li>" for n in report.notes] + ["</ul>"]
    out += ["</body></html>"]
    return "\n".join(out) + "\n"
