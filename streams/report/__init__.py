"""``cxpulse report``: the weekly CX report, read from Prometheus, as Markdown or HTML with PNG charts.

At the end of the flow, beside the dashboards: it reads what Prometheus recorded
from the workers' ``/metrics`` and writes the report the guide's contributors
send every week ("is it up or is it down?"): each KPI of ``catalog.KPIS`` for one
ISO week against the week before, with its sample size and a 95% interval; the
segments that moved most; the customer-level KPIs; the initiatives active in the
week, their ROI to date and a verdict; a daily chart, a movers chart and an ROI
chart. Offline tooling, split by layer in the order a report is made:

    weeks.py       the calendar: ISO weeks, Monday to Monday, UTC
    prometheus.py  the HTTP API client; every failure becomes one ReportError
    queries.py     the PromQL: the rules' own formulas fed with week counts
    figures.py     what is computed: the figures, their changes and verdicts
    build.py       every query at the two week ends, into a Report
    document.py    number formats, tables and sections shared by both formats
    markdown.py, html.py, charts.py   the outputs (charts: matplotlib, imported only to draw)
    cli.py         the command's arguments, ``run`` and ``write``

Used from Python:

    week = Week.parse("2026-W47")
    report = build(Prometheus("http://127.0.0.1:9090"), week, storefront=None)
    write(report, Path("out"), "md")   # out/report.md, out/report.json, out/*.png
"""
