"""Proof that a cxpulse row counted its workload exactly: no figure without it.

A throughput figure only counts if the workers' numbers are the analyst's. After a
cxpulse run the bench holds what the workers show against ``tests/reference.py`` (the
independent calculator the e2e tests use) computed from the same seeded events:

- **cumulative counters** on /metrics (arrival time): every counter of the catalog per
  segment, summed over partitions and workers; every duration histogram's buckets,
  count and sum; events counted, late and duplicate per family;
- **event-time windows** (what dashboards read): every complete 1-minute window the
  merge stage wrote by Prometheus remote write, every counter per segment and every
  duration summary's count, and no complete window missing up to where each merge
  partition says it has exported. The bench is the remote-write endpoint
  (``Receiver``): it keeps the request bodies and decodes them after the timed span.

``Checker.verify`` returns what it compared and, on the first difference, ``error``:
the row then fails with no rate, as a peer whose counts differ does.

    >>> from streams.runtime.remote_write import encode_request
    >>> decode_write(encode_request([({"__name__": "x", "window": "1m"}, [(2.0, 60_000)])]))
    [({'__name__': 'x', 'window': '1m'}, [(2.0, 60000)])]
"""

from __future__ import annotations

import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable

from prometheus_client.parser import text_string_to_metric_families

from streams.catalog import COUNTERS, HISTOGRAMS
from streams.config import Settings
from streams.contract import partition_for
from tests.reference import SEGMENT_LABELS, Params, Reference, major

MINUTE_MS = 60_000
Segment = tuple[tuple[str, str], ...]


# ------------------------------------------------------------ remote-write endpoint
class Receiver:
    """A remote-write endpoint on loopback: ``url(tag)`` for a run; bodies kept per tag.

    It only stores what it is sent (a 204 at once), so it costs the measured workers
    next to nothing; decoding waits until the timed span is over. Tag ``discard``
    stores nothing.
    """

    def __init__(self) -> None:
        bodies: dict[str, list[bytes]] = defaultdict(list)
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                tag = self.path.strip("/").split("/", 1)[0]
                if tag != "discard":
                    with lock:
                        bodies[tag].append(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.bodies, self.lock = bodies, lock
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="bench-remote-write", daemon=True).start()

    def url(self, tag: str = "discard") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{tag}/api/v1/write"

    def take(self, tag: str) -> list[bytes]:
        with self.lock:
            return list(self.bodies.get(tag, []))

    def forget(self, tag: str) -> None:
        with self.lock:
            self.bodies.pop(tag, None)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def snappy_decompress(data: bytes) -> bytes:
    """A snappy block (any tags, not only the literal-only blocks cxpulse writes).

        >>> snappy_decompress(bytes([6, 0x04]) + b"ab" + bytes([0x01, 0x02]))
        b'ababab'
    """
    size, shift, i = 0, 0, 0
    while True:
        byte = data[i]
        i += 1
        size |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    out = bytearray()
    while i < len(data):
        tag = data[i]
        i += 1
        kind = tag & 3
        if kind == 0:  # literal
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                length = int.from_bytes(data[i:i + extra], "little")
                i += extra
            length += 1
            out += data[i:i + length]
            i += length
            continue
        if kind == 1:
            length = ((tag >> 2) & 7) + 4
            offset = ((tag >> 5) << 8) | data[i]
            i += 1
        elif kind == 2:
            length = (tag >> 2) + 1
            offset = int.from_bytes(data[i:i + 2], "little")
            i += 2
        else:
            length = (tag >> 2) + 1
            offset = int.from_bytes(data[i:i + 4], "little")
            i += 4
        start = len(out) - offset
        for k in range(length):  # a copy may overlap its own output
            out.append(out[start + k])
    if len(out) != size:
        raise ValueError(f"snappy block says {size} bytes, decoded {len(out)}")
    return bytes(out)


def _fields(data: bytes) -> Iterable[tuple[int, Any]]:
    """(field number, value) of a protobuf message: varints as int, fixed64 as bytes, others as bytes."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 2:
            length, i = _varint(data, i)
            value, i = data[i:i + length], i + length
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"protobuf wire type {wire} not expected in a WriteRequest")
        yield number, value


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def decode_write(body: bytes) -> list[tuple[dict[str, str], list[tuple[float, int]]]]:
    """A remote-write 1.0 request (snappy-compressed ``prometheus.WriteRequest``): its series."""
    out = []
    for number, series in _fields(snappy_decompress(body)):
        if number != 1:
            continue
        labels: dict[str, str] = {}
        samples: list[tuple[float, int]] = []
        for part, value in _fields(series):
            if part == 1:
                pair = dict(_fields(value))
                labels[pair.get(1, b"").decode()] = pair.get(2, b"").decode()
            elif part == 2:
                sample = dict(_fields(value))
                ts = sample.get(2, 0)
                ts = ts - (1 << 64) if ts >= 1 << 63 else ts
                samples.append((struct.unpack("<d", sample[1])[0] if 1 in sample else 0.0, ts))
        out.append((labels, samples))
    return out


# ------------------------------------------------------------------- the expectation
@dataclass
class Expected:
    """What the reference says a workload makes, in the shapes the checks compare."""

    counters: dict[str, dict[Segment, Any]]  # counter name -> segment -> int or Decimal
    histograms: dict[str, dict[Segment, dict[str, float]]]
    per_family: dict[str, dict[str, int]]  # "events" / "late" / "duplicate" -> family -> count
    windows: dict[tuple[str, int, Segment, str], int]  # (family, window start, segment, field) -> value
    window_samples: dict[tuple[str, int, Segment, str], int]  # (..., histogram field) -> observations
    complete_until: dict[str, int] = field(default_factory=dict)  # family -> end of its last window that must close

    @classmethod
    def compute(cls, events: Iterable[dict[str, Any]], settings: Settings) -> "Expected":
        ref = Reference.compute(events, Params.of(settings))
        windows: dict[tuple[str, int, Segment, str], int] = defaultdict(int)
        for (family, _, start, segment, name), value in ref.components.items():
            windows[family, start, segment, name] += value
        samples: dict[tuple[str, int, Segment, str], int] = defaultdict(int)
        window_labels = {h.field: h.window_labels for h in HISTOGRAMS}  # the window summaries': no ticket reason
        for (family, _, start, segment, name), values in ref.samples.items():
            pairs = dict(segment)
            samples[family, start, tuple((label, pairs[label]) for label in window_labels[name]), name] += len(values)
        per_family: dict[str, dict[str, int]] = {}
        for what, table in (("events", ref.counted), ("late", ref.late), ("duplicate", ref.duplicate)):
            sums: dict[str, int] = defaultdict(int)
            for (family, _), n in table.items():
                sums[family] += n
            per_family[what] = dict(sums)
        return cls(counters={c.name: ref.counter(c.name) for c in COUNTERS},
                   histograms={h.name: ref.histogram(h.name, labels=h.labels) for h in HISTOGRAMS},
                   per_family=per_family, windows=dict(windows), window_samples=dict(samples),
                   complete_until=complete_until(ref, settings))


def complete_until(ref: Reference, settings: Settings) -> dict[str, int]:
    """Per family, the end of the last window every source partition's watermark has closed
    (watermark - grace past its end) by the end of the workload: those windows must reach the
    TSDB. Later ones may too (an idle partition's watermark moves on after a while)."""
    out = {}
    for family in SEGMENT_LABELS:
        marks = [ref.watermark_ms.get((family, p)) for p in range(settings.partitions)]
        if all(m is not None for m in marks):
            closed = min(marks) - settings.grace_ms  # type: ignore[type-var, operator]
            out[family] = closed - closed % settings.window_ms
    return out


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def _segment(family: str, labels: dict[str, str]) -> Segment:
    return tuple((name, labels[name]) for name in SEGMENT_LABELS[family])


# ----------------------------------------------------------------------- the checks
def check_metrics(texts: list[str], expected: Expected) -> tuple[int, str | None]:
    """Cumulative counters, histograms and per-family counts of the workers' /metrics
    (one text per worker), summed over partitions and workers: (values compared, first difference)."""
    counters = {c.name: c for c in COUNTERS}
    histograms = {h.name: h for h in HISTOGRAMS}
    got: dict[str, dict[Segment, float]] = defaultdict(lambda: defaultdict(float))
    hist: dict[str, dict[Segment, dict[str, float]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(float)))
    fam: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    wanted = {"cxpulse_events": "events", "cxpulse_events_late": "late", "cxpulse_events_duplicate": "duplicate"}
    for text in texts:
        for metric in text_string_to_metric_families(text):
            if metric.name in wanted:
                for s in metric.samples:
                    if s.name.endswith("_total"):
                        fam[wanted[metric.name]][s.labels["family"]] += s.value
            elif metric.name + "_total" in counters:
                spec = counters[metric.name + "_total"]
                for s in metric.samples:
                    if s.name.endswith("_total"):
                        got[spec.name][_segment(spec.family, s.labels)] += s.value
            elif metric.name in histograms:
                spec = histograms[metric.name]
                for s in metric.samples:
                    seg = tuple((name, s.labels[name]) for name in spec.labels)  # its own: no ticket reason
                    if s.name.endswith("_bucket"):
                        hist[spec.name][seg][s.labels["le"]] += s.value
                    elif s.name.endswith("_count"):
                        hist[spec.name][seg]["count"] += s.value
                    elif s.name.endswith("_sum"):
                        hist[spec.name][seg]["sum"] += s.value
    compared = 0
    for what, by_family in expected.per_family.items():
        for family in set(by_family) | set(fam[what]):
            compared += 1
            if fam[what].get(family, 0) != by_family.get(family, 0):
                return compared, (f"{what} of family {family}: /metrics says {fam[what].get(family, 0):,.0f}, "
                                  f"the reference {by_family.get(family, 0):,}")
    for name, want in expected.counters.items():
        have = got.get(name, {})
        for seg in set(want) | set(have):
            compared += 1
            a, b = have.get(seg, 0.0), float(want.get(seg, Decimal(0)))
            if not _close(a, b):
                return compared, f"{name}{dict(seg)}: /metrics says {a:g}, the reference {b:g}"
    for name, want in expected.histograms.items():
        have = hist.get(name, {})
        for seg in set(want) | set(have):
            w, h = want.get(seg, {}), have.get(seg, {})
            for key in set(w) | {k for k in h if k != "sum"}:
                if key == "sum":
                    continue
                compared += 1
                if not _close(h.get(key, 0.0), float(w.get(key, 0))):
                    return compared, (f"{name}{dict(seg)} {key}: /metrics says {h.get(key, 0.0):g}, "
                                      f"the reference {w.get(key, 0):g}")
            compared += 1
            if abs(h.get("sum", 0.0) - w.get("sum", 0.0)) > 1e-3 * max(1.0, w.get("sum", 0.0)):
                return compared, f"{name}{dict(seg)} sum: /metrics says {h.get('sum', 0.0):g}, the reference {w.get('sum', 0.0):g}"
    return compared, None


def check_windows(bodies: list[bytes], exported_until: dict[tuple[str, int], float], expected: Expected,
                  partitions: int) -> tuple[dict, str | None]:
    """Every complete 1-minute window received against the reference; none missing up to
    ``exported_until`` ((family, merge partition) -> seconds, from /metrics)."""
    counters = {c.window_name: c for c in COUNTERS}
    hists = {h.window_count_name: h for h in HISTOGRAMS}
    seen: dict[tuple[str, tuple, int], float] = {}
    windows: set[tuple[str, int, str]] = set()  # (family, start, storefront) received complete
    for body in bodies:
        for labels, samples in decode_write(body):
            if labels.get("window") != "1m":
                continue
            name = labels["__name__"]
            for value, ts in samples:
                key = (name, tuple(sorted(labels.items())), ts)
                if key in seen and seen[key] != value:
                    return {}, f"window {name}{labels} at {ts} was sent as {seen[key]:g} and as {value:g}"
                seen[key] = value
                if name == "cxpulse_window_complete":
                    windows.add((labels["family"], ts - MINUTE_MS, labels["storefront"]))
    compared = 0
    got: dict[tuple[str, int, Segment, str], float] = {}
    for (name, items, ts), value in seen.items():
        spec = counters.get(name) or hists.get(name)
        if spec is None:
            continue
        labels = dict(items)
        seg = (tuple((label, labels[label]) for label in spec.window_labels) if name in hists
               else _segment(spec.family, labels))
        got[spec.family, ts - MINUTE_MS, seg, spec.field] = value
    for (family, start, seg, name), value in got.items():
        compared += 1
        table = expected.window_samples if name in {h.field for h in HISTOGRAMS} else expected.windows
        want = table.get((family, start, seg, name), 0)
        spec = next((c for c in COUNTERS if c.family == family and c.field == name), None)
        if spec is not None and spec.money:
            want = float(major(want, dict(seg)["currency"]))
        if not _close(value, float(want)):
            return {}, f"window {family} {dict(seg)} {name} from {start}: sent {value:g}, the reference {want:g}"
    for family, start, seg, name in expected.windows:  # a window received must hold every segment
        if (family, start, seg[0][1]) in windows and (family, start, seg, name) not in got \
                and expected.windows[family, start, seg, name]:
            return {}, f"window {family} {dict(seg)} from {start}: {name} missing from a complete window"
    missing = []
    for family, start, seg, name in expected.windows:
        storefront = seg[0][1]
        until = exported_until.get((family, partition_for(storefront, partitions)), 0) * 1000
        until = max(until, expected.complete_until.get(family, 0))
        if start + MINUTE_MS <= until and (family, start, storefront) not in windows:
            missing.append((family, start, storefront))
    if missing:
        return {}, (f"{len(set(missing))} windows that must be complete never reached the remote-write endpoint, "
                    f"e.g. {sorted(set(missing))[:3]}")
    return {"window_values": compared, "windows": len(windows)}, None


class Checker:
    """Verifies the workers of one run against a workload's reference (see the module docstring)."""

    def __init__(self, expected: Expected, receiver: Receiver, settings: Settings) -> None:
        self.expected, self.receiver, self.partitions = expected, receiver, settings.partitions

    def verify(self, workers: list, tag: str, settle_s: float = 30.0) -> dict:
        """Wait until the merge stage has found complete every window the reference says must
        be, and the exporters' queues are empty; then compare. Retried a few times (a counter
        series first shows at 0 for one scrape, by design: ``new_series_hold_ms``)."""
        began = time.monotonic()
        want = self.expected.complete_until
        settled = False
        while not settled and time.monotonic() - began < settle_s:
            texts = [w.scrape_text() or "" for w in workers]
            complete = gauge(texts, "cxpulse_window_complete_until_timestamp_seconds")
            queued = sum(gauge(texts, "cxpulse_window_export_queued").values())
            settled = queued == 0 and all(complete.get((f, m), 0) * 1000 >= until
                                          for f, until in want.items() for m in range(self.partitions))
            if not settled:
                time.sleep(0.25)
        settle = {"settled_s": round(time.monotonic() - began, 2)}
        if not settled:
            settle["not_settled"] = {f"{f}/{m}": complete.get((f, m), 0) * 1000 for f in want
                                     for m in range(self.partitions)
                                     if complete.get((f, m), 0) * 1000 < want[f]} or f"{queued:.0f} queued"
            lag = gauge(texts, "cxpulse_consumer_lag_messages")
            settle["merge_lag"] = {m: lag.get(("merge", m)) for m in range(self.partitions)}
            closed = gauge(texts, "cxpulse_window_closed_until_timestamp_seconds")
            settle["source_partitions_behind"] = {f"{f}/{p}": closed.get((f, p), 0) * 1000 for f in want
                                                  for p in range(self.partitions)
                                                  if closed.get((f, p), 0) * 1000 < want[f]}
        error = None
        for _ in range(4):
            texts = [w.scrape_text() for w in workers]
            compared, error = check_metrics([t or "" for t in texts], self.expected)
            if error is None:
                break
            time.sleep(0.5)
        out: dict = {"metric_values": compared, **settle}
        if error is None:
            until = exported_until([t or "" for t in texts])
            found, error = check_windows(self.receiver.take(tag), until, self.expected, self.partitions)
            out.update(found)
        self.receiver.forget(tag)
        out["error"] = error
        return out


def gauge(texts: list[str], name: str) -> dict[tuple[str, int], float]:
    """A per (family, partition) gauge of the workers' /metrics, the largest value where two
    workers show one (a partition that just moved); ``("", 0)`` for an unlabelled one, summed."""
    out: dict[tuple[str, int], float] = {}
    for text in texts:
        for metric in text_string_to_metric_families(text):
            if metric.name == name:
                for s in metric.samples:
                    if "family" in s.labels:
                        key = (s.labels["family"], int(s.labels["partition"]))
                        out[key] = max(out.get(key, 0.0), s.value)
                    else:
                        out["", 0] = out.get(("", 0), 0.0) + s.value
    return out


def exported_until(texts: list[str]) -> dict[tuple[str, int], float]:
    """(family, merge partition) -> end of the last window the TSDB acknowledged, in seconds."""
    return gauge(texts, "cxpulse_window_exported_until_timestamp_seconds")
