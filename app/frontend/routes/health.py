"""Liveness, readiness and Prometheus metrics."""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from app.frontend.routes.deps import MetricsDep, ZooDep
from app.frontend.schemas import Liveness, Readiness
from app.serving.catalog import Loaded, Served

router = APIRouter(tags=["health"])


def _status(served: Served) -> str:
    return "ready" if isinstance(served, Loaded) else served.status


@router.get(
    "/health/live", response_model=Liveness, summary="The process is up", operation_id="live"
)
async def live() -> Liveness:
    """Always 200 while the process serves HTTP."""
    return Liveness(status="alive")


@router.get(
    "/health/ready",
    response_model=Readiness,
    summary="Ready to serve predictions",
    operation_id="ready",
    responses={503: {"model": Readiness, "description": "still loading, or stopping"}},
)
async def ready(zoo: ZooDep) -> JSONResponse:
    """200 when every model with a valid checkpoint is loaded and warmed, else 503."""
    body = Readiness(
        ready=zoo.ready,
        models={n: _status(m.default) for n, m in zoo.models.items()},
        versions={
            n: {str(v): _status(s) for v, s in m.versions.items()} for n, m in zoo.models.items()
        },
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    operation_id="metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format",
        }
    },
)
async def metrics(m: MetricsDep, zoo: ZooDep) -> Response:
    """Requests and images by model, version and status, latency, queue wait, inference, batch
    sizes; per version, for the versions in the catalogue."""
    return Response(m.exposition(live=zoo.live()), media_type=CONTENT_TYPE_LATEST)
