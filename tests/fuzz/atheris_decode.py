"""Coverage-guided fuzzing of ``decode_message`` with atheris (libFuzzer), for N seconds.

    .venv/bin/pip install atheris          # not a CI dependency
    .venv/bin/python -m tests.fuzz.atheris_decode --seconds 60

Each input's first byte picks the topic family; the rest is the message value. A
crash is any exception out of ``decode_message``, or a rejection whose reason is not
in ``streams.errors.REASONS``; libFuzzer then writes the input to ``crash-<sha1>``
in the current directory and exits non-zero; it prints `Done <N> runs` (the inputs tried). ``tests/fuzz/test_atheris.py`` (slow)
runs this for a short while.
"""

from __future__ import annotations

import argparse
import sys
import time

import atheris

with atheris.instrument_imports():
    import orjson  # noqa: F401  (C extension: not instrumented, but imported under the hook)
    from streams import decode as _decode

from streams.contract import FAMILIES
from streams.errors import REASONS

NOT_AFTER_MS = int(time.time() * 1000) + 300_000


def one_input(data: bytes) -> None:
    if not data:
        return
    family = FAMILIES[data[0] % len(FAMILIES)]
    events, rejections = _decode.decode_message(data[1:], family, not_after_ms=NOT_AFTER_MS,
                                                max_bytes=65_536, max_events=100)
    for rejection in rejections:
        if rejection.reason not in REASONS:
            raise AssertionError(f"unknown reason {rejection.reason!r}")


def _seed_corpus(directory):
    """Every example of schemas/examples (valid and invalid), prefixed with its family byte, as seeds:
    orjson is not instrumented, so without valid JSON to mutate the fuzzer rarely gets past parsing."""
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "schemas" / "examples"
    for n, path in enumerate(sorted(examples.rglob("*.json"))):
        family = path.relative_to(examples).parts[0]
        prefix = bytes([FAMILIES.index(family)]) if family in FAMILIES else b"\x00"
        (directory / f"seed-{n}").write_bytes(prefix + path.read_bytes())
        (directory / f"batch-{n}").write_bytes(prefix + b"[" + path.read_bytes() + b"]")
    return str(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("libfuzzer", nargs="*", help="extra libFuzzer options, e.g. corpus directories")
    args = parser.parse_args()
    import tempfile
    from pathlib import Path

    corpus = args.libfuzzer or [_seed_corpus(Path(tempfile.mkdtemp(prefix="cxpulse-atheris-")))]
    atheris.Setup([sys.argv[0], f"-max_total_time={args.seconds}", "-max_len=4096", *corpus], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
