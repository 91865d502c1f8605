"""The report's PNG charts, with matplotlib: daily KPIs, the movers, the initiatives' ROI.

The last step before the documents (``cli.write`` calls ``draw`` and the
documents link or embed what it drew). matplotlib is the ``report`` extra
(``pip install 'cxpulse[report]'``) and is imported with this module only, which
nothing imports until charts are drawn; it renders with Agg (no display).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")  # no display; files only

from matplotlib.figure import Figure as Canvas  # noqa: E402 - after the backend is chosen
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, PercentFormatter, ScalarFormatter  # noqa: E402

from streams.report.document import MOVERS_SHOWN, NOUNS, scope  # noqa: E402
from streams.report.figures import Figure, Mover, Report, VolumeMover  # noqa: E402
from streams.report.queries import sample_metric  # noqa: E402


# The daily small multiples: the KPIs a weekly reader asks about first (guide: revenue, support, voice).
CHART_KPIS: tuple[str, ...] = (
    "conversion", "average_order_value", "revenue_per_visitor",
    "cart_abandonment", "first_contact_resolution", "first_response_p90",
    "resolution_p90", "nps", "csat",
)

THIS_WEEK_COLOR, LAST_WEEK_COLOR = "#0969da", "#8c959f"

BETTER_COLOR, WORSE_COLOR, NEUTRAL_COLOR = "#1a7f37", "#cf222e", "#6e7781"


def _panel_scale(figure: Figure) -> tuple[float, str, Any]:
    """(divisor, unit for the title, tick formatter) of a daily panel: times in minutes or hours, so
    ticks fall on round numbers of the unit shown; shares as percentages."""
    kpi = figure.kpi
    if kpi.unit == "ratio":
        return 1.0, "", PercentFormatter(xmax=1.0)
    if kpi.unit == "seconds":
        peak = max((v for v in figure.daily + figure.daily_previous if v is not None), default=0.0)
        return (3600.0, "hours", ScalarFormatter()) if peak >= 3 * 3600 else (60.0, "minutes", ScalarFormatter())
    if kpi.unit == "currency":
        return 1.0, figure.labels.get("currency", ""), FuncFormatter(lambda v, _: f"{v:,.2f}".rstrip("0").rstrip("."))
    if kpi.shape == "nps":
        return 1.0, "", FuncFormatter(lambda v, _: f"{v:+.0f}")
    return 1.0, "", ScalarFormatter()


def draw_daily(report: Report, path: Path) -> Path | None:
    """Small multiples: each chart KPI per UTC day, this week (solid) against last week (dashed)."""
    chosen = []
    for key in CHART_KPIS:
        candidates = [f for f in report.figures
                      if f.kpi.key == key and any(v is not None for v in f.daily + f.daily_previous)]
        if candidates:
            chosen.append(max(candidates, key=lambda f: f.n))  # money: the storefront with the most volume
    if not chosen:
        return None
    cols = 3
    rows = math.ceil(len(chosen) / cols)
    fig = Canvas(figsize=(12, 2.8 * rows + 0.8), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    this, last = report.week.label, report.week.previous().label
    for ax, figure in zip(axes.flat, chosen):
        divisor, unit, formatter = _panel_scale(figure)
        for values, label, style in (
                (figure.daily_previous, f"{last} (week before)",
                 dict(color=LAST_WEEK_COLOR, linestyle="--", linewidth=1.5, marker="o", markersize=3)),
                (figure.daily, f"{this} (report week)",
                 dict(color=THIS_WEEK_COLOR, linewidth=2.4, marker="o", markersize=4))):
            ax.plot(range(7), [math.nan if v is None else v / divisor for v in values], label=label, **style)
        title = figure.kpi.title + (f" in {unit}" if unit else "")
        if "storefront" in figure.labels and not report.storefront:
            title += f"\n{figure.labels['storefront']}"
        ax.set_title(title, fontsize=10.5, loc="left")
        ax.yaxis.set_major_formatter(formatter)
        ax.set_xticks(range(7), days, fontsize=9)
        ax.tick_params(axis="y", labelsize=9)
        ax.grid(axis="y", color="#eaeef2")
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.margins(x=0.04, y=0.12)
    for ax in list(axes.flat)[len(chosen):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles[::-1], labels[::-1], loc="outside upper right", ncols=2, frameon=False, fontsize=10)
    fig.suptitle(f"Daily KPIs, {this} against {last} ({scope(report)}, UTC days)", x=0.01, ha="left",
                 fontsize=13, fontweight="bold")
    fig.savefig(path, format="png")
    return path


def draw_movers(report: Report, path: Path) -> Path | None:
    """Horizontal bars: the movers' weighted changes per KPI, and the ticket-volume change."""
    last = report.week.previous().label
    # (title, bar names, values, colours, x-axis label, value label format)
    panels: list[tuple[str, list[str], list[float], list[str], str, Callable[[float], str]]] = []
    for moved in report.movers.values():
        if not moved:
            continue
        kpi, shown = moved[0].kpi, moved[:MOVERS_SHOWN]
        dims = " and ".join(dict.fromkeys(m.dimension.replace("_", " ") for m in moved))
        noun = NOUNS.get(sample_metric(kpi), "volume")
        if kpi.unit == "ratio":
            values = [100 * m.weighted for m in shown]
            axis, fmt = f"percentage points of the overall {kpi.title.split(' (')[0].lower()}", "{:+.2f} pp".format
        elif kpi.unit == "seconds":
            values = [m.weighted / 60 for m in shown]
            axis, fmt = "minutes", "{:+.1f} min".format
        else:
            values, axis, fmt = [m.weighted for m in shown], "", "{:+.2f}".format
        panels.append((f"{kpi.title} by {dims}: change x share of {noun}", [_bar_name(m) for m in shown], values,
                       [BETTER_COLOR if m.better else WORSE_COLOR for m in shown], axis, fmt))
    if report.volume_movers:
        shown = report.volume_movers[:MOVERS_SHOWN]
        panels.append((f"Tickets created by {shown[0].dimension.replace('_', ' ')}: change from {last}",
                       [_bar_name(m) for m in shown], [m.change for m in shown], [NEUTRAL_COLOR] * len(shown),
                       "tickets", "{:+,.0f}".format))
    if not panels:
        return None
    heights = [max(len(p[1]), 2) for p in panels]
    # tight, not constrained: one left margin for every panel, so the bars start on one line
    fig = Canvas(figsize=(12, 0.9 + sum(0.42 * h + 0.9 for h in heights)), dpi=100, layout="tight")
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (title, names, values, colors, axis, fmt) in zip(axes, panels):
        ys = list(range(len(names)))[::-1]
        ax.barh(ys, values, color=colors, height=0.6)
        ax.set_yticks(ys, names, fontsize=10)
        ax.axvline(0, color="#57606a", linewidth=0.8)
        ax.set_title(title, fontsize=11, loc="left")
        ax.set_xlabel(axis, fontsize=9)
        ax.tick_params(axis="x", labelsize=9)
        ax.grid(axis="x", color="#eaeef2")
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        low, high = min(0.0, *values), max(0.0, *values)
        pad = 0.25 * ((high - low) or 1.0)  # room for the value labels
        ax.set_xlim(low - (pad if low < 0 else 0.05 * pad), high + (pad if high > 0 else 0.05 * pad))
        for y, value in zip(ys, values):
            ax.annotate(fmt(value), (value, y), xytext=(4 if value >= 0 else -4, 0), textcoords="offset points",
                        ha="left" if value >= 0 else "right", va="center", fontsize=9)
    fig.suptitle(f"What moved most, {report.week.label} against {last} (green better, red worse)", x=0.01,
                 ha="left", fontsize=13, fontweight="bold")
    fig.savefig(path, format="png")
    return path


VERDICT_COLORS = {"pays off": BETTER_COLOR, "does not pay off": WORSE_COLOR,
                  "not enough evidence yet": NEUTRAL_COLOR}


def draw_initiatives(report: Report, path: Path) -> Path | None:
    """Horizontal bars: each active initiative's ROI to date, its 95% interval as an error bar,
    coloured by its verdict (green: the interval is above 0, red: below 0, grey: it includes 0)."""
    rows = [r for r in report.initiatives.rows if {"roi", "roi_lower", "roi_upper"} <= set(r.values)]
    if not rows:
        return None
    names = [f"{r.name}\n{r.treated} vs {'before the start' if r.control == 'before' else r.control}"
             for r in rows]
    roi = [100 * r.values["roi"] for r in rows]
    lower = [100 * r.values["roi_lower"] for r in rows]
    upper = [100 * r.values["roi_upper"] for r in rows]
    ys = list(range(len(rows)))[::-1]
    fig = Canvas(figsize=(12, 1.9 + 0.75 * len(rows)), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.barh(ys, roi, color=[VERDICT_COLORS[r.verdict] for r in rows], height=0.5, alpha=0.85)
    ax.errorbar(roi, ys, xerr=[[v - lo for v, lo in zip(roi, lower)], [hi - v for v, hi in zip(roi, upper)]],
                fmt="none", ecolor="#1f2328", elinewidth=1.6, capsize=6)
    ax.axvline(0, color="#57606a", linewidth=1)
    ax.set_yticks(ys, names, fontsize=10)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+.0f}%" if v else "0%"))
    ax.tick_params(axis="x", labelsize=9)
    ax.set_xlabel("ROI to date = (incremental profit - investment) / investment; bar: estimate, whisker: "
                  "95% interval", fontsize=9)
    ax.grid(axis="x", color="#eaeef2")
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    low, high = min(0.0, *lower), max(0.0, *upper)
    pad = 0.05 * ((high - low) or 100.0)
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    for y, value, lo, hi in zip(ys, roi, lower, upper):
        # a column right of the plot: never on a bar or a whisker, whatever their signs
        ax.annotate(f"{value:+.0f}%  ({lo:+.0f}% to {hi:+.0f}%)", (1, y), xycoords=("axes fraction", "data"),
                    xytext=(10, 0), textcoords="offset points", ha="left", va="center", fontsize=10)
    ax.annotate("ROI  (95% interval)", (1, len(rows) - 0.3), xycoords=("axes fraction", "data"), xytext=(10, 0),
                textcoords="offset points", ha="left", va="bottom", fontsize=9, color="#57606a")
    shown = dict.fromkeys(r.verdict for r in rows)
    fig.legend(handles=[Patch(color=VERDICT_COLORS[v], label=v) for v in shown], loc="outside lower left",
               ncols=len(shown), frameon=False, fontsize=10)
    fig.suptitle(f"Initiatives active in {report.week.label}: ROI to date with its 95% interval", x=0.01,
                 ha="left", fontsize=13, fontweight="bold")
    fig.savefig(path, format="png")
    return path


def _bar_name(mover: Mover | VolumeMover) -> str:
    return f"{mover.dimension.replace('_', ' ')}: {mover.segment}"


def draw(report: Report, out: Path) -> dict[str, Path]:
    """Draw every chart that has data into ``out`` as ``<week>-<name>.png``: name -> path."""
    drawn: dict[str, Path] = {}
    for name, chart in (("daily", draw_daily), ("movers", draw_movers), ("initiatives", draw_initiatives)):
        path = chart(report, out / f"{report.week.label}-{name}.png")
        if path:
            drawn[name] = path
    return drawn
