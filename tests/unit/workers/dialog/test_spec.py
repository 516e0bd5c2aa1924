"""Dialog files: the bundled ones load, and every kind of mistake names its file and line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workers.dialog.spec import (
    CallHook,
    DialogFileError,
    OnDtmf,
    OnIntent,
    load_dialog,
    parse_dialog,
)
from workers.dialog.toml_key_lines import TomlKeyLines, msgspec_error_path
from workers.simulator.bundled_dialogs import bundled_dialogs

HEAD = 'name = "t"\ninitial_state = "a"\n'


def error_of(text: str) -> DialogFileError:
    with pytest.raises(DialogFileError) as caught:
        parse_dialog(textwrap.dedent(text), "bad.toml")
    return caught.value


def test_the_bundled_dialogs_load_and_follow_the_spec_example() -> None:
    dialogs = {d.name: d for d in bundled_dialogs()}
    assert set(dialogs) == {"helpdesk", "billing_menu"}
    helpdesk = dialogs["helpdesk"]
    assert helpdesk.initial_state == "greeting"
    assert {"greeting", "collect_info", "goodbye"} <= set(helpdesk.states)
    assert helpdesk.intents["password_reset"].matches("I need a password reset")
    assert not helpdesk.intents["no"].matches("I know my password")  # whole words only
    assert any(isinstance(a, CallHook) for s in helpdesk.states.values() for a in s.actions)
    menu = dialogs["billing_menu"]
    assert any(isinstance(t, OnDtmf) for t in menu.states["main_menu"].transitions)
    assert not any(isinstance(t, OnIntent) for s in menu.states.values() for t in s.transitions)


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        pytest.param(HEAD + "[states.a]\nprompt = 'hi\n", 4, "invalid TOML", id="toml-syntax"),
        pytest.param(HEAD + "[states.a]\npromt = 'hi'\n", 4, "states.a.promt: unknown key",
                     id="misspelt-key"),
        pytest.param(HEAD + "max_duration = true\n[states.a]\n", 3, "max_duration: Expected",
                     id="wrong-type"),
        pytest.param('name = "t"\n\n[states.a]\n', 1, "missing required field `initial_state`",
                     id="missing-key"),
        pytest.param(HEAD + 'initial_state = "b"\n', 3, "Cannot overwrite", id="duplicate-key"),
        pytest.param('name = "t"\ninitial_state = "b"\n[states.a]\n', 2, "no state 'b'",
                     id="unknown-initial-state"),
        pytest.param(HEAD + '[states.a]\n\n[[states.a.transitions]]\non = "timeout"\nto = "a"\n'
                     '\n[[states.a.transitions]]\non = "timeout"\nto = "zz"\n', 11,
                     "states.a.transitions[1].to: there is no state 'zz' (known: a)",
                     id="unknown-target-state"),
        pytest.param(HEAD + '[states.a]\n[[states.a.transitions]]\non = "dtmf"\ndigit = "x"\n'
                     'to = "a"\n', 6, "states.a.transitions[0].digit", id="bad-digit"),
        pytest.param(HEAD + '[states.a]\n[[states.a.transitions]]\non = "shouting"\nto = "a"\n',
                     5, "states.a.transitions[0].on: Invalid value 'shouting'",
                     id="unknown-trigger"),
        pytest.param(HEAD + '[states.a]\nactions = [\n  { action = "play", text = "x" },\n'
                     '  { action = "dance" },\n]\n', 6, "states.a.actions[1].action",
                     id="unknown-action-in-a-multiline-array"),
        pytest.param(HEAD + '[states.a]\nactions = [{ action = "hook", hook = "nope" }]\n', 4,
                     "there is no hook 'nope'", id="unknown-hook"),
        pytest.param(HEAD + '[intents.yes]\nkeywords = ["yes"]\nexamples = ["sure"]\n'
                     '[states.a]\n', 5, "intents.yes.examples[0]", id="example-misses-intent"),
        pytest.param(HEAD + '[states.a]\n[[states.a.transitions]]\non = "intent"\n'
                     'intent = "yes"\nto = "a"\n', 6, "there is no intent 'yes'",
                     id="unknown-intent"),
        pytest.param(HEAD + 'no_input_timeout = "soon"\n[states.a]\n', 3,
                     "'soon' is not a duration", id="bad-duration"),
        pytest.param(HEAD + '[hooks.h]\nurl = "ftp://x/y"\n[states.a]\n', 4,
                     "neither an http(s) URL", id="bad-hook-url"),
        pytest.param('name = "help desk"\ninitial_state = "a"\n[states.a]\n', 1,
                     "dialog_name 'help desk' is not valid", id="bad-dialog-name"),
        pytest.param(HEAD + '[states."a b"]\n', 3, "a name is 1-64 characters",
                     id="bad-state-name"),
    ],
)
def test_a_bad_dialog_file_names_the_file_and_the_line(text: str, line: int, says: str) -> None:
    error = error_of(text)
    assert (error.file, error.line) == ("bad.toml", line), str(error)
    assert says in error.message
    assert str(error).startswith(f"bad.toml:{line}: ")


def test_an_unreadable_file_is_a_dialog_file_error(tmp_path: Path) -> None:
    with pytest.raises(DialogFileError, match="cannot read"):
        load_dialog(tmp_path / "missing.toml")


def test_lines_of_headers_array_entries_and_dotted_keys() -> None:
    lines = TomlKeyLines(textwrap.dedent("""\
        a = 1  # comment with = sign
        [t.x]
        k = "v # not a comment"
        [[t.x.list]]
        p.q = 2
        [[t.x.list]]
        r = [
          { s = 1 },
          { s = 2 },
        ]
        text = '''
        fake = "a key inside a string"
        [not.a.table]
        '''
        fake = 3
        """))
    assert lines.line_of(("t", "x", "list", 1, "fake")) == 15
    assert lines.line_of(("not", "a", "table")) == 1
    assert lines.line_of(("a",)) == 1
    assert lines.line_of(("t", "x", "k")) == 3
    assert lines.line_of(("t", "x", "list", 0, "p", "q")) == 5
    assert lines.line_of(("t", "x", "list", 1)) == 6
    assert lines.line_of(("t", "x", "list", 1, "r", 1, "s")) == 9
    assert lines.line_of(("t", "x", "nothing", "here")) == 2
    assert lines.line_of(("unknown",)) == 1
    assert msgspec_error_path("Bad - at `$.a.b[2].c`") == ("a", "b", 2, "c")
    assert msgspec_error_path("Bad - at `$.a[...]`") == ("a",)


def test_the_worker_command_reports_a_bad_dialog_file_without_a_traceback(
    tmp_path: Path, callhub_env: dict[str, str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(HEAD + '[states.a]\n[[states.a.transitions]]\non = "timeout"\nto = "b"\n')
    done = subprocess.run(
        [sys.executable, "-m", "callhub.cli", "worker", "--redis-url", "redis://127.0.0.1:1/0",
         "--simulate", "--dialog", str(bad)],
        capture_output=True, text=True, env=callhub_env, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert f"{bad}:6: states.a.transitions[0].to: there is no state 'b'" in done.stderr
    assert "Traceback" not in done.stderr
