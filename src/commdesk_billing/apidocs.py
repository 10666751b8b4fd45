"""The API documentation pages: Swagger UI at /docs, ReDoc at /redoc (BILLING_API_DOCS).

FastAPI's own /docs page starts Swagger UI from an inline <script>, which a strict
Content-Security-Policy forbids; this one loads the same UI (the same jsDelivr files FastAPI
names) and starts it from /docs/swagger-init.js, a file of ours, so the page's policy
(`security/headers.py` DOCS_CSP) needs no 'unsafe-inline' for scripts. The pages load their
scripts from the CDN: a browser without internet access shows them blank (the API and
/openapi.json are unaffected).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response

SWAGGER_JS = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"
SWAGGER_CSS = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"
REDOC_JS = "https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"
REDOC_FONTS = "https://fonts.googleapis.com/css?family=Montserrat:300,400,700|Roboto:300,400,700"

_SWAGGER_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="{SWAGGER_CSS}">
<title>{{title}}</title>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{SWAGGER_JS}"></script>
<script src="/docs/swagger-init.js"></script>
</body>
</html>
"""

_SWAGGER_INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""

_REDOC_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{REDOC_FONTS}">
<style>body {{ margin: 0; padding: 0; }}</style>
<title>{{title}}</title>
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src="{REDOC_JS}"></script>
</body>
</html>
"""


def install(app: FastAPI) -> None:
    """Adds /docs, /docs/swagger-init.js and /redoc (the app serves /openapi.json)."""
    title = app.title.replace("<", "").replace("&", "")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(_SWAGGER_PAGE.replace("{title}", title))

    @app.get("/docs/swagger-init.js", include_in_schema=False)
    async def swagger_init() -> Response:
        return Response(_SWAGGER_INIT, media_type="text/javascript")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return HTMLResponse(_REDOC_PAGE.replace("{title}", title))
