"""The published event schema in TypeScript: ``json-schema-to-typescript`` generates
types from ``GET /v1/schemas/events.json`` and ``tsc --noEmit --strict`` type-checks
the spec's EventSource example with them, and refuses a consumer that misuses them.

The tools come from the npm registry, at the versions in
tests/data/typescript/package.json, installed by this test into
tests/artifacts/typescript (kept between runs, so only the first run waits for
npm). Without node and npm the test fails, naming them: it is never skipped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.paths import ARTIFACTS, DATA

SOURCES = DATA / "typescript"
TOOLS = ARTIFACTS / "typescript"


def npm_tools() -> Path:
    """node_modules/.bin with json2ts and tsc, installed if the versions changed."""
    for program in ("node", "npm"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is not installed: the TypeScript check needs Node.js and npm")
    TOOLS.mkdir(parents=True, exist_ok=True)
    wanted = (SOURCES / "package.json").read_text()
    installed = TOOLS / "package.json"
    binaries = TOOLS / "node_modules" / ".bin"
    if not (installed.exists() and installed.read_text() == wanted
            and (binaries / "json2ts").exists() and (binaries / "tsc").exists()):
        installed.write_text(wanted)
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"],
                              cwd=TOOLS, capture_output=True, text=True, timeout=300,
                              check=False)
        assert done.returncode == 0, f"npm install failed: {done.stderr[-2000:]}"
    return binaries


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


async def test_types_generated_from_the_served_schema_check_the_spec_example(
    api: httpx.AsyncClient, tmp_path: Path,
) -> None:
    binaries = npm_tools()
    document = (await api.get("/v1/schemas/events.json")).json()
    (tmp_path / "events.schema.json").write_text(json.dumps(document))
    generated = run(binaries / "json2ts", "-i", "events.schema.json", "-o", "events.d.ts",
                    cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr
    declarations = (tmp_path / "events.d.ts").read_text()
    assert "export type CallEvent =" in declarations
    for name in ("consumer.ts", "misuse.ts"):
        shutil.copy(SOURCES / name, tmp_path / name)
    tsc = (binaries / "tsc", "--noEmit", "--strict", "--target", "es2020", "--lib",
           "es2020,dom", "--module", "es2020", "--moduleResolution", "bundler")
    good = run(*tsc, "consumer.ts", cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = run(*tsc, "misuse.ts", cwd=tmp_path)
    assert bad.returncode != 0
    # The schema allows properties it does not name (newer hubs add some): to the
    # types an unnamed one is ``unknown``, never the string a misuse took it for.
    assert "misuse.ts(5,14): error TS2322: Type 'unknown' is not assignable to type " \
        "'string'" in bad.stdout
    assert "misuse.ts(6,14): error TS2322: Type '\"hangup\"' is not assignable" in bad.stdout
