"""The Faust engine's rejoin watch: a revocation left unanswered past REJOIN_S while the broker
answers means the worker starts over; an assignment (even an empty one) or a broker away does not."""

from __future__ import annotations

from types import SimpleNamespace

from streams.runtime.faust_engine import REJOIN_S, RejoinWatch


def _watch(broker_up: bool = True) -> tuple[RejoinWatch, SimpleNamespace]:
    publisher = SimpleNamespace(broker_up=broker_up)
    watch = RejoinWatch(SimpleNamespace(publisher=publisher))
    watch._thread = object()  # type: ignore[assignment]  # no thread here: the test drives overdue()
    return watch, publisher


def test_a_revocation_never_followed_by_an_assignment_is_overdue_after_the_limit() -> None:
    watch, _ = _watch()
    watch.revoked()
    start = watch._revoked_at
    assert watch.overdue(start + REJOIN_S - 1) is None
    assert watch.overdue(start + REJOIN_S + 1) == REJOIN_S + 1


def test_an_assignment_even_empty_answers_the_revocation() -> None:
    watch, _ = _watch()
    watch.revoked()
    start = watch._revoked_at
    watch.assigned()
    assert watch.overdue(start + 10 * REJOIN_S) is None


def test_time_with_the_broker_away_does_not_count() -> None:
    watch, publisher = _watch()
    watch.revoked()
    start = watch._revoked_at
    publisher.broker_up = False
    assert watch.overdue(start + REJOIN_S + 5) is None  # away: the wait starts over from here
    publisher.broker_up = True
    assert watch.overdue(start + REJOIN_S + 6) is None
    assert watch.overdue(start + 2 * REJOIN_S + 6) == REJOIN_S + 1
