"""create_app(): the FastAPI app, its lifespan (models load here, never at import) and routers."""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.config import Settings, get_settings
from app.metrics import Metrics
from app.problems import install_problem_handlers
from app.routes import health, models, predict
from app.uploads import BodyLimitMiddleware
from app.zoo import Zoo

DESCRIPTION = """Classic CNNs (LeNet, AlexNet, VGG, a BatchNorm MNIST CNN) trained on MNIST,
served with dynamic batching. Upload a digit as people have them (a phone photo, a canvas
export with a transparent background, a black-on-white scan): it is turned into an MNIST-style
digit before the model sees it. Errors are RFC 9457 `application/problem+json`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; models load when its lifespan starts."""
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.zoo = await Zoo.start(settings, metrics)
        # Models and their tensors live as long as the process: keep them out of every
        # garbage-collector pass that follows.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await app.state.zoo.stop()

    app = FastAPI(
        title="MNIST model zoo", version="0.1.0", description=DESCRIPTION, lifespan=lifespan
    )
    app.state.settings, app.state.metrics = settings, metrics
    install_problem_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    for router in (predict.router, models.router, health.router):
        app.include_router(router)
    return app


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
app = create_app()
