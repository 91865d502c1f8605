"""The ROI of an initiative in PromQL: the recording rules ``ROI_RULES`` and the report's queries.

The end of the initiatives feature, in Prometheus: the workers export each arm's
sessions, orders, revenue and sum of squared order values (``components.py``);
these rules sum them over workers, then take the ratios. As the ROI article
frames it:

    uplift               = KPI(treated) - KPI(control)            (RPV by default)
    incremental revenue  = uplift x treated sessions               (RPV)
    incremental profit   = gross margin x incremental revenue
    ROI                  = (incremental profit - investment) / investment

with a 95% interval from the normal approximation of the two arms' means: per-session
revenue has variance E[r^2] - RPV^2 (an order per session at most; sessions without
an order count 0), estimated from the sum of squared order values. ``mixin/rules/``
records ``ROI_RULES`` with the other rules (docs/initiatives.md);
``ROI_QUERIES`` are the same figures inlined over the raw gauges, for the weekly
report on a Prometheus without the rules.

    >>> ROI_RULES[0][0]
    'initiative:cxpulse_initiative_treated_rpv:ratio'
"""

from __future__ import annotations

import re

from streams.mixin.intervals import Z95


def _arm(metric: str, arm: str) -> str:
    return f'sum by (initiative) ({metric}{{arm="{arm}"}})'


def _S(arm: str) -> str:
    return _arm("cxpulse_initiative_sessions", arm)


def _O(arm: str) -> str:
    return _arm("cxpulse_initiative_orders", arm)


def _R(arm: str) -> str:
    return _arm("cxpulse_initiative_revenue", arm)


def _Q(arm: str) -> str:
    return _arm("cxpulse_initiative_revenue_squares", arm)


# Recorded names, ``level:metric:operation`` like every rule (streams/mixin/rules/common.py).
_NAMES = {
    "uplift": "uplift:diff", "uplift_ratio": "uplift:ratio",
    "incremental_revenue": "incremental_revenue:estimate", "incremental_revenue_se": "incremental_revenue:stderr",
    "incremental_profit": "incremental_profit:estimate",
    "roi": "roi:ratio", "roi_lower": "roi:ratio_lower", "roi_upper": "roi:ratio_upper",
}


def _rule(name: str) -> str:
    """``treated_rpv`` -> ``initiative:cxpulse_initiative_treated_rpv:ratio``; squared standard
    errors end in ``:squared_stderr``; the rest as in ``_NAMES``."""
    if name in _NAMES:
        return f"initiative:cxpulse_initiative_{_NAMES[name]}"
    if name.endswith("_se2"):
        return f"initiative:cxpulse_initiative_{name.removesuffix('_se2')}:squared_stderr"
    return f"initiative:cxpulse_initiative_{name}:ratio"


def _kpi_is(kpi: str) -> str:
    return f'on (initiative) group_left () max by (initiative) (cxpulse_initiative_info{{kpi="{kpi}"}})'


def _build_rules() -> list[tuple[str, str]]:
    rules: list[tuple[str, str]] = []
    for arm in ("treated", "control"):
        rules += [
            (_rule(f"{arm}_rpv"), f"{_R(arm)} / ({_S(arm)} > 0)"),
            (_rule(f"{arm}_conversion"), f"{_O(arm)} / ({_S(arm)} > 0)"),
            (_rule(f"{arm}_aov"), f"{_R(arm)} / ({_O(arm)} > 0)"),
            # squared standard errors of the three means (normal approximation)
            (_rule(f"{arm}_rpv_se2"),
             f"clamp_min({_Q(arm)} / ({_S(arm)} > 0) - {_rule(f'{arm}_rpv')} ^ 2, 0) / ({_S(arm)} > 0)"),
            (_rule(f"{arm}_conversion_se2"),
             f"clamp_min({_rule(f'{arm}_conversion')} * (1 - {_rule(f'{arm}_conversion')}), 0) / ({_S(arm)} > 0)"),
            (_rule(f"{arm}_aov_se2"),
             f"clamp_min({_Q(arm)} / ({_O(arm)} > 0) - {_rule(f'{arm}_aov')} ^ 2, 0) / ({_O(arm)} > 0)"),
        ]
    t, c = "treated", "control"
    uplift = {kpi: f"{_rule(t + '_' + short)} - {_rule(c + '_' + short)}"
              for kpi, short in (("revenue_per_visitor", "rpv"), ("conversion", "conversion"),
                                 ("average_order_value", "aov"))}
    incremental = {
        "revenue_per_visitor": (f"({uplift['revenue_per_visitor']}) * {_S(t)}",
                                f"{_S(t)} * sqrt({_rule(t + '_rpv_se2')} + {_rule(c + '_rpv_se2')})"),
        "conversion": (f"({uplift['conversion']}) * {_S(t)} * {_rule(t + '_aov')}",
                       f"{_S(t)} * {_rule(t + '_aov')} * sqrt({_rule(t + '_conversion_se2')}"
                       f" + {_rule(c + '_conversion_se2')})"),
        "average_order_value": (f"({uplift['average_order_value']}) * {_O(t)}",
                                f"{_O(t)} * sqrt({_rule(t + '_aov_se2')} + {_rule(c + '_aov_se2')})"),
    }

    def by_kpi(parts: dict[str, str]) -> str:
        return "\nor\n".join(f"(\n  ({expr})\n  * {_kpi_is(kpi)}\n)" for kpi, expr in parts.items())

    margin = "max by (initiative) (cxpulse_initiative_gross_margin_ratio)"
    investment = "max by (initiative) (cxpulse_initiative_investment)"
    rules += [
        (_rule("uplift"), by_kpi(uplift)),
        (_rule("uplift_ratio"), by_kpi({kpi: f"({expr}) / ({_rule(c + '_' + short)} > 0)" for (kpi, expr), short
                                        in zip(uplift.items(), ("rpv", "conversion", "aov"))})),
        (_rule("incremental_revenue"), by_kpi({k: v[0] for k, v in incremental.items()})),
        (_rule("incremental_revenue_se"), by_kpi({k: v[1] for k, v in incremental.items()})),
        (_rule("incremental_profit"), f"{margin} * {_rule('incremental_revenue')}"),
        (_rule("roi"), f"({_rule('incremental_profit')} - {investment}) / {investment}"),
        (_rule("roi_lower"), f"({margin} * ({_rule('incremental_revenue')} - {Z95} * {_rule('incremental_revenue_se')})"
                             f" - {investment}) / {investment}"),
        (_rule("roi_upper"), f"({margin} * ({_rule('incremental_revenue')} + {Z95} * {_rule('incremental_revenue_se')})"
                             f" - {investment}) / {investment}"),
    ]
    return rules


# (recorded name, PromQL) in dependency order: rules.py records them; a name used in a
# later expression is an earlier rule's series.
ROI_RULES: list[tuple[str, str]] = _build_rules()


def inline(expr: str) -> str:
    """An expression with every recorded initiative series replaced by its own PromQL,
    for a Prometheus that has the raw gauges but not the rules (e.g. a backfill)."""
    for name, body in reversed(ROI_RULES):
        expr = re.sub(re.escape(name) + r"(?![A-Za-z0-9_:])", "(" + body.replace("\\", "\\\\") + ")", expr)
    return expr


# Self-contained instant queries for the report: name -> PromQL over raw gauges.
ROI_QUERIES: dict[str, str] = {
    name: inline(_rule(name))
    for name in ("uplift", "uplift_ratio", "incremental_revenue", "incremental_profit", "roi", "roi_lower", "roi_upper")
}
