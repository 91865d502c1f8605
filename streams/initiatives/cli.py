"""``cxpulse initiative``: declare, list or delete CX initiatives on their compacted topic.

The user's entry to the initiatives feature: ``declare`` builds an ``Initiative``
(``model.py``) from the command line, fails on a bad declaration before it
connects, and publishes its JSON keyed by name; ``delete`` publishes a tombstone;
``list`` reads the topic to its end (``reader.read_all``). Kafka errors become
one line through ``streams.reach.kafka_boundary``. From there every worker picks
the declaration up (``reader.Registry``) and the rules compute its ROI.

    cxpulse initiative declare live-chat --start 2026-03-02 --treated channel=app \\
        --investment 5000 --currency EUR --margin 0.4
    cxpulse initiative list
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from streams.config import Settings
from streams.initiatives.model import DAY_MS, KPIS, Initiative, day_ms, parse_segment
from streams.initiatives.reader import partitions, read_all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    declare = sub.add_parser("declare", help="declare (or replace) an initiative")
    declare.add_argument("name", help="a short lowercase label, e.g. live-chat")
    declare.add_argument("--start", required=True, help="first day, YYYY-MM-DD (UTC)")
    declare.add_argument("--end", help="day after the last, YYYY-MM-DD (UTC); omit while it runs")
    declare.add_argument("--treated", required=True, help="the treated segment, e.g. channel=app")
    declare.add_argument("--control", default="before",
                         help="a control segment (e.g. channel=web) over the same days, or 'before' (default): "
                              "the treated segment over the days before the start")
    declare.add_argument("--control-days", type=int,
                         help="length of the before-period (default: the initiative's length, or 28 while it runs)")
    declare.add_argument("--investment", required=True, type=float, help="money invested, in --currency")
    declare.add_argument("--currency", required=True, help="ISO 4217 code of the investment and the revenue counted")
    declare.add_argument("--margin", required=True, type=float, help="gross margin, e.g. 0.4 for 40%%")
    declare.add_argument("--kpi", default="revenue_per_visitor", choices=KPIS, help="the KPI the uplift is of")
    declare.add_argument("--description", default="")
    sub.add_parser("list", help="list the declared initiatives")
    delete = sub.add_parser("delete", help="delete an initiative")
    delete.add_argument("name")
    for p in sub.choices.values():
        p.add_argument("--bootstrap", metavar="HOST:PORT",
                       help="Kafka bootstrap servers (default: CXPULSE_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")


def build(args: argparse.Namespace) -> Initiative:
    start = day_ms(args.start)
    end = day_ms(args.end) if args.end else None
    if args.control == "before":
        length = args.control_days * DAY_MS if args.control_days else (end - start if end else 28 * DAY_MS)
        control, control_start, control_end = None, start - length, start
    else:
        control, control_start, control_end = parse_segment(args.control), start, end
    return Initiative(args.name, start, end, parse_segment(args.treated), control, control_start, control_end,
                      args.investment, args.currency, args.margin, args.kpi, args.description)


def run(args: argparse.Namespace) -> int:
    from streams.reach import bootstrap_source, kafka_boundary

    settings = Settings.from_env(flags={"bootstrap_servers": "--bootstrap"},
                                 **({"bootstrap_servers": args.bootstrap} if args.bootstrap else {}))
    initiative = build(args) if args.action == "declare" else None  # a bad declaration fails before connecting
    source = bootstrap_source(args.bootstrap is not None)
    topic = settings.topic_initiatives
    found: dict[str, Initiative] = {}
    with kafka_boundary(settings, source, f"the {args.action} on topic {topic}"):
        if args.action in ("declare", "delete"):
            publish(settings, args.name, initiative)
        else:
            found = read_all(settings)
    if args.action == "declare":
        assert initiative is not None
        print(f"declared {initiative.name}: treated {initiative.treated_label} from {_day(initiative.start_ms)}"
              f" to {_day(initiative.end_ms) if initiative.end_ms else 'now'}, control {initiative.control_label}"
              f" ({_day(initiative.control_start_ms)} to "
              f"{_day(initiative.control_end_ms) if initiative.control_end_ms else 'now'}), "
              f"{initiative.kpi}, investment {initiative.investment:,.2f} {initiative.currency}, "
              f"margin {initiative.margin:.0%} -> topic {topic}", file=sys.stderr)
        return 0
    if args.action == "delete":
        print(f"deleted {args.name} (tombstone on {topic})", file=sys.stderr)
        return 0
    for initiative in found.values():
        print(f"{initiative.name}\t{initiative.kpi}\ttreated {initiative.treated_label} "
              f"{_day(initiative.start_ms)}..{_day(initiative.end_ms) if initiative.end_ms else 'now'}\t"
              f"control {initiative.control_label}\t{initiative.investment:,.2f} {initiative.currency}\t"
              f"margin {initiative.margin:.0%}")
    if not found:
        print("no initiatives declared", file=sys.stderr)
    return 0


def publish(settings: Settings, name: str, initiative: Initiative | None) -> None:
    """Write a declaration (or a tombstone for ``None``), waiting for the broker's acknowledgement."""
    from kafka import KafkaConsumer, KafkaProducer

    from streams.reach import client_options

    options = client_options(settings)
    consumer = KafkaConsumer(allow_auto_create_topics=False, **options)
    try:
        partitions(settings, consumer)
    finally:
        consumer.close()
    wait_s = settings.connect_timeout_ms / 1000
    producer = KafkaProducer(acks="all", max_block_ms=settings.connect_timeout_ms,
                             allow_auto_create_topics=False, **options)
    try:
        producer.send(settings.topic_initiatives, key=name.encode(),
                      value=initiative.to_json() if initiative else None).get(timeout=2 * wait_s)
    finally:
        producer.close(timeout=wait_s)


def _day(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc).date().isoformat()
