"""Small helpers shared by the integration and e2e tests (no fixtures here: see conftest.py)."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from streams.broker import free_port

__all__ = ["free_port", "wait_until"]

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout_s: float = 10.0, interval_s: float = 0.05, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; return it, or fail after ``timeout_s``.

        wait_until(lambda: broker.running, timeout_s=2, what="broker up")
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last value: {value!r})")
        time.sleep(interval_s)
