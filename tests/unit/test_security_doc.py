"""docs/security.md says what the code does, line by line: its limits' and
defaults' values are the settings' defaults (docs/security-tokens.md's too), the
variables it names exist, the files it cites are there, the constants it quotes
are the code's, and what it says ``/metrics`` and ``/openapi.json`` expose
without a key is exactly what they expose."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from callhub.layout import ENTRY_TYPE
from callhub.settings import ENVIRONMENT, Settings, SettingsError, load_settings, parse_secret
from hub.api.openapi import openapi_document
from hub.api.request_body import MAX_BODY
from hub.api.stream_tokens import MAX_TTL_S
from hub.http_protocol import MAX_HEAD_BYTES
from hub.metrics import HubMetrics
from hub.store.call_records import RECORD_EVENTS_MAX, SCAN_MAX
from hub.stream.catch_up import LOG_CHUNK, MIN_HISTORY_CHUNK
from tests.support.paths import ROOT

DOC = ROOT / "docs" / "security.md"
TOKENS_DOC = ROOT / "docs" / "security-tokens.md"
# A default stated in prose or in a cell: `CALLHUB_X` (default `V` or `CALLHUB_X`, default `V`
_STATED_DEFAULT = re.compile(r"`(CALLHUB_[A-Z_]+)`(?: \(|, )default `([^`]+)`")
# A table row naming a setting and its default: | `CALLHUB_X` | `V` |
_DEFAULT_ROW = re.compile(r"^\| `(CALLHUB_[A-Z_]+)` \| `([^`]*)` \|", re.MULTILINE)
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


@pytest.mark.parametrize("doc", [DOC, TOKENS_DOC], ids=lambda path: path.name)
def test_every_default_it_states_is_the_settings_default(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    stated = _STATED_DEFAULT.findall(text) + _DEFAULT_ROW.findall(text)
    assert stated
    defaults = Settings()
    for variable, default in stated:
        field, parse = ENVIRONMENT[variable]
        assert parse(variable, default) == getattr(defaults, field), (variable, default)


def test_the_whole_document_states_at_least_the_defaults_a_reviewer_checks() -> None:
    stated = {variable for variable, _ in _STATED_DEFAULT.findall(_text())}
    assert {"CALLHUB_STREAM_TOKEN_TTL", "CALLHUB_LOG_RETENTION", "CALLHUB_PING_INTERVAL"} <= stated


def test_the_token_bounds_it_quotes_are_the_codes() -> None:
    text = _text()
    assert MAX_TTL_S == 3600 and "`ttl_seconds` at most 3600" in text
    assert "(`ttl_seconds`, 1–3600)" in text and "(`1s` to `1h`)" in text
    assert load_settings({"CALLHUB_STREAM_TOKEN_TTL": "1h"}).stream_token_ttl_ms == 3_600_000
    for beyond in ("0", "3601"):
        with pytest.raises(SettingsError):
            load_settings({"CALLHUB_STREAM_TOKEN_TTL": beyond})
    assert "`CALLHUB_SECRET` (at least 32 characters)" in text
    parse_secret("CALLHUB_SECRET", "s" * 32)
    with pytest.raises(SettingsError):
        parse_secret("CALLHUB_SECRET", "s" * 31)


def _without_a_key_row(endpoint: str) -> list[str]:
    section = _text().split("\n## What answers without a key\n", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in section.splitlines() if line.startswith(f"| `GET {endpoint}` |"))
    return [cell.strip() for cell in row.strip("|").split(" | ")]


class _Dispatcher:
    count = deliveries = slow_disconnects = 0


class _Reader:
    shard = events_read = reconnects = 0
    lag_s = 0.0


def test_metrics_expose_exactly_the_families_and_labels_it_lists() -> None:
    metrics = HubMetrics()
    metrics.watch(_Dispatcher(), [_Reader()])
    metrics.batch_dispatched([(b"1700000000000-0", {ENTRY_TYPE: b"call_started"})])
    metrics.request_done({"endpoint": test_metrics_expose_exactly_the_families_and_labels_it_lists,
                          "method": "GET"}, 200, time.perf_counter())
    families = list(metrics.registry.collect())
    labels = {name for family in families for sample in family.samples for name in sample.labels}
    exposes = _without_a_key_row("/metrics")[1]
    named = set(re.findall(r"`([^`/]+)`", exposes))
    assert {family.name for family in families} == {n for n in named if n.startswith("callhub_")}
    assert labels - {"le"} == {n for n in named if not n.startswith("callhub_")}


def test_openapi_exposes_the_api_version_and_no_server_address() -> None:
    document = openapi_document()
    assert document["info"]["version"] == "1" and "servers" not in document
    exposes, hides = _without_a_key_row("/openapi.json")[1:3]
    assert "`info.version` is the API version (`1`)" in exposes and "(no `servers`)" in hides
