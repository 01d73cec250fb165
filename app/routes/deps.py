"""Annotated dependencies shared by the routers."""

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.metrics import Metrics
from app.zoo import Zoo


def _zoo(request: Request) -> Zoo:
    return request.app.state.zoo


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


ZooDep = Annotated[Zoo, Depends(_zoo)]
SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
