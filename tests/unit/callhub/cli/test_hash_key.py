"""``callhub hash-key`` prints an entry the hub reads back exactly, whatever the name.

The name and the dialogs are escaped for TOML (a crafted name cannot add a line
to the entry), dialogs are checked as the hub checks them when it reads the file,
and an empty ``--dialogs`` is refused rather than printing an unscoped key.
"""

from __future__ import annotations

import contextlib
import io
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callhub.cli.main import main
from hub.api.auth import ApiKeys, hash_key


def hash_key_command(*argv: str) -> tuple[int, str, str]:
    """``callhub hash-key argv`` in-process: status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(["hash-key", *argv])
        except SystemExit as end:
            status = end.code if isinstance(end.code, int) else 1
    return status, out.getvalue(), err.getvalue()


def _printable(name: str) -> bool:
    return bool(name.strip()) and not any(
        ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) < 0xE000 for c in name)


HOSTILE_NAMES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(['ops"\ndialogs = ["billing"]\n#', 'a\\', '\\u0041', '"""', "'''",
                     "x\" ]\nwebhooks = true", "emoji \U0001F600 \u2028 \ufeff", "\x7f",
                     "a\\\"b", "\\", '"', "[[keys]]", "  padded  "]),
    st.lists(st.sampled_from(['"', "\\", "\n", "]", "[", "=", "#", "\U0001F600", "a", " ",
                              "\t", "\x00", "\x7f", "\x85"]), max_size=12).map("".join))


@given(HOSTILE_NAMES)
def test_any_name_round_trips_through_tomllib_or_is_refused_with_a_message(name: str) -> None:
    status, out, err = hash_key_command("s3cret", "--name", name, "--dialogs", "helpdesk")
    if not _printable(name):
        assert (status, out) == (2, ""), out
        assert err.startswith("callhub hash-key: --name ")
        return
    assert status == 0, err
    assert tomllib.loads(out) == {"keys": [{"name": name, "sha256": hash_key("s3cret"),
                                            "dialogs": ["helpdesk"]}]}


def test_a_crafted_name_cannot_widen_the_key(tmp_path: Path) -> None:
    """The issue's probe: a name that, unescaped, closed the string and added lines."""
    name = 'x"\ndialogs = ["billing"]\nwebhooks = true\n#'
    status, out, err = hash_key_command("s3cret", "--name", name.replace("\n", " "),
                                        "--dialogs", "helpdesk")
    assert status == 0, err
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text(out)
    [entry] = tomllib.loads(out)["keys"]
    assert entry["dialogs"] == ["helpdesk"] and "webhooks" not in entry
    assert ApiKeys.load(None, str(keys_file)).enabled  # the hub reads it as printed


@pytest.mark.parametrize("dialogs", ["", " ", ",", " , ,"])
def test_dialogs_that_name_no_dialog_are_refused(dialogs: str) -> None:
    status, out, err = hash_key_command("s3cret", "--dialogs", dialogs)
    assert (status, out) == (2, "")
    assert "--dialogs names no dialog" in err and "leave --dialogs out" in err


@pytest.mark.parametrize("dialog", ["help desk", "-helpdesk", "a" * 200, "bill\"ing", "ünï",
                                    "help\ndesk"])
def test_a_dialog_the_hub_would_refuse_is_refused_naming_it(dialog: str) -> None:
    status, out, err = hash_key_command("s3cret", "--dialogs", f"helpdesk,{dialog}")
    assert (status, out) == (2, "")
    assert err.startswith("callhub hash-key: --dialogs: dialog_name ")
    assert repr(dialog) in err


def test_dialogs_are_trimmed_and_given_once() -> None:
    status, out, err = hash_key_command("s3cret", "--dialogs", " helpdesk, billing ,helpdesk")
    assert status == 0, err
    assert tomllib.loads(out)["keys"][0]["dialogs"] == ["helpdesk", "billing"]


def test_without_dialogs_the_key_sees_every_dialog() -> None:
    status, out, _ = hash_key_command("s3cret", "--name", "ops")
    assert status == 0
    assert "dialogs" not in tomllib.loads(out)["keys"][0]
