"""The README's and docs/'s code, as tests run it: a section's or a document's
fenced blocks, by language.

The README and the documents beside it in ``docs/`` are the first things a user
copies from, so their snippets are tested as written: a test takes them from
here rather than from a copy that could drift from what the page shows.
"""

from __future__ import annotations

import re

from tests.support.paths import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^```([\w+-]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def section(title: str) -> str:
    """The text of the ``## title`` section, up to the next ``## `` heading."""
    text = README.read_text(encoding="utf-8")
    heading = f"\n## {title}\n"
    start = text.find(heading)
    assert start >= 0, f"README.md has no section {title!r}"
    end = text.find("\n## ", start + len(heading))
    return text[start + len(heading): end if end >= 0 else len(text)]


def document(name: str) -> str:
    """The whole text of ``docs/<name>`` (each document is about one thing)."""
    path = DOCS / name
    assert path.is_file(), f"docs/{name} does not exist"
    return path.read_text(encoding="utf-8")


def code_blocks(text: str, language: str) -> list[str]:
    """The fenced blocks of ``text`` tagged ``language`` (```python ...```), in order."""
    return [body for tag, body in _FENCE.findall(text) if tag == language]
