"""Reading the declared initiatives back from their compacted topic (kafka-python).

The runtime side of the initiatives feature: each worker keeps a ``Registry``, a
background thread that reads ``CXPULSE_TOPIC_INITIATIVES`` from the start and
follows it, so the collector always sees the latest declarations (``model.py``);
``components.py`` turns them into gauges at scrape time. ``read_all`` reads the
topic once to its end, for ``cxpulse initiative list``. kafka-python is imported
only when a thread or a read starts, never at import.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from streams.config import Settings
from streams.errors import ConfigError
from streams.initiatives.model import MAX_INITIATIVES, Initiative

log = logging.getLogger("cxpulse.initiatives")


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
                            changed |= apply_record(found, record.key, record.value)
                    if changed or batch:
                        self.current = dict(found)
            except Exception:  # noqa: BLE001 - the worker keeps running; we retry
                log.warning("event=initiatives_read_failed retry_in_s=10", exc_info=True)
                self._stop.wait(10)


def apply_record(found: dict[str, Initiative], key: bytes | None, value: bytes | None) -> bool:
    """Fold one record of the compacted topic into ``found`` (name -> initiative): a declaration
    replaces the name's, a tombstone (``value`` None) deletes it; an invalid record, or a new name past
    MAX_INITIATIVES, is logged and ignored. True when ``found`` changed.

        >>> found = {}; apply_record(found, b"chat", None)
        False
    """
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


def partitions(settings: Settings, consumer: Any) -> list[Any]:
    """The initiatives topic's partitions; a ConfigError if it does not exist (never auto-created:
    an auto-created topic would not be compacted)."""
    from kafka import TopicPartition

    topic = settings.topic_initiatives
    numbers = consumer.partitions_for_topic(topic)
    if not numbers:
        raise ConfigError(f"topic {topic} (CXPULSE_TOPIC_INITIATIVES) does not exist on "
                          f"{settings.bootstrap_servers}: create it with `cxpulse topics` (docs/deploy.md)")
    return [TopicPartition(topic, p) for p in sorted(numbers)]


def read_all(settings: Settings, timeout_s: float = 30.0) -> dict[str, Initiative]:
    """Every declared initiative: the topic read from the start to its Fetch high-water mark
    (ListOffsets may stop short of it on some brokers; see docs/operations.md)."""
    from kafka import KafkaConsumer

    from streams.reach import client_options

    consumer = KafkaConsumer(enable_auto_commit=False, allow_auto_create_topics=False, **client_options(settings))
    found: dict[str, Initiative] = {}
    try:
        tps = partitions(settings, consumer)
        consumer.assign(tps)
        consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        while True:
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    apply_record(found, record.key, record.value)
            marks = {tp: consumer.highwater(tp) for tp in tps}  # None until a fetch answered
            if all(mark is not None and consumer.position(tp) >= mark for tp, mark in marks.items()):
                return found
            if time.monotonic() > deadline:
                from streams.reach import KafkaRequestFailed

                raise KafkaRequestFailed(f"reading {settings.topic_initiatives} to its end took longer than "
                                         f"{timeout_s:.0f}s on {settings.bootstrap_servers}")
    finally:
        consumer.close()
