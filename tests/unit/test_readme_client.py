"""The Python of the README's "Integrate with callhub" (committing with
CallPublisher, consuming with callhub.client) and of docs/client.md type-checks
(mypy --strict) against callhub as it is: the snippets a user copies first
cannot rot. (tests/integration/test_readme_publisher.py runs the first.)"""

from __future__ import annotations

from pathlib import Path

from mypy import api as mypy_api

from tests.support.readme import code_blocks, document, section

INTEGRATE = section("Integrate with callhub")
CLIENT = document("client.md")


def test_the_python_examples_type_check_strictly(tmp_path: Path) -> None:
    publisher, consumer = code_blocks(INTEGRATE, "python")
    assert "CallPublisher" in publisher and len(publisher.splitlines()) <= 20
    assert len(consumer.splitlines()) <= 14  # the short example
    client_blocks = code_blocks(CLIENT, "python")
    assert len(client_blocks) == 2
    assert client_blocks[0] == consumer  # docs/client.md opens with the README's example
    for number, block in enumerate([publisher, consumer, client_blocks[1]]):
        (tmp_path / f"example_{number}.py").write_text(block)
    out, err, status = mypy_api.run(["--strict", "--no-incremental", "--cache-dir",
                                     str(tmp_path / ".mypy"),
                                     *(str(p) for p in sorted(tmp_path.glob("*.py")))])
    assert status == 0, out + err
