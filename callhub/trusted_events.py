"""Decoding events that were checked once already: read back from Redis, or from a hub.

The publisher validates every event against the schema before it commits it
(``callhub.events``: patterns, ranges, the ``__post_init__`` checks), so what a
call's stream holds is known to be valid. Checking it again on every read
costs about five times the decoding itself (a regular expression per name
field, a Python call per event and per word), which is most of a transcript's
or summary's cost. So stored events are decoded into subclasses of the event
classes made here without those checks: the same fields, ``isinstance`` of the
real classes (the kernel's transcript and summary take them as they are),
while msgspec still checks each value's JSON type and every ``Literal``.

Both the replica (a call's stored events, for transcripts and summaries) and
``callhub.client`` (``events(validate=False)``, for a consumer that trusts its
hub) decode this way, so it lives in the kernel beneath both.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Final, Union

import msgspec

from callhub import events as ev

_STRUCTS: dict[type, type] = {}


def _unchecked(annotation: Any) -> Any:
    """``annotation`` without its ``Meta`` constraints, Structs made unchecked."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unchecked(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return _unchecked_struct(annotation)
    if origin in (list, dict):
        return origin[tuple(_unchecked(a) for a in typing.get_args(annotation))]
    if origin in (Union, types.UnionType):
        return Union[tuple(_unchecked(a) for a in typing.get_args(annotation))]  # noqa: UP007
    return annotation


def _no_checks(self: msgspec.Struct) -> None:
    pass


def _unchecked_struct(cls: type[msgspec.Struct]) -> type:
    made = _STRUCTS.get(cls)
    if made is not None:
        return made
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for field in msgspec.structs.fields(cls):
        annotation = _unchecked(field.type)
        if field.required:
            fields.append((field.name, annotation))
        elif field.default is not msgspec.NODEFAULT:
            fields.append((field.name, annotation, field.default))
        else:
            fields.append((field.name, annotation,
                           msgspec.field(default_factory=field.default_factory)))
    tag = cls.__struct_config__.tag
    made = msgspec.defstruct(cls.__name__, fields, bases=(cls,), frozen=True,
                             namespace={"__post_init__": _no_checks, "__module__": __name__},
                             tag=tag)
    _STRUCTS[cls] = made
    return made


TRUSTED_EVENT_CLASSES: Final = tuple(_unchecked_struct(cls) for cls in ev.EVENT_CLASSES.values())
_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(Union[TRUSTED_EVENT_CLASSES])  # noqa: UP007


def decode_trusted_event(data: bytes | str) -> ev.Event:
    """An already checked event's JSON as an event (an instance of a subclass of its
    class); raises ``msgspec.ValidationError``/``DecodeError`` like ``decode_event``."""
    event: ev.Event = _decoder.decode(data)
    return event
