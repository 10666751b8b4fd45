"""The API documentation pages: Swagger UI at /docs, ReDoc at /redoc (BILLING_API_DOCS).

Both pages load their scripts and styles from us, never from a CDN: Swagger UI's and
ReDoc's prebuilt bundles are committed under `apidocs_assets/` (from the npm packages
`swagger-ui-dist` and `redoc`, with their licences; `scripts/vendor-apidocs.sh` refreshes
them) and served at /docs/assets/<file>. So the pages work on a machine without internet
access, and a browser opening them asks nothing of any other host (checked in headless
Chromium with every other host unreachable, `tests/security/test_apidocs_browser.py`).

FastAPI's own /docs page starts Swagger UI from an inline <script>, which a strict
Content-Security-Policy forbids; this one starts it from /docs/swagger-init.js, a file of
ours, so the pages' policy (`security/headers.py` DOCS_CSP) needs no 'unsafe-inline' for
scripts. ReDoc starts itself from the <redoc> element.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.exceptions import HTTPException

ASSETS_DIR: Final = Path(__file__).parent / "apidocs_assets"
ASSETS_PREFIX: Final = "/docs/assets/"
# The files a page may ask for, and their types: nothing else under the folder is served
# (its licences and checksums are for people, not browsers).
ASSETS: Final[dict[str, str]] = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}

_SWAGGER_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="icon" type="image/png" href="{ASSETS_PREFIX}favicon-32x32.png">
<link rel="stylesheet" href="{ASSETS_PREFIX}swagger-ui.css">
<title>{{title}}</title>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS_PREFIX}swagger-ui-bundle.js"></script>
<script src="/docs/swagger-init.js"></script>
</body>
</html>
"""

# `validatorUrl: null`: Swagger UI would otherwise send the spec's address to an online
# validator for its badge; the spec is checked in our tests (openapi-spec-validator).
_SWAGGER_INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""

# No web fonts: ReDoc falls back to the browser's own (a font service would be another host).
_REDOC_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" type="image/png" href="{ASSETS_PREFIX}favicon-32x32.png">
<style>body {{ margin: 0; padding: 0; }}</style>
<title>{{title}}</title>
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src="{ASSETS_PREFIX}redoc.standalone.js"></script>
</body>
</html>
"""


def install(app: FastAPI) -> None:
    """Adds /docs, /docs/swagger-init.js, /docs/assets/<file> and /redoc (the app serves
    /openapi.json)."""
    title = app.title.replace("<", "").replace("&", "")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(_SWAGGER_PAGE.replace("{title}", title))

    @app.get("/docs/swagger-init.js", include_in_schema=False)
    async def swagger_init() -> Response:
        return Response(_SWAGGER_INIT, media_type="text/javascript")

    @app.get(ASSETS_PREFIX + "{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(404, "no such documentation asset")
        # The files change only with a release: a browser may keep them for a day.
        return FileResponse(
            ASSETS_DIR / name,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return HTMLResponse(_REDOC_PAGE.replace("{title}", title))
