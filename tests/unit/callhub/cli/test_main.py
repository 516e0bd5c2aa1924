"""``callhub``'s entry point loads only the settings a command uses.

A bad ``CALLHUB_SHARDS`` must stop the commands that talk to Redis, with the
message naming it, and nothing else: ``hash-key`` and ``tail`` never use it.
"""

from __future__ import annotations

import tomllib

import pytest

from callhub.cli.main import main
from hub.api.auth import hash_key

BAD = {"CALLHUB_SHARDS": "abc"}


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        environ: dict[str, str]) -> tuple[int, str, str]:
    """``callhub argv`` in-process with ``environ`` set: status, stdout, stderr."""
    with monkeypatch.context() as patch:
        for name, value in environ.items():
            patch.setenv(name, value)
        try:
            status = main(argv)
        except SystemExit as end:
            status = end.code if isinstance(end.code, int) else 1
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(autouse=True)
def no_callhub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CALLHUB_SHARDS", "CALLHUB_URL", "CALLHUB_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_hash_key_ignores_a_bad_shards_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["hash-key", "s3cret", "--name", "ops", "--dialogs", "helpdesk"]
    assert run(argv, monkeypatch, capsys, BAD) == run(argv, monkeypatch, capsys, {})
    status, out, _ = run(argv, monkeypatch, capsys, BAD)
    assert status == 0
    assert out.startswith('[[keys]]\nname = "ops"\nsha256 = "')
    assert run(["hash-key"], monkeypatch, capsys, BAD)[0] == 0  # a new key


def test_hash_key_prints_a_keys_file_entry_the_hub_reads(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["hash-key", "s3cret", "--name", 'ops "night"', "--dialogs", "helpdesk, billing",
            "--webhooks"]
    status, out, _ = run(argv, monkeypatch, capsys, {})
    assert status == 0
    entry = tomllib.loads(out)["keys"][0]
    assert entry == {"name": 'ops "night"', "sha256": hash_key("s3cret"),
                     "dialogs": ["helpdesk", "billing"], "webhooks": True}


def test_a_new_keys_entry_appended_to_a_file_keeps_it_valid_and_the_secret_goes_to_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``callhub hash-key ... >> keys.toml``, twice: stdout is only TOML."""
    outputs = [run(["hash-key", "--name", name, "--dialogs", "helpdesk"], monkeypatch, capsys, {})
               for name in ("ops", "night")]
    assert all(status == 0 for status, _, _ in outputs)
    keys_file = "".join(out for _, out, _ in outputs)
    entries = tomllib.loads(keys_file)["keys"]
    assert [e["name"] for e in entries] == ["ops", "night"]
    for entry, (_, out, err) in zip(entries, outputs, strict=True):
        secret = next(word for word in err.split() if word.startswith("chk_"))
        assert entry["sha256"] == hash_key(secret) and secret not in out
        assert "CALLHUB_API_KEYS_FILE" in err and "Bearer" in err  # what to do next


def test_version_names_the_installed_package(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlib.metadata import version

    status, out, _ = run(["--version"], monkeypatch, capsys, {})
    assert (status, out) == (0, f"callhub {version('callhub')}\n")


@pytest.mark.parametrize("argv", [
    ["tail", "--help"],
    ["tail", "--max-retries", "many"],  # refused by the parser
    ["tail", "--url", "ftp://hub.test"],  # refused by the tail itself
    ["tail", "--tls-key", "k.pem"],  # refused before it connects
])
def test_tail_behaves_the_same_with_a_bad_shards_setting(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    without = run(argv, monkeypatch, capsys, {})
    assert run(argv, monkeypatch, capsys, BAD) == without
    assert "CALLHUB_SHARDS" not in without[2]
    status, out, err = without
    assert status == (0 if "--help" in argv else 2)
    assert out.startswith("usage: callhub tail") if "--help" in argv else err


@pytest.mark.parametrize("argv", [
    ["publish", "-"],
    ["serve"],
    ["worker", "--simulate"],
    ["demo"],
])
def test_the_commands_that_use_redis_still_refuse_a_bad_shards_setting(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(argv, monkeypatch, capsys, BAD)
    assert status == 2
    assert out == ""
    assert err.startswith("callhub: error: CALLHUB_SHARDS")
