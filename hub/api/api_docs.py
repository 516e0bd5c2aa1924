"""The API reference at ``/docs``: Swagger UI over this replica's ``/openapi.json``.

Swagger UI's files come from a PyPI package (``swagger-ui-bundle-v2``) and are
served by the replica itself, so the page loads nothing from anywhere else
(its Content-Security-Policy says so to the browser too: a hub is often run
where the internet is not reachable, and a reference page must not phone
out). Only what the page uses is served: the bundle, its stylesheet, the
favicon, and a small start-up script of ours (no inline script). The files sit
under their Swagger UI version in the URL, so a browser may keep them for a
year; each is read and gzipped once per process (the bundle is 1.5 MB, about
410 KB gzipped).
"""

from __future__ import annotations

import gzip
import re
from functools import cache
from importlib.resources.abc import Traversable
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from hub.errors import NotFound

_ASSETS: Final = {  # served name: (file in the package, media type)
    "swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "swagger-ui.css": ("swagger-ui.css", "text/css; charset=utf-8"),
    "favicon.png": ("favicon-32x32.png", "image/png"),
}
_COMPRESSIBLE: Final = ("text/javascript; charset=utf-8", "text/css; charset=utf-8")

# 'unsafe-inline' for styles only: Swagger UI sets style attributes. Requests
# go to this origin only (connect-src 'self'): the page cannot reach out.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

# Swagger UI's options (its docs: "Configuration"): no validator badge (it
# would call validator.swagger.io), the Bearer key kept across reloads, deep
# links to each operation. The document's URL is relative, so a path prefix in
# front of the hub (a proxy's /hub/) keeps working.
_START: Final = """window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    persistAuthorization: true,
    displayRequestDuration: true,
  });
});
"""


def _viewer_folder() -> Traversable:
    from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

    folder: Traversable = swagger_ui_path
    return folder


@cache
def viewer_version() -> str:
    """Swagger UI's version, from the package's folder name (``swagger-ui-5.31.0``)."""
    found = re.fullmatch(r"swagger-ui-(.+)", _viewer_folder().name)
    return found.group(1) if found else "current"


@cache
def _page() -> bytes:
    base = f"docs/{viewer_version()}"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>callhub API reference</title>
<link rel="icon" type="image/png" href="{base}/favicon.png">
<link rel="stylesheet" href="{base}/swagger-ui.css">
</head>
<body>
<noscript>The API reference needs JavaScript; the document itself is
<a href="openapi.json">/openapi.json</a>.</noscript>
<div id="swagger-ui"></div>
<script src="{base}/swagger-ui-bundle.js"></script>
<script src="{base}/start.js"></script>
</body>
</html>
""".encode()


@cache
def _asset(name: str) -> tuple[bytes, bytes | None, str] | None:
    """An asset's bytes, gzipped bytes (text only) and media type; None if not served."""
    if name == "start.js":
        body = _START.encode()
        return body, gzip.compress(body), "text/javascript; charset=utf-8"
    if name not in _ASSETS:
        return None
    file, media_type = _ASSETS[name]
    body = _viewer_folder().joinpath(file).read_bytes()
    packed = gzip.compress(body, 6) if media_type in _COMPRESSIBLE else None
    return body, packed, media_type


async def api_docs(request: Request) -> Response:
    """``/docs``: the page (relative links, so a path prefix in front of the hub works)."""
    return Response(_page(), media_type="text/html; charset=utf-8", headers={
        "Cache-Control": "no-cache", "Content-Security-Policy": CONTENT_SECURITY_POLICY})


async def api_docs_asset(request: Request) -> Response:
    """``/docs/<version>/<file>``: a viewer file, cached for good under its version."""
    found = _asset(request.path_params["name"])
    if found is None or request.path_params["version"] != viewer_version():
        raise NotFound(f"no such file of the API reference (Swagger UI {viewer_version()})")
    body, packed, media_type = found
    headers = {"Cache-Control": "public, max-age=31536000, immutable",
               "Vary": "Accept-Encoding"}
    if packed is not None and "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        body = packed
    return Response(body, media_type=media_type, headers=headers)
