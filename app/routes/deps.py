"""Annotated dependencies shared by the routers."""

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.metrics import Metrics
from app.zoo import Zoo


def _zoo(request: Request) -> Zoo:
    return request.app.state.zoo  # type: ignore[no-any-return]


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


ZooDep = Annotated[Zoo, Depends(_zoo)]
SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
