"""The spec's example events (tests/data/spec_events.jsonl), as several test
modules use them: decoded, or committed by ``callhub publish`` as a user would."""

from __future__ import annotations

import os
import subprocess
import sys

from callhub import events as ev
from tests.support.paths import DATA
from workers.commit.event_lines import NumberedEvent, read_event_lines

SPEC_EVENTS = DATA / "spec_events.jsonl"


def spec_events() -> list[ev.Event]:
    """The example events, read the way ``callhub publish`` reads a file."""
    items = read_event_lines(SPEC_EVENTS.read_bytes().splitlines())
    return [item.event for item in items if isinstance(item, NumberedEvent)]


def publish_spec_examples(redis_url: str, lines: int, cluster: bool = False) -> None:
    """The first ``lines`` example events, committed by a ``callhub publish`` process."""
    events = b"".join(SPEC_EVENTS.read_bytes().splitlines(True)[:lines])
    env = {**os.environ, "CALLHUB_REDIS_CLUSTER": "true" if cluster else "false"}
    done = subprocess.run([sys.executable, "-m", "callhub.cli", "publish",
                           "--redis-url", redis_url],
                          input=events, capture_output=True, timeout=60, check=False, env=env)
    assert done.returncode == 0, done.stderr
