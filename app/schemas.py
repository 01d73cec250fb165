"""Pydantic response models: the JSON the API returns, with examples for /docs."""

from pydantic import BaseModel, ConfigDict, Field


class TopK(BaseModel):
    """One of the k most probable labels."""

    label: str = Field(examples=["7"])
    probability: float = Field(ge=0, le=1, examples=[0.998])


class Prediction(BaseModel):
    """The answer for one uploaded image."""

    filename: str = Field(examples=["seven.png"])
    label: str = Field(description="most probable class", examples=["7"])
    confidence: float = Field(ge=0, le=1, description="its probability", examples=[0.998])
    probabilities: list[float] = Field(description="one per class, in label order (0-9)")
    top_k: list[TopK]
    digit: str | None = Field(
        None,
        description="with include=digit: the 28x28 digit the model saw, a base64 PNG "
        "(white ink on black, as MNIST)",
    )


class PredictResponse(BaseModel):
    """Per uploaded image, in upload order, its prediction or the problem with that image."""

    model: str = Field(examples=["lenet"])
    device: str = Field(examples=["cpu"])
    predictions: list["Prediction | ImageProblem"]


class InputSpecInfo(BaseModel):
    """The tensor shape the model takes (digits are resized to it on the model's device)."""

    channels: int
    height: int
    width: int


class CheckpointInfo(BaseModel):
    """Where the weights came from."""

    path: str = Field(
        description="the file, relative to the weights folder", examples=["lenet.safetensors"]
    )
    sha256: str
    created_at: str
    train_command: str
    torch_version: str
    dataset_fingerprint: str


class ModelInfo(BaseModel):
    """One model of the zoo as this service sees it."""

    name: str = Field(examples=["lenet"])
    loaded: bool
    status: str = Field(
        description="ready (loaded and warmed), missing (no checkpoint), invalid (a checkpoint "
        "that fails validation) or failed (could not start on the device); the same words as "
        "/health/ready",
        examples=["ready"],
    )
    reason: str | None = Field(None, description="why it is not loaded, and how to fix it")
    device: str | None = Field(None, examples=["cuda:0"])
    dtype: str | None = Field(None, examples=["float32"])
    parameters: int = Field(examples=[61610])
    input: InputSpecInfo
    test_accuracy: float | None = Field(None, description="MNIST test accuracy (fraction)")
    test_loss: float | None = None
    labels: list[str] | None = None
    max_batch_size: int | None = None
    queue_depth: int | None = Field(None, description="images waiting now")
    checkpoint: CheckpointInfo | None = None


class ModelList(BaseModel):
    """Every model this service lists, loaded or not."""

    models: list[ModelInfo]


class Liveness(BaseModel):
    """The process is up."""

    status: str = Field(examples=["alive"])


class Readiness(BaseModel):
    """Whether every model that has a valid checkpoint is loaded and warmed."""

    ready: bool
    models: dict[str, str] = Field(examples=[{"lenet": "ready", "vgg16": "missing"}])


class Problem(BaseModel):
    """RFC 9457 problem details (application/problem+json)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["/problems/unknown-model"])
    title: str = Field(examples=["Unknown model"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["no model named 'resnet'; known models: lenet, mnist_cnn"])


class ImageProblem(Problem):
    """An uploaded image that could not be used; the request's other images were answered."""

    filename: str = Field(examples=["notes.png"])
    index: int = Field(ge=0, description="its place among the uploaded files", examples=[1])


PredictResponse.model_rebuild()
