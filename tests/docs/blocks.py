"""The code blocks of the README and docs/, as a reader sees them.

A fenced block tagged ``sh`` or ``python`` is something a reader runs, so the docs test runs
it against a real ``paygate demo``. Any other block (output, JSON, HTML, JavaScript for a
browser) is not a command. A block a reader runs that the test cannot run here (it installs
packages, starts servers on fixed ports, needs PostgreSQL or S3) is marked on the line before
its fence with ``<!-- docs-test: skip: REASON -->``; the test fails on a block with neither a
successful run nor a reason.

Placeholders the docs use the way a reader would type their own values — ``mer_…``,
``pi_…``, ``pk_test_…`` and the demo's URLs — are replaced by the running demo's; see
``tests/docs/test_docs_run.py``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Block", "RUNNABLE", "blocks_of", "documents"]

REPO = Path(__file__).resolve().parents[2]
RUNNABLE = ("sh", "python")
_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[A-Za-z0-9_+-]*)\s*$")
_SKIP = re.compile(r"^\s*<!--\s*docs-test:\s*skip:\s*(?P<reason>\S.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # the reason it is not run, from the marker before its fence

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
            REPO / "examples" / "storefront" / "README.md"]


def blocks_of(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent = len(opening["indent"])
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(r"^ *```\s*$", lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        previous = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        marker = _SKIP.match(previous)
        found.append(Block(path, i + 1, opening["lang"], "\n".join(body) + "\n",
                           marker["reason"] if marker else None))
        i = j + 1
    return found
