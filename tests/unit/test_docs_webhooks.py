"""docs/webhooks.md's receivers, run as written against deliveries callhub signs.

Each Python snippet of docs/webhooks.md (the ``standardwebhooks``
one and the hand-written one) and its Node snippet (when ``node`` is installed)
must accept what ``callhub.webhooks.delivery_headers`` signs, a rotation's two
signatures included, and refuse a tampered or re-serialised body, another id,
a stale timestamp, another secret and a missing signature.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from callhub import events as ev
from callhub.cursor import Cursor
from callhub.signing import new_secret
from callhub.webhooks import SigningSecret, Subscription, delivery_headers, message_id
from tests.support.readme import code_blocks, document
from tests.support.strategies import T0

WEBHOOKS = document("webhooks.md")
PYTHON_SNIPPETS = code_blocks(WEBHOOKS, "python")
NODE_SNIPPETS = code_blocks(WEBHOOKS, "javascript")
SECRET_VARIABLE = "CALLHUB_WEBHOOK_SECRET"  # where every snippet reads its secret

CURRENT, ROTATED_OUT, STRANGER = new_secret(), new_secret(), new_secret()
SESSION = "call-abc-123"
ENTRY = "1749925800012-0"


@dataclass(frozen=True)
class Case:
    what: str
    secret: str  # the one the receiver was given
    body: bytes
    headers: dict[str, str]
    accepted: bool


def subscription(*secrets: SigningSecret, cloudevents: bool = False) -> Subscription:
    return Subscription(id="wh_readme", name="crm", url="https://crm.example.com/callhub",
                        secrets=list(secrets), cloudevents=cloudevents)


def signed(sub: Subscription, body: bytes, *, now_s: int | None = None,
           entry: str = ENTRY) -> dict[str, str]:
    """The headers of a delivery of ``body``, as the forwarder sends them."""
    ms, _, seq = entry.partition("-")
    return dict(delivery_headers(
        sub, message=message_id(sub.id, f"0-{entry}"), body=body, event_type="speech_final",
        session_id=SESSION, seq="7", cursor=Cursor.at(1, 0, (int(ms), int(seq))).encode(),
        event_time="2025-06-14T18:30:00Z", now_s=now_s))


def cases() -> list[Case]:
    plain = subscription(SigningSecret(CURRENT))
    # Rotating: CURRENT is new, ROTATED_OUT still in its grace; both sign.
    rotating = subscription(SigningSecret(CURRENT),
                            SigningSecret(ROTATED_OUT, int(time.time() * 1000) + 3_600_000))
    body = ev.encode_event(ev.SpeechFinal(
        event_id="evt-007", session_id=SESSION, timestamp=T0, seq=7,
        transcript="Grüße – I need a password reset", confidence=0.94, language="en",
        duration_ms=1800))
    good = signed(plain, body)
    tampered = body.replace(b"password", b"passw0rd")
    reserialised = json.dumps(json.loads(body)).encode()  # spaces: no longer the bytes signed
    other_id = {**good, "webhook-id": message_id(plain.id, "0-1749925800013-0")}
    no_signature = {k: v for k, v in good.items() if k != "webhook-signature"}
    stale = signed(plain, body, now_s=int(time.time()) - 600)
    both = signed(rotating, body)
    assert len(both["webhook-signature"].split()) == 2
    return [
        Case("a delivery", CURRENT, body, good, True),
        Case("a delivery with mixed-case header names", CURRENT, body,
             {k.title(): v for k, v in good.items()}, True),
        Case("a tampered body", CURRENT, tampered, good, False),
        Case("a re-serialised body", CURRENT, reserialised, good, False),
        Case("another webhook-id", CURRENT, body, other_id, False),
        Case("no signature", CURRENT, body, no_signature, False),
        Case("a timestamp ten minutes old", CURRENT, body, stale, False),
        Case("another secret", STRANGER, body, good, False),
        Case("a rotation's two signatures, new secret", CURRENT, body, both, True),
        Case("a rotation's two signatures, rotated-out secret", ROTATED_OUT, body, both, True),
        Case("a rotation's two signatures, tampered", ROTATED_OUT, tampered, both, False),
    ]


def outcomes(run: Callable[[str, list[Case]], list[bool]]) -> dict[str, bool]:
    """What the receiver said to each case, running it once per secret it knows."""
    by_secret: dict[str, list[Case]] = {}
    for case in cases():
        by_secret.setdefault(case.secret, []).append(case)
    said: dict[str, bool] = {}
    for secret, group in by_secret.items():
        said.update(zip((c.what for c in group), run(secret, group), strict=True))
    return said


EXPECTED = {case.what: case.accepted for case in cases()}


def test_the_document_shows_both_python_receivers_and_a_node_one() -> None:
    assert len(PYTHON_SNIPPETS) == 2, "the standardwebhooks receiver and the hand-written one"
    assert "from standardwebhooks import" in PYTHON_SNIPPETS[0]
    assert "import hmac" in PYTHON_SNIPPETS[1] or "hmac," in PYTHON_SNIPPETS[1]
    assert "standardwebhooks" not in PYTHON_SNIPPETS[1]
    assert len(NODE_SNIPPETS) == 1 and 'require("node:crypto")' in NODE_SNIPPETS[0]
    for snippet in (*PYTHON_SNIPPETS, *NODE_SNIPPETS):
        assert SECRET_VARIABLE in snippet


def python_receiver(snippet: str, secret: str,
                    monkeypatch: pytest.MonkeyPatch) -> Callable[..., object]:
    """The snippet's ``verify``, run as a module of its own with ``secret`` set."""
    monkeypatch.setenv(SECRET_VARIABLE, secret)
    namespace: dict[str, object] = {"__name__": "readme_receiver"}
    exec(compile(snippet, "docs/webhooks.md (python)", "exec"), namespace)
    verify = namespace["verify"]
    assert callable(verify)
    return verify


@pytest.mark.parametrize("snippet", PYTHON_SNIPPETS, ids=["standardwebhooks", "hmac"])
def test_a_python_receiver_accepts_callhubs_signature_and_nothing_else(
    snippet: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def run(secret: str, group: list[Case]) -> list[bool]:
        verify = python_receiver(snippet, secret, monkeypatch)
        return [bool(verify(case.body, case.headers)) for case in group]

    assert outcomes(run) == EXPECTED


def test_the_standardwebhooks_receiver_returns_the_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verify = python_receiver(PYTHON_SNIPPETS[0], CURRENT, monkeypatch)
    good = cases()[0]
    assert verify(good.body, good.headers) == msgspec.json.decode(good.body)


def test_the_node_receiver_accepts_callhubs_signature_and_nothing_else(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = tmp_path / "receiver.cjs"
    script.write_text(NODE_SNIPPETS[0] + """
const cases = JSON.parse(require("node:fs").readFileSync(process.argv[2], "utf8"));
process.stdout.write(JSON.stringify(
  cases.map((c) => verify(Buffer.from(c.body, "base64"), c.headers))));
""", encoding="utf-8")

    def run(secret: str, group: list[Case]) -> list[bool]:
        given = tmp_path / "cases.json"
        # Node's http module gives header names in lower case.
        given.write_text(json.dumps([
            {"body": base64.b64encode(c.body).decode(),
             "headers": {k.lower(): v for k, v in c.headers.items()}} for c in group]))
        done = subprocess.run([node, str(script), str(given)], capture_output=True, text=True,
                              timeout=30, check=False,
                              env={**os.environ, SECRET_VARIABLE: secret})
        assert done.returncode == 0, done.stderr
        said: list[bool] = json.loads(done.stdout)
        return said

    assert outcomes(run) == EXPECTED


def test_every_header_a_delivery_carries_is_documented() -> None:
    sub = subscription(SigningSecret(CURRENT), cloudevents=True)
    names = {name for name, _ in delivery_headers(
        sub, message="msg_wh_readme_0-1-0", body=b"{}", event_type="dtmf_received",
        session_id=SESSION, seq="1", cursor="c", event_time="2025-06-14T18:30:00Z")}
    undocumented = {n for n in names - {"content-type"} if f"`{n}`" not in WEBHOOKS}
    assert not undocumented, f"docs/webhooks.md does not name {undocumented}"
