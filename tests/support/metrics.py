"""Reading a Prometheus scrape: every sample by ``name{labels}``."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` (labels sorted, quoted) -> value of every sample in a scrape."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


def scrape(url: str) -> tuple[str, dict[str, float]]:
    """GET ``url`` (a /metrics): its text and its samples."""
    text = httpx.get(url, timeout=2).raise_for_status().text
    return text, samples(text)
