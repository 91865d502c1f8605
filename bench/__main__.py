"""``python -m bench run [--quick]`` (see docs/benchmarks.md); ``python -m bench report FILE`` re-renders."""

import sys
from pathlib import Path


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["run"]:
        from bench.run import main as run
        return run(argv[1:])
    if argv[:1] == ["report"] and len(argv) == 2:
        import json
        from bench.report import render
        from bench.harness import ROOT
        (ROOT / "docs" / "benchmarks.md").write_text(render(json.loads(Path(argv[1]).read_text())))
        return 0
    print("usage: python -m bench run [--quick] | python -m bench report bench/results/<file>.json", file=sys.stderr)
    return 2


sys.exit(main())
