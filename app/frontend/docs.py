"""/docs, /redoc and their assets, served by the service itself: no CDN, works offline.

Swagger UI, ReDoc and the favicon come from the ``fastapi-offline`` package (pinned in
pyproject.toml), mounted under /docs-assets; every URL the pages use starts with the request's
``root_path``, so the pages work behind a path prefix too. ReDoc's bundle links one image on
a CDN (the Redocly logo in its footer): that bundle is served with the link pointing at the
local favicon instead, so an offline browser requests nothing it cannot reach.
"""

import functools
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
ASSET_DIR = files("fastapi_offline") / "static"


REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


@functools.cache
def _redoc_bundle() -> bytes:
    # Relative to the page (.../redoc), so it resolves under any root_path.
    return (
        (ASSET_DIR / "redoc.standalone.js")
        .read_bytes()
        .replace(REDOC_LOGO, b"docs-assets/favicon.png")
    )


def add_docs(app: FastAPI) -> None:
    """Mount the assets and add the two pages (and Swagger's OAuth2 redirect, and a favicon)."""
    title = app.title

    @app.get(f"{ASSETS}/redoc.standalone.js", include_in_schema=False)
    async def redoc_bundle() -> Response:
        return Response(_redoc_bundle(), media_type="text/javascript")

    app.mount(ASSETS, StaticFiles(directory=str(ASSET_DIR)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(str(ASSET_DIR / "favicon.png"), media_type="image/png")
