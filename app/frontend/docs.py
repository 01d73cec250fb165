"""/docs, /redoc and their assets, served by the service itself: no CDN, works offline.

Swagger UI, ReDoc and the favicon come from the ``fastapi-offline`` package (pinned in
pyproject.toml), served under /docs-assets; the two pages (app/frontend/docs_pages/) load them
and the OpenAPI document by relative URLs, so they work behind a path prefix too, and have no
inline script, so the Content-Security-Policy can forbid it. ReDoc's bundle links one image on
a CDN (the Redocly logo in its footer): that bundle is served with the link pointing at the
local favicon instead, so an offline browser requests nothing it cannot reach.
"""

import functools
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
ASSET_DIR = files("fastapi_offline") / "static"
PAGES = Path(__file__).parent / "docs_pages"
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
    """The two pages, their assets, and a favicon."""

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> FileResponse:
        return FileResponse(PAGES / "swagger.html", media_type="text/html")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> FileResponse:
        return FileResponse(PAGES / "redoc.html", media_type="text/html")

    @app.get(f"{ASSETS}/redoc.standalone.js", include_in_schema=False)
    async def redoc_bundle() -> Response:
        return Response(_redoc_bundle(), media_type="text/javascript")

    @app.get(f"{ASSETS}/swagger-init.js", include_in_schema=False)
    async def swagger_init() -> FileResponse:
        return FileResponse(PAGES / "swagger-init.js", media_type="text/javascript")

    app.mount(ASSETS, StaticFiles(directory=str(ASSET_DIR)), name="docs-assets")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(str(ASSET_DIR / "favicon.png"), media_type="image/png")
