"""create_app(): the FastAPI app of one frontend worker, its lifespan and its routes.

``python -m app`` (app/__main__.py) runs several of these workers and, on a GPU, the model
owner they share; ``uvicorn app.main:app`` runs one worker on its own.
"""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.config import Settings, get_settings
from app.frontend.docs import add_docs
from app.frontend.page import add_page
from app.frontend.predict import add_predict_route
from app.frontend.routes import health, models
from app.frontend.security import ApiKeyMiddleware, SecurityHeadersMiddleware
from app.frontend.uploads import BodyLimitMiddleware
from app.frontend.zoo import Zoo
from app.metrics import Metrics, mark_process_dead
from app.openapi import install_openapi
from app.problems import install_problem_handlers

DESCRIPTION = """Classic CNNs (LeNet, AlexNet, VGG, a BatchNorm MNIST CNN) trained on MNIST,
served with dynamic batching. Upload a digit as people have them (a phone photo, a canvas
export with a transparent background, a black-on-white scan): it is turned into an MNIST-style
digit before the model sees it. Errors are RFC 9457 `application/problem+json`."""


TAGS = [
    {"name": "predict", "description": "Classify uploaded digit images."},
    {"name": "models", "description": "What the service holds and where it came from."},
    {"name": "health", "description": "Liveness, readiness and Prometheus metrics."},
]


def create_app(settings: Settings | None = None, *, lean: bool = True) -> FastAPI:
    """Build the app; models load (or the engine connects) when its lifespan starts.

    ``lean=False`` serves predict through FastAPI's own request handling instead of the lean
    path, for tests that hold the two to the same answers.
    """
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.zoo = await Zoo.start(settings, metrics)
        # What start-up built lives as long as the process: keep it out of every
        # garbage-collector pass that follows.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await app.state.zoo.stop()
            mark_process_dead()

    app = FastAPI(
        title="MNIST model zoo",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by add_docs from local assets, not from a CDN
        redoc_url=None,
        openapi_tags=TAGS,
    )
    app.state.settings, app.state.metrics = settings, metrics
    install_problem_handlers(app)
    # Outermost last: security headers, body guards (a 401 too reads the rest of the body
    # before it goes out), CORS (answers preflights), API keys.
    keys = settings.keys()
    if keys:
        app.add_middleware(ApiKeyMiddleware, keys=keys)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Filename"],
        )
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_upload_bytes,
        body_timeout_s=settings.body_timeout_s,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    add_predict_route(app, lean)
    for router in (models.router, health.router):
        app.include_router(router)
    add_docs(app)
    add_page(app)
    install_openapi(app, secured=bool(keys))
    return app


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
app = create_app()
