"""Simulated storefront traffic: contract-valid events, seeded, in send order.

A source for the flow's first stop (Kafka bytes), used by the local demo, the
end-to-end tests and load runs. ``generate`` is pure: one ``random.Random``
seeded from the config, no wall clock, so one seed and one config give the same
events byte for byte. Its event clock starts at ``SimConfig.start_ms`` and moves
``1000 / rate_per_s`` ms per event sent; pacing against the wall clock, the
file and Kafka sinks live in ``run`` at the edge.

The model: visitors start sessions (more at evening peak, fewer at night) and
walk a funnel whose drop-off depends on channel and device; some check out and
order (lognormal totals, one currency per store, repeat customers), some
orders are refunded or returned later; customers open support tickets (bots
answer, agents write internal notes and a first public reply after a delay
that depends on the support channel, tickets get resolved, a few reopen);
surveys (NPS, CSAT, CES) are sent and a share of them answered, at a response
rate that depends on the kind and the sales channel. Then the delivery gets
messy on purpose: some events are sent a few seconds late (out of order within
grace), some beyond ``late_delay_ms`` (late), some twice with the same
``event_id``.

Split by concept: ``model.py`` holds the knobs (``SimConfig``, the stores, the
channel funnels, the scenarios), ``generator.py`` the seeded simulation
(``generate``), and this module the command, ``cxpulse simulate``: its
arguments, the file and Kafka sinks, pacing and progress.

    >>> cfg = SimConfig(seed=7, start_ms=1_715_688_000_000)
    >>> next(generate(cfg))["type"]
    'session.started'
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import time
from dataclasses import replace
from datetime import datetime
from typing import Any, Callable, Iterator

from streams.business_hours import parse_calendars
from streams.contract import EVENT_TYPES
from streams.devtools.simulate.generator import generate
from streams.devtools.simulate.model import (
    CHANNELS,
    DEVICE_FACTOR,
    DIURNAL,
    FRT_MEDIAN_MIN,
    RESPONSE_CHANNEL_FACTOR,
    RESPONSE_RATE,
    SCENARIOS,
    SOURCES,
    STOREFRONTS,
    SUPPORT_MIX,
    Channel,
    ChannelProfile,
    Device,
    Scenario,
    SimConfig,
    Storefront,
    SupportChannel,
)
from streams.errors import ConfigError

__all__ = [
    "CHANNELS", "DEVICE_FACTOR", "DIURNAL", "FRT_MEDIAN_MIN", "RESPONSE_CHANNEL_FACTOR", "RESPONSE_RATE", "SCENARIOS",
    "SOURCES", "STOREFRONTS", "SUPPORT_MIX",
    "Channel", "ChannelProfile", "Device", "Scenario", "SimConfig", "Storefront", "SupportChannel",
    "add_arguments", "config_from_args", "generate", "run",
]

# -- the command: sinks, pacing, progress ------------------------------------------------
# Here, in the package itself: `cxpulse simulate` runs this module's add_arguments and run
# (streams.cli.COMMANDS), and _open_producer is looked up here when run needs Kafka.

def _rfc3339_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError("an RFC 3339 time like 2024-05-14T12:00:00Z") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("an RFC 3339 time with an offset, like 2024-05-14T12:00:00Z")
    return int(moment.timestamp() * 1000)


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a share between 0 and 1")
    return value


def _segment(text: str) -> dict[str, str]:
    """``--treated`` in the syntax of ``cxpulse initiative declare --treated`` (one parser for both)."""
    from streams.initiatives.model import parse_segment

    return parse_segment(text) if text.strip() else {}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SimConfig()
    parser.add_argument("--rate", type=float, default=defaults.rate_per_s, metavar="EVENTS_PER_S",
                        help=f"events per second (default {defaults.rate_per_s:g})")
    bound = parser.add_mutually_exclusive_group()
    bound.add_argument("--duration", type=float, metavar="SECONDS", help="seconds of event time to generate")
    bound.add_argument("--events", type=int, metavar="N", help="number of events to send")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default 1)")
    parser.add_argument("--start", type=_rfc3339_ms, metavar="RFC3339",
                        help="event time of the first event (default: now)")
    parser.add_argument("--storefronts", type=int, default=len(defaults.storefronts), metavar="N",
                        help=f"number of simulated stores, 1-{len(STOREFRONTS)} (default {len(defaults.storefronts)})")
    parser.add_argument("--ooo-share", type=_share, default=0.0, metavar="F",
                        help="share of events sent 1-8 s late, within grace (default 0)")
    parser.add_argument("--late-share", type=_share, default=0.0, metavar="F",
                        help="share of events sent beyond --late-delay, counted late (default 0)")
    parser.add_argument("--late-delay", type=float, default=defaults.late_delay_ms / 1000, metavar="SECONDS",
                        help="how late a late event is sent (default 600)")
    parser.add_argument("--dup-share", type=_share, default=0.0, metavar="F",
                        help="share of events sent twice with the same event_id (default 0)")
    parser.add_argument("--scenario", choices=SCENARIOS, default="none", help="an incident to simulate")
    parser.add_argument("--incident-after", type=float, default=defaults.incident_after_ms / 1000,
                        metavar="SECONDS", help="seconds of event time before the incident (default 180)")
    parser.add_argument("--support-time-scale", type=float, default=1.0, metavar="F",
                        help="multiply support delays (0.1: tickets move 10x faster; default 1); with "
                             "CXPULSE_BUSINESS_HOURS set, agents reply and resolve only in the storefronts' "
                             "opening hours, as the worker's business-hours times expect")
    parser.add_argument("--warmup", type=float, default=0, metavar="SECONDS",
                        help="simulate this long before --start without sending, so traffic starts in steady "
                             "state (cxpulse up uses 900)")
    parser.add_argument("--treated", metavar="SEGMENT", default="",
                        help="the treated segment of a CX initiative, as `cxpulse initiative declare --treated` "
                             "writes it (storefront=, channel=, device=; comma-separated): its sessions get "
                             "--conversion-uplift")
    parser.add_argument("--conversion-uplift", type=float, default=0.0, metavar="F",
                        help="relative rise of the treated segment's conversion, e.g. 0.3 for x1.3 (default 0; "
                             "cxpulse up uses 0.3 for its demo initiative)")
    parser.add_argument("--out", metavar="FILE.jsonl", help="write every sent event as a JSON line")
    parser.add_argument("--kafka", action="store_true", help="send to Kafka through the cxpulse producer")
    parser.add_argument("--bootstrap", metavar="HOST:PORT",
                        help="Kafka bootstrap servers (default: CXPULSE_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")
    parser.add_argument("--batch-events", type=int, default=100, metavar="N",
                        help="events per Kafka message batch (default 100)")
    parser.add_argument("--pace", action=argparse.BooleanOptionalAction, default=None,
                        help="send in real time at --rate (default: on with --kafka, off for a file)")


def config_from_args(args: argparse.Namespace, now_ms: int) -> SimConfig:
    """The SimConfig of a command line; ``now_ms`` is the default start."""
    if not 1 <= args.storefronts <= len(STOREFRONTS):
        raise ConfigError(f"--storefronts {args.storefronts} is not valid: it accepts 1 to {len(STOREFRONTS)}")
    cfg = replace(
        SimConfig(),
        seed=args.seed,
        start_ms=args.start if args.start is not None else now_ms,
        rate_per_s=args.rate,
        storefronts=STOREFRONTS[: args.storefronts],
        ooo_share=args.ooo_share,
        late_share=args.late_share,
        late_delay_ms=int(args.late_delay * 1000),
        dup_share=args.dup_share,
        scenario=args.scenario,
        incident_after_ms=int(args.incident_after * 1000),
        support_time_scale=args.support_time_scale,
        calendars=parse_calendars(os.environ.get("CXPULSE_BUSINESS_HOURS", "")),
        warmup_ms=int(args.warmup * 1000),
        treated=_segment(args.treated),
        conversion_uplift=args.conversion_uplift,
    )
    cfg.validate()
    return cfg


def run(args: argparse.Namespace) -> int:
    import orjson

    if not args.out and not args.kafka:
        raise ConfigError("simulate needs a sink: --out FILE.jsonl, --kafka, or both")
    if args.batch_events < 1:
        raise ConfigError(f"--batch-events {args.batch_events} is not valid: it accepts a positive integer")
    limit = args.events if args.events is not None else (
        int(args.duration * args.rate) if args.duration is not None else None)
    if limit is None and not args.kafka:
        raise ConfigError("a file-only run needs --events N or --duration SECONDS")
    pace = args.kafka if args.pace is None else args.pace
    cfg = config_from_args(args, now_ms=int(time.time() * 1000))
    events = generate(cfg)
    if limit is not None:
        events = itertools.islice(events, limit)

    sinks: list[Callable[[dict[str, Any]], None]] = []
    closers: list[Callable[[], None]] = []
    boundary: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    try:
        if args.out:
            out = open(args.out, "wb")
            closers.append(out.close)
            dumps = orjson.dumps
            sinks.append(lambda event: out.write(dumps(event) + b"\n"))
        if args.kafka:
            producer, boundary = _open_producer(args)
            closers.insert(0, producer.close)
            sinks.append(producer.send)
        with boundary:  # Kafka errors while sending or flushing: one line
            try:
                _pump(events, sinks, cfg, pace)
            finally:
                while closers:
                    closers.pop(0)()
    finally:
        while closers:  # when opening a sink failed
            closers.pop(0)()
    return 0


def _open_producer(args: argparse.Namespace) -> tuple[Any, contextlib.AbstractContextManager[None]]:
    """The producer, once a bootstrap server answered (within CXPULSE_CONNECT_TIMEOUT), and the
    boundary that turns Kafka errors while sending into one line."""
    from streams.config import Settings
    from streams.producer import Producer  # imported only when Kafka is wanted
    from streams.reach import bootstrap_source, kafka_boundary, require_kafka

    overrides = {"bootstrap_servers": args.bootstrap} if args.bootstrap else {}
    settings = Settings.from_env(flags={"bootstrap_servers": "--bootstrap"}, **overrides)
    if args.batch_events > settings.max_batch_events:
        raise ConfigError(f"--batch-events {args.batch_events} is not valid: it accepts 1 to "
                          f"{settings.max_batch_events} (CXPULSE_MAX_BATCH_EVENTS)")
    source = bootstrap_source(args.bootstrap is not None)
    require_kafka(settings, source)
    with kafka_boundary(settings, source, "the producer"):
        producer = Producer.from_settings(settings, batch_events=args.batch_events, linger_ms=50)
    return producer, kafka_boundary(settings, source, "the events sent")


def _pump(events: Iterator[dict[str, Any]], sinks: list[Callable[[dict[str, Any]], None]],
          cfg: SimConfig, pace: bool) -> None:
    """Send every event to every sink; with ``pace``, event time tracks the wall clock."""
    started = time.monotonic()
    next_report = started + 2.0
    sent = 0
    families: dict[str, int] = {}
    family_of = {name: t.family for name, t in EVENT_TYPES.items()}
    step_s = 1.0 / cfg.rate_per_s
    try:
        for event in events:
            for sink in sinks:
                sink(event)
            sent += 1
            family = family_of[event["type"]]
            families[family] = families.get(family, 0) + 1
            if pace or sent % 1024 == 0:
                wall = time.monotonic()
                if pace:
                    ahead = started + sent * step_s - wall
                    if ahead > 0.002:
                        time.sleep(ahead)
                if wall >= next_report:
                    _report("progress", sent, families, wall - started)
                    next_report = wall + 2.0
    finally:
        _report("done", sent, families, time.monotonic() - started)


def _report(what: str, sent: int, families: dict[str, int], elapsed_s: float) -> None:
    rate = sent / elapsed_s if elapsed_s > 0 else 0.0
    mix = " ".join(f"{f}={n}" for f, n in sorted(families.items()))
    print(f"cxpulse simulate: {what}: {sent} events in {elapsed_s:.1f}s ({rate:,.0f}/s) {mix}",
          file=sys.stderr, flush=True)
