"""TomlKeyLines finds keys' lines whatever the strings and comments before them hold.

The property: for any TOML document made of a multi-line array (of strings of
every kind, numbers, nested arrays and inline tables, with comments between
items) and a multi-line string, followed by a table and a key, every inline
table of the array and every key after it is found on its own line. Strings
and comments are drawn heavy in brackets, braces, quotes, backslashes and
characters that ``str.splitlines`` takes for line ends; tomllib checks that
each document means what it was built to mean.
"""

from __future__ import annotations

import textwrap
import tomllib
from typing import Any

from hypothesis import given, note
from hypothesis import strategies as st

from workers.dialog.toml_key_lines import TomlKeyLines

chars = st.one_of(st.sampled_from(list("[]{}\"'#\\=,. \t\n\r\x85\u2028")),
                  st.characters(exclude_categories=("Cs",)))
contents = st.text(chars, max_size=12)
STRING_STYLES = ("basic", "literal", "multi-line basic", "multi-line literal")


def _control(char: str) -> bool:
    return (ord(char) < 0x20 and char != "\t") or char == "\x7f"


def quote(style: str, content: str, multiline: bool) -> tuple[str, str]:
    """``content`` as a TOML string of ``style``: (its TOML text, the value it means)."""
    if not multiline and style.startswith("multi-line"):
        style = "basic"  # an inline table's values stay on one line
    if style in ("basic", "multi-line basic"):
        keep = "\n" if style == "multi-line basic" else ""
        body = "".join("\\" + char if char in '"\\' else
                       f"\\u{ord(char):04X}" if _control(char) and char not in keep else char
                       for char in content)
        if style == "basic":
            return f'"{body}"', content
        return f'"""{body}"""', content.removeprefix("\n")
    allowed = "\n" if style == "multi-line literal" else ""
    content = "".join(char for char in content
                      if char != "'" and (not _control(char) or char in allowed))
    if style == "literal":
        return f"'{content}'", content
    return f"'''{content}'''", content.removeprefix("\n")


def comments() -> st.SearchStrategy[str]:
    return st.text(chars, max_size=12).map(
        lambda text: "".join(char for char in text if not _control(char)))


# A node: ("int", n) | ("str", style, content) | ("array", items, gaps) | ("table", {k: node})
# where a gap (after "[" and after each item's ",") is None (a space) or a comment
# (which may be "") ending its line.
scalars = st.one_of(
    st.tuples(st.just("int"), st.integers(-1000, 1000)),
    st.tuples(st.just("str"), st.sampled_from(STRING_STYLES), contents),
)
gaps = st.one_of(st.none(), comments())


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    arrays = st.lists(children, max_size=4).flatmap(
        lambda items: st.tuples(st.just("array"), st.just(items),
                                st.lists(gaps, min_size=len(items) + 1,
                                         max_size=len(items) + 1)))
    tables = st.tuples(st.just("table"),
                       st.dictionaries(st.from_regex(r"[a-z]{1,4}", fullmatch=True), children,
                                       max_size=3))
    return st.one_of(arrays, tables)


nodes = st.recursive(scalars, containers, max_leaves=12)


def render(node: Any, multiline: bool) -> tuple[str, Any]:
    """The TOML text of ``node`` and the value it means."""
    kind = node[0]
    if kind == "int":
        return str(node[1]), node[1]
    if kind == "str":
        return quote(node[1], node[2], multiline)
    if kind == "table":
        pairs = [(key, *render(value, False)) for key, value in node[1].items()]
        text = ", ".join(f"{key} = {text}" for key, text, _ in pairs)
        return "{ " + text + " }", {key: value for key, _, value in pairs}
    _, items, item_gaps = node
    text, value = "[" + gap(item_gaps[0], multiline), []
    for item, after in zip(items, item_gaps[1:], strict=True):
        item_text, item_value = render(item, multiline)
        text += item_text + "," + gap(after, multiline)
        value.append(item_value)
    return text + "]", value


def gap(comment: str | None, multiline: bool) -> str:
    if comment is None or not multiline:
        return " "
    return f" #{comment}\n  "


@given(st.lists(nodes, max_size=6), st.lists(gaps, min_size=7, max_size=7),
       st.sampled_from(STRING_STYLES[2:]), contents, comments())
def test_inline_tables_and_later_keys_are_found_on_their_lines(
    items: list[Any], item_gaps: list[str | None], style: str, content: str, comment: str
) -> None:
    text, expected = "v = [" + gap(item_gaps[0], True), []
    item_lines: dict[int, int] = {}
    for index, (item, after) in enumerate(zip(items, item_gaps[1:], strict=False)):
        if item[0] == "table":
            item_lines[index] = text.count("\n") + 1
        item_text, item_value = render(item, True)
        text += item_text + "," + gap(after, True)
        expected.append(item_value)
    text += "]\n"
    string_text, string_value = quote(style, content, True)
    w_line = text.count("\n") + 1
    text += f"w = {string_text} #{comment}\n"
    t_line = text.count("\n") + 1
    text += "[t]\nafter = 1\n"

    assert tomllib.loads(text) == {"v": expected, "w": string_value,
                                   "t": {"after": 1}}
    note(repr(text))
    lines = TomlKeyLines(text)
    for index, line in item_lines.items():
        assert lines.line_of(("v", index, "x")) == line
    assert lines.line_of(("w",)) == w_line
    assert lines.line_of(("t",)) == t_line
    assert lines.line_of(("t", "after")) == t_line + 1


def test_brackets_and_quotes_inside_strings_do_not_count() -> None:
    lines = TomlKeyLines(textwrap.dedent('''\
        r = [
          { s = "]" },
          { s = '}', t = "\\" [" },
          { s = """ "" ] """ },  # ] {
        ]
        x = ["[", "a"]
        after = 1
        '''))
    assert [lines.line_of(("r", index)) for index in range(3)] == [2, 3, 4]
    assert lines.line_of(("x",)) == 6
    assert lines.line_of(("after",)) == 7
