"""The 95% intervals in PromQL: Wilson's for a share, adjusted Wald for the NPS; the same
formulas as ``streams.mixin.intervals`` (a test runs both on the same input).
"""

from __future__ import annotations

from typing import Literal

from streams.catalog import Kpi
from streams.mixin.intervals import NPS_PSEUDO_EACH, NPS_PSEUDO_N
from streams.mixin.rules.common import Level, _indent, denominator_rule, numerator_rule, window_rule
from streams.mixin.rules.thresholds import INTERVAL_Z


def _num(value: float) -> str:
    """Shortest exact text of a float: PromQL then computes with the doubles streams.mixin.intervals uses."""
    return repr(value)


def _interval_expr(kpi: Kpi, level: Level, window: str, side: Literal["lower", "upper"],
                   offset: bool = False) -> str:
    """A bound of the KPI's 95% interval from the recorded KPI, its sample size and (NPS) its
    components; the same formulas as ``streams.mixin.intervals`` (a test runs both on the same input)."""
    suffix = "_offset1w" if offset else ""
    n = denominator_rule(kpi, level, window, offset)
    if kpi.shape == "nps":
        promoters, detractors = (numerator_rule(kpi, m, level, window, offset) for m in kpi.numerator)
        return _nps_bound(promoters, detractors, 1, n, side)
    # A one_minus KPI's interval is 1 - its inner share's, swapped: Wilson's is symmetric in p and
    # 1 - p, so it is the Wilson interval of the KPI itself (clamp(1 - r) = 1 - clamp(r) too).
    return _wilson_bound(f"clamp({window_rule(kpi, level, window)}{suffix}, 0, 1)", n, side)


def _wilson_bound(p: str, n: str, side: Literal["lower", "upper"]) -> str:
    """Wilson in counts: (n p + z^2/2 -+ z sqrt(n p (1-p) + z^2/4)) / (n + z^2). No division by n:
    n = 0 gives (0, 1), and the KPI ``p`` is absent then anyway (its ``> 0`` guard)."""
    z = INTERVAL_Z
    sign = "-" if side == "lower" else "+"
    return (
        f"clamp(\n"
        f"  (\n"
        f"    {n} * {p}\n"
        f"    + {_num(z * z / 2)}\n"
        f"    {sign} {_num(z)} * sqrt(\n"
        f"      {n}\n"
        f"      * {p}\n"
        f"      * (1 - {p})\n"
        f"      + {_num(z * z / 4)}\n"
        f"    )\n"
        f"  )\n"
        f"  / ({n} + {_num(z * z)}),\n"
        f"  0, 1\n"
        f")"
    )


def _nps_bound(promoters: str, detractors: str, seconds: int, n: str, side: Literal["lower", "upper"]) -> str:
    """Adjusted Wald on -100..100: with n' = n + 3, net = (P - D) / n', either = (P + D + 1.5) / n',
    100 (net -+ z sqrt((either - net^2) / n')), clipped. P and D are counts: rate x seconds."""
    z = INTERVAL_Z
    sign = "-" if side == "lower" else "+"
    adjusted = f"(({n} > 0) + {_num(NPS_PSEUDO_N)})"  # no interval for a segment without answers
    net = f"({promoters} - {detractors}) * {seconds}\n/ {adjusted}"
    either = f"(({promoters} + {detractors}) * {seconds} + {_num(2 * NPS_PSEUDO_EACH)})\n/ {adjusted}"
    return (
        f"clamp(\n"
        f"  100 * (\n"
        f"{_indent(net, 4)}\n"
        f"    {sign} {_num(z)} * sqrt(\n"
        f"      (\n"
        f"{_indent(either, 8)}\n"
        f"        - (\n"
        f"{_indent(net, 10)}\n"
        f"        ) ^ 2\n"
        f"      )\n"
        f"      / {adjusted}\n"
        f"    )\n"
        f"  ),\n"
        f"  -100, 100\n"
        f")"
    )
