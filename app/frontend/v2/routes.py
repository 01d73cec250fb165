"""The v2 protocol's server and model metadata and its health: GET /v2, /v2/health/*, and
/v2/models/{model}[/versions/{version}][/ready].

Server readiness is /health/ready's; a model is ready when it takes requests now. Version
paths go through the zoo's one version check (the same 404 as /predict's ``?version``).
"""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.failures import Failure
from app.frontend.routes.deps import ZooDep
from app.frontend.v2.errors import v2_error_responses
from app.frontend.v2.schemas import Live, ModelMetadata, ModelReady, Ready, ServerMetadata
from app.frontend.v2.tensors import metadata
from app.serving.catalog import Unavailable
from app.serving.verdict import DIGITS
from app.serving.zoo import Zoo, not_loaded

router = APIRouter(prefix="/v2", tags=["v2"])
# What the binary tensor data and classification extensions add is in tensors.py.
EXTENSIONS = ["binary_tensor_data", "classification"]
NAME = "mnist-zoo"
PLATFORM = "pytorch"
UNKNOWN = v2_error_responses(Failure.UNKNOWN_MODEL, Failure.UNKNOWN_VERSION)


@router.get("", summary="Server metadata", operation_id="serverMetadata")
async def server_metadata(request: Request) -> ServerMetadata:
    """The server's name and version, and the protocol extensions it speaks."""
    return ServerMetadata(name=NAME, version=request.app.version, extensions=EXTENSIONS)


@router.get("/health/live", summary="The process is up", operation_id="serverLive")
async def server_live() -> Live:
    """Always 200 while the process serves HTTP."""
    return Live(live=True)


@router.get(
    "/health/ready",
    summary="Ready to serve inference",
    operation_id="serverReady",
    response_model=Ready,
    responses={503: {"model": Ready, "description": "still loading, or stopping"}},
)
async def server_ready(zoo: ZooDep) -> JSONResponse:
    """200 when every model with a valid checkpoint is loaded and warmed, else 503."""
    return JSONResponse({"ready": zoo.ready}, status_code=200 if zoo.ready else 503)


def _metadata(zoo: Zoo, model: str, version: str | None) -> ModelMetadata:
    found = zoo.lookup(model)
    served = zoo.version_of(model, version)
    if isinstance(served, Unavailable):  # its classes and labels are in the checkpoint
        raise not_loaded(model, version, served)
    return ModelMetadata(
        name=model,
        versions=[str(v) for v in found.versions],
        platform=PLATFORM,
        **metadata(min(len(served.labels), DIGITS)),
    )


METADATA_FAILURES = v2_error_responses(
    Failure.UNKNOWN_MODEL, Failure.UNKNOWN_VERSION, Failure.MODEL_NOT_LOADED
)


@router.get(
    "/models/{model}",
    summary="Model metadata",
    operation_id="modelMetadata",
    responses=METADATA_FAILURES,
)
async def model_metadata(model: str, zoo: ZooDep) -> ModelMetadata:
    """The model's versions, its inputs (send one of them) and its output."""
    return _metadata(zoo, model, None)


@router.get(
    "/models/{model}/versions/{version}",
    summary="Model metadata, one version",
    operation_id="modelVersionMetadata",
    responses=METADATA_FAILURES,
)
async def model_version_metadata(model: str, version: str, zoo: ZooDep) -> ModelMetadata:
    """As modelMetadata, for one version of the model."""
    return _metadata(zoo, model, version)


def _ready(zoo: Zoo, model: str, version: str | None) -> JSONResponse:
    ready = zoo.takes_work(model, version)
    return JSONResponse({"name": model, "ready": ready}, status_code=200 if ready else 503)


READY_RESPONSES = {503: {"model": ModelReady, "description": "not loaded, or stopping"}, **UNKNOWN}


@router.get(
    "/models/{model}/ready",
    response_model=ModelReady,
    summary="Model readiness",
    operation_id="modelReady",
    responses=READY_RESPONSES,
)
async def model_ready(model: str, zoo: ZooDep) -> JSONResponse:
    """200 when the model takes requests now, else 503."""
    return _ready(zoo, model, None)


@router.get(
    "/models/{model}/versions/{version}/ready",
    response_model=ModelReady,
    summary="Model readiness, one version",
    operation_id="modelVersionReady",
    responses=READY_RESPONSES,
)
async def model_version_ready(model: str, version: str, zoo: ZooDep) -> JSONResponse:
    """As modelReady, for one version of the model."""
    return _ready(zoo, model, version)
