"""Prints how many hostile inputs the fuzz suites tried (``fuzz inputs tried``) at the end of the run."""

from __future__ import annotations

from tests.fuzz import tally


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if tally.TRIED:
        parts = ", ".join(f"{what}: {n:,}" for what, n in sorted(tally.TRIED.items()))
        terminalreporter.write_line(f"fuzz inputs tried: {parts}")
