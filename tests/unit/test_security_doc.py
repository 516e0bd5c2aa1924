"""docs/security.md says what the code does: its limits' defaults are the
settings' defaults, the variables it names exist, the files it cites are there,
and the constants it quotes are the code's."""

from __future__ import annotations

import re

from callhub.settings import ENVIRONMENT, Settings
from hub.api.request_body import MAX_BODY
from hub.http_protocol import MAX_HEAD_BYTES
from hub.store.call_records import RECORD_EVENTS_MAX, SCAN_MAX
from hub.stream.catch_up import LOG_CHUNK, MIN_HISTORY_CHUNK
from tests.support.paths import ROOT

DOC = ROOT / "docs" / "security.md"
# Introduced with the stream tokens, which docs/security-tokens.md specifies.
TOKEN_SETTINGS = {"CALLHUB_SECRET"}


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _limits_rows() -> list[tuple[str, str]]:
    """(variable, default) of the Limits table's rows that name a setting."""
    section = _text().split("\n## Limits\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(CALLHUB_[A-Z_]+)` \| `([^`]*)` \|", section, re.MULTILINE)


def test_every_limit_has_the_default_the_settings_have() -> None:
    rows = _limits_rows()
    assert len(rows) >= 8
    defaults = Settings()
    for variable, default in rows:
        field, parse = ENVIRONMENT[variable]
        assert parse(variable, default) == getattr(defaults, field), variable


def test_every_variable_it_names_is_a_setting() -> None:
    named = set(re.findall(r"\bCALLHUB_[A-Z_]+[A-Z]\b", _text()))
    assert named - set(ENVIRONMENT) <= TOKEN_SETTINGS


def test_every_file_it_cites_exists() -> None:
    cited = set(re.findall(r"`((?:hub|callhub|tests|bench|deploy|workers|docs)/[\w/.]+)`",
                           _text()))
    assert cited
    assert sorted(path for path in cited if not (ROOT / path).exists()) == []


def test_the_fixed_limits_it_quotes_are_the_codes() -> None:
    text = _text()
    assert MAX_HEAD_BYTES == MAX_BODY == 64 * 1024 and text.count("| (fixed) 64 KiB |") == 2
    assert f"{LOG_CHUNK} entries per shard log" in text
    assert f"at least {MIN_HISTORY_CHUNK} entries per" in text
    assert SCAN_MAX == RECORD_EVENTS_MAX == 10_000
    assert "at most\n  10,000 entries" in text and "at most 10,000 events" in text
