"""create_app(): one frontend worker, composed: its engine, the zoo, the HTTP adapters.

``python -m app`` (app/__main__.py, the launcher) runs several of these workers and, in the
``shared`` layout, the model owner they connect to (ENGINE_SOCKET); ``uvicorn app.main:app``
runs one worker on its own, with its own copy of the models.
"""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import logs
from app.config import Settings, get_settings
from app.digits.sandbox import DigitReader
from app.frontend.docs import add_docs
from app.frontend.openapi import install_openapi
from app.frontend.page import add_page
from app.frontend.predict import add_predict_route
from app.frontend.problems import install_problem_handlers
from app.frontend.routes import health, models
from app.frontend.security import ApiKeyMiddleware, SecurityHeadersMiddleware
from app.frontend.uploads import BodyLimitMiddleware
from app.frontend.v2 import V2ErrorMiddleware, add_v2_routes
from app.metrics import Metrics, mark_process_dead
from app.serving.engine import Engine
from app.serving.zoo import Zoo

DESCRIPTION = """Classic CNNs (LeNet, AlexNet, VGG, a BatchNorm MNIST CNN) trained on MNIST,
served with dynamic batching. Upload a digit as people have them (a phone photo, a canvas
export with a transparent background, a black-on-white scan): it is turned into an MNIST-style
digit before the model sees it. Errors are RFC 9457 `application/problem+json`."""


TAGS = [
    {"name": "predict", "description": "Classify uploaded digit images."},
    {"name": "models", "description": "What the service holds and where it came from."},
    {"name": "health", "description": "Liveness, readiness and Prometheus metrics."},
    {
        "name": "v2",
        "description": "The Open Inference Protocol (KServe v2 REST), as Triton, KServe and "
        "Seldon speak it, with Triton's binary tensor data and classification extensions. "
        "Errors are the protocol's `{\"error\": \"...\"}`.",
    },
]


async def start_engine(settings: Settings, metrics: Metrics) -> Engine:
    """The launcher's model owner when it gave us its socket, else models of our own."""
    if settings.engine_socket:
        from app.engine.client import RemoteEngine

        return await RemoteEngine.connect(settings.engine_socket, settings, metrics)
    if settings.engine == "shared":
        raise RuntimeError(
            "ENGINE=shared needs a model owner: start the service with python -m app, which "
            "starts one; uvicorn app.main:app alone runs ENGINE=worker"
        )
    from app.engine.local import LocalEngine  # torch: only where models run in this process

    return await LocalEngine.start(settings, metrics)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; models load (or the engine connects) when its lifespan starts."""
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reader = DigitReader.from_settings(settings)
        await reader.start()
        app.state.zoo = Zoo(settings, await start_engine(settings, metrics), reader)
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
        # Starlette answers /metrics/ with a redirect built from the client's Host header,
        # before any key is checked: an open redirect. No path here needs its slash fixed.
        redirect_slashes=False,
    )
    app.state.settings, app.state.metrics = settings, metrics
    install_problem_handlers(app)
    # Outermost last: security headers, the v2 protocol's error format (for every refusal
    # below it), body guards (a 401 too reads the rest of the body before it goes out), CORS
    # (answers preflights), API keys.
    keys = settings.keys()
    if keys:
        app.add_middleware(ApiKeyMiddleware, keys=keys)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "X-Filename",
                "Inference-Header-Content-Length",  # the v2 protocol's binary data
            ],
            expose_headers=["Inference-Header-Content-Length"],
        )
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_upload_bytes,
        body_timeout_s=settings.body_timeout_s,
        min_body_rate=settings.min_body_rate,
    )
    app.add_middleware(V2ErrorMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    add_predict_route(app)
    for router in (models.router, health.router):
        app.include_router(router)
    add_v2_routes(app)
    add_docs(app)
    add_page(app)
    install_openapi(app, secured=bool(keys))
    return app


logs.configure()
app = create_app()
