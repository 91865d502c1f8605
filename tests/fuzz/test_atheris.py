"""The coverage-guided run of the decoder (slow: ``pytest -m slow tests/fuzz/test_atheris.py``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from streams.devtools.stack import ROOT


@pytest.mark.slow
def test_atheris_finds_no_crash_in_decode(tmp_path) -> None:
    import atheris  # noqa: F401  (a dev dependency: fail, not skip, when it is missing)

    seconds = os.environ.get("CXPULSE_FUZZ_SECONDS", "60")
    done = subprocess.run([sys.executable, "-m", "tests.fuzz.atheris_decode", "--seconds", seconds],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=int(seconds) + 120)
    runs = re.search(r"Done (\d+) runs", done.stderr)
    print(f"atheris: {runs.group(1) if runs else '?'} inputs tried in {seconds}s")
    assert done.returncode == 0, done.stderr[-3000:]
