"""``callhub tail``'s command-line side: when it colours its lines."""

from __future__ import annotations

import pytest

from callhub.cli import tail as tail_command


def test_colour_only_for_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert tail_command._colour({})
    assert not tail_command._colour({"NO_COLOR": "1"})
    assert tail_command._colour({"NO_COLOR": ""})  # no-color.org: set and non-empty
    assert not tail_command._colour({"TERM": "dumb"})
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert not tail_command._colour({})
