"""``callhub export`` run as a user runs it: a subprocess with no CALLHUB_ settings
of the test's own environment, and its JSON lines read back."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any


async def export(*args: str, env: dict[str, str] | None = None) -> tuple[int, bytes, str]:
    """``callhub export ARGS``: its exit status, stdout and stderr."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CALLHUB_")}
    environment.update(env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callhub.cli", "export", *args, env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out, err.decode()


def lines(out: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]
