"""Annotated dependencies shared by the routers.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its threadpool, a
thread hop per dependency per request for what is an attribute read.
"""

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.frontend.zoo import Zoo
from app.metrics import Metrics


async def _zoo(request: Request) -> Zoo:
    return request.app.state.zoo


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


ZooDep = Annotated[Zoo, Depends(_zoo)]
SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
