"""CX initiatives and their live ROI.

A user declares an initiative (``cxpulse initiative declare``): its name, the days it
runs, the segment it treats, a control (another segment over the same days, or the
same segment over the days before), the investment and the gross margin. The
declaration is a JSON record on a compacted topic (``CXPULSE_TOPIC_INITIATIVES``,
key = name; a newer declaration replaces an older, a tombstone deletes it).

Every worker reads that topic and exports, per initiative and arm (``treated``,
``control``), the sessions, orders, revenue and sum of squared order values of
its partitions over the arm's days, from the day totals the window state keeps
(``state.py``, record kind ``y``). Sessions and orders of one segment live on
different partitions and workers, so the ratios are taken after summing over
workers: in the recording rules below (``ROI_RULES``), which the ROI article frames
as

    uplift               = KPI(treated) - KPI(control)            (RPV by default)
    incremental revenue  = uplift x treated sessions               (RPV)
    incremental profit   = gross margin x incremental revenue
    ROI                  = (incremental profit - investment) / investment

with a 95% interval from the normal approximation of the two arms' means: per-session
revenue has variance E[r^2] - RPV^2 (an order per session at most; sessions without
an order count 0), estimated from the sum of squared order values.

    >>> day = 86_400_000
    >>> Initiative.from_json(Initiative("chat", day, 2 * day, {"channel": "app"}, None, 0, day,
    ...                                 1000.0, "USD", 0.4).to_json()).control_label
    'before'
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from typing import Any, Iterator

import orjson

from streams.config import Settings
from streams.contract import LABEL_PATTERN
from streams.errors import ConfigError
from streams.mixin.intervals import Z95

log = logging.getLogger("cxpulse.initiatives")

DAY_MS = 86_400_000
KPIS = ("revenue_per_visitor", "conversion", "average_order_value")
SEGMENT_LABELS = ("storefront", "channel", "device")  # labels both sessions and orders carry
NAME = re.compile(LABEL_PATTERN)
MAX_INITIATIVES = 50  # initiative names are label values: bounded


@dataclass(frozen=True)
class Initiative:
    """One declared initiative; periods are whole UTC days, ``[start, end)`` in ms."""

    name: str
    start_ms: int
    end_ms: int | None  # None: running
    treated: dict[str, str]
    control: dict[str, str] | None  # None: the treated segment over the control period
    control_start_ms: int
    control_end_ms: int | None
    investment: float  # in major units of ``currency``
    currency: str
    margin: float  # gross margin, 0..1
    kpi: str = "revenue_per_visitor"
    description: str = ""

    def __post_init__(self) -> None:
        problems = []
        if not NAME.fullmatch(self.name):
            problems.append(f"name {self.name!r} must be a short lowercase label (a-z, 0-9, _ and -)")
        if self.kpi not in KPIS:
            problems.append(f"kpi {self.kpi!r} must be one of {', '.join(KPIS)}")
        if not 0 < self.margin <= 1:
            problems.append(f"gross margin {self.margin} must be a ratio in (0, 1], e.g. 0.4 for 40%")
        if not self.investment > 0:
            problems.append(f"investment {self.investment} must be positive")
        if not re.fullmatch(r"[A-Z]{3}", self.currency):
            problems.append(f"currency {self.currency!r} must be an ISO 4217 code such as USD")
        for what, segment in (("treated", self.treated), ("control", self.control or {})):
            for label, value in segment.items():
                if label not in SEGMENT_LABELS:
                    problems.append(f"{what} segment label {label!r} must be one of {', '.join(SEGMENT_LABELS)}")
                if not re.fullmatch(LABEL_PATTERN, value):
                    problems.append(f"{what} segment value {value!r} is not a label value")
        if not self.treated:
            problems.append("the treated segment needs at least one label=value")
        for what, start, end in (("", self.start_ms, self.end_ms),
                                 ("control ", self.control_start_ms, self.control_end_ms)):
            if start % DAY_MS or (end is not None and end % DAY_MS):
                problems.append(f"{what}period must be whole UTC days")
            if end is not None and end <= start:
                problems.append(f"{what}period must end after it starts")
        if self.control is None and self.control_end_ms is not None and self.control_end_ms > self.start_ms:
            problems.append("a before-period control must end when the initiative starts")
        if self.control is not None and self.control == self.treated:
            problems.append("the control segment must differ from the treated one")
        if problems:
            raise ConfigError(f"initiative {self.name!r}: " + "; ".join(problems))

    @property
    def treated_label(self) -> str:
        return _describe(self.treated)

    @property
    def control_label(self) -> str:
        return "before" if self.control is None else _describe(self.control)

    def arms(self) -> dict[str, tuple[dict[str, str], int, int | None]]:
        """arm -> (segment labels, first day ms, end ms or None)."""
        return {
            "treated": (self.treated, self.start_ms, self.end_ms),
            "control": (self.control if self.control is not None else self.treated,
                        self.control_start_ms, self.control_end_ms),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> "Initiative":
        fields = orjson.loads(data)
        if not isinstance(fields, dict):
            raise ConfigError("an initiative record must be a JSON object")
        try:
            return cls(**fields)
        except TypeError as error:
            raise ConfigError(f"initiative record has the wrong fields: {error}") from None


def _describe(segment: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(segment.items()))


def parse_segment(text: str) -> dict[str, str]:
    """``channel=app,device=mobile`` -> {"channel": "app", "device": "mobile"}."""
    out: dict[str, str] = {}
    for part in text.split(","):
        label, sep, value = part.strip().partition("=")
        if not sep:
            raise ConfigError(f"segment {text!r}: write label=value pairs, e.g. channel=app,device=mobile")
        out[label.strip()] = value.strip()
    return out


def day_ms(text: str) -> int:
    """``2026-01-31`` -> ms of that UTC midnight."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"date {text!r}: write YYYY-MM-DD (UTC days)") from None
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)


def matches(segment: tuple[str, ...], wanted: dict[str, str]) -> bool:
    """Does a session or order segment (storefront, channel, device[, currency]) fall in ``wanted``?"""
    values = dict(zip(SEGMENT_LABELS, segment))
    return all(values.get(label) == value for label, value in wanted.items())


# ---------------------------------------------------------------- the registry
class Registry:
    """The declared initiatives, read from the compacted topic by a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.current: dict[str, Initiative] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Registry":
        self._thread = threading.Thread(target=self._run, name="cxpulse-initiatives", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        settings = self.settings
        while not self._stop.is_set():
            try:
                consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers.split(","),
                                         enable_auto_commit=False, auto_offset_reset="earliest",
                                         **settings.kafka_security())
                partitions = consumer.partitions_for_topic(settings.topic_initiatives) or set()
                if not partitions:
                    consumer.close()
                    self._stop.wait(10)
                    continue
                consumer.assign([TopicPartition(settings.topic_initiatives, p) for p in sorted(partitions)])
                consumer.seek_to_beginning()
                found: dict[str, Initiative] = {}
                while not self._stop.is_set():
                    batch = consumer.poll(timeout_ms=1000)
                    changed = False
                    for records in batch.values():
                        for record in records:
                            changed |= self._apply(found, record.key, record.value)
                    if changed or batch:
                        self.current = dict(found)
            except Exception:  # noqa: BLE001 - the worker keeps running; we retry
                log.warning("event=initiatives_read_failed retry_in_s=10", exc_info=True)
                self._stop.wait(10)

    @staticmethod
    def _apply(found: dict[str, Initiative], key: bytes | None, value: bytes | None) -> bool:
        name = (key or b"").decode("utf-8", "replace")
        if value is None:
            if found.pop(name, None) is not None:
                log.info("event=initiative_deleted name=%s", name)
                return True
            return False
        try:
            initiative = Initiative.from_json(value)
        except (ConfigError, ValueError) as error:
            log.warning("event=initiative_invalid key=%r error=%r action=ignored", name[:64], str(error)[:300])
            return False
        if initiative.name not in found and len(found) >= MAX_INITIATIVES:
            log.warning("event=initiative_ignored name=%s reason=more_than_%d", initiative.name, MAX_INITIATIVES)
            return False
        found[initiative.name] = initiative
        log.info("event=initiative_declared name=%s treated=%s control=%s kpi=%s", initiative.name,
                 initiative.treated_label, initiative.control_label, initiative.kpi)
        return True


# ---------------------------------------------------------------- components
def components(initiatives: dict[str, Initiative], snapshots) -> Iterator[tuple[Initiative, str, dict[str, float]]]:
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


# ----------------------------------------------------------- recording rules
def _arm(metric: str, arm: str) -> str:
    return f'sum by (initiative) ({metric}{{arm="{arm}"}})'


def _S(arm: str) -> str:
    return _arm("cxpulse_initiative_sessions", arm)


def _O(arm: str) -> str:
    return _arm("cxpulse_initiative_orders", arm)


def _R(arm: str) -> str:
    return _arm("cxpulse_initiative_revenue", arm)


def _Q(arm: str) -> str:
    return _arm("cxpulse_initiative_revenue_squares", arm)


# Recorded names, ``level:metric:operation`` like every rule (streams/mixin/rules.py).
_NAMES = {
    "uplift": "uplift:diff", "uplift_ratio": "uplift:ratio",
    "incremental_revenue": "incremental_revenue:estimate", "incremental_revenue_se": "incremental_revenue:stderr",
    "incremental_profit": "incremental_profit:estimate",
    "roi": "roi:ratio", "roi_lower": "roi:ratio_lower", "roi_upper": "roi:ratio_upper",
}


def _rule(name: str) -> str:
    """``treated_rpv`` -> ``initiative:cxpulse_initiative_treated_rpv:ratio``; squared standard
    errors end in ``:squared_stderr``; the rest as in ``_NAMES``."""
    if name in _NAMES:
        return f"initiative:cxpulse_initiative_{_NAMES[name]}"
    if name.endswith("_se2"):
        return f"initiative:cxpulse_initiative_{name.removesuffix('_se2')}:squared_stderr"
    return f"initiative:cxpulse_initiative_{name}:ratio"


def _kpi_is(kpi: str) -> str:
    return f'on (initiative) group_left () max by (initiative) (cxpulse_initiative_info{{kpi="{kpi}"}})'


def _build_rules() -> list[tuple[str, str]]:
    rules: list[tuple[str, str]] = []
    for arm in ("treated", "control"):
        rules += [
            (_rule(f"{arm}_rpv"), f"{_R(arm)} / ({_S(arm)} > 0)"),
            (_rule(f"{arm}_conversion"), f"{_O(arm)} / ({_S(arm)} > 0)"),
            (_rule(f"{arm}_aov"), f"{_R(arm)} / ({_O(arm)} > 0)"),
            # squared standard errors of the three means (normal approximation)
            (_rule(f"{arm}_rpv_se2"),
             f"clamp_min({_Q(arm)} / ({_S(arm)} > 0) - {_rule(f'{arm}_rpv')} ^ 2, 0) / ({_S(arm)} > 0)"),
            (_rule(f"{arm}_conversion_se2"),
             f"clamp_min({_rule(f'{arm}_conversion')} * (1 - {_rule(f'{arm}_conversion')}), 0) / ({_S(arm)} > 0)"),
            (_rule(f"{arm}_aov_se2"),
             f"clamp_min({_Q(arm)} / ({_O(arm)} > 0) - {_rule(f'{arm}_aov')} ^ 2, 0) / ({_O(arm)} > 0)"),
        ]
    t, c = "treated", "control"
    uplift = {kpi: f"{_rule(t + '_' + short)} - {_rule(c + '_' + short)}"
              for kpi, short in (("revenue_per_visitor", "rpv"), ("conversion", "conversion"),
                                 ("average_order_value", "aov"))}
    incremental = {
        "revenue_per_visitor": (f"({uplift['revenue_per_visitor']}) * {_S(t)}",
                                f"{_S(t)} * sqrt({_rule(t + '_rpv_se2')} + {_rule(c + '_rpv_se2')})"),
        "conversion": (f"({uplift['conversion']}) * {_S(t)} * {_rule(t + '_aov')}",
                       f"{_S(t)} * {_rule(t + '_aov')} * sqrt({_rule(t + '_conversion_se2')}"
                       f" + {_rule(c + '_conversion_se2')})"),
        "average_order_value": (f"({uplift['average_order_value']}) * {_O(t)}",
                                f"{_O(t)} * sqrt({_rule(t + '_aov_se2')} + {_rule(c + '_aov_se2')})"),
    }

    def by_kpi(parts: dict[str, str]) -> str:
        return "\nor\n".join(f"(\n  ({expr})\n  * {_kpi_is(kpi)}\n)" for kpi, expr in parts.items())

    margin = "max by (initiative) (cxpulse_initiative_gross_margin_ratio)"
    investment = "max by (initiative) (cxpulse_initiative_investment)"
    rules += [
        (_rule("uplift"), by_kpi(uplift)),
        (_rule("uplift_ratio"), by_kpi({kpi: f"({expr}) / ({_rule(c + '_' + short)} > 0)" for (kpi, expr), short
                                        in zip(uplift.items(), ("rpv", "conversion", "aov"))})),
        (_rule("incremental_revenue"), by_kpi({k: v[0] for k, v in incremental.items()})),
        (_rule("incremental_revenue_se"), by_kpi({k: v[1] for k, v in incremental.items()})),
        (_rule("incremental_profit"), f"{margin} * {_rule('incremental_revenue')}"),
        (_rule("roi"), f"({_rule('incremental_profit')} - {investment}) / {investment}"),
        (_rule("roi_lower"), f"({margin} * ({_rule('incremental_revenue')} - {Z95} * {_rule('incremental_revenue_se')})"
                             f" - {investment}) / {investment}"),
        (_rule("roi_upper"), f"({margin} * ({_rule('incremental_revenue')} + {Z95} * {_rule('incremental_revenue_se')})"
                             f" - {investment}) / {investment}"),
    ]
    return rules


# (recorded name, PromQL) in dependency order: rules.py records them; a name used in a
# later expression is an earlier rule's series.
ROI_RULES: list[tuple[str, str]] = _build_rules()


def inline(expr: str) -> str:
    """An expression with every recorded initiative series replaced by its own PromQL,
    for a Prometheus that has the raw gauges but not the rules (e.g. a backfill)."""
    for name, body in reversed(ROI_RULES):
        expr = re.sub(re.escape(name) + r"(?![A-Za-z0-9_:])", "(" + body.replace("\\", "\\\\") + ")", expr)
    return expr


# Self-contained instant queries for the report: name -> PromQL over raw gauges.
ROI_QUERIES: dict[str, str] = {
    name: inline(_rule(name))
    for name in ("uplift", "uplift_ratio", "incremental_revenue", "incremental_profit", "roi", "roi_lower", "roi_upper")
}


# --------------------------------------------------------------------- CLI
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
            _publish(settings, args.name, initiative)
        else:
            found = _read_all(settings)
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


def _partitions(settings: Settings, consumer: Any) -> list[Any]:
    """The initiatives topic's partitions; a ConfigError if it does not exist (never auto-created:
    an auto-created topic would not be compacted)."""
    from kafka import TopicPartition

    topic = settings.topic_initiatives
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise ConfigError(f"topic {topic} (CXPULSE_TOPIC_INITIATIVES) does not exist on "
                          f"{settings.bootstrap_servers}: create it with `cxpulse topics` (docs/deploy.md)")
    return [TopicPartition(topic, p) for p in sorted(partitions)]


def _publish(settings: Settings, name: str, initiative: Initiative | None) -> None:
    """Write a declaration (or a tombstone for ``None``), waiting for the broker's acknowledgement."""
    from kafka import KafkaConsumer, KafkaProducer

    from streams.reach import client_options

    options = client_options(settings)
    consumer = KafkaConsumer(allow_auto_create_topics=False, **options)
    try:
        _partitions(settings, consumer)
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


def _read_all(settings: Settings, timeout_s: float = 30.0) -> dict[str, Initiative]:
    """Every declared initiative: the topic read from the start to its Fetch high-water mark
    (ListOffsets may stop short of it on some brokers; see docs/operations.md)."""
    from kafka import KafkaConsumer

    from streams.reach import client_options

    consumer = KafkaConsumer(enable_auto_commit=False, allow_auto_create_topics=False, **client_options(settings))
    found: dict[str, Initiative] = {}
    try:
        tps = _partitions(settings, consumer)
        consumer.assign(tps)
        consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        while True:
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    Registry._apply(found, record.key, record.value)
            marks = {tp: consumer.highwater(tp) for tp in tps}  # None until a fetch answered
            if all(mark is not None and consumer.position(tp) >= mark for tp, mark in marks.items()):
                return found
            if time.monotonic() > deadline:
                from streams.reach import KafkaRequestFailed

                raise KafkaRequestFailed(f"reading {settings.topic_initiatives} to its end took longer than "
                                         f"{timeout_s:.0f}s on {settings.bootstrap_servers}")
    finally:
        consumer.close()


def _day(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc).date().isoformat()

