"""Annotated dependencies shared by the routers.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its threadpool, a
thread hop per dependency per request for what is an attribute read.
"""

from typing import Annotated

from fastapi import Depends, Request

from app.metrics import Metrics
from app.serving.zoo import Zoo


async def _zoo(request: Request) -> Zoo:
    return request.app.state.zoo


async def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


ZooDep = Annotated[Zoo, Depends(_zoo)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
