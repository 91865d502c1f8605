"""Complete event-time windows into the TSDB, stamped with their event time (remote write).

The merge stage finds a window complete once every source partition has closed it
(``pipeline.merge_state``); this module writes it to a Prometheus remote-write
endpoint, one sample per series at the window's end, so Prometheus stores each window
at the time it describes, however late it was processed. Why remote write and not the
scrape (see docs/metrics.md, "Event-time windows in Prometheus"): a scrape carries one
sample per series, so a worker catching up on three minutes of backlog would show only
the last of three windows per scrape, and samples older than the TSDB's head need its
out-of-order window either way.

Every copy of a window is the same (its contents are final), so sending it again after a
crash or a partition move is harmless: Prometheus keeps the first copy of an
out-of-order sample, and an in-order duplicate with the same value is accepted.

Samples are stamped at the window's (exclusive) end; ``rules.WINDOW_RANGE`` is the range
that reads one window there.

The encoding is the remote-write 1.0 protobuf (``prometheus.WriteRequest``), written by
hand (four message types), compressed with snappy's literal-only block format, which
every snappy decoder reads.

    >>> len(encode_request([({"__name__": "x"}, [(1.0, 60_000)])])) > 10
    True
"""

from __future__ import annotations

import base64
import logging
import math
import queue
import ssl
import struct
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Iterable

from streams.catalog import (COUNTERS, HISTOGRAMS, HISTOGRAMS_BY_FIELD, WINDOW_COMPLETE, WINDOW_QUANTILES,
                             WINDOW_STOREFRONT_VISITORS, WINDOW_VISITORS, major_units)
from streams.config import Settings, format_duration
from streams.pipeline.aggregates import LogHistogram
from streams.pipeline.merge_state import WindowExport
from streams.pipeline.families import BREAKDOWN, SEGMENT_LABELS, split_breakdown

log = logging.getLogger("cxpulse.remote_write")

Series = tuple[dict[str, str], list[tuple[float, int]]]  # labels (with __name__), [(value, ts_ms)]
SAMPLES_PER_REQUEST = 5_000


# ------------------------------------------------------------------ encoding
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def encode_request(series: Iterable[Series]) -> bytes:
    """A snappy-compressed ``WriteRequest`` of the given series (labels sorted by name)."""
    body = bytearray()
    for labels, samples in series:
        one = bytearray()
        for name, value in sorted(labels.items()):
            one += _field(1, _field(1, name.encode()) + _field(2, value.encode()))
        for value, ts_ms in samples:
            one += _field(2, b"\x09" + struct.pack("<d", value) + b"\x10" + _varint(ts_ms))
        body += _field(1, bytes(one))
    return _snappy_literal(bytes(body))


def _snappy_literal(data: bytes) -> bytes:
    """Snappy's block format with literals only (valid input for every snappy decoder)."""
    out = bytearray(_varint(len(data)))
    for i in range(0, len(data), 65_536):
        chunk = data[i:i + 65_536]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        elif n < 256:
            out += bytes((60 << 2, n))
        else:
            out += bytes((61 << 2,)) + struct.pack("<H", n)
        out += chunk
    return bytes(out)


# ------------------------------------------------------------------ windows -> series
def window_series(export: WindowExport) -> list[Series]:
    """The samples of one complete window: every counter of the family per segment, the
    duration summaries (per support channel and per storefront), and the completeness mark."""
    window = format_duration(export.view_ms)
    ts = export.end_ms
    labels_of = SEGMENT_LABELS[export.family]  # type: ignore[index]
    out: list[Series] = [({"__name__": WINDOW_COMPLETE, "storefront": export.storefront, "family": export.family,
                           "window": window}, [(1.0, ts)])]
    counters = [c for c in COUNTERS if c.family == export.family]
    histograms = [h for h in HISTOGRAMS if h.family == export.family]
    # summaries: (name, label values) -> the sketches of every segment of it, merged
    merged: dict[tuple[str, tuple[tuple[str, str], ...]], LogHistogram] = {}
    for segment, cell in sorted(export.cells.items()):
        labels = dict(zip(labels_of, segment))
        for counter in counters:
            amount = cell.counts.get(counter.field, 0)
            value = major_units(amount, segment[-1]) if counter.money else float(amount)
            out.append(({"__name__": counter.window_name, **labels, "window": window}, [(value, ts)]))
        for hist in histograms:
            sketch = cell.hists.get(hist.field)
            if sketch is None or sketch.count <= 0:
                continue
            for name, names in _summary_levels(hist):
                key = (name, tuple((label, labels[label]) for label in names))
                merged.setdefault(key, LogHistogram()).merge(sketch)
    for (name, pairs), sketch in sorted(merged.items()):
        out.extend(_summary(name, {**dict(pairs), "window": window}, sketch, ts))
    if export.family == "session":
        out.extend(_visitors(export, window, ts))
    elif export.family == "ticket":
        out.extend(_categories(export, window, ts))
    return out


def _categories(export: WindowExport, window: str, ts: int) -> list[Series]:
    """The ticket breakdown by product category (docs/metrics.md, rule 17): every ticket counter per
    (storefront, product_category) that had any ticket field in the window (0 where that counter had
    none), and the duration summaries of the categories with observations."""
    counts: dict[tuple[str, str], dict[str, int]] = {}  # (storefront, category) -> field -> total
    sketches: dict[tuple[str, str, str], LogHistogram] = {}  # (field, storefront, category) -> merged
    for segment, cell in export.cells.items():
        for key, amount in cell.counts.items():
            split = split_breakdown(key)
            if split is not None:
                fields = counts.setdefault((segment[0], split[1]), {})
                fields[split[0]] = fields.get(split[0], 0) + amount
        for key, sketch in cell.hists.items():
            split = split_breakdown(key)
            if split is not None and sketch.count > 0:
                counts.setdefault((segment[0], split[1]), {})
                sketches.setdefault((split[0], segment[0], split[1]), LogHistogram()).merge(sketch)
    out: list[Series] = []
    counters = [c for c in COUNTERS if c.family == "ticket"]
    for (storefront, category), fields in sorted(counts.items()):
        labels = {"storefront": storefront, BREAKDOWN: category, "window": window}
        for counter in counters:
            out.append(({"__name__": counter.window_category_name, **labels},
                        [(float(fields.get(counter.field, 0)), ts)]))
    for (name, storefront, category), sketch in sorted(sketches.items()):
        hist = HISTOGRAMS_BY_FIELD.get(("ticket", name))
        if hist is not None:
            out.extend(_summary(hist.window_category_name,
                                {"storefront": storefront, BREAKDOWN: category, "window": window}, sketch, ts))
    return out


def _visitors(export: WindowExport, window: str, ts: int) -> list[Series]:
    """Distinct visitors of the window per segment and of the storefront (the union over segments); none
    when a partition had more than it keeps (``window_state.VISITORS_MAX``): absent, never a wrong count."""
    if any(cell.sets and "over_budget" in cell.sets for cell in export.cells.values()):
        return []
    out: list[Series] = []
    everyone: set[str] = set()
    for segment, cell in sorted(export.cells.items()):
        members = (cell.sets or {}).get("visitors", set())
        everyone |= members
        labels = dict(zip(SEGMENT_LABELS["session"], segment))
        out.append(({"__name__": WINDOW_VISITORS, **labels, "window": window}, [(float(len(members)), ts)]))
    out.append(({"__name__": WINDOW_STOREFRONT_VISITORS, "storefront": export.storefront, "window": window},
                [(float(len(everyone)), ts)]))
    return out


def _summary_levels(hist: Histogram) -> list[tuple[str, tuple[str, ...]]]:
    """The window summaries of a histogram and their labels: per support channel, per storefront,
    and per contact reason when the segment has one."""
    levels = [(hist.window_name, hist.window_labels), (hist.window_storefront_name, ("storefront",))]
    if "reason" in hist.segment_labels:
        levels.append((hist.window_reason_name, ("storefront", "reason")))
    return levels


def _summary(name: str, labels: dict[str, str], sketch: LogHistogram, ts: int) -> list[Series]:
    out: list[Series] = [({"__name__": name, **labels, "quantile": repr(q)}, [(sketch.quantile(q), ts)])
                         for q in WINDOW_QUANTILES]
    out.append(({"__name__": name + "_count", **labels}, [(float(sketch.count), ts)]))
    out.append(({"__name__": name + "_sum", **labels}, [(sketch.sum_ms / 1000.0, ts)]))
    return [item for item in out if not math.isnan(item[1][0][0])]


# ------------------------------------------------------------------ the sender
@dataclass
class ExportStats:
    """What the collector shows of the exporter (written by its thread, read by scrapes)."""

    samples: int = 0
    requests: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # reason -> requests that failed
    dropped: int = 0  # windows given up (a request the endpoint refused as invalid)
    queued: int = 0
    last_success_s: float = 0.0


class Exporter:
    """Sends complete windows in the background; reports what the endpoint acknowledged.

    ``offer(key, exports)`` queues; ``acked()`` returns [(key, family, end_ms)] the engine
    marks exported in the merge state. Retries (with backoff, up to 30 s between tries) what
    fails for a reason that can pass (the endpoint is down, 5xx, 429); a request refused as
    invalid (4xx) is dropped and counted, never retried forever.
    """

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = settings.remote_write_url
        self.stats = ExportStats()
        self._queue: queue.Queue = queue.Queue()
        self._acks: list[tuple[object, str, int]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                         "X-Prometheus-Remote-Write-Version": "0.1.0", "User-Agent": "cxpulse"}
        if settings.remote_write_username:
            token = f"{settings.remote_write_username}:{settings.remote_write_password}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        elif settings.remote_write_bearer_token:
            self._headers["Authorization"] = "Bearer " + settings.remote_write_bearer_token
        self._context = ssl.create_default_context(cafile=settings.remote_write_ca_file) \
            if settings.remote_write_ca_file else None
        self._thread: threading.Thread | None = None
        if self.url:
            self._thread = threading.Thread(target=self._run, name="cxpulse-remote-write", daemon=True)
            self._thread.start()

    def offer(self, key: object, exports: list[WindowExport]) -> None:
        if not exports:
            return
        if not self.url:
            self.stats.dropped += len(exports)
            return
        self.stats.queued += len(exports)
        self._queue.put((key, exports))

    def acked(self) -> list[tuple[object, str, int]]:
        with self._lock:
            acks, self._acks = self._acks, []
        return acks

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued was sent (or given up); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.stats.queued > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.stats.queued == 0

    def close(self) -> None:
        self._stop.set()
        self._queue.put(None)

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                return
            items = [item]
            while len(items) < 64:  # whatever else is waiting goes in the same requests
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._stop.set()
                    break
                items.append(more)
            self._send(items)

    def _send(self, items: list[tuple[object, list[WindowExport]]]) -> None:
        series: list[Series] = []
        acks: dict[tuple[object, str], int] = {}
        count = 0
        for key, exports in items:
            for export in exports:
                series.extend(window_series(export))
                ack = (key, export.family)
                acks[ack] = max(acks.get(ack, export.end_ms), export.end_ms)
                count += 1
        delay = 1.0
        while not self._stop.is_set():
            outcome = self._post(series)
            if outcome in ("ok", "invalid"):
                break
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
        else:
            return
        with self._lock:
            self._acks.extend((key, family, end) for (key, family), end in acks.items())
        self.stats.queued -= count
        if outcome == "invalid":
            self.stats.dropped += count

    def _post(self, series: list[Series]) -> str:
        """'ok', 'invalid' (4xx: do not retry) or 'retry'."""
        for start in range(0, len(series), SAMPLES_PER_REQUEST):
            body = encode_request(series[start:start + SAMPLES_PER_REQUEST])
            request = urllib.request.Request(self.url, data=body, method="POST", headers=self._headers)
            try:
                with urllib.request.urlopen(request, timeout=10, context=self._context) as response:
                    response.read()
            except urllib.error.HTTPError as exc:
                reason = f"http_{exc.code}"
                self.stats.failures[reason] = self.stats.failures.get(reason, 0) + 1
                detail = exc.read()[:200].decode(errors="replace").strip()
                log.warning("event=remote_write_failed status=%d detail=%r", exc.code, detail)
                if "too old" in detail or "out of bounds" in detail:
                    return "invalid"  # older than the TSDB's out-of-order window: retrying cannot help
                return "retry" if exc.code == 429 or exc.code >= 500 else "invalid"
            except (urllib.error.URLError, OSError) as exc:
                self.stats.failures["unreachable"] = self.stats.failures.get("unreachable", 0) + 1
                log.warning("event=remote_write_unreachable url=%s error=%r", self.url, str(exc)[:200])
                return "retry"
            self.stats.requests += 1
            self.stats.samples += sum(len(samples) for _, samples in series[start:start + SAMPLES_PER_REQUEST])
        self.stats.last_success_s = time.time()
        return "ok"

