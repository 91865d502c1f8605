"""Confidence intervals of the KPIs: how far a share or an NPS may move by chance alone.

Pure maths on counts, beside ``aggregates.py``: no Prometheus, no Faust. The
recording rules in ``rules/bounds.py`` compute the same formulas in PromQL (a test
runs both on the same inputs), and reports import these functions directly.

* A share (conversion, CSAT, FCR, cart abandonment, refund & return rate,
  repeat purchase) gets the **Wilson score interval**. Unlike the textbook
  ``p +- z sqrt(p(1-p)/n)`` (Wald) it never leaves [0, 1], is not zero-width
  at 0 or n successes and covers close to its nominal 95% even for small
  samples and rates near 0 or 1 (Brown, Cai & DasGupta 2001).
* NPS gets the **adjusted-Wald interval** for a difference of two multinomial
  shares: 3/4 of a pseudo-answer is added to promoters and to detractors and 3
  to the responses (so 1.5 to passives), and with those adjusted shares and
  n' = n + 3, ``NPS/100 = p_P - p_D`` and ``Var = (p_P + p_D - (p_P - p_D)^2) / n'``
  (the multinomial normal approximation). Without the pseudo-answers (plain
  Wald) the interval is zero-width when every answer is a promoter and covers
  only ~90% of lopsided samples of 50 (this one: 96%); Rocks (2016, *The
  American Statistician*) compared six methods and found this one best. The
  pseudo-answers are tuned for 95%; ``z`` still scales the width.

Counts may be fractional: Prometheus' ``increase()`` extrapolates to the range.

    >>> [round(b, 4) for b in wilson(30, 1000)]
    [0.0211, 0.0425]
    >>> [round(b, 1) for b in nps_interval(50, 20, 100)]
    [14.1, 44.2]
"""

from __future__ import annotations

import math

Z95 = 1.959964  # two-sided 95%: the normal quantile 0.975
# Pseudo-answers of the adjusted-Wald NPS interval (Rocks 2016): added to promoters and to
# detractors each, and to the responses (the rest, 1.5, goes to passives).
NPS_PSEUDO_EACH = 0.75
NPS_PSEUDO_N = 3.0


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (lower, upper) of a share, both in 0..1.

    The observed share is clamped to [0, 1] first: in a window, orders can
    outnumber the checkouts they came from. No trials (``n == 0``): (0, 1),
    the limit of the formula, i.e. nothing is known.

        >>> wilson(0, 0), wilson(0, 10)[0], wilson(10, 10)[1]
        ((0.0, 1.0), 0.0, 1.0)
    """
    if n < 0 or successes < 0:
        raise ValueError(f"counts must be >= 0, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = min(max(successes / n, 0.0), 1.0)
    return _wilson(p, n, z)


def _wilson(p: float, n: float, z: float) -> tuple[float, float]:
    # In counts: (n p + z^2/2 -+ z sqrt(n p (1-p) + z^2/4)) / (n + z^2), the form the
    # recording rules use (no division by n, so no special case at n = 0 there).
    centre = n * p + z * z / 2
    half = z * math.sqrt(n * p * (1 - p) + z * z / 4)
    scale = n + z * z
    return min(max((centre - half) / scale, 0.0), 1.0), min(max((centre + half) / scale, 0.0), 1.0)


def nps_interval(promoters: float, detractors: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Adjusted-Wald interval (lower, upper) of the NPS, on -100..100 (clipped there).

    ``n`` is every answer (promoters, passives and detractors). No answers:
    (-100, 100).

        >>> nps_interval(0, 0, 0)
        (-100.0, 100.0)
        >>> [round(b, 1) for b in nps_interval(30, 0, 30)]
        [78.7, 100.0]
    """
    if n < 0 or promoters < 0 or detractors < 0:
        raise ValueError(f"counts must be >= 0, got promoters={promoters}, detractors={detractors}, n={n}")
    if n == 0:
        return -100.0, 100.0
    n_adj = n + NPS_PSEUDO_N
    net = (promoters - detractors) / n_adj  # the pseudo-answers cancel in the difference
    either = (promoters + detractors + 2 * NPS_PSEUDO_EACH) / n_adj
    half = z * math.sqrt(max(either - net * net, 0.0) / n_adj)
    return max(100 * (net - half), -100.0), min(100 * (net + half), 100.0)


def nps_wald(promoters: float, detractors: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Plain (unadjusted) Wald interval of the NPS, for comparison in tests and docs only.

        >>> nps_wald(30, 0, 30)
        (100.0, 100.0)
    """
    if n <= 0:
        return -100.0, 100.0
    net = (promoters - detractors) / n
    half = z * math.sqrt(max((promoters + detractors) / n - net * net, 0.0) / n)
    return max(100 * (net - half), -100.0), min(100 * (net + half), 100.0)
