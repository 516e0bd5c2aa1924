"""Where a value sits in a TOML file: the line a validation error points at.

``tomllib`` reports lines only for syntax errors, and msgspec's validation
errors name a path (``$.states.greeting.transitions[1].to``), not a line. A
person fixing a dialog file wants the line, so this scans the text once and
records the line of every table header, array-of-tables entry and key, keyed
by its path. A path that was not recorded (a value deep inside an inline
table) resolves to its longest recorded prefix: the line of the key that holds
it.

It is a locator, not a parser: it runs only on text ``tomllib`` has already
accepted, and it needs to understand only headers, ``key =`` lines, the items
of multi-line arrays of inline tables, and where multi-line strings (whose
lines are never keys) begin and end.
"""

from __future__ import annotations

import re
from collections import Counter

PathPart = str | int
Path = tuple[PathPart, ...]

_BARE_KEY = r"[A-Za-z0-9_-]+"
_QUOTED_KEY = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_KEY = rf"(?:{_BARE_KEY}|{_QUOTED_KEY})"
_DOTTED_KEY = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED_KEY})\s*\]\]?")
_KEY_VALUE = re.compile(rf"^\s*({_DOTTED_KEY})\s*=\s*(.*)$")
_KEY_PART = re.compile(_KEY)
_MSGSPEC_PATH = re.compile(r"`\$([^`]*)`")
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\['((?:[^'\\]|\\.)*)'\]")


def split_dotted_key(text: str) -> tuple[str, ...]:
    """``states."my state".prompt`` -> ``("states", "my state", "prompt")``."""
    parts = []
    for match in _KEY_PART.finditer(text):
        part = match.group(0)
        if part[0] in "\"'":
            part = part[1:-1]
        parts.append(part)
    return tuple(parts)


class TomlLines:
    """The line (1-based) of each table, array entry and key of a TOML text."""

    def __init__(self, text: str) -> None:
        self._lines: dict[Path, int] = {}
        self._scan(text)

    def line_of(self, path: Path) -> int:
        """The line of ``path``, or of its longest recorded prefix (1 if none)."""
        for end in range(len(path), 0, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return 1

    def _record(self, path: Path, line: int) -> None:
        self._lines.setdefault(path, line)

    def _scan(self, text: str) -> None:
        table: Path = ()
        array_counts: Counter[Path] = Counter()
        open_array: Path | None = None  # a multi-line array value being read
        open_items = 0
        depth = 0
        in_string = ""  # the delimiter of a multi-line string being read
        for number, raw in enumerate(text.splitlines(), start=1):
            if in_string:  # text inside a multi-line string is never a key
                if raw.count(in_string) % 2 == 1:
                    in_string = ""
                continue
            line = _strip_comment(raw)
            for delimiter in ('"""', "'''"):
                if line.count(delimiter) % 2 == 1:
                    in_string = delimiter
            if open_array is not None:
                for char in line:
                    if char in "[{":
                        if depth == 1 and char == "{":
                            self._record((*open_array, open_items), number)
                            open_items += 1
                        depth += 1
                    elif char in "]}":
                        depth -= 1
                if depth <= 0:
                    open_array = None
                continue
            header = _HEADER.match(line)
            path: Path
            if header:
                path = split_dotted_key(header.group(2))
                if header.group(1) == "[[":
                    index = array_counts[path]
                    array_counts[path] += 1
                    table = (*path, index)
                    self._record(path, number)
                else:
                    table = path
                self._record(table, number)
                continue
            pair = _KEY_VALUE.match(line)
            if not pair:
                continue
            path = (*table, *split_dotted_key(pair.group(1)))
            self._record(path, number)
            value = pair.group(2)
            if value.startswith("["):
                depth = _bracket_depth(value)
                if depth > 0:
                    open_array, open_items = path, _inline_items(value)


def _bracket_depth(value: str) -> int:
    depth = 0
    for char in value:
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
    return depth


def _inline_items(value: str) -> int:
    """How many ``{`` items of an array start on its first line."""
    depth = 0
    items = 0
    for char in value:
        if char in "[{":
            if depth == 1 and char == "{":
                items += 1
            depth += 1
        elif char in "]}":
            depth -= 1
    return items


def _strip_comment(line: str) -> str:
    """The line without a trailing ``#`` comment (``#`` inside strings is kept)."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            return line[:index]
    return line


def msgspec_error_path(message: str) -> Path:
    """The path a msgspec validation message names (``$.a.b[2]`` -> ``("a", "b", 2)``)."""
    match = _MSGSPEC_PATH.search(message)
    if not match:
        return ()
    parts: list[PathPart] = []
    for part in _PATH_PART.finditer(match.group(1).split("[...]", 1)[0]):
        name, index, quoted = part.groups()
        if index is not None:
            parts.append(int(index))
        else:
            parts.append(name if name is not None else quoted)
    return tuple(parts)


def describe_path(path: Path) -> str:
    """``("states", "greeting", "transitions", 1)`` -> ``states.greeting.transitions[1]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
