"""Every relative link and image in the README and docs/ points at something that exists
(issue 16: docs/performance.md's diary moved to docs/perf/history.md, one folder down, so
its image paths and the links into it changed).

A link to a Markdown file's ``#anchor`` must name one of that file's headings, slugged the
way GitHub renders them. External links (``https:``, ``mailto:``) are not fetched.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.blocks import REPO, documents

_FENCE = re.compile(r"^ *```")
_CODE_SPAN = re.compile(r"`[^`]*`")
# [text](target) and ![alt](target); the target ends at whitespace (a "title") or ")".
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?(?P<target>[^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<text>.+?)\s*#*\s*$")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def _documents() -> list[Path]:
    """The docs test's documents, and the Markdown in docs/'s subfolders (docs/perf/)."""
    return sorted({*documents(), *(REPO / "docs").rglob("*.md")})


def _prose(path: Path) -> list[tuple[int, str]]:
    """The lines outside fenced blocks, with their 1-based numbers."""
    lines: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: rendered text, lower case, punctuation dropped,
    spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _prose(path):
        heading = _HEADING.match(line)
        if heading is None:
            continue
        slug = _slug(heading["text"])
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")  # GitHub numbers repeats
    return found


def broken_links(path: Path, root: Path = REPO) -> list[str]:
    """Each broken link as ``file:line: target (why)``, the file relative to ``root``."""
    broken: list[str] = []
    for number, line in _prose(path):
        for link in _LINK.finditer(_CODE_SPAN.sub("", line)):
            target = link["target"]
            if _EXTERNAL.match(target):
                continue
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(root)}:{number}: {target}"
            if not resolved.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{where} (no heading #{anchor})")
    return broken


@pytest.mark.parametrize("document", _documents(), ids=lambda d: str(d.relative_to(REPO)))
def test_every_relative_link_resolves(document: Path) -> None:
    assert broken_links(document) == []


def test_the_checker_sees_a_broken_image_and_anchor(tmp_path: Path) -> None:
    """The check itself can fail: a wrong folder level and a missing heading are reported."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "chart.png").write_bytes(b"")
    (tmp_path / "perf").mkdir()
    page = tmp_path / "perf" / "page.md"
    page.write_text("# The `first` pass, kept\n\n## Next steps, ranked\n\n## Next steps, ranked\n\n"
                    "![ok](../images/chart.png) ![moved](images/chart.png)\n"
                    "[ok](#the-first-pass-kept) [ok](#next-steps-ranked-1) [gone](#next-steps)\n"
                    "```\n[in a block](nowhere.md)\n```\n`[in a span](nowhere.md)`\n",
                    encoding="utf-8")
    broken = [line.split(": ", 1)[1] for line in broken_links(page, root=tmp_path)]
    assert broken == ["images/chart.png (no such file)", "#next-steps (no heading #next-steps)"]

