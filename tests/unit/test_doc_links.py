"""Every link of README.md and docs/*.md leads somewhere in the clone: a relative
link names a file of the repository (and, with ``#anchor``, a heading of it), and
no link or path climbs out of the repository (a user's clone has no ``../shared``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCED = re.compile(r"^```.*?^```$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def links(page: Path) -> list[str]:
    """The targets of the page's Markdown links, code (fenced or inline) left out."""
    prose = _CODE_SPAN.sub("", _FENCED.sub("", page.read_text(encoding="utf-8")))
    return _LINK.findall(prose)


def anchors(page: Path) -> set[str]:
    """The ids GitHub gives the page's headings (lower case, punctuation dropped)."""
    text = _FENCED.sub("", page.read_text(encoding="utf-8"))
    headings = re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_to_a_file_of_the_repository(page: Path) -> None:
    broken = []
    for target in links(page):
        if _SCHEME.match(target):
            continue  # http(s)://, mailto: — outside by nature, not a path
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        outside = not file.is_relative_to(ROOT) or not file.exists()
        if outside or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links to nothing in the repository: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_names_a_path_outside_the_repository(page: Path) -> None:
    assert "../shared" not in page.read_text(encoding="utf-8")


def test_the_readme_links_every_document() -> None:
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md")}
    unlinked = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not unlinked, f"README.md links no way to docs/{unlinked}"


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("[a](missing.md) `[b](in-code.md)` [c](https://example.com)\n"
                    "```\n[d](fenced.md)\n```\n")
    assert links(page) == ["missing.md", "https://example.com"]
    assert anchors(ROOT / "docs" / "commands.md") >= {"callhub-tail", "commands"}
