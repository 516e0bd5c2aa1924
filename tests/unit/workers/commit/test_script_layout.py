"""The Lua scripts and ``callhub.layout`` name the same fields and positions.

The commit script is the one writer of stream entries and call hashes, and
Python reads them by the names in ``callhub/layout.py``: these tests read the
scripts' text and fail when a field or a KEYS/ARGV position is added, renamed
or moved on one side only.
"""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime
from typing import Any, get_args

from callhub import events as ev
from callhub.call_views import CallStatus
from callhub.keyspace import Keyspace
from callhub.layout import (
    CALL_FIELDS,
    CALL_STATUSES,
    CALL_VAR_PREFIX,
    COMMIT_NUMKEYS,
    ENTRY_FIELDS,
    CommitArg,
    CommitKey,
    commit_arguments,
)
from callhub.settings import Settings
from workers.commit.leases import RENEW_SCRIPT, LeaseKeeper
from workers.commit.publisher import COMMIT_SCRIPT, CallPublisher

# How the commit script names each ARGV position in Lua (a new CommitArg needs a line).
ARGV_LOCALS = {
    "EVENT_TYPE": "etype",
    "SESSION_ID": "sid",
    "SEQ": "seq_arg",
    "DATA": "data",
    "DIALOG_NAME": "dialog",
    "EVENT_MS": "event_ms",
    "LOG_RETENTION_MS": "log_retention",
    "CALL_RETENTION_MS": "call_retention",
    "LEASE_MS": "lease",
    "ATTRIBUTE_A": "a",
    "ATTRIBUTE_B": "b",
    "CALLER_ID": "caller",
}

STRING = re.compile(r"^'([^']*)'$")
VAR_FIELD = re.compile(r"^'([^']*)' \.\. ")  # 'var:' .. name


def positions(namespace: type) -> dict[str, int]:
    return {name: value for name, value in vars(namespace).items() if name.isupper()}


def code(script: str) -> str:
    """The script without its comments (none of its strings holds ``--``)."""
    return re.sub(r"--[^\n]*", "", script)


def split_top(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and strings, stripped."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [" ".join(part.split()) for part in parts]


def redis_calls(script: str) -> list[tuple[str, list[str]]]:
    """Every ``redis.call(...)``: the command and its other arguments, as text."""
    calls = []
    for match in re.finditer(r"redis\.call\(", script):
        depth, i = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(script[i], 0)
            i += 1
        command, *args = split_top(script[match.end():i - 1])
        calls.append((STRING.fullmatch(command).group(1), args))  # type: ignore[union-attr]
    return calls


def literal(arg: str) -> str:
    match = STRING.fullmatch(arg)
    assert match, f"{arg!r} is not a string literal"
    return match.group(1)


def locals_bound_to(script: str, array: str) -> dict[str, int]:
    """Lua local -> the ``array`` index (KEYS or ARGV) its ``local`` statement reads."""
    bound: dict[str, int] = {}
    for names, values in re.findall(r"^local ([\w, ]+?)\s*=\s*(.+?)\n(?!\s)", script,
                                    re.MULTILINE | re.DOTALL):
        for name, value in zip(names.split(","), split_top(values), strict=False):
            index = re.fullmatch(rf"(?:tonumber\()?{array}\[(\d+)\]\)?", value)
            if index:
                bound[name.strip()] = int(index.group(1))
    return bound


COMMIT = code(COMMIT_SCRIPT)
CALLS = redis_calls(COMMIT)


def test_every_stream_entry_has_the_layouts_fields_in_its_order() -> None:
    xadds = [args for command, args in CALLS if command == "XADD"]
    assert len(xadds) == 3  # the log, trimmed or not, and the call's stream
    assert all(args[-1] == "unpack(fields)" for args in xadds)
    table = re.search(r"^local fields = \{(.*?)\}$", COMMIT, re.MULTILINE)
    assert table
    written = split_top(table.group(1))[::2]
    assert tuple(literal(name).encode() for name in written) == ENTRY_FIELDS


def test_the_script_reads_entries_by_the_layouts_field_names() -> None:
    read = re.findall(r"fields\[i\] == '(\w+)'", COMMIT)
    assert read
    assert {name.encode() for name in read} <= set(ENTRY_FIELDS)


def hash_fields(command: str, args: list[str]) -> list[str]:
    """The field arguments of a hash command (its key first)."""
    assert args[0] == "call", f"{command} of {args[0]}, not the call hash"
    match command:
        case "HSET":
            return args[1::2]
        case "HINCRBY":
            return [args[1]]
        case "HMGET" | "HDEL":
            return args[1:]
    raise AssertionError(command)


HASH_COMMANDS = ("HSET", "HINCRBY", "HMGET", "HDEL")


def test_the_call_hash_holds_exactly_the_layouts_fields() -> None:
    written, prefixes, read = set(), set(), set()
    for command, args in CALLS:
        if command not in HASH_COMMANDS:
            continue
        for field in hash_fields(command, args):
            prefix = VAR_FIELD.match(field)
            if prefix:
                prefixes.add(prefix.group(1).encode())
            elif command in ("HSET", "HINCRBY"):
                written.add(literal(field).encode())
            else:
                read.add(literal(field).encode())
    assert written == set(CALL_FIELDS)
    assert len(CALL_FIELDS) == len(set(CALL_FIELDS))
    assert read <= written
    assert prefixes == {CALL_VAR_PREFIX}


def test_the_statuses_the_script_writes_are_the_layouts_and_the_apis() -> None:
    statuses = {
        literal(value).encode()
        for command, args in CALLS if command == "HSET"
        for field, value in zip(args[1::2], args[2::2], strict=True)
        if field == "'status'"
    }
    assert statuses == set(CALL_STATUSES)
    assert {status.decode() for status in CALL_STATUSES} == set(get_args(CallStatus))


def test_the_scripts_keys_are_the_layouts_positions() -> None:
    used = {int(n) for n in re.findall(r"KEYS\[(\d+)\]", COMMIT)}
    assert used == set(range(1, COMMIT_NUMKEYS + 1))
    bound = locals_bound_to(COMMIT, "KEYS")
    # CommitKey's names are the script's local names, upper-cased.
    assert {name.upper(): index - 1 for name, index in bound.items()} == positions(CommitKey)


def test_the_scripts_argv_is_the_layouts_positions() -> None:
    fixed = positions(CommitArg)
    variables_from = fixed.pop("VARIABLES")
    used = {int(n) for n in re.findall(r"ARGV\[(\d+)\]", COMMIT)}
    assert used == set(range(1, variables_from + 1))
    loop = re.search(r"for i = (\d+), #ARGV, 2 do", COMMIT)
    assert loop and int(loop.group(1)) == variables_from + 1
    bound = locals_bound_to(COMMIT, "ARGV")
    assert set(ARGV_LOCALS) == set(fixed)
    assert {name: bound[ARGV_LOCALS[name]] - 1 for name in fixed} == fixed
    assert sorted(fixed.values()) == list(range(variables_from))


def test_commit_arguments_puts_each_value_at_its_position() -> None:
    fixed = positions(CommitArg)
    variables_from = fixed.pop("VARIABLES")
    parameters = list(inspect.signature(commit_arguments).parameters)
    assert parameters == ["keys", *(name.lower() for name in sorted(fixed, key=fixed.__getitem__))]
    keys = [f"key-{n}" for n in range(COMMIT_NUMKEYS)]
    values: dict[str, Any] = {name.lower(): f"value-{name}" for name in fixed}
    args = commit_arguments(keys, **values)
    assert len(args) == COMMIT_NUMKEYS + variables_from
    assert args[:COMMIT_NUMKEYS] == keys
    for name, position in fixed.items():
        assert args[COMMIT_NUMKEYS + position] == f"value-{name}"


def test_commit_keys_are_in_the_layouts_positions() -> None:
    keyspace = Keyspace(shards=4)
    sid, dialog = "call-abc-123", "helpdesk"
    shard = keyspace.shard_of(sid)
    expected = {
        "LOG": keyspace.log(shard),
        "CALL": keyspace.call(sid),
        "EVENTS": keyspace.call_events(sid),
        "ACTIVE": keyspace.active(shard),
        "ACTIVE_DIALOG": keyspace.active_dialog(shard, dialog),
        "LEASES": keyspace.leases(shard),
        "ENDED": keyspace.ended(shard),
        "ENDED_DIALOG": keyspace.ended_dialog(shard, dialog),
        "ENDED_CALLER": keyspace.ended_caller(shard, "+15551234567"),
        "ENDED_DIALOG_CALLER": keyspace.ended_dialog_caller(shard, dialog, "+15551234567"),
    }
    keys = keyspace.commit_keys(sid, dialog, "+15551234567")
    assert len(keys) == COMMIT_NUMKEYS
    assert {name: keys[position] for name, position in positions(CommitKey).items()} == expected


def test_the_publisher_sends_each_value_at_its_position() -> None:
    settings = Settings(shards=4)
    event = ev.ActionExecuted(event_id="e-3", session_id="call-7", seq=3, action="hold",
                              state="menu", variables={"tier": "gold", "note": None},
                              timestamp=datetime(2025, 6, 14, 18, 30, 1, tzinfo=UTC))
    data = ev.encode_event(event)
    args = CallPublisher(None, settings)._arguments(  # type: ignore[arg-type]
        event, data, {"call-7": ("helpdesk", "+15550001111")})
    argv = args[COMMIT_NUMKEYS:]
    assert args[:COMMIT_NUMKEYS] == list(
        settings.keyspace.commit_keys("call-7", "helpdesk", "+15550001111"))
    assert {name: argv[position] for name, position in positions(CommitArg).items()
            if name != "VARIABLES"} == {
        "EVENT_TYPE": "action_executed", "SESSION_ID": "call-7", "SEQ": 3, "DATA": data,
        "DIALOG_NAME": "helpdesk", "EVENT_MS": 1749925801000,
        "LOG_RETENTION_MS": settings.log_retention_ms,
        "CALL_RETENTION_MS": settings.call_retention_ms, "LEASE_MS": settings.lease_ms,
        "ATTRIBUTE_A": "hold", "ATTRIBUTE_B": "", "CALLER_ID": "+15550001111",
    }
    assert argv[CommitArg.VARIABLES:] == ["tier", b'"gold"', "note", b"null"]


class RecordingRedis:
    """What LeaseKeeper sends its script."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[Any], list[Any]]] = []

    def register_script(self, script: str) -> Any:
        async def run(keys: list[Any], args: list[Any]) -> int:
            self.calls.append((keys, args))
            return 0
        return run

    async def script_load(self, script: str) -> str:
        return ""


async def test_the_lease_script_gets_the_leases_key_then_the_lease_and_session_ids() -> None:
    renew = code(RENEW_SCRIPT)
    assert set(re.findall(r"KEYS\[(\d+)\]", renew)) == {"1"}
    assert set(re.findall(r"ARGV\[(\w+)\]", renew)) == {"1", "i"}
    assert re.search(r"for i = 2, #ARGV do", renew)
    assert [command for command, _ in redis_calls(renew)] == ["TIME", "ZADD"]
    keyspace = Keyspace(shards=1)
    redis = RecordingRedis()
    keeper = LeaseKeeper(redis, keyspace, 30_000)  # type: ignore[arg-type]
    keeper.hold("call-1")
    await keeper.renew()
    assert redis.calls == [([keyspace.leases(0)], [30_000, "call-1"])]
