"""README's "What's here" stays true to the tree: every folder it names exists, and every folder of
``streams/``, every top-level module of ``streams/`` and every top-level folder of the repository
is named there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def whats_here() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("## What's here", 1)[1].split("\n## ", 1)[0]


def named() -> set[str]:
    return set(re.findall(r"`([\w./-]+)`", whats_here()))


def test_every_folder_and_module_of_streams_is_named() -> None:
    folders = {f"streams/{p.parent.name}/" for p in (ROOT / "streams").glob("*/__init__.py")}
    modules = {p.name for p in (ROOT / "streams").glob("*.py") if p.name != "__init__.py"}
    assert folders <= named(), sorted(folders - named())
    assert modules <= named(), sorted(modules - named())


def test_every_top_level_folder_is_named() -> None:
    tracked = {p.name + "/" for p in ROOT.iterdir()
               if p.is_dir() and not p.name.startswith(".") and any(p.rglob("*"))}
    tracked -= {"build/", "dist/"} | {p.name + "/" for p in ROOT.glob("*.egg-info")}
    assert tracked <= named(), sorted(tracked - named())


def test_every_folder_named_exists() -> None:
    for name in named():
        if name.startswith("streams/") and name.endswith("/"):
            assert (ROOT / name).is_dir(), name
        elif re.fullmatch(r"[a-z]+/", name) and not name.startswith(("unit", "integration", "e2e", "rules",
                                                                      "faults", "fuzz")):
            assert (ROOT / name).is_dir(), name
