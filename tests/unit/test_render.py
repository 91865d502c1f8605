"""Generated files match a fresh render, and the PromQL the docs show is valid."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from streams.catalog import KPIS
from streams.mixin.render import ROOT, kpi_promql, outputs


@pytest.mark.parametrize("path", sorted(outputs()), ids=lambda p: p.name)
def test_committed_file_equals_a_fresh_render(path) -> None:
    assert path.read_text() == outputs()[path], f"{path.name} is stale: run `cxpulse render`"


def test_every_kpi_expression_in_the_docs_parses(tmp_path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by ./dev setup (Debian package prometheus)"
    rules = [{"record": f"doc:{kpi.key}:check", "expr": kpi_promql(kpi)} for kpi in KPIS]
    path = tmp_path / "doc.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "docs", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_promql_block_of_the_metrics_doc_parses(tmp_path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by ./dev setup (Debian package prometheus)"
    text = (ROOT / "docs" / "metrics.md").read_text()
    blocks = re.findall(r"```promql\n(.*?)```", text, re.S)
    exprs = [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(blocks) >= 2 and any("cxpulse_window_nps_surveys_sent" in e for e in exprs)
    rules = [{"record": f"doc:block_{i}:check", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "blocks.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "docs", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
