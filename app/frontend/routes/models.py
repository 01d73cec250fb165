"""GET /models and GET /models/{name}: what the service holds and where it came from."""

from fastapi import APIRouter

from app.failures import Failure
from app.frontend.problems import problem_responses
from app.frontend.routes.deps import ZooDep
from app.frontend.schemas import InputSpecInfo, LoadedModel, ModelInfo, ModelList, UnavailableModel
from app.serving.catalog import Loaded, Served
from app.serving.zoo import Zoo

router = APIRouter(prefix="/models", tags=["models"])


def model_info(zoo: Zoo, served: Served) -> LoadedModel | UnavailableModel:
    """The public description of one listed model."""
    channels, height, width = served.input
    spec = InputSpecInfo(channels=channels, height=height, width=width)
    if isinstance(served, Loaded):
        return LoadedModel(
            name=served.name,
            parameters=served.parameters,
            input=spec,
            device=served.device,
            dtype=served.dtype,
            test_accuracy=served.test_accuracy,
            test_loss=served.test_loss,
            labels=list(served.labels),
            max_batch_size=served.max_batch_size,
            queue_depth=zoo.engine.queued(served.name),
            checkpoint=served.checkpoint,
        )
    return UnavailableModel(
        name=served.name,
        parameters=served.parameters,
        input=spec,
        status=served.status,
        reason=served.reason,
    )


@router.get(
    "",
    response_model=ModelList,
    summary="List every model, loaded or not",
    operation_id="listModels",
)
async def list_models(zoo: ZooDep) -> ModelList:
    """Every model this service lists; one without a checkpoint shows as not loaded."""
    return ModelList(models=[model_info(zoo, m) for m in zoo.models.values()])


@router.get(
    "/{name}",
    response_model=ModelInfo,
    summary="Describe one model",
    operation_id="getModel",
    responses=problem_responses(Failure.UNKNOWN_MODEL),
)
async def get_model_info(name: str, zoo: ZooDep) -> LoadedModel | UnavailableModel:
    """One model: status, device, dtype, parameters, input, accuracy, checkpoint and sha256."""
    return model_info(zoo, zoo.lookup(name))
