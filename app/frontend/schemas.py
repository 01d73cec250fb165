"""The JSON the HTTP API returns: one definition each, which the OpenAPI document is made from.

The predict answer is TypedDicts: the encoder (app/frontend/predict.py) builds exactly these
(mypy checks its keys and types) and FastAPI documents the same classes, so the two cannot
drift. The model descriptions are the catalogue's two kinds, loaded or unavailable, for a model
(its default version) and for each of its versions.
"""

from typing import Annotated, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from app.serving.catalog import CheckpointInfo


class TopK(TypedDict):
    """One of the k most probable labels."""

    label: Annotated[str, Field(examples=["7"])]
    probability: Annotated[float, Field(ge=0, le=1, examples=[0.998])]


class Prediction(TypedDict):
    """The answer for one uploaded image."""

    filename: Annotated[str, Field(examples=["seven.png"])]
    label: Annotated[str, Field(description="most probable class", examples=["7"])]
    confidence: Annotated[
        float,
        Field(
            ge=0,
            le=1,
            description="its probability (calibrated: of the answers given at 0.9, about 9 in "
            "10 are right), given that the image is a digit",
        ),
    ]
    probabilities: Annotated[list[float], Field(description="one per digit, in label order (0-9)")]
    top_k: list[TopK]
    digit: NotRequired[
        Annotated[
            str,
            Field(
                description="with include=digit: the 28x28 digit the model saw, a base64 PNG "
                "(white ink on black, as MNIST)"
            ),
        ]
    ]


@with_config(ConfigDict(extra="allow"))
class Problem(TypedDict):
    """RFC 9457 problem details (application/problem+json)."""

    type: Annotated[str, Field(examples=["/problems/unknown-model"])]
    title: Annotated[str, Field(examples=["Unknown model"])]
    status: Annotated[int, Field(examples=[404])]
    detail: Annotated[str, Field(examples=["no model named 'resnet'; known models: lenet"])]


@with_config(ConfigDict(extra="allow"))
class ImageProblem(Problem):
    """An uploaded image that could not be used, or that is not one digit; the request's other
    images were answered."""

    filename: Annotated[str, Field(examples=["notes.png"])]
    index: Annotated[int, Field(ge=0, description="its place among the uploaded files")]
    label: NotRequired[
        Annotated[
            str,
            Field(
                description="not-a-digit and several-digits: the model's best guess among the "
                "digits all the same",
                examples=["2"],
            ),
        ]
    ]
    confidence: NotRequired[
        Annotated[float, Field(ge=0, le=1, description="the guess's probability, given a digit")]
    ]
    score: NotRequired[
        Annotated[
            float,
            Field(
                ge=0,
                le=1,
                description="how sure the service is that the image is not one digit (the "
                "model's probability of its not-a-digit and several-digits classes); refused "
                "from the checkpoint's operating point up",
                examples=[0.98],
            ),
        ]
    ]


class PredictResponse(TypedDict):
    """Per uploaded image, in upload order, its prediction or the problem with that image."""

    model: Annotated[str, Field(examples=["lenet"])]
    version: Annotated[
        int, Field(description="the version that answered (also the X-Model-Version header)")
    ]
    device: Annotated[str, Field(examples=["cpu"])]
    predictions: list[Prediction | ImageProblem]


class InputSpecInfo(BaseModel):
    """The tensor shape the model takes (digits are resized to it on the model's device)."""

    channels: int
    height: int
    width: int


class LoadedVersion(BaseModel):
    """A version that is loaded, warmed and taking requests (`?version=N`)."""

    version: int = Field(examples=[2])
    loaded: Literal[True] = True
    status: Literal["ready"] = Field("ready", description="loaded and warmed")
    test_accuracy: float = Field(description="MNIST test accuracy (fraction)")
    test_loss: float
    queue_depth: int = Field(description="images waiting now")
    checkpoint: CheckpointInfo


class UnavailableVersion(BaseModel):
    """A version whose file is in WEIGHTS_DIR but cannot serve, and why."""

    version: int = Field(examples=[3])
    loaded: Literal[False] = False
    status: Literal["invalid", "failed"] = Field(
        description="invalid (the file fails validation) or failed (could not start on the "
        "device)"
    )
    reason: str = Field(description="why it is not loaded, and how to fix it")


VersionInfo = Annotated[LoadedVersion | UnavailableVersion, Field(discriminator="status")]


class _Model(BaseModel):
    name: str = Field(examples=["lenet"])
    parameters: int = Field(examples=[61610])
    input: InputSpecInfo
    default_version: int | None = Field(
        description="the version a request without ?version gets: the one pinned by "
        "MODEL_VERSIONS, else the highest loaded one; null when the model has no checkpoint"
    )
    versions: list[VersionInfo] = Field(description="every version in WEIGHTS_DIR, in order")


class LoadedModel(_Model):
    """A model whose default version is loaded, warmed and taking requests; the fields beside
    `versions` describe that version."""

    loaded: Literal[True] = True
    status: Literal["ready"] = Field("ready", description="loaded and warmed")
    device: str = Field(examples=["cuda:0"])
    dtype: str = Field(examples=["float32"])
    test_accuracy: float = Field(description="MNIST test accuracy (fraction)")
    test_loss: float
    labels: list[str] = Field(
        description="the model's classes: the ten digits, and not-a-digit and several-digits "
        "for a model that refuses what is not one digit"
    )
    refuse_at: float | None = Field(
        None,
        description="its operating point: an image whose not-a-digit and several-digits "
        "classes hold this much or more is refused; null for a model that refuses nothing",
    )
    max_batch_size: int
    queue_depth: int = Field(description="images waiting now")
    checkpoint: CheckpointInfo


class UnavailableModel(_Model):
    """A listed model that cannot serve by default, and why."""

    loaded: Literal[False] = False
    status: Literal["missing", "invalid", "failed"] = Field(
        description="missing (no checkpoint, or none of the pinned version), invalid (the "
        "default version's checkpoint fails validation) or failed (it could not start on the "
        "device); the same words as /health/ready"
    )
    reason: str = Field(description="why it is not loaded, and how to fix it")


ModelInfo = Annotated[LoadedModel | UnavailableModel, Field(discriminator="status")]


class ModelList(BaseModel):
    """Every model this service lists, loaded or not."""

    models: list[ModelInfo]


class Liveness(BaseModel):
    """The process is up."""

    status: str = Field(examples=["alive"])


class Readiness(BaseModel):
    """Whether every model that has a valid checkpoint is loaded and warmed."""

    ready: bool
    models: dict[str, str] = Field(
        description="each model's default version's status",
        examples=[{"lenet": "ready", "vgg16": "missing"}],
    )
    versions: dict[str, dict[str, str]] = Field(
        description="each version's status, by model",
        examples=[{"lenet": {"1": "ready", "2": "ready"}, "vgg16": {}}],
    )
