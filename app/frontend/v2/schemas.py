"""The v2 protocol's JSON (the Open Inference Protocol's REST objects), for answers and the docs.

The metadata and health answers are built from these models; the inference request and
response are read and written by app/frontend/v2/tensors.py on the lean path, and documented
from the models here (the protocol's shapes, with this service's input and output names).
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, JsonValue

from app.frontend.v2.tensors import DATATYPES, PROBABILITIES, metadata

_EXAMPLE = metadata(10)
_INPUT_NAMES: list[JsonValue] = list(DATATYPES)
_INPUT_TYPES: list[JsonValue] = [*sorted(set(DATATYPES.values()))]
_OUTPUT_NAMES: list[JsonValue] = [PROBABILITIES]


class V2Error(BaseModel):
    """The v2 protocol's error object; the status is the failure's (app/failures.py)."""

    error: str = Field(examples=["no model named 'resnet'; known models: lenet, mnist_cnn"])


class ServerMetadata(BaseModel):
    """The server's name, version and protocol extensions."""

    name: str = Field(examples=["mnist-zoo"])
    version: str = Field(examples=["0.1.0"])
    extensions: list[str] = Field(examples=[["binary_tensor_data", "classification"]])


class Live(BaseModel):
    """The process is up."""

    live: bool


class Ready(BaseModel):
    """Whether every model with a valid checkpoint is loaded and warmed (as /health/ready)."""

    ready: bool


class ModelReady(BaseModel):
    """Whether the model takes requests now."""

    name: str = Field(examples=["lenet"])
    ready: bool


class MetadataTensor(BaseModel):
    """An input or output: its name, datatype and shape (-1: the batch, any size)."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    """A model's versions, inputs and outputs. A request sends one of the two inputs."""

    name: str = Field(examples=["lenet"])
    versions: list[str] = Field(examples=[["1"]])
    platform: str = Field(examples=["pytorch"])
    inputs: list[MetadataTensor] = Field(examples=[_EXAMPLE["inputs"]])
    outputs: list[MetadataTensor] = Field(examples=[_EXAMPLE["outputs"]])


Parameters = Annotated[
    dict[str, Any],
    Field(description="the protocol's parameters, e.g. binary_data_size, binary_data"),
]


class RequestInput(BaseModel):
    """The one input: ``image`` (BYTES [N], image files: base64 strings in JSON) or ``digit``
    (UINT8 [N, 28, 28], MNIST-style digits: whole numbers 0-255, flat or nested)."""

    name: str = Field(json_schema_extra={"enum": _INPUT_NAMES})
    shape: list[int] = Field(examples=[[1]])
    datatype: str = Field(json_schema_extra={"enum": _INPUT_TYPES})
    parameters: Parameters | None = None
    data: list[Any] | None = Field(
        None,
        description="the tensor in JSON; leave it out when the parameters give a "
        "binary_data_size and the bytes follow the JSON",
        examples=[["iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAA..."]],
    )


class RequestOutput(BaseModel):
    """How to return ``probabilities``: ``binary_data`` (true: binary), ``classification``
    (k: the top k of each row as ``value:index:label``)."""

    name: str = Field(json_schema_extra={"enum": _OUTPUT_NAMES})
    parameters: Parameters | None = None


class InferRequestBody(BaseModel):
    """A v2 inference request: one input; optionally the output, and how to return it."""

    id: str | None = Field(None, description="echoed in the response")
    parameters: Parameters | None = None
    inputs: list[RequestInput] = Field(min_length=1, max_length=1)
    outputs: list[RequestOutput] | None = Field(None, max_length=1)


class ResponseOutput(BaseModel):
    """``probabilities``: FP32 [N, classes], or BYTES [N, k] with classification."""

    name: str = Field(examples=[PROBABILITIES])
    shape: list[int] = Field(examples=[[1, 10]])
    datatype: Literal["FP32", "BYTES"]
    parameters: Parameters | None = None
    data: list[float] | list[str] | None = Field(
        None,
        description="row-major; absent when the output is binary (binary_data_size)",
        examples=[[1e-05, 2e-05, 0.0011, 2e-04, 1e-05, 3e-05, 1e-06, 0.9981, 1e-05, 5e-04]],
    )


class InferResponseBody(BaseModel):
    """A v2 inference response."""

    model_name: str = Field(examples=["lenet"])
    model_version: str = Field(examples=["1"])
    id: str | None = None
    outputs: list[ResponseOutput]
