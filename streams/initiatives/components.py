"""The ROI components of each declared initiative, summed at scrape time from the day totals.

Between the window state and the exposition: at each scrape the collector
(``runtime/collector.py``) asks, per initiative and arm (``treated``, ``control``),
for the sessions, orders, revenue and sum of squared order values of this
worker's partitions over the arm's days, read from the day totals the window
state keeps (record kind ``y``). Sessions and orders of one segment live on
different partitions and workers, so no ratio is taken here: the ratios are
taken after summing over workers, by the recording rules of ``rules.py``.
Plain arithmetic over the published snapshots: no Kafka, no Prometheus.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping

from streams.initiatives.model import Initiative, matches


def components(initiatives: Mapping[str, Initiative],
               snapshots: Iterable[Any]) -> Iterator[tuple[Initiative, str, dict[str, float]]]:
    """(initiative, arm, {sessions, orders, revenue, revenue_squares}) over this worker's day totals.

    Revenue counts orders in the initiative's currency, in major units.
    """
    from streams.catalog import CURRENCY_EXPONENT

    sessions = [s for s in snapshots if s.family == "session"]
    orders = [s for s in snapshots if s.family == "order"]
    for initiative in sorted(initiatives.values(), key=lambda i: i.name):
        scale = 10 ** CURRENCY_EXPONENT.get(initiative.currency, 2)
        for arm, (wanted, start, end) in initiative.arms().items():
            out = {"sessions": 0.0, "orders": 0.0, "revenue": 0.0, "revenue_squares": 0.0}
            for snap in sessions:
                for day, cells in snap.days.items():
                    if day >= start and (end is None or day < end):
                        for segment, cell in cells.items():
                            if matches(segment, wanted):
                                out["sessions"] += cell.counts.get("sessions_started", 0)
            for snap in orders:
                for day, cells in snap.days.items():
                    if day >= start and (end is None or day < end):
                        for segment, cell in cells.items():
                            if segment[-1] == initiative.currency and matches(segment, wanted):
                                out["orders"] += cell.counts.get("orders_placed", 0)
                                out["revenue"] += cell.counts.get("revenue_minor", 0) / scale
                                out["revenue_squares"] += cell.counts.get("revenue_sq", 0) / scale / scale
            yield initiative, arm, out
