"""Concurrent scrapes share page builds: one build at a time, never an answer older than its request."""

from __future__ import annotations

import threading
import time

from streams.runtime.worker import OnePageAtATime


def test_concurrent_scrapes_build_one_page_at_a_time_and_none_is_older_than_its_request() -> None:
    building = [0]
    most = [0]
    builds: list[float] = []
    guard = threading.Lock()

    def slow_app(environ, start_response):
        with guard:
            building[0] += 1
            most[0] = max(most[0], building[0])
        began = time.monotonic()
        time.sleep(0.02)  # a page that takes a while to build
        with guard:
            building[0] -= 1
            builds.append(began)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [repr(began).encode()]

    shared = OnePageAtATime(slow_app)
    answers: list[tuple[float, float]] = []

    def scrape() -> None:
        for _ in range(10):
            asked = time.monotonic()
            body = b"".join(shared({"HTTP_ACCEPT": "text/plain"}, lambda status, headers: None))
            with guard:
                answers.append((asked, float(body)))

    threads = [threading.Thread(target=scrape) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 160
    assert most[0] == 1, "two pages were built at the same time"
    assert all(built >= asked for asked, built in answers), "a scrape got a page built before it asked"
    assert len(builds) < len(answers), "waiting scrapes must share the page built after they arrived"


def test_each_content_negotiation_gets_its_own_page() -> None:
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", environ["HTTP_ACCEPT"])])
        return [environ["HTTP_ACCEPT"].encode()]

    shared = OnePageAtATime(app)
    seen = {}
    for accept in ("text/plain", "application/openmetrics-text", "text/plain"):
        body = b"".join(shared({"HTTP_ACCEPT": accept}, lambda status, headers: seen.update({accept: headers})))
        assert body == accept.encode()
        assert seen[accept] == [("Content-Type", accept)]
