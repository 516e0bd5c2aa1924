"""Where a key sits in a TOML file: the line a dialog file's validation error points at.

``tomllib`` reports lines only for syntax errors, and msgspec's validation
errors name a path (``$.states.greeting.transitions[1].to``), not a line.
The path alone would name the value, but a dialog file's errors promise
``file:line: message`` (``DialogFileError``, held to it by the dialog tests),
which editors and terminals turn into a jump to the line, and a person
fixing the file should not have to count array entries. So this scans the
text once and records the line of every table header, array-of-tables
entry, key and inline-table item of a multi-line array, by its path. A path that was not
recorded (a value deep inside an inline table) resolves to its longest
recorded prefix: the line of the key that holds it.

It is a locator, not a parser: it runs only on text ``tomllib`` has already
accepted, and it needs to understand only headers, ``key =`` lines, the items
of multi-line arrays (counted by their commas), and strings and comments, in
which no bracket or comma counts and no line is a key. One counter
(``_Values``) follows those across lines. Lines are TOML's, ended by ``\\n``
only (``str.splitlines`` also ends them at characters a string may hold, such
as U+2028).
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


class TomlKeyLines:
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
        values = _Values()
        value: Path = ()  # the key whose value is being read
        for number, line in enumerate(text.split("\n"), start=1):
            if values.inside:  # a value that began above: never a key
                for item in values.feed(line):
                    self._record((*value, item), number)
                continue
            header = _HEADER.match(line)
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
            value = (*table, *split_dotted_key(pair.group(1)))
            self._record(value, number)
            for item in values.feed(pair.group(2)):
                self._record((*value, item), number)


class _Values:
    """Reads a value a line at a time: brackets, strings, and an array's items.

    The one bracket counter: ``[``/``{`` and ``]``/``}`` count only outside
    strings and comments, and so do the commas that separate an array's
    items. A string's end is found with the backslash escapes of basic
    strings, and a multi-line string (``\"\"\"``, ``'''``) carries over to
    the next line, as an array does.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.string = ""  # the delimiter of the string being read
        self._array = False  # the value is an array (not an inline table)
        self._item = 0  # the index of the array's next item
        self._expecting = False  # the next token starts that item

    @property
    def inside(self) -> bool:
        """Whether the next line continues the value (an open array or string)."""
        return self.depth > 0 or bool(self.string)

    def feed(self, line: str) -> list[int]:
        """Read one line of the value; the indices of the inline-table items of
        the array that start on it."""
        started = []
        index, end = 0, len(line)
        while index < end:
            if self.string:
                index = self._in_string(line, index)
                continue
            char = line[index]
            index += 1
            if char in " \t\r":
                continue
            if char == "#":
                break  # a comment, to the end of the line
            if self._expecting and self.depth == 1 and char not in ",]":
                if char == "{":  # an inline table: the item an error can point into
                    started.append(self._item)
                self._expecting = False
            if char in "\"'":
                self.string = char * 3 if line.startswith(char * 3, index - 1) else char
                index += len(self.string) - 1
            elif char in "[{":
                if self.depth == 0:
                    self._array, self._item, self._expecting = char == "[", 0, char == "["
                self.depth += 1
            elif char in "]}":
                self.depth -= 1
            elif char == "," and self.depth == 1 and self._array:
                self._item += 1
                self._expecting = True
        if len(self.string) == 1:
            self.string = ""  # one-line strings end on their line (tomllib checked)
        return started

    def _in_string(self, line: str, index: int) -> int:
        """Past ``line[index]``, inside the string: past its end if it ends there."""
        delimiter = self.string
        if line[index] == "\\" and delimiter[0] == '"':
            return index + 2  # an escape (or a line-ending backslash)
        if not line.startswith(delimiter, index):
            return index + 1
        self.string = ""
        index += len(delimiter)
        if len(delimiter) == 3:  # up to two quotes more belong to the string's end
            for _ in range(2):
                if index < len(line) and line[index] == delimiter[0]:
                    index += 1
        return index


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
