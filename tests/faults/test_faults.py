"""Faults with real processes: a broker of the test's own, worker processes, signals.

(a) worker started before the broker; (b) broker killed and restarted mid-stream;
(c) SIGTERM mid-stream, then a restarted worker continues exactly; (e) stuck and
parallel scrapes do not stall processing. The randomized SIGKILL/rebalance schedule
is ``test_schedule.py``. What each fault does to a user is in docs/operations.md.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from streams.devtools.broker import create_topics
from streams.devtools.stack import http_get
from tests.faults.common import Sender, metric_sum, per_partition
from tests.faults.conftest import fault_settings
from tests.helpers import wait_until


def ready_status(worker) -> int | None:
    try:
        return http_get(f"http://127.0.0.1:{worker.metrics_port}/ready", 1.0)[0]
    except OSError:
        return None


def counted_total(worker) -> float | None:
    """Events the worker counted, or None when its /metrics did not answer within the timeout."""
    try:
        return metric_sum(worker.scrape(), "cxpulse_events_total")
    except OSError:
        return None


def counted(worker) -> dict:
    return per_partition([worker.scrape()])


def test_a_worker_started_before_the_broker_waits_for_it(own_broker, fleet) -> None:
    settings = fault_settings(own_broker, partitions=2)
    worker = fleet(settings, 0)
    time.sleep(5)
    assert worker.process.poll() is None, f"worker exited with {worker.process.returncode} while the broker was down"
    assert ready_status(worker) == 503
    assert "cxpulse_broker_up 0.0" in worker.scrape(), "waiting for the broker must be visible in metrics"
    assert "event=broker_unavailable" in worker.log_path.read_text(), "and in the log, once per retry"
    own_broker.start()
    create_topics(settings)
    worker.wait_ready(90)


def test_c_sigterm_mid_stream_exits_0_and_a_restart_continues_exactly(own_broker, fleet) -> None:
    own_broker.start()
    settings = fault_settings(own_broker)
    create_topics(settings)
    worker = fleet(settings, 0).wait_ready(90)
    sender = Sender(settings, seed=3, batch=20)
    stop_sending = threading.Event()

    def keep_sending() -> None:
        while not stop_sending.is_set():
            sender.send(200)

    thread = threading.Thread(target=keep_sending, daemon=True)
    try:
        sender.send(2000)
        thread.start()
        time.sleep(2)
        assert worker.stop(60) == 0, f"SIGTERM exit code {worker.process.returncode}; see {worker.log_path}"
        assert "event=worker_stopped" in worker.log_path.read_text()
        time.sleep(2)  # events produced while no worker runs
        worker = fleet(settings, 0).wait_ready(90)
        time.sleep(2)
    finally:
        stop_sending.set()
        thread.join(30)
        sender.close()
    wait_until(lambda: counted(worker) == sender.sent, 60, 0.5, what="counts equal to what was produced")
    assert counted(worker) == sender.sent  # no loss, no double count, per (family, partition)


def test_e_stuck_and_parallel_scrapes_do_not_stall_processing(own_broker, fleet) -> None:
    own_broker.start()
    settings = fault_settings(own_broker)
    create_topics(settings)
    worker = fleet(settings, 0).wait_ready(90)
    sender = Sender(settings, seed=5, batch=10)
    stuck: list[socket.socket] = []
    stop = threading.Event()
    scrapes = [0]

    def hammer() -> None:
        while not stop.is_set():
            try:
                worker.scrape()
                scrapes[0] += 1
            except OSError:
                pass

    hammers = [threading.Thread(target=hammer, daemon=True) for _ in range(16)]
    try:
        for _ in range(50):  # connections that ask for /metrics and never read the answer
            sock = socket.create_connection(("127.0.0.1", worker.metrics_port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            stuck.append(sock)
        for _ in range(20):  # and some that never finish their request
            sock = socket.create_connection(("127.0.0.1", worker.metrics_port))
            sock.sendall(b"GET /metr")
            stuck.append(sock)
        for thread in hammers:
            thread.start()
        began = time.monotonic()
        sender.send(5000)
        # this scrape queues behind the 16 hammering ones (each builds a page holding the GIL); on a
        # busy machine one can outlast its 5 s timeout: that is a scrape answered late, not processing
        # stalled, so it counts as "not yet" and the deadline decides
        wait_until(lambda: counted_total(worker) == 5000, 60, 0.5, what="events counted while scrapes are stuck")
        took = time.monotonic() - began
        print(f"5000 events counted in {took:.1f}s with 70 stuck connections and {scrapes[0]} parallel scrapes")
        # Readiness as Kubernetes probes it (deploy/kubernetes: 1 s timeout, failureThreshold 3): the
        # worker must not be marked unready, i.e. one of three probes in a row answers 200 within 1 s
        # while 16 threads scrape without pause (each scrape holds the GIL while it builds the page).
        probes = [ready_status(worker) for _ in range(3)]
        assert 200 in probes, f"/ready probes under scrape load: {probes}"
    finally:
        stop.set()
        for thread in hammers:
            thread.join(10)
        for sock in stuck:
            sock.close()
        sender.close()


def test_b_broker_restart_loses_no_new_events(own_broker, fleet) -> None:
    """The worker survives a broker restart without a restart of its own, rejoins, starts
    the lost partitions over, and counts every event sent after it rejoined, once."""
    own_broker.start()
    settings = fault_settings(own_broker, partitions=2)
    create_topics(settings)
    worker = fleet(settings, 0).wait_ready(90)
    before = Sender(settings, seed=7)
    before.send(400)
    before.close()
    wait_until(lambda: counted(worker) == before.sent, 60, 0.5, what="pre-restart events counted")
    own_broker.kill()
    time.sleep(2)
    own_broker.start()
    create_topics(settings)
    # Producers do not wait for the worker: events reach the recreated topics before it rejoins.
    early = Sender(settings, seed=9)
    early.send(300)
    early.close()
    # /ready stays 200 until the group notices the restart: wait for the rejoin, where the
    # worker finds the changelog and topics recreated (the reset is logged).
    wait_until(lambda: "_truncated" in worker.log_path.read_text() and ready_status(worker) == 200, 90, 0.5,
               what="worker rejoined the restarted broker and reset its partitions")
    assert worker.process.poll() is None, "the worker needed a restart"
    after = Sender(settings, seed=8)
    after.send(1000)
    after.close()
    # The memory broker lost the topics and the state changelog: the worker starts those
    # partitions over (counters reset, which Prometheus handles) and counts every event the
    # new topics hold, those sent before it rejoined too, once.
    expected = early.sent + after.sent
    try:
        wait_until(lambda: counted(worker) == expected, 30, 0.5, what="every new event counted, exactly once")
    except AssertionError:
        raise AssertionError(f"counted {counted(worker)} sent {expected}") from None
    log = worker.log_path.read_text()
    assert "event=changelog_truncated" in log or "event=source_truncated" in log, "the reset must be logged"
