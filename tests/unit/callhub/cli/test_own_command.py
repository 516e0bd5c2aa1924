"""What the demo tells a person to type for ``callhub`` (callhub/cli/own_command.py)."""

from __future__ import annotations

from pathlib import Path

from callhub.cli.own_command import OwnCommand, own_command


def venv(root: Path) -> Path:
    """A virtualenv's bin/ as the demo sees it: python, callhub, activate."""
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "callhub", "activate"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def test_a_venv_not_on_the_path_is_named_by_its_path_with_its_activation(
    tmp_path: Path
) -> None:
    bin_dir = venv(tmp_path)
    found = own_command({"PATH": "/usr/bin:/bin"}, str(bin_dir / "python"), cwd=tmp_path)
    assert found == OwnCommand(".venv/bin/callhub", ". .venv/bin/activate")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = own_command({"PATH": "/usr/bin"}, str(bin_dir / "python"), cwd=elsewhere)
    assert found == OwnCommand(f"{bin_dir}/callhub", f". {bin_dir}/activate")


def test_a_callhub_the_path_finds_is_just_callhub(tmp_path: Path) -> None:
    bin_dir = venv(tmp_path)
    found = own_command({"PATH": f"{bin_dir}:/usr/bin"}, str(bin_dir / "python"), cwd=tmp_path)
    assert found == OwnCommand("callhub", None)


def test_another_callhub_first_on_the_path_is_not_taken_for_this_one(tmp_path: Path) -> None:
    bin_dir = venv(tmp_path)
    other = venv(tmp_path / "other")
    found = own_command({"PATH": f"{other}:{bin_dir}"}, str(bin_dir / "python"), cwd=tmp_path)
    assert found.command == ".venv/bin/callhub"


def test_an_interpreter_without_a_callhub_script_beside_it_says_callhub(tmp_path: Path) -> None:
    assert own_command({"PATH": ""}, str(tmp_path / "python"), cwd=tmp_path).command == "callhub"
