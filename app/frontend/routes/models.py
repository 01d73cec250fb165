"""GET /models and GET /models/{name}: what the service holds and where it came from."""

from fastapi import APIRouter

from app.catalog import Loaded, Served
from app.frontend.routes.deps import ZooDep
from app.frontend.zoo import Zoo
from app.problems import problem_responses
from app.schemas import InputSpecInfo, ModelInfo, ModelList

router = APIRouter(prefix="/models", tags=["models"])


def model_info(zoo: Zoo, served: Served) -> ModelInfo:
    """The public description of one listed model."""
    channels, height, width = served.input
    info = ModelInfo(
        name=served.name,
        loaded=isinstance(served, Loaded),
        status="ready" if isinstance(served, Loaded) else served.status,
        reason=None if isinstance(served, Loaded) else served.reason,
        parameters=served.parameters,
        input=InputSpecInfo(channels=channels, height=height, width=width),
    )
    if isinstance(served, Loaded):
        info.device, info.dtype = served.device, served.dtype
        info.test_accuracy, info.test_loss = served.test_accuracy, served.test_loss
        info.labels = list(served.labels)
        info.max_batch_size, info.queue_depth = (
            served.max_batch_size,
            zoo.engine.queued(served.name),
        )
        info.checkpoint = served.checkpoint
    return info


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
    responses=problem_responses("unknown-model"),
)
async def get_model_info(name: str, zoo: ZooDep) -> ModelInfo:
    """One model: status, device, dtype, parameters, input, accuracy, checkpoint and sha256."""
    return model_info(zoo, zoo.lookup(name))
