"""Query-parameter parsing with errors that name the parameter.

Every endpoint declares the parameters it takes; an unknown one, a repeated
one, or a value out of its range is a ``BadParameter`` (400) that says which
and why, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from starlette.datastructures import QueryParams

from hub.api.auth import KEY_QUERY_PARAMETER
from hub.errors import BadParameter

MAX_VALUE = 4096
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class Query:
    def __init__(self, params: QueryParams, allowed: Iterable[str]) -> None:
        known = {*allowed, KEY_QUERY_PARAMETER}
        for name in params:
            if name not in known:
                raise BadParameter(
                    f"unknown query parameter {name[:64]!r}; this endpoint takes "
                    f"{', '.join(sorted(known - {KEY_QUERY_PARAMETER}))}",
                    param=name[:64],
                )
        self._params = params

    def text(self, name: str, default: str = "", check: Callable[[str], str] | None = None,
             empty_ok: bool = True) -> str:
        """The parameter's value; empty is "not given" unless ``empty_ok`` is false
        (then an empty value is a 400: leave the parameter out instead)."""
        values = self._params.getlist(name)
        if len(values) > 1:
            raise BadParameter(f"{name} is given more than once", param=name)
        if values and values[0] == "" and not empty_ok:
            raise BadParameter(f"{name} is empty: leave it out, or give it a value", param=name)
        if not values or values[0] == "":  # empty is "not given" for text
            return default
        value = values[0]
        if len(value) > MAX_VALUE:
            raise BadParameter(f"{name} is longer than {MAX_VALUE} characters", param=name)
        if check is not None:
            try:
                return check(value)
            except ValueError as error:
                raise BadParameter(str(error), param=name) from None
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        if name not in self._params:
            return default
        value = self.text(name)
        if not (value.isascii() and value.isdigit()) or len(value) > 12:
            raise BadParameter(f"{name} must be a whole number from {low} to {high}", param=name)
        number = int(value)
        if not low <= number <= high:
            raise BadParameter(f"{name} must be from {low} to {high}, got {number}", param=name)
        return number

    def boolean(self, name: str, default: bool) -> bool:
        if name not in self._params:
            return default
        value = self.text(name).lower()
        if value in ("true", "1", "yes"):
            return True
        if value in ("false", "0", "no"):
            return False
        raise BadParameter(f"{name} must be true or false", param=name)

    def time_ms(self, name: str) -> int | None:
        """An ISO 8601 date and time with its zone (``2025-06-14T18:30:00Z``,
        ``…+02:00``), as unix milliseconds; None when not given. A time without
        a zone would mean a different instant on every client: refused."""
        value = self.text(name, empty_ok=False)
        if not value:
            return None
        try:
            moment = datetime.fromisoformat(value) if len(value) <= 64 else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None or "T" not in value.upper():
            hint = " (a + in a URL is sent as %2B)" if " " in value else ""
            raise BadParameter(
                f"{name} must be an ISO 8601 date and time with a zone, such as "
                f"2025-06-14T18:30:00Z{hint}", param=name)
        return (moment - _EPOCH) // _MS
