"""A credential in a logged query string is masked in every spelling the server reads."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from hub.api.access_log import redact

_SECRET = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789_-",
                  min_size=12, max_size=40)
_OTHER = st.dictionaries(st.sampled_from(["a", "event_types", "dialog_name", "x"]),
                         st.text(alphabet="abc123", max_size=8), max_size=3)


def _spelling(name: str, encode: list[bool], upper: bool) -> str:
    """``name`` with some letters percent-encoded and maybe upper-cased."""
    letters = name.upper() if upper else name
    return "".join(f"%{ord(c):02X}" if flip else c
                   for c, flip in zip(letters, encode, strict=False))


@given(secret=_SECRET, name=st.sampled_from(["api_key", "token"]),
       encode=st.lists(st.booleans(), min_size=7, max_size=7), upper=st.booleans(),
       before=_OTHER, after=_OTHER)
def test_the_secret_never_survives_whatever_the_spelling(
        secret: str, name: str, encode: list[bool], upper: bool,
        before: dict[str, str], after: dict[str, str]) -> None:
    spelled = _spelling(name, encode, upper)
    query = "&".join([*(f"{k}={v}" for k, v in before.items()), f"{spelled}={quote(secret)}",
                      *(f"{k}={v}" for k, v in after.items())])
    line = f'127.0.0.1:5000 - "GET /v1/calls/events?{query} HTTP/1.1" 200'
    masked = redact(line)
    assert secret not in masked
    assert f"{spelled}=***" in masked
    for key, value in {**before, **after}.items():  # the rest of the line is kept
        assert f"{key}={value}" in masked


def test_other_parameters_and_lines_without_a_query_are_unchanged() -> None:
    for line in ('"GET /v1/calls?dialog_name=helpdesk&page_size=3 HTTP/1.1" 200',
                 "no API keys are configured", "a=b but no query", "/v1/calls?keys=x"):
        assert redact(line) == line
