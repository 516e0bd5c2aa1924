"""``/docs``: the API reference page and the viewer files it loads, all from the
replica itself (hub/api/api_docs.py); the browser test is tests/e2e/test_api_docs.py."""

from __future__ import annotations

import re

import httpx

from callhub.settings import Settings
from hub.api.api_docs import viewer_version
from tests.support.hubs import serving


async def test_the_page_loads_only_files_the_replica_serves_under_its_version(
    settings: Settings,
) -> None:
    async with serving(settings) as live, httpx.AsyncClient(base_url=live.url) as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy
        links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert links and not [link for link in links if "//" in link or link.startswith("/")]
        for link in links:
            asset = await client.get(f"/{link}")  # relative to /docs: under the root
            assert asset.status_code == 200, link
            if link.endswith(".js"):
                assert asset.headers["content-type"].startswith("text/javascript")
                assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        start = next(link for link in links if link.endswith("/start.js"))
        script = (await client.get(f"/{start}")).text
        assert 'url: "openapi.json"' in script and "validatorUrl: null" in script
        assert (await client.get("/openapi.json")).status_code == 200


async def test_text_files_go_gzipped_to_clients_that_take_it_and_plain_to_others(
    settings: Settings,
) -> None:
    async with serving(settings) as live, httpx.AsyncClient(base_url=live.url) as client:
        bundle = next(link for link in re.findall(r'src="([^"]+)"', (await client.get(
            "/docs")).text) if link.endswith("swagger-ui-bundle.js"))
        packed = await client.get(f"/{bundle}", headers={"Accept-Encoding": "gzip"})
        raw = await client.get(f"/{bundle}", headers={"Accept-Encoding": "identity"})
    assert packed.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in raw.headers
    assert packed.content == raw.content  # httpx decoded the gzip
    assert int(packed.headers["content-length"]) < len(raw.content) // 3


async def test_unknown_files_and_other_versions_are_json_404s(settings: Settings) -> None:
    async with serving(settings) as live, httpx.AsyncClient(base_url=live.url) as client:
        version = viewer_version()
        for path in ("/docs/0.0.1/swagger-ui-bundle.js", f"/docs/{version}/../../etc/passwd",
                     f"/docs/{version}/index.html", f"/docs/{version}/swagger-ui-bundle.js.map",
                     f"/docs/{version}/%2e%2e%2fswagger-ui.css"):
            answer = await client.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["error"]["code"] == "not_found"


async def test_the_docs_answers_carry_each_security_header_once(settings: Settings) -> None:
    async with serving(settings) as live, httpx.AsyncClient(base_url=live.url) as client:
        page = await client.get("/docs")
        bundle = next(link for link in re.findall(r'src="([^"]+)"', page.text)
                      if link.endswith("swagger-ui-bundle.js"))
        for answer in (page, await client.get(f"/{bundle}")):
            assert answer.headers.get_list("x-content-type-options") == ["nosniff"]
