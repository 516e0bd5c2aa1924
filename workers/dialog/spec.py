"""The dialog file: a TOML description of one call flow, and its validation.

A dialog is a set of states. Entering a state plays its ``prompt`` (TTS) and
runs its ``actions`` in order; then the caller's input picks a transition:

    name = "helpdesk"                 # becomes dialog_name of every call
    initial_state = "greeting"
    no_input_timeout = "6s"           # durations: 90, "90s", "500ms", "15m"
    max_duration = "15m"              # the call ends with reason "timeout" after this

    [intents.password_reset]          # matched against the final transcript
    keywords = ["password", "locked out"]
    examples = ["I need a password reset"]   # must match; simulated callers say them

    [hooks.lookup_account]            # an HTTP POST; "/path" is relative to the
    url = "/accounts/lookup"          # worker's hook base URL
    timeout = "2s"

    [states.greeting]
    prompt = "How can I help you today?"
    actions = [{ action = "set_variable", name = "greeted", value = true }]

    [[states.greeting.transitions]]
    on = "intent"                     # intent | dtmf | timeout | no_match |
    intent = "password_reset"         # hook_success | hook_failure
    to = "collect_info"

Actions: ``play`` (text), ``set_variable`` (name, value), ``hook`` (hook: its
outcome fires the state's ``hook_success``/``hook_failure`` transition at
once), ``hold`` (queue, seconds on hold), ``resume``, ``transfer`` (target,
seconds to connect; the call then ends with reason ``transfer``), ``hangup``
(ends with ``system_hangup``). A state without transitions ends the call with
reason ``normal`` once its actions have run.

Structure is checked by msgspec, meaning (unknown states, intents, hooks,
examples that miss their intent) by ``_check``; either way the error names the
file and the line (``DialogFileError``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Annotated, Final, TypeAlias, TypeVar

import msgspec

from callhub.events import Digit, InvalidDialogName, check_dialog_name
from callhub.settings import SettingsError, parse_duration_ms
from workers.dialog.toml_key_lines import Path as KeyPath
from workers.dialog.toml_key_lines import TomlKeyLines, describe_path, msgspec_error_path

# State, intent, hook and variable names end up in events (``Name``: at most
# 64 characters, one line); a plain identifier alphabet keeps them readable.
IDENTIFIER: Final = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
Identifier = Annotated[str, msgspec.Meta(pattern=IDENTIFIER)]
Duration = Annotated[str, msgspec.Meta(min_length=1)] | Annotated[int, msgspec.Meta(ge=0)]
PromptText = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
Value: TypeAlias = str | int | float | bool  # TOML has no null
Keyword = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class _Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Dialog file tables: a misspelt key is an error, not silently ignored."""


_S = TypeVar("_S", bound=_Spec)


# ---------------------------------------------------------------------------
# Actions (``action = "..."``)


class Play(_Spec, frozen=True, tag_field="action", tag="play"):
    """Speak ``text`` (TTS); ``{variable}`` is replaced by the call's variable."""

    text: PromptText
    voice: Identifier | None = None


class SetVariable(_Spec, frozen=True, tag_field="action", tag="set_variable"):
    name: Identifier
    value: Value


class CallHook(_Spec, frozen=True, tag_field="action", tag="hook"):
    hook: Identifier


class Hold(_Spec, frozen=True, tag_field="action", tag="hold"):
    """Put the caller on hold (status ``on_hold``) for ``seconds`` of dialog time."""

    queue: Identifier | None = None
    seconds: Annotated[float, msgspec.Meta(ge=0)] = 0.0


class Resume(_Spec, frozen=True, tag_field="action", tag="resume"):
    pass


class Transfer(_Spec, frozen=True, tag_field="action", tag="transfer"):
    """Hand the call to ``target`` (status ``transferring``); it then ends (``transfer``)."""

    target: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\r\n]*$")]
    seconds: Annotated[float, msgspec.Meta(ge=0)] = 2.0


class Hangup(_Spec, frozen=True, tag_field="action", tag="hangup"):
    pass


ActionSpec: TypeAlias = Play | SetVariable | CallHook | Hold | Resume | Transfer | Hangup


# ---------------------------------------------------------------------------
# Transitions (``on = "..."``)


class OnIntent(_Spec, frozen=True, tag_field="on", tag="intent"):
    intent: Identifier
    to: Identifier


class OnDtmf(_Spec, frozen=True, tag_field="on", tag="dtmf"):
    """A key press; without ``digit``, any key."""

    to: Identifier
    digit: Digit | None = None


class OnTimeout(_Spec, frozen=True, tag_field="on", tag="timeout"):
    """The caller said and pressed nothing for the state's no-input timeout."""

    to: Identifier


class OnNoMatch(_Spec, frozen=True, tag_field="on", tag="no_match"):
    """Speech or a key that no other transition of the state matched."""

    to: Identifier


class OnHookSuccess(_Spec, frozen=True, tag_field="on", tag="hook_success"):
    to: Identifier
    hook: Identifier | None = None


class OnHookFailure(_Spec, frozen=True, tag_field="on", tag="hook_failure"):
    to: Identifier
    hook: Identifier | None = None


TransitionSpec: TypeAlias = (
    OnIntent | OnDtmf | OnTimeout | OnNoMatch | OnHookSuccess | OnHookFailure
)
InputTransition: TypeAlias = OnIntent | OnDtmf | OnTimeout | OnNoMatch


# ---------------------------------------------------------------------------
# Tables


class IntentSpec(_Spec, frozen=True, dict=True):
    """An intent: recognised when the final transcript contains one of its keywords."""

    keywords: Annotated[list[Keyword], msgspec.Meta(min_length=1)]
    examples: list[Annotated[str, msgspec.Meta(min_length=1, max_length=500)]] = []

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """Whole words or phrases, case-insensitive: "no" does not match "know"."""
        words = sorted((re.escape(k.lower()) for k in self.keywords), key=len, reverse=True)
        return re.compile(r"(?<![\w'])(?:" + "|".join(words) + r")(?![\w'])")

    def matches(self, transcript: str) -> bool:
        return self.pattern.search(transcript.lower()) is not None


class HookSpec(_Spec, frozen=True):
    """An HTTP hook: POSTs the call's context as JSON, answers ``{"variables": {...}}``."""

    url: Annotated[str, msgspec.Meta(min_length=1)]
    timeout: Duration = "5s"
    headers: dict[str, str] = {}

    @property
    def timeout_s(self) -> float:
        return _duration_s(self.timeout)


class StateSpec(_Spec, frozen=True):
    prompt: PromptText | None = None
    actions: list[ActionSpec] = []
    transitions: list[TransitionSpec] = []
    no_input_timeout: Duration | None = None

    @property
    def input_transitions(self) -> list[InputTransition]:
        return [t for t in self.transitions if isinstance(t, InputTransition)]

    @property
    def listens(self) -> bool:
        """Does the caller's input matter here (does the state wait for it)?"""
        return bool(self.input_transitions)


class Dialog(_Spec, frozen=True):
    """One dialog file, validated: what the runtime runs."""

    name: str
    initial_state: Identifier
    states: dict[Identifier, StateSpec]
    language: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] = "en"
    voice: Identifier = "en-US-Standard-C"
    no_input_timeout: Duration = "5s"
    max_duration: Duration = "15m"
    intents: dict[Identifier, IntentSpec] = {}
    hooks: dict[Identifier, HookSpec] = {}

    @property
    def no_input_timeout_s(self) -> float:
        return _duration_s(self.no_input_timeout)

    @property
    def max_duration_s(self) -> float:
        return _duration_s(self.max_duration)

    def timeout_in(self, state: StateSpec) -> float:
        """The no-input timeout of ``state`` (its own, else the dialog's), seconds."""
        if state.no_input_timeout is None:
            return self.no_input_timeout_s
        return _duration_s(state.no_input_timeout)


def _duration_s(value: str | int) -> float:
    return parse_duration_ms("duration", str(value)) / 1000


# ---------------------------------------------------------------------------
# Loading


class DialogFileError(ValueError):
    """A dialog file that cannot be used; ``str()`` is ``file:line: message``."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


class _Problem(Exception):
    def __init__(self, path: KeyPath, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def load_dialog(path: str | Path) -> Dialog:
    """Read and validate a dialog file; raises ``DialogFileError``."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DialogFileError(file, 1, f"cannot read the dialog file: {error}") from None
    return parse_dialog(text, file)


def parse_dialog(text: str, file: str = "<dialog>") -> Dialog:
    """Validate a dialog file's text; errors name ``file`` and the line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        line, message = _toml_error_line(str(error), text)
        raise DialogFileError(file, line, f"invalid TOML: {message}") from None
    lines = TomlKeyLines(text)
    try:
        _check_named_tables(raw)
        dialog = _convert(raw, Dialog, ())
        _check(dialog)
    except _Problem as problem:
        where = f"{describe_path(problem.path)}: " if problem.path else ""
        raise DialogFileError(file, lines.line_of(problem.path),
                              f"{where}{problem.message}") from None
    return dialog


_NAMED_TABLES: Final[dict[str, type[_Spec]]] = {
    "states": StateSpec, "intents": IntentSpec, "hooks": HookSpec,
}


def _check_named_tables(raw: dict[str, object]) -> None:
    """Validate ``[states.<name>]``-style tables one by one.

    msgspec's error path stops at a dict key (``$.states[...]``); converting
    each named table alone keeps its name in the path, hence in the line found.
    """
    for table, spec in _NAMED_TABLES.items():
        named = raw.get(table)
        if not isinstance(named, dict):
            continue  # missing or not a table: the whole-file conversion says so
        for name, value in named.items():
            if not re.match(IDENTIFIER, name):
                raise _Problem((table, name), "a name is 1-64 characters of A-Z a-z 0-9 _ . - "
                               "starting with a letter, digit or _")
            _convert(value, spec, (table, name))


def _convert(value: object, spec: type[_S], at: KeyPath) -> _S:
    try:
        return msgspec.convert(value, spec)
    except msgspec.ValidationError as error:
        where = (*at, *msgspec_error_path(str(error)))
        message = str(error).split(" - at `", 1)[0]
        unknown = re.match(r"Object contains unknown field `([^`]+)`", message)
        if unknown:  # point at the misspelt key itself, not at its table
            where = (*where, unknown.group(1))
            message = "unknown key (misspelt?)"
        raise _Problem(where, message) from None


def _toml_error_line(message: str, text: str) -> tuple[int, str]:
    match = re.search(r"\s*\(at line (\d+), column \d+\)$", message)
    if match:
        return int(match.group(1)), message[: match.start()]
    match = re.search(r"\s*\(at end of document\)$", message)
    if match:
        return max(1, len(text.splitlines())), message[: match.start()] + " at the end of the file"
    return 1, message


def _check(dialog: Dialog) -> None:
    """What msgspec cannot know: names that must refer to something, sane values."""
    try:
        check_dialog_name(dialog.name)
    except InvalidDialogName as error:
        raise _Problem(("name",), str(error)) from None
    for key in ("no_input_timeout", "max_duration"):
        _check_duration((key,), getattr(dialog, key), positive=True)
    if dialog.initial_state not in dialog.states:
        raise _Problem(("initial_state",), f"there is no state {dialog.initial_state!r}")
    for name, intent in dialog.intents.items():
        for index, example in enumerate(intent.examples):
            if not intent.matches(example):
                raise _Problem(("intents", name, "examples", index),
                               f"the example {example!r} contains none of the intent's keywords")
    for name, hook in dialog.hooks.items():
        _check_duration(("hooks", name, "timeout"), hook.timeout, positive=True)
        if not re.match(r"^(https?://[^/\s]+)?/\S*$", hook.url):
            raise _Problem(("hooks", name, "url"),
                           f"{hook.url!r} is neither an http(s) URL nor a /path")
    for state_name, state in dialog.states.items():
        here: KeyPath = ("states", state_name)
        if state.no_input_timeout is not None:
            _check_duration((*here, "no_input_timeout"), state.no_input_timeout, positive=True)
        for index, action in enumerate(state.actions):
            if isinstance(action, CallHook) and action.hook not in dialog.hooks:
                raise _Problem((*here, "actions", index, "hook"), _unknown("hook", action.hook,
                                                                           dialog.hooks))
        for index, transition in enumerate(state.transitions):
            at: KeyPath = (*here, "transitions", index)
            if transition.to not in dialog.states:
                raise _Problem((*at, "to"), _unknown("state", transition.to, dialog.states))
            if isinstance(transition, OnIntent) and transition.intent not in dialog.intents:
                raise _Problem((*at, "intent"),
                               _unknown("intent", transition.intent, dialog.intents))
            if (isinstance(transition, OnHookSuccess | OnHookFailure)
                    and transition.hook is not None and transition.hook not in dialog.hooks):
                raise _Problem((*at, "hook"), _unknown("hook", transition.hook, dialog.hooks))


def _check_duration(path: KeyPath, value: str | int, *, positive: bool) -> None:
    try:
        seconds = _duration_s(value)
    except SettingsError:
        raise _Problem(path, f"{value!r} is not a duration like 90, 90s, 500ms or 15m") from None
    if positive and seconds <= 0:
        raise _Problem(path, "must be longer than 0")


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    names = ", ".join(sorted(known)) or "none"
    return f"there is no {kind} {name!r} (known: {names})"
