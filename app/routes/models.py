"""GET /models and GET /models/{name}: what the service holds and where it came from."""

from fastapi import APIRouter

from app.problems import problem_responses
from app.routes.deps import ZooDep
from app.schemas import CheckpointInfo, InputSpecInfo, ModelInfo, ModelList
from app.serving import ServedModel
from app.zoo import Zoo
from models.registry import get_input_spec, get_model

router = APIRouter(prefix="/models", tags=["models"])
_PARAMS: dict[str, int] = {}


def _parameters(name: str) -> int:
    if name not in _PARAMS:  # built once on the meta device: no memory, no weights
        import torch

        with torch.device("meta"):
            _PARAMS[name] = sum(p.numel() for p in get_model(name).parameters())
    return _PARAMS[name]


def model_info(zoo: Zoo, served: ServedModel) -> ModelInfo:
    """The public description of one served model."""
    spec = get_input_spec(served.name)
    info = ModelInfo(
        name=served.name,
        loaded=served.ready,
        status=served.status,
        reason=served.reason,
        parameters=_parameters(served.name),
        input=InputSpecInfo(channels=spec.channels, height=spec.height, width=spec.width),
    )
    if served.ckpt is not None and served.predictor is not None and served.batcher is not None:
        meta = served.ckpt.meta
        info.device, info.dtype = (
            str(zoo.device),
            str(served.predictor.dtype).removeprefix("torch."),
        )
        info.test_accuracy, info.test_loss, info.labels = (
            meta.test_accuracy,
            meta.test_loss,
            meta.labels,
        )
        info.max_batch_size, info.queue_depth = (
            served.batcher.max_batch_size,
            served.batcher.queued_images,
        )
        info.checkpoint = CheckpointInfo(
            path=str(served.path),
            sha256=served.ckpt.file_sha256,
            created_at=meta.created_at,
            train_command=meta.train_command,
            torch_version=meta.torch_version,
            dataset_fingerprint=meta.dataset_fingerprint,
        )
    return info


@router.get("", response_model=ModelList, summary="List every model, loaded or not")
async def list_models(zoo: ZooDep) -> ModelList:
    """Every model this service lists; one without a checkpoint shows as not loaded."""
    return ModelList(models=[model_info(zoo, m) for m in zoo.models.values()])


@router.get(
    "/{name}",
    response_model=ModelInfo,
    summary="Describe one model",
    responses=problem_responses(404),
)
async def get_model_info(name: str, zoo: ZooDep) -> ModelInfo:
    """One model: status, device, dtype, parameters, input, accuracy, checkpoint and sha256."""
    served = zoo.lookup(name)
    return model_info(zoo, served)
