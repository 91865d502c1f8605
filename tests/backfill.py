"""A Prometheus holding weeks of history: what a scrape of cxpulse workers would have recorded.

For tests that need weeks of data in minutes (``cxpulse report``): simulated events are tallied by
the independent reference calculator (``tests/reference.py``: per source partition, base window
and segment), turned into the cumulative counters and histograms a scrape every ``step`` of event
time would have read from the workers (histograms by their own labels: no ticket reason), written
as OpenMetrics text with timestamps, made into TSDB blocks by ``promtool tsdb create-blocks-from
openmetrics`` and served by a real ``prometheus``.
Nothing here imports the worker's state or collector: they are the code under test elsewhere.

    documents = openmetrics(ref, start_ms, end_ms, step_ms=300_000, instance_of=lambda fam, p, t: "w0:9400")
    info = Gauge("cxpulse_initiative_info", {"initiative": "live-chat", "instance": "w0:9400"}, {start_ms: 1.0})
    documents.append(gauges([info], start_ms, end_ms, step_ms=3_600_000))
    prometheus = BackfilledPrometheus.build(documents, workdir)   # .url, .stop()

Gauges (the customer stage's cohorts, the initiatives' components) are not tallied from events here:
a test states what the workers exported and when it changed, as step functions of scrape time.
"""

from __future__ import annotations

import bisect
import shutil
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from streams.catalog import COUNTERS, CURRENCY_EXPONENT, HISTOGRAMS
from streams.devtools.stack import http_get
from tests.helpers import free_port
from tests.reference import BUCKETS_S, MONEY_FIELDS, Reference

InstanceOf = Callable[[str, int, int], str]  # (family, partition, scrape ms) -> instance label


def _labels(pairs: list[tuple[str, str]]) -> str:
    return ",".join(f'{name}="{value}"' for name, value in pairs)


def _money(minor: int, currency: str) -> str:
    """Exact major units as text: 123456 EUR cents -> '1234.56' (no float on the way)."""
    digits = CURRENCY_EXPONENT.get(currency, 2)
    if digits == 0:
        return str(minor)
    sign, minor = ("-" if minor < 0 else ""), abs(minor)
    return f"{sign}{minor // 10 ** digits}.{minor % 10 ** digits:0{digits}d}"


def openmetrics(ref: Reference, start_ms: int, end_ms: int, step_ms: int, instance_of: InstanceOf,
                job: str = "cxpulse") -> list[Iterator[str]]:
    """OpenMetrics text (with timestamps, seconds) of every catalog counter and histogram, scraped at
    ``start_ms, start_ms + step_ms, ... <= end_ms``: the value at a scrape holds the base windows that
    ended by then. A (partition, segment) series appears at the first scrape after its first event and
    carries every counter of its family from then on (0 for what it never saw), as the workers export.

    Two documents (the counters, the histograms), each ending in ``# EOF``: promtool can make blocks
    of the first while the second is written."""
    window_ms = ref.params.window_ms
    scrapes = list(range(start_ms, end_ms + 1, step_ms))

    def index(window_start: int) -> int:  # first scrape that sees the window
        return max(0, bisect.bisect_left(scrapes, window_start + window_ms))

    # (family, partition, segment) -> field -> per-scrape increments
    counts: dict[tuple[str, int, tuple], dict[str, list[int]]] = defaultdict(dict)
    first: dict[tuple[str, int, tuple], int] = {}
    for (family, partition, window, seg, name), value in ref.components.items():
        i = index(window)
        if i >= len(scrapes):
            continue
        key = (family, partition, seg)
        counts[key].setdefault(name, [0] * len(scrapes))[i] += value
        first[key] = min(first.get(key, i), i)
    samples: dict[tuple[int, tuple], dict[str, list[list[float]]]] = defaultdict(dict)
    for (family, partition, window, seg, name), values in ref.samples.items():
        i = index(window)
        if i >= len(scrapes):
            continue
        samples[partition, seg].setdefault(name, [[] for _ in scrapes])[i].extend(values)
        first[family, partition, seg] = min(first.get((family, partition, seg), i), i)

    stamps = [f" {t // 1000}\n" for t in scrapes]

    def prefixes(family: str, partition: int, seg: tuple, name: str, extra: tuple = ()) -> Callable[[int], str]:
        """The series' text before the value at scrape i (the instance may change once, on a move)."""
        cache: dict[str, str] = {}

        def at(i: int) -> str:
            instance = instance_of(family, partition, scrapes[i])
            found = cache.get(instance)
            if found is None:
                pairs = [*seg, ("partition", str(partition)), ("job", job), ("instance", instance), *extra]
                found = cache[instance] = f"{name}{{{_labels(pairs)}}} "
            return found

        return at

    def counters() -> Iterator[str]:
        for counter in COUNTERS:
            yield f"# TYPE {counter.name.removesuffix('_total')} counter\n"
            money = counter.field in MONEY_FIELDS
            for (family, partition, seg), start in sorted(first.items()):
                if family != counter.family:
                    continue
                increments = counts.get((family, partition, seg), {}).get(counter.field) or [0] * len(scrapes)
                currency = dict(seg).get("currency", "XXX")
                prefix = prefixes(family, partition, seg, counter.name)
                total, lines = 0, []
                for i in range(start, len(scrapes)):
                    total += increments[i]
                    lines.append(prefix(i) + (_money(total, currency) if money else str(total)) + stamps[i])
                yield "".join(lines)
        yield "# EOF\n"

    def histograms() -> Iterator[str]:
        les = [*map(str, map(float, BUCKETS_S)), "+Inf"]
        for histogram in HISTOGRAMS:
            yield f"# TYPE {histogram.name} histogram\n"
            # a series per partition and values of the histogram's own labels (no ticket reason): the
            # observations of every segment that shares them, from the first scrape that saw one of those
            starts: dict[tuple[int, tuple], int] = {}
            merged: dict[tuple[int, tuple], list[list[float]]] = {}
            for (family, partition, seg), start in first.items():
                if family != histogram.family:
                    continue
                key = (partition, tuple(pair for pair in seg if pair[0] in histogram.labels))
                starts[key] = min(starts.get(key, start), start)
                into = merged.setdefault(key, [[] for _ in scrapes])
                for i, values in enumerate(samples.get((partition, seg), {}).get(histogram.field) or ()):
                    into[i].extend(values)
            for (partition, seg), start in sorted(starts.items()):
                family = histogram.family
                per_scrape = merged[partition, seg]
                name = histogram.name
                bucket_prefixes = [prefixes(family, partition, seg, name + "_bucket", (("le", le),)) for le in les]
                count_prefix = prefixes(family, partition, seg, name + "_count")
                sum_prefix = prefixes(family, partition, seg, name + "_sum")
                buckets = [0] * len(les)
                total, lines = 0.0, []
                for i in range(start, len(scrapes)):
                    for value in per_scrape[i]:
                        buckets[bisect.bisect_left(BUCKETS_S, value)] += 1
                        total += value
                    running, stamp = 0, stamps[i]
                    for prefix, count in zip(bucket_prefixes, buckets):
                        running += count
                        lines.append(prefix(i) + str(running) + stamp)
                    lines.append(count_prefix(i) + str(running) + stamp)
                    lines.append(sum_prefix(i) + repr(total) + stamp)
                yield "".join(lines)
        yield "# EOF\n"

    return [counters(), histograms()]


def window_series(ref: Reference, start_ms: int, end_ms: int) -> Iterator[str]:
    """OpenMetrics text of the 1-minute event-time window series the weekly report reads, as the merge stage
    remote-writes them (no job or instance label, one sample per window stamped at its end, for windows that
    ended in [start, end]): orders placed per order segment, and tickets created per storefront and product
    category (rule 17: a category's series exists in a window where any of its tickets' fields counted)."""
    window_ms = ref.params.window_ms
    series: dict[str, dict[tuple, dict[int, int]]] = {"cxpulse_window_orders_placed": defaultdict(dict),
                                                      "cxpulse_window_category_tickets_created": defaultdict(dict)}
    for (family, _, window, seg, name), value in ref.components.items():
        if family == "order" and name == "orders_placed" and start_ms <= window + window_ms <= end_ms:
            found = series["cxpulse_window_orders_placed"][(*seg, ("window", "1m"))]
            found[window] = found.get(window, 0) + value
    counted = [*ref.category_counts.items(), *((key, 0) for key in ref.category_samples)]
    for (_, window, storefront, category, name), value in counted:
        if start_ms <= window + window_ms <= end_ms:
            pairs = (("product_category", category), ("storefront", storefront), ("window", "1m"))
            found = series["cxpulse_window_category_tickets_created"][pairs]
            found[window] = found.get(window, 0) + (value if name == "tickets_created" else 0)
    for name, by_labels in series.items():
        yield f"# TYPE {name} gauge\n"
        for pairs, values in sorted(by_labels.items()):
            prefix = f"{name}{{{_labels(list(pairs))}}} "
            yield "".join(f"{prefix}{value} {(window + window_ms) // 1000}\n"
                          for window, value in sorted(values.items()))
    yield "# EOF\n"


@dataclass(frozen=True)
class Gauge:
    """One exported gauge series: ``steps`` maps a time (ms) to the value exported from then on
    (None: not exported from then on); absent before its first step."""

    name: str
    labels: dict[str, str]  # with the worker's instance; the job is added
    steps: dict[int, float | None]

    def at(self, ts_ms: int) -> float | None:
        since = [t for t in self.steps if t <= ts_ms]
        return self.steps[max(since)] if since else None


def gauges(series: list[Gauge], start_ms: int, end_ms: int, step_ms: int, job: str = "cxpulse") -> Iterator[str]:
    """OpenMetrics text of gauges scraped at ``start_ms, start_ms + step_ms, ... <= end_ms``, one
    family after another, ending in ``# EOF``."""
    scrapes = range(start_ms, end_ms + 1, step_ms)
    by_name: dict[str, list[Gauge]] = defaultdict(list)
    for gauge in series:
        by_name[gauge.name].append(gauge)
    for name, members in sorted(by_name.items()):
        yield f"# TYPE {name} gauge\n"
        for gauge in members:
            prefix = f"{name}{{{_labels([*sorted(gauge.labels.items()), ('job', job)])}}} "
            yield "".join(f"{prefix}{value!r} {t // 1000}\n" for t in scrapes
                          if (value := gauge.at(t)) is not None)
    yield "# EOF\n"


@dataclass
class BackfilledPrometheus:
    """A real Prometheus serving TSDB blocks made from OpenMetrics documents (it scrapes nothing)."""

    workdir: Path
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def build(cls, documents: list[Iterator[str]], workdir: Path) -> "BackfilledPrometheus":
        """Blocks from each OpenMetrics document (promtool on one while the next is written), then
        Prometheus on them all: blocks of disjoint series may overlap in time."""
        promtool, prometheus = shutil.which("promtool"), shutil.which("prometheus")
        if not promtool or not prometheus:
            raise RuntimeError("prometheus and promtool are not installed: run ./dev setup "
                               "(Debian: apt-get install prometheus)")
        data = workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        running: list[tuple[subprocess.Popen, Path, Path]] = []
        for number, document in enumerate(documents):
            text, blocks = workdir / f"scrapes-{number}.om", workdir / f"blocks-{number}"
            with open(text, "w") as out:
                out.writelines(document)
            # One block per ~2 weeks: with the default 2h blocks promtool reads the file once per block (minutes).
            with open(workdir / f"promtool-{number}.log", "wb") as log:
                running.append((subprocess.Popen(
                    [promtool, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=400h", "--quiet",
                     str(text), str(blocks)], stdout=log, stderr=subprocess.STDOUT), text, blocks))
        for number, (process, text, blocks) in enumerate(running):
            if process.wait(timeout=180):
                log = (workdir / f"promtool-{number}.log").read_text(errors="replace")
                raise RuntimeError(f"promtool failed on {text}: {log[-2000:]}")
            text.unlink()  # hundreds of MB of text; the blocks are a few MB
            for block in blocks.iterdir():
                block.rename(data / block.name)
        config = workdir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
        port = free_port()
        log = open(workdir / "prometheus.log", "ab")
        process = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={data}",
             "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT)
        started = cls(workdir, port, process)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if http_get(f"{started.url}/-/ready", 1.0)[0] == 200:
                    return started
            except OSError:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited; see {workdir / 'prometheus.log'}")
            time.sleep(0.2)
        started.stop()
        raise TimeoutError(f"prometheus not ready after 30 s; see {workdir / 'prometheus.log'}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
