"""Settings: built once at start-up from the environment, then passed down.

Nothing in callhub reads ``os.environ`` after this; a component gets the
``Settings`` (or the part of it it needs) from whoever created it. A bad value
fails at start-up with a message naming the variable, never later.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec

from callhub.keyspace import MAX_SHARDS, PREFIX_PATTERN, Keyspace

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)?")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}


class SettingsError(ValueError):
    """A setting has a value callhub cannot use; the message names it."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything configurable, with the defaults a single-node deployment wants."""

    redis_url: str = "redis://localhost:6379/0"
    # The URL names one node of a Redis Cluster: use the cluster client, which
    # follows slot moves and failovers (set shards >= the number of masters).
    redis_cluster: bool = False
    shards: int = 1
    prefix: str = "callhub"
    # How long the shard logs keep events: the window in which a cursor resumes.
    log_retention_ms: int = 24 * 3_600_000
    # How long an ended call stays readable (Get Call, its event stream).
    call_retention_ms: int = 3_600_000
    # A worker's lease on a call; the reaper ends calls whose lease expired.
    lease_ms: int = 30_000
    # Durability: a commit is acknowledged only once this many replicas of its
    # master have it (WAIT), or it is retried; 0 acknowledges on the master's
    # word (replication is asynchronous: a failover can lose the newest commits).
    durable_replicas: int = 0
    durable_timeout_ms: int = 1_000
    # The longest a call may last; the reaper ends longer ones with reason timeout.
    max_call_ms: int = 4 * 3_600_000
    # Event streams: heartbeat on idle streams, the longest a write to a client
    # may take, and the most a subscriber may have buffered before it is cut off.
    ping_interval_ms: int = 15_000
    write_timeout_ms: int = 10_000
    subscriber_buffer_bytes: int = 4 * 1024 * 1024
    # The longest a busy replica lets live events gather before writing them
    # out (0: never; an idle replica writes each event at once, docs/performance.md).
    stream_linger_ms: int = 10
    # Open event streams per replica: at most this many per API key and per
    # client address (0: no cap). The client address is the connection's peer,
    # or, when the peer is a trusted proxy (comma list of addresses or networks,
    # "*" for any), the last address of its X-Forwarded-For.
    max_streams_per_key: int = 1000
    # Connections one replica process holds (0: no cap): beyond it a 503. A
    # request's head must arrive within the header timeout.
    max_connections: int = 10_000
    header_timeout_ms: int = 10_000
    max_streams_per_client: int = 100
    trusted_proxies: str = "127.0.0.1,::1"
    # Browser origins allowed to read the API (comma-separated, "*" for any,
    # empty for none). Unset: any origin with API keys (the spec's EventSource
    # example runs on other origins), only this machine's pages without keys.
    cors_origins: str | None = None
    # Host names the replica answers (comma-separated, "*" for any). Unset: any
    # with API keys, only loopback names (localhost, 127.0.0.1, [::1]) without.
    allowed_hosts: str | None = None
    # API keys (comma-separated) and a keys file of hashed, scoped keys.
    api_keys: str | None = None
    api_keys_file: str | None = None
    # The server secret: seals cursors, page tokens and stream tokens (all
    # replicas share it; required with API keys). Rotation: set the new one and
    # the old one as previous; tokens of either are accepted, new ones use the new.
    secret: str | None = None
    secret_previous: str | None = None
    # How long a stream token lives when its request does not say (the
    # dashboard's never do): 1 s to 1 h. A token leaked in a log opens streams
    # for at most this long; the dashboard renews before it runs out.
    stream_token_ttl_ms: int = 300_000
    # Log lines: "text" (readable) or "json" (one object per line, with request ids).
    log_format: str = "text"
    # Webhooks: destinations may be plain http, or private/loopback addresses,
    # only where the operator allows it (a hub must not become a way into the
    # network it runs in); how long a failing event is retried before it is
    # dead-lettered; how long a rotated secret keeps signing beside the new one.
    webhook_allow_http: bool = False
    webhook_allow_private: bool = False
    webhook_retry_window_ms: int = 24 * 3_600_000
    webhook_rotation_grace_ms: int = 24 * 3_600_000
    webhook_timeout_ms: int = 10_000
    # A forwarder's lease on one (subscription, shard): renewed while it
    # delivers; a dead forwarder's work is taken over within about this long.
    forward_lease_ms: int = 10_000

    def __repr__(self) -> str:  # never print keys or the Redis password
        return f"Settings(shards={self.shards}, prefix={self.prefix!r})"

    @property
    def keyspace(self) -> Keyspace:
        return Keyspace(prefix=self.prefix, shards=self.shards)


def require_secret(settings: Settings) -> None:
    """A replica with API keys needs the shared secret: without it each process
    would seal with its own, and cursors would not survive a restart nor move
    between replicas, nor could stream tokens be checked by any other replica."""
    if (settings.api_keys or settings.api_keys_file) and not settings.secret:
        raise SettingsError("CALLHUB_SECRET is required when API keys are configured "
                            "(CALLHUB_API_KEYS or CALLHUB_API_KEYS_FILE): give every replica "
                            "the same secret of at least 32 characters")


def redact_url(value: str) -> str:
    """``value`` with its credentials masked (``user:***@``): safe to print.

    Works on strings that are not valid URLs too: everything before the last
    ``@`` after the scheme is credentials, so a mistyped URL (``redis:admin:pw@host``,
    a password holding ``/``) never leaks one.
    """
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "", value
    credentials, at, address = rest.rpartition("@")
    if not at:
        return value
    name, colon, _password = credentials.partition(":")
    return f"{scheme}{sep}{name}:***@{address}" if colon else f"{scheme}{sep}***@{address}"


def parse_redis_url(name: str, value: str) -> str:
    """A Redis URL callhub can connect with; messages show it with its password masked.

    ``redis://`` and ``rediss://`` need a host (``redis:admin:pw@host`` has none:
    it would connect to localhost); ``unix://`` needs a path.
    """
    parts = urlsplit(value)
    shown = redact_url(value)
    has_target = parts.hostname if parts.scheme in {"redis", "rediss"} else parts.path
    if parts.scheme not in {"redis", "rediss", "unix"} or not has_target:
        raise SettingsError(
            f"{name} must be a Redis URL like redis://host:6379/0 (or rediss://, unix://), "
            f"got {shown!r}"
        )
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise SettingsError(f"{name} has an invalid port: {shown!r}") from None
    return value


def parse_shards(name: str, value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_SHARDS:
        raise SettingsError(f"{name} must be a whole number from 1 to {MAX_SHARDS}, got {value!r}")
    return int(value)


def parse_prefix(name: str, value: str) -> str:
    if not PREFIX_PATTERN.fullmatch(value):
        raise SettingsError(
            f"{name} must be 1-64 characters of A-Z a-z 0-9 . _ - (no braces or colons), "
            f"got {value!r}"
        )
    return value


def parse_bytes(name: str, value: str) -> int:
    match = re.fullmatch(r"(\d+)\s*(k|m|kib|mib|kb|mb)?", value.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise SettingsError(f"{name} must be a size like 65536, 512k or 4m, got {value!r}")
    unit = (match.group(2) or "")[:1]
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit]


def parse_text(name: str, value: str) -> str:
    return value


def parse_count(name: str, value: str) -> int:
    if not value.isdigit() or int(value) > 16:
        raise SettingsError(f"{name} must be a whole number from 0 to 16, got {value!r}")
    return int(value)


def parse_flag(name: str, value: str) -> bool:
    choices = {"1": True, "true": True, "yes": True, "on": True,
               "0": False, "false": False, "no": False, "off": False, "": False}
    if value.strip().lower() not in choices:
        raise SettingsError(f"{name} must be true or false, got {value!r}")
    return choices[value.strip().lower()]


def parse_limit(name: str, value: str) -> int:
    if not value.strip().isdigit() or int(value) > 10_000_000:
        raise SettingsError(f"{name} must be a whole number (0 for no limit), got {value!r}")
    return int(value)


def parse_networks(name: str, value: str) -> str:
    """Comma-separated addresses or networks (``10.0.0.0/8``), or ``*``."""
    for part in (p.strip() for p in value.split(",")):
        if not part or part == "*":
            continue
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise SettingsError(f"{name}: {part[:64]!r} is not an address or network "
                                "(like 10.0.0.0/8), nor *") from None
    return value


def parse_secret(name: str, value: str) -> str:
    """At least 32 characters; the message never shows the value."""
    if len(value) < 32 or value != value.strip():
        raise SettingsError(f"{name} must be at least 32 characters without surrounding "
                            "spaces (python3 -c 'import secrets; print(secrets.token_urlsafe(32))' "
                            "prints one)")
    return value


def parse_log_format(name: str, value: str) -> str:
    if value not in ("text", "json"):
        raise SettingsError(f"{name} must be text or json, got {value!r}")
    return value


def parse_duration_ms(name: str, value: str) -> int:
    """``90``, ``90s``, ``500ms``, ``15m``, ``24h``, ``7d``: a plain number is seconds."""
    match = _DURATION.fullmatch(value.strip())
    if not match:
        raise SettingsError(
            f"{name} must be a duration like 90, 90s, 500ms, 15m, 24h or 7d, got {value!r}"
        )
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_token_ttl_ms(name: str, value: str) -> int:
    """A duration in whole seconds from 1 s to 1 h: a stream token's lifetime
    (``POST /v1/stream-tokens`` never grants more than 1 h, whatever is asked)."""
    ms = parse_duration_ms(name, value)
    if not 1000 <= ms <= 3_600_000 or ms % 1000:
        raise SettingsError(f"{name} must be whole seconds from 1s to 1h, got {value!r}")
    return ms


# variable -> (Settings field, parser): the whole environment callhub reads.
ENVIRONMENT: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "CALLHUB_REDIS_URL": ("redis_url", parse_redis_url),
    "CALLHUB_REDIS_CLUSTER": ("redis_cluster", parse_flag),
    "CALLHUB_SHARDS": ("shards", parse_shards),
    "CALLHUB_PREFIX": ("prefix", parse_prefix),
    "CALLHUB_LOG_RETENTION": ("log_retention_ms", parse_duration_ms),
    "CALLHUB_CALL_RETENTION": ("call_retention_ms", parse_duration_ms),
    "CALLHUB_LEASE": ("lease_ms", parse_duration_ms),
    "CALLHUB_DURABLE_REPLICAS": ("durable_replicas", parse_count),
    "CALLHUB_DURABLE_TIMEOUT": ("durable_timeout_ms", parse_duration_ms),
    "CALLHUB_MAX_CALL_DURATION": ("max_call_ms", parse_duration_ms),
    "CALLHUB_PING_INTERVAL": ("ping_interval_ms", parse_duration_ms),
    "CALLHUB_WRITE_TIMEOUT": ("write_timeout_ms", parse_duration_ms),
    "CALLHUB_SUBSCRIBER_BUFFER": ("subscriber_buffer_bytes", parse_bytes),
    "CALLHUB_STREAM_LINGER": ("stream_linger_ms", parse_duration_ms),
    "CALLHUB_MAX_CONNECTIONS": ("max_connections", parse_limit),
    "CALLHUB_HEADER_TIMEOUT": ("header_timeout_ms", parse_duration_ms),
    "CALLHUB_MAX_STREAMS_PER_KEY": ("max_streams_per_key", parse_limit),
    "CALLHUB_MAX_STREAMS_PER_CLIENT": ("max_streams_per_client", parse_limit),
    "CALLHUB_TRUSTED_PROXIES": ("trusted_proxies", parse_networks),
    "CALLHUB_CORS_ORIGINS": ("cors_origins", parse_text),
    "CALLHUB_ALLOWED_HOSTS": ("allowed_hosts", parse_text),
    "CALLHUB_API_KEYS": ("api_keys", parse_text),
    "CALLHUB_API_KEYS_FILE": ("api_keys_file", parse_text),
    "CALLHUB_SECRET": ("secret", parse_secret),
    "CALLHUB_SECRET_PREVIOUS": ("secret_previous", parse_secret),
    "CALLHUB_STREAM_TOKEN_TTL": ("stream_token_ttl_ms", parse_token_ttl_ms),
    "CALLHUB_LOG_FORMAT": ("log_format", parse_log_format),
    "CALLHUB_WEBHOOK_ALLOW_HTTP": ("webhook_allow_http", parse_flag),
    "CALLHUB_WEBHOOK_ALLOW_PRIVATE": ("webhook_allow_private", parse_flag),
    "CALLHUB_WEBHOOK_RETRY_WINDOW": ("webhook_retry_window_ms", parse_duration_ms),
    "CALLHUB_WEBHOOK_ROTATION_GRACE": ("webhook_rotation_grace_ms", parse_duration_ms),
    "CALLHUB_WEBHOOK_TIMEOUT": ("webhook_timeout_ms", parse_duration_ms),
    "CALLHUB_FORWARD_LEASE": ("forward_lease_ms", parse_duration_ms),
}
FLAG_FOR_FIELD = {"redis_url": "--redis-url", "shards": "--shards", "prefix": "--prefix"}


def load_settings(environ: Mapping[str, str], **overrides: str | None) -> Settings:
    """Build the settings from ``environ``; non-None ``overrides`` (CLI flags) win.

    Overrides are given as strings, by field name, and parsed like the
    environment so a bad flag fails the same way as a bad variable.
    """
    values: dict[str, Any] = {}
    for variable, (field_name, parse) in ENVIRONMENT.items():
        flag = overrides.pop(field_name, None)
        if flag is not None:
            values[field_name] = parse(FLAG_FOR_FIELD.get(field_name, field_name), flag)
        elif variable in environ:
            values[field_name] = parse(variable, environ[variable])
    if overrides:
        raise TypeError(f"unknown settings: {sorted(overrides)}")
    settings = Settings(**values)
    for variable, value in (("CALLHUB_LEASE", settings.lease_ms),
                            ("CALLHUB_MAX_CALL_DURATION", settings.max_call_ms),
                            ("CALLHUB_DURABLE_TIMEOUT", settings.durable_timeout_ms),
                            ("CALLHUB_PING_INTERVAL", settings.ping_interval_ms),
                            ("CALLHUB_WRITE_TIMEOUT", settings.write_timeout_ms),
                            ("CALLHUB_HEADER_TIMEOUT", settings.header_timeout_ms),
                            ("CALLHUB_WEBHOOK_RETRY_WINDOW", settings.webhook_retry_window_ms),
                            ("CALLHUB_WEBHOOK_TIMEOUT", settings.webhook_timeout_ms),
                            ("CALLHUB_FORWARD_LEASE", settings.forward_lease_ms)):
        if value <= 0:
            raise SettingsError(f"{variable} must be longer than 0")
    if settings.secret_previous and not settings.secret:
        raise SettingsError("CALLHUB_SECRET_PREVIOUS is set without CALLHUB_SECRET: set the "
                            "new secret as CALLHUB_SECRET")
    if 0 < settings.log_retention_ms < settings.webhook_retry_window_ms:
        # An event retried past the log's retention could no longer be re-read
        # after a takeover: the window fits inside the log. Unset, it shrinks
        # to the log's retention; set longer, it is a mistake worth naming.
        if "webhook_retry_window_ms" in values:
            raise SettingsError("CALLHUB_WEBHOOK_RETRY_WINDOW must not be longer than "
                                "CALLHUB_LOG_RETENTION")
        settings = msgspec.structs.replace(
            settings, webhook_retry_window_ms=settings.log_retention_ms)
    return settings
