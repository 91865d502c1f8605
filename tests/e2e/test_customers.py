"""End to end: customer-level KPIs over ten months of event time, with a SIGKILL mid-stream.

Orders, tickets, NPS and CSAT answers of repeat customers, and checkout sessions with and without
their orders (``tests/customer_events.py``) go to
the real broker, keyed as any producer keys them; a worker is killed while they arrive and a
second one takes over. Its cohort, mature repeat purchase, LTV-by-NPS and by-CSAT, retention
(30-, 90- and 365-day periods), post-support conversion, revenue-after-support and checkout-join gauges must
equal ``tests/customer_reference.py`` computed from the events alone. (The simulator's traffic
in ``test_exact.py`` is checked the same way, for the short-span KPIs, across rebalances.)
"""

from __future__ import annotations

import random
import threading
import time
from typing import Callable

from streams.config import Settings
from tests.customer_events import DAY, customer_events
from tests.e2e.test_exact import JOIN_S, compare_customers, scrape
from tests.helpers import send_events, wait_until
from tests.reference import Params, Reference


def test_customer_kpis_survive_a_sigkill_and_equal_the_reference(make_settings: Callable[..., Settings],
                                                                   workers) -> None:
    # a yearly period too: its customer TTL (derived) is two years and a day
    settings = make_settings(cohort_weeks=60, retention_periods_ms=(30 * DAY, 90 * DAY, 365 * DAY))
    # ~320 days of events, placed (whatever today's date) so that they end ~220 days into a 365-day
    # period of the grid (blocks from Monday 1969-12-29 UTC, docs/customers.md) and begin 100 days
    # before it: that period and the one before both have customers, and so do the shorter ones
    year, grid = 365 * DAY, -3 * DAY
    start = grid + (int(time.time() * 1000) - 400 * DAY - grid) // year * year
    events = customer_events(random.Random(5), customers=500, days=200, t0=start - 100 * DAY, sessions=300)
    first = workers(settings, 0)
    first.wait_ready(JOIN_S)
    sender = threading.Thread(target=send_events, args=(settings, events, 100, 0.4), daemon=True)
    sender.start()

    def facts_read(worker) -> float:
        try:
            return sum(v for n, _, v in scrape(worker) if n == "cxpulse_customer_facts_total")
        except OSError:
            return 0.0

    wait_until(lambda: facts_read(first) > 300, timeout_s=60, what="the customer stage applying facts")
    assert sender.is_alive(), "all events were sent before the crash: send more or slower"
    first.kill()
    second = workers(settings, 1)
    second.wait_ready(JOIN_S)
    recovered = sum(v for n, _, v in scrape(second) if n == "cxpulse_state_recovered_records_total")
    assert recovered > 0, "the restarted worker recovered no state: the crash tested nothing"
    sender.join(120)
    assert not sender.is_alive()
    ref = Reference.compute(events, Params.of(settings))
    problems = compare_customers([second], events, ref, settings, timeout_s=90)
    assert not problems, "\n".join(problems[:40])
    kinds = {n for n, _, v in scrape(second) if n.startswith("cxpulse_customer_nps") and v > 0}
    assert kinds == {"cxpulse_customer_nps_customers", "cxpulse_customer_nps_revenue"}, \
        "no NPS cohort reached its horizon: the LTV-by-NPS path was not exercised"
    # every new path carried something through the crash, not only zeros
    shown = {(n, labels.get("period")) for n, labels, v in scrape(second) if v > 0}
    for name in ("cxpulse_customer_csat_revenue", "cxpulse_customer_cohort_mature_repeat_customers",
                 "cxpulse_customer_post_support_mature_converted", "cxpulse_customer_post_support_revenue"):
        assert (name, None) in shown, f"{name}: nothing to compare"
    for period in ("30d", "90d", "365d"):
        assert ("cxpulse_customer_retention_retained", period) in shown, f"no {period} customer retained"
    assert ("cxpulse_checkout_sessions_abandoned", None) in shown, "no abandoned checkout session to compare"


# A transaction that is never ended, on every customer and windows partition: a producer killed
# inside it, under a transactional id no worker claims (so no claim aborts it). The Tansu test
# broker never times a transaction out (Kafka aborts it after transaction.timeout.ms), so their
# read_committed ends stay where it began for good, as after the stuck producer of
# docs/operations.md.
_OPEN_FOREVER = """
import sys, time
from confluent_kafka import Producer
bootstrap, partitions, topics = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "stray-open-transaction"})
producer.init_transactions(30)
producer.begin_transaction()
for topic in topics:
    for partition in range(partitions):
        producer.produce(topic, b"[]", partition=partition)  # read as nothing by the stages
producer.flush(30)
print("open", flush=True)
time.sleep(3600)
"""


def test_customer_kpis_equal_the_reference_when_the_broker_holds_the_stages_topics_for_good(
        make_settings: Callable[..., Settings], workers, tmp_path) -> None:
    import subprocess
    import sys

    from streams.runtime.engine import HELD_STAGE_S

    settings = make_settings(cohort_weeks=60, retention_periods_ms=(30 * DAY, 90 * DAY, 365 * DAY))
    opener = subprocess.Popen([sys.executable, "-c", _OPEN_FOREVER, settings.bootstrap_servers,
                               str(settings.partitions), settings.topic_customers, settings.topic_windows],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert opener.stdout.readline().strip() == "open", "the stray transaction did not open"
    finally:
        opener.kill()  # dies inside its transaction
        opener.wait()
    year, grid = 365 * DAY, -3 * DAY  # placed as in the test above
    start = grid + (int(time.time() * 1000) - 400 * DAY - grid) // year * year
    events = customer_events(random.Random(7), customers=300, days=200, t0=start - 100 * DAY)
    worker = workers(settings, 0)
    worker.wait_ready(JOIN_S)
    send_events(settings, events, 200, 0.1)
    ref = Reference.compute(events, Params.of(settings))
    # the stages read nothing for HELD_STAGE_S (75 s: beyond Kafka's transaction timeout), then
    # read their partitions read_uncommitted; the deadline adds the margin of a loaded machine
    problems = compare_customers([worker], events, ref, settings, timeout_s=HELD_STAGE_S + 90)
    assert not problems, "\n".join(problems[:40])
    log = worker.log_path.read_text()
    assert "event=stage_read_uncommitted family=customer" in log, "the customer stage was never held"
    assert "event=stage_read_uncommitted family=merge" in log, "the merge stage was never held"
