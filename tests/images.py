"""The images as the shipped files define them, read for tests/unit/test_deploy.py and
tests/integration/test_install.py: the Dockerfile's stages, and deploy/install.sh's images.

    >>> images = install_images()
    >>> images["worker"], images["report"]
    (Image(extras=('worker',), lock='requirements.lock'), Image(extras=('report',), lock='requirements-report.lock'))
    >>> stages = dockerfile_stages()
    >>> list(stages)[-1], stages["worker"].copied_from("/opt/cxpulse"), stages["report"].copied_from("/opt/cxpulse")
    ('worker', 'build-worker', 'build-report')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]


class Image(NamedTuple):
    """One image of deploy/install.sh: the extras beside the base install, and the lock pinning their closure."""

    extras: tuple[str, ...]
    lock: str


def install_images(text: str | None = None) -> dict[str, Image]:
    """deploy/install.sh's images, from its lines ``NAME) extras=a,b lock=FILE ;;``."""
    text = (ROOT / "deploy/install.sh").read_text() if text is None else text
    found = re.findall(r"^\s+(\w[-\w]*)\) extras=(\S+) lock=(\S+) ;;$", text, re.M)
    images = {name: Image(tuple(extras.split(",")), lock) for name, extras, lock in found}
    assert len(images) == len(found), f"deploy/install.sh names an image twice: {found}"
    return images


@dataclass
class Stage:
    """A stage of the Dockerfile: its name, what it is built ``FROM``, and its instructions
    (keyword, arguments), continuation lines joined."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def copied_from(self, path: str) -> str | None:
        """The stage this one copies ``path`` from (``COPY --from=STAGE path path``), if any."""
        for args in self.args("COPY"):
            match = re.fullmatch(r"--from=(\S+) (\S+) (\S+)", args)
            if match and match[2] == path:
                return match[1]
        return None


def dockerfile_stages(text: str | None = None) -> dict[str, Stage]:
    """The Dockerfile's stages by name (``FROM base AS name``), in file order: the last is the
    default target."""
    text = (ROOT / "Dockerfile").read_text() if text is None else text
    lines = re.sub(r"\\\n\s*", " ", text).splitlines()  # join continuation lines
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, args = line.strip().partition(" ")
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+) AS (\S+)", args.strip())
            assert match, f"every stage is named (FROM base AS name): {line}"
            assert match[2] not in stages, f"stage {match[2]} twice"
            current = stages[match[2]] = Stage(match[2], match[1])
        else:
            assert current is not None, f"an instruction before the first FROM: {line}"
            current.instructions.append((keyword, args.strip()))
    return stages


def stage_chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """``name``'s stage and the stages it is built FROM, the first built first."""
    chain = []
    while name in stages:
        chain.insert(0, stages[name])
        name = stages[name].base
    return chain
