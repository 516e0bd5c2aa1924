"""Settings: from the environment, flags override, bad values name the variable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callhub.settings import Settings, SettingsError, load_settings, redact_url


def test_defaults_without_environment() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.keyspace.shards == 1


def test_environment_is_read_and_flags_win() -> None:
    env = {
        "CALLHUB_REDIS_URL": "redis://10.0.0.1:6380/2",
        "CALLHUB_SHARDS": "8",
        "CALLHUB_PREFIX": "vt",
        "CALLHUB_LOG_RETENTION": "2h",
        "CALLHUB_CALL_RETENTION": "15m",
        "CALLHUB_LEASE": "500ms",
    }
    settings = load_settings(env, redis_url="redis://127.0.0.1:7000/0", shards=None)
    assert settings.redis_url == "redis://127.0.0.1:7000/0"
    assert settings.shards == 8
    assert settings.prefix == "vt"
    assert settings.log_retention_ms == 2 * 3_600_000
    assert settings.call_retention_ms == 15 * 60_000
    assert settings.lease_ms == 500


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CALLHUB_REDIS_URL", "http://localhost"),
        ("CALLHUB_REDIS_URL", "redis://host:notaport/0"),
        ("CALLHUB_SHARDS", "zero"),
        ("CALLHUB_SHARDS", "0"),
        ("CALLHUB_SHARDS", "99999"),
        ("CALLHUB_PREFIX", "a{b}"),
        ("CALLHUB_LOG_RETENTION", "forever"),
        ("CALLHUB_CALL_RETENTION", "-5s"),
        ("CALLHUB_LEASE", "0"),
    ],
)
def test_a_bad_value_fails_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings({variable: value})


def test_a_bad_flag_fails_naming_the_flag() -> None:
    with pytest.raises(SettingsError, match="--shards"):
        load_settings({}, shards="many")


@given(st.integers(0, 10**6), st.sampled_from(["", "ms", "s", "m", "h", "d"]))
def test_durations_parse_to_milliseconds(number: int, unit: str) -> None:
    factor = {"": 1000, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[unit]
    settings = load_settings({"CALLHUB_LOG_RETENTION": f"{number}{unit}"})
    assert settings.log_retention_ms == number * factor


def test_the_webhook_retry_window_fits_inside_the_log_retention() -> None:
    assert load_settings({}).webhook_retry_window_ms == 24 * 3_600_000
    short = load_settings({"CALLHUB_LOG_RETENTION": "1h"})
    assert short.webhook_retry_window_ms == 3_600_000  # unset: shrinks to the log's
    with pytest.raises(SettingsError, match="CALLHUB_WEBHOOK_RETRY_WINDOW"):
        load_settings({"CALLHUB_LOG_RETENTION": "1h", "CALLHUB_WEBHOOK_RETRY_WINDOW": "2h"})
    assert load_settings({"CALLHUB_WEBHOOK_RETRY_WINDOW": "10m"}).webhook_retry_window_ms == 600_000


@pytest.mark.parametrize(
    "value",
    ["http://admin:PW-s3cret@redis:6379/0", "redis:admin:PW-s3cret@redis:6379",
     "redis://admin:PW-s3cret@redis:notaport/0", "redis://:PW-s3cret@/0",
     "rediss://u:PW-s3cret/with/slash@@:6379"],
)
def test_a_bad_redis_url_is_named_without_its_password(value: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({"CALLHUB_REDIS_URL": value})
    assert "CALLHUB_REDIS_URL" in str(error.value)
    assert "PW-s3cret" not in str(error.value)
    assert "***" in str(error.value)


def test_a_redis_url_without_a_host_is_refused() -> None:
    """``redis:admin:pw@host`` parses with no host: redis-py would connect to localhost."""
    for value in ("redis:admin:pw@host:6379", "redis:///0", "rediss://"):
        with pytest.raises(SettingsError, match="CALLHUB_REDIS_URL"):
            load_settings({"CALLHUB_REDIS_URL": value})
    assert load_settings({"CALLHUB_REDIS_URL": "unix:///run/redis.sock"}).redis_url


@given(password=st.text(min_size=1, max_size=30).filter(lambda p: "@" not in p))
def test_redact_url_masks_any_password(password: str) -> None:
    shown = redact_url(f"redis://user:{password}@cache.internal:6379/0")
    assert shown == "redis://user:***@cache.internal:6379/0"


def test_the_stream_linger_is_a_duration_and_zero_turns_it_off() -> None:
    assert Settings().stream_linger_ms == 10
    assert load_settings({"CALLHUB_STREAM_LINGER": "2ms"}).stream_linger_ms == 2
    assert load_settings({"CALLHUB_STREAM_LINGER": "0"}).stream_linger_ms == 0
    with pytest.raises(SettingsError, match="CALLHUB_STREAM_LINGER"):
        load_settings({"CALLHUB_STREAM_LINGER": "soon"})


def test_the_stream_token_lifetime_is_whole_seconds_up_to_an_hour() -> None:
    assert Settings().stream_token_ttl_ms == 300_000
    assert load_settings({"CALLHUB_STREAM_TOKEN_TTL": "3"}).stream_token_ttl_ms == 3000
    assert load_settings({"CALLHUB_STREAM_TOKEN_TTL": "1h"}).stream_token_ttl_ms == 3_600_000
    for bad in ("0", "500ms", "1500ms", "61m", "2h", "soon"):
        with pytest.raises(SettingsError, match="CALLHUB_STREAM_TOKEN_TTL"):
            load_settings({"CALLHUB_STREAM_TOKEN_TTL": bad})
