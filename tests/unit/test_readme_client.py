"""The README's "Integrate with callhub" code type-checks (mypy --strict) against
callhub.client as it is: the snippets a user copies first cannot rot."""

from __future__ import annotations

from pathlib import Path

from mypy import api as mypy_api

from tests.support.readme import code_blocks, section

INTEGRATE = section("Integrate with callhub")


def test_the_python_examples_type_check_strictly(tmp_path: Path) -> None:
    blocks = code_blocks(INTEGRATE, "python")
    assert len(blocks) == 2
    assert len(blocks[0].splitlines()) <= 14  # the short example the section starts with
    for number, block in enumerate(blocks):
        (tmp_path / f"example_{number}.py").write_text(block)
    out, err, status = mypy_api.run(["--strict", "--no-incremental", "--cache-dir",
                                     str(tmp_path / ".mypy"),
                                     *(str(p) for p in sorted(tmp_path.glob("*.py")))])
    assert status == 0, out + err
