"""The page at ``/``: draw or drop digits and see what each model thinks (static files)."""

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

PAGE = Path(__file__).parent / "page"


def add_page(app: FastAPI) -> None:
    """``/`` serves the page; ``/page/*`` its script and style (relative URLs: any root_path)."""

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(PAGE / "index.html", media_type="text/html")

    app.mount("/page", StaticFiles(directory=PAGE), name="page")
