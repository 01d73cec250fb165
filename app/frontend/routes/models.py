"""GET /models, GET /models/{name}: what the service holds and where it came from;
POST /models/reload: read WEIGHTS_DIR again."""

from fastapi import APIRouter

from app.failures import Failure
from app.frontend.problems import problem_responses
from app.frontend.routes.deps import ZooDep
from app.frontend.schemas import (
    InputSpecInfo,
    LoadedModel,
    LoadedVersion,
    ModelInfo,
    ModelList,
    UnavailableModel,
    UnavailableVersion,
)
from app.serving.catalog import Loaded, Model, ReloadReport, Served
from app.serving.zoo import Zoo

router = APIRouter(prefix="/models", tags=["models"])


def version_info(zoo: Zoo, served: Served) -> LoadedVersion | UnavailableVersion:
    """The public description of one version."""
    assert served.version is not None  # only a model without versions has none
    if isinstance(served, Loaded):
        return LoadedVersion(
            version=served.version,
            test_accuracy=served.test_accuracy,
            test_loss=served.test_loss,
            queue_depth=zoo.engine.queued(served.name, served.version),
            checkpoint=served.checkpoint,
        )
    status = "failed" if served.status == "failed" else "invalid"
    return UnavailableVersion(version=served.version, status=status, reason=served.reason)


def model_info(zoo: Zoo, model: Model) -> LoadedModel | UnavailableModel:
    """The public description of one listed model: its default version, and every version."""
    served = model.default
    channels, height, width = served.input
    common = {
        "name": served.name,
        "parameters": served.parameters,
        "input": InputSpecInfo(channels=channels, height=height, width=width),
        "default_version": model.default_version,
        "versions": [version_info(zoo, v) for v in model.versions.values()],
    }
    if isinstance(served, Loaded):
        return LoadedModel(
            **common,
            device=served.device,
            dtype=served.dtype,
            test_accuracy=served.test_accuracy,
            test_loss=served.test_loss,
            labels=list(served.labels),
            refuse_at=served.refuse_at,
            max_batch_size=served.max_batch_size,
            queue_depth=zoo.engine.queued(served.name, served.version),
            checkpoint=served.checkpoint,
        )
    return UnavailableModel(**common, status=served.status, reason=served.reason)


@router.get(
    "",
    response_model=ModelList,
    summary="List every model, loaded or not",
    operation_id="listModels",
)
async def list_models(zoo: ZooDep) -> ModelList:
    """Every model this service lists, with its versions; one without a checkpoint shows as
    not loaded."""
    return ModelList(models=[model_info(zoo, m) for m in zoo.models.values()])


@router.post(
    "/reload",
    response_model=ReloadReport,
    summary="Read WEIGHTS_DIR again: load new versions, drop removed ones",
    operation_id="reloadModels",
    responses=problem_responses(
        Failure.INTERNAL_ERROR, Failure.WEIGHTS_UNREADABLE, Failure.SHUTTING_DOWN
    ),
)
async def reload_models(zoo: ZooDep) -> ReloadReport:
    """A new or changed file is loaded, validated and warmed while the others serve, and only
    then takes requests; a removed one stops taking requests, finishes those it accepted and
    is freed; a file that fails validation is reported (`invalid`, with why) and whatever
    served before keeps serving. Every worker process switches before the answer comes."""
    return await zoo.reload()


@router.get(
    "/{name}",
    response_model=ModelInfo,
    summary="Describe one model",
    operation_id="getModel",
    responses=problem_responses(Failure.UNKNOWN_MODEL),
)
async def get_model_info(name: str, zoo: ZooDep) -> LoadedModel | UnavailableModel:
    """One model: status, device, dtype, parameters, input, accuracy, checkpoint and sha256 of
    its default version, and every version with its status, accuracy and checkpoint."""
    return model_info(zoo, zoo.lookup(name))
