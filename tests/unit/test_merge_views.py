"""The merge stage's views (several base windows summed): each base window's sources are summed once and
kept for the views that hold it; the views equal a sum of every partial, never change a partial, and follow
a partial that changes (a resend) and a restore."""

from __future__ import annotations

from streams.config import Settings
from streams.pipeline.aggregates import Cell, merge_cells
from streams.pipeline.merge_state import MergeState
from streams.pipeline.records import Message

T0 = 1_800_000_000_000 - 1_800_000_000_000 % 60_000
SEGMENT = ["shop", "web", "mobile"]
SETTINGS = Settings(partitions=2, views_ms=(60_000, 120_000, 180_000))


def _cell(sessions: int, visitors: set[str]) -> Cell:
    cell = Cell()
    cell.counts["sessions_started"] = sessions
    cell.observe("duration", 1000 * sessions)
    cell.sets = {"visitors": set(visitors)}
    return cell


def _partial(source: int, minute: int, sessions: int, visitors: set[str]) -> list:
    return ["p", "session", source, T0 + minute * 60_000, "shop", [[SEGMENT, _cell(sessions, visitors).to_json()]]]


def _markers(until_minute: int) -> list:
    return [["m", family, p, T0 + until_minute * 60_000] for family in ("session", "order", "ticket", "survey")
            for p in range(2)]


def _views(exports) -> dict:
    return {(e.view_ms, (e.end_ms - T0) // 60_000): (sum(c.counts.get("sessions_started", 0) for c in e.cells.values()),
                                                     sorted(set().union(*((c.sets or {}).get("visitors", set())
                                                                          for c in e.cells.values()))))
            for e in exports if e.family == "session"}


def test_merging_cells_with_sets_leaves_the_inputs_alone() -> None:
    a, b = _cell(1, {"v1"}), _cell(2, {"v2"})
    segment = tuple(SEGMENT)
    total = merge_cells([{segment: a}, {segment: b}, {segment: a}])
    assert total[segment].sets == {"visitors": {"v1", "v2"}}
    assert total[segment].counts == {"sessions_started": 4}
    assert a.sets == {"visitors": {"v1"}} and b.sets == {"visitors": {"v2"}} and a.counts == {"sessions_started": 1}
    fresh = Cell()
    fresh.merge(b)
    fresh.merge(a)
    assert fresh.sets == {"visitors": {"v1", "v2"}} and b.sets == {"visitors": {"v2"}}  # b's set was not taken


def test_views_sum_every_partial_and_follow_a_resend_and_a_restore() -> None:
    state, changelog = MergeState(0, SETTINGS), []
    items = [_partial(0, 0, 1, {"a"}), _partial(1, 0, 2, {"b", "c"}), _partial(0, 1, 3, {"a", "d"}),
             _partial(1, 2, 4, {"e"}), *_markers(3)]
    applied = state.apply([Message(0, items, [])])
    changelog += applied.records
    assert _views(applied.exports) == {
        (60_000, 1): (3, ["a", "b", "c"]), (60_000, 2): (3, ["a", "d"]), (60_000, 3): (4, ["e"]),
        (120_000, 1): (3, ["a", "b", "c"]), (120_000, 2): (6, ["a", "b", "c", "d"]), (120_000, 3): (7, ["a", "d", "e"]),
        (180_000, 1): (3, ["a", "b", "c"]), (180_000, 2): (6, ["a", "b", "c", "d"]),
        (180_000, 3): (10, ["a", "b", "c", "d", "e"])}
    again = _views(state.windows_between("session", None, T0 + 3 * 60_000))
    assert again == _views(applied.exports)  # views built again from the kept sums: the same, inputs unchanged
    # a partial of minute 1 resent with other content (never by design; the views must follow what is held)
    applied = state.apply([Message(1, [_partial(1, 1, 5, {"f"}), *_markers(4)], [])])
    changelog += applied.records
    assert _views(applied.exports) == {(60_000, 4): (0, []), (120_000, 4): (4, ["e"]),
                                       (180_000, 4): (12, ["a", "d", "e", "f"])}
    now = _views(state.windows_between("session", None, T0 + 4 * 60_000))
    assert now[60_000, 2] == (8, ["a", "d", "f"]) and now[180_000, 3] == (15, ["a", "b", "c", "d", "e", "f"])
    restored = MergeState(0, SETTINGS)
    restored.restore(changelog)
    assert _views(restored.windows_between("session", None, T0 + 4 * 60_000)) == now
