"""API keys: who may read, and which dialogs they may see.

Keys come from ``CALLHUB_API_KEYS`` (comma-separated, the simple case: every
key sees everything) and from a keys file (``CALLHUB_API_KEYS_FILE``, TOML)
that holds only SHA-256 hashes, each with a name and optionally the dialogs it
is scoped to::

    [[keys]]
    name = "helpdesk-dashboard"
    sha256 = "9f86d08..."           # callhub hash-key prints this
    dialogs = ["helpdesk"]          # omit to see every dialog
    webhooks = true                 # may manage webhook subscriptions (default false)

A request presents its key as ``Authorization: Bearer <key>``, ``X-API-Key:
<key>``, or, for a browser's EventSource (which cannot set headers), the query
parameter ``api_key``. A key is compared by its hash in constant time and never
logged. With no keys configured the API is open (a warning says so at start).

Managing webhooks routes call events out of the hub, so a key of the keys file
may do it only with ``webhooks = true``; the plain ``CALLHUB_API_KEYS`` are the
operator's own and may; an open API is open for this too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import tomllib
from pathlib import Path
from typing import Annotated

import msgspec
from starlette.requests import HTTPConnection

from callhub.events import check_dialog_name
from callhub.settings import SettingsError
from hub.errors import Unauthorized
from hub.store.call_store import Scope

KEY_QUERY_PARAMETER = "api_key"
_PLAIN = "CALLHUB_API_KEYS"


class StoredKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    dialogs: list[str] | None = None
    webhooks: bool = False


class KeysFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    keys: list[StoredKey] = []


class Principal(msgspec.Struct, frozen=True):
    """Who made a request: the key's name, the dialogs it may see, and whether
    it may manage webhook subscriptions."""

    name: str
    scope: Scope
    webhooks: bool = False


OPEN = Principal(name="anonymous", scope=None, webhooks=True)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "chk_" + secrets.token_urlsafe(32)


class ApiKeys:
    """The configured keys, by hash."""

    def __init__(self, keys: list[StoredKey], *, sources: str = "") -> None:
        self.sources = sources  # where the keys came from, in counts (safe to log)
        self._keys = [
            (bytes.fromhex(k.sha256),
             Principal(k.name, frozenset(k.dialogs or ()) or None, k.webhooks))
            for k in keys
        ]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    @classmethod
    def load(cls, plain: str | None, keys_file: str | None) -> ApiKeys:
        """Keys from the settings; a setting that cannot be used fails start-up, naming it.

        A setting that is present but yields no key (``" "``, ``",,"``, an empty
        keys file) is a mistake, not a wish for an open API: it fails. (An empty
        ``CALLHUB_API_KEYS=`` counts as unset: it is how compose files pass an
        unset variable through.) A key given twice, in one source or in both, is a
        mistake too: which scope would it have?
        """
        plain_keys = _plain_keys(plain) if plain else []
        file_keys = _read_keys_file(Path(keys_file)) if keys_file else []
        labelled = [(f"{_PLAIN} key {n}", key) for n, key in enumerate(plain_keys, start=1)]
        labelled += [(f"CALLHUB_API_KEYS_FILE key {n} ({key.name})", key)
                     for n, key in enumerate(file_keys, start=1)]
        _refuse_duplicates(labelled)
        sources = [f"{len(plain_keys)} from {_PLAIN}"] if plain_keys else []
        if file_keys:
            sources.append(
                f"{len(file_keys)} from CALLHUB_API_KEYS_FILE ({keys_file}: "
                f"{sum(1 for k in file_keys if k.dialogs)} scoped to dialogs, "
                f"{sum(1 for k in file_keys if k.webhooks)} may manage webhooks)")
        return cls(plain_keys + file_keys, sources=", ".join(sources))

    def authenticate(self, connection: HTTPConnection) -> Principal:
        return self.identify(connection)[0]

    def identify(self, connection: HTTPConnection) -> tuple[Principal, bytes]:
        """The caller and its key's SHA-256 (``b""`` when the API is open)."""
        if not self._keys:
            return OPEN, b""
        presented = presented_key(connection)
        if presented is None:
            raise Unauthorized(
                "an API key is required: Authorization: Bearer <key>, X-API-Key, "
                f"or the {KEY_QUERY_PARAMETER} query parameter"
            )
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for stored, principal in self._keys:  # every key compared: no early exit
            if hmac.compare_digest(stored, digest):
                found = principal
        if found is None:
            raise Unauthorized("the API key is not valid")
        return found, digest

    def by_digest(self, digest: bytes) -> Principal | None:
        """The principal of the key with this SHA-256, if it is still configured
        (a stream token dies with its key)."""
        if not self._keys:
            return OPEN if digest == b"" else None
        found = None
        for stored, principal in self._keys:
            if hmac.compare_digest(stored, digest):
                found = principal
        return found


def presented_key(connection: HTTPConnection) -> str | None:
    authorization = connection.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <key>'")
        return value.strip()
    header = connection.headers.get("x-api-key")
    if header:
        return header.strip()
    values = connection.query_params.getlist(KEY_QUERY_PARAMETER)
    if len(values) > 1:
        raise Unauthorized(f"{KEY_QUERY_PARAMETER} is given more than once")
    return values[0] if values and values[0] else None


def _plain_keys(plain: str) -> list[StoredKey]:
    keys = [
        StoredKey(name=f"key-{n}", sha256=hash_key(key.strip()), webhooks=True)
        for n, key in enumerate((k for k in plain.split(",") if k.strip()), start=1)
    ]
    if not keys:
        raise SettingsError(f"{_PLAIN} is set but holds no key (only commas or spaces): "
                            "give keys separated by commas, or unset it")
    return keys


def _read_keys_file(path: Path) -> list[StoredKey]:
    where = f"CALLHUB_API_KEYS_FILE ({path})"
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
        parsed = msgspec.convert(raw, KeysFile)
    except OSError as error:
        raise SettingsError(f"{where} cannot be read: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise SettingsError(f"{where} is not UTF-8 text (byte {error.start} cannot be "
                            "decoded)") from None
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as error:
        raise SettingsError(f"{where} is not a valid keys file: {error}") from None
    if not parsed.keys:
        raise SettingsError(f"{where} holds no key: add [[keys]] entries "
                            "(callhub hash-key prints one), or unset it")
    for n, key in enumerate(parsed.keys, start=1):
        for dialog in key.dialogs or []:
            try:
                check_dialog_name(dialog)
            except ValueError as error:
                raise SettingsError(f"{where}: key {n} ({key.name}): {error}") from None
        if key.dialogs == []:
            raise SettingsError(f"{where}: key {n} ({key.name}): dialogs must not be empty")
    return parsed.keys


def _refuse_duplicates(labelled: list[tuple[str, StoredKey]]) -> None:
    first: dict[str, str] = {}
    for label, key in labelled:
        if key.sha256 in first:
            raise SettingsError(f"the same key is configured twice: {first[key.sha256]} and "
                                f"{label}; keep one")
        first[key.sha256] = label
