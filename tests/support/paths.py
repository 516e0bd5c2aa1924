"""Where the tests find the project's files: one place, whatever a test module's depth."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout
DATA = ROOT / "tests" / "data"
ARTIFACTS = ROOT / "tests" / "artifacts"  # screenshots and logs kept for a person to look at
