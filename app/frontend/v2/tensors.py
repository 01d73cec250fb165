"""The v2 inference request and response on the wire: JSON, and Triton's binary tensor data and
classification extensions, for this service's models.

A request carries one input: ``image`` (BYTES [N], encoded image files: base64 strings in
JSON, or the extension's length-prefixed bytes) or ``digit`` (UINT8 [N, 28, 28], MNIST-style
digits: numbers in JSON, or N x 784 raw bytes). The one output, ``probabilities`` (FP32
[N, classes]), comes back as JSON or binary as asked, or with ``classification: k`` as the top
k of each row, BYTES [N, k] of ``"value:index:label"``. Whatever does not fit is the failure
table's INVALID_INFERENCE_REQUEST (400), naming the field.
"""

import binascii
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from app.failures import Failure, ServiceError
from app.serving.answer import Upload, top_k
from models.framing import DIGIT_SHAPE

IMAGE, DIGIT, PROBABILITIES = "image", "digit", "probabilities"
# The inputs a request may send (one of them): datatype and shape, -1 for the batch.
INPUTS = {IMAGE: ("BYTES", [-1]), DIGIT: ("UINT8", [-1, *DIGIT_SHAPE])}
DATATYPES = {name: datatype for name, (datatype, _) in INPUTS.items()}
DIGIT_BYTES = DIGIT_SHAPE[0] * DIGIT_SHAPE[1]
_LENGTH = struct.Struct("<I")  # a BYTES element's length prefix in binary tensor data


def metadata(classes: int) -> dict[str, list[dict[str, Any]]]:
    """The model metadata's inputs and outputs, for a model with ``classes`` classes."""
    return {
        "inputs": [{"name": n, "datatype": d, "shape": s} for n, (d, s) in INPUTS.items()],
        "outputs": [{"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, classes]}],
    }


def invalid(detail: str) -> ServiceError:
    """The 400 for a request that does not fit the protocol or the model's metadata."""
    return Failure.INVALID_INFERENCE_REQUEST.error(detail)


@dataclass(frozen=True)
class Wanted:
    """How the request wants ``probabilities`` back."""

    binary: bool = False  # the binary tensor data extension, else JSON
    top: int = 0  # the classification extension's k; 0: the probabilities themselves


@dataclass(frozen=True)
class InferRequest:
    """One v2 inference request, read: its id, its images or its digits, its output."""

    id: str | None
    uploads: list[Upload] | None  # image input: the files, named image[i]
    digits: np.ndarray | None  # digit input: N x 28 x 28 uint8
    wanted: Wanted


def raw_image(body: bytes) -> InferRequest:
    """``Inference-Header-Content-Length: 0``: the whole body is one image, answered in JSON."""
    if not body:
        raise Failure.NO_FILES.error("the request body is empty: send the image bytes")
    return InferRequest(None, [Upload("image[0]", body)], None, Wanted())


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{where} must be a JSON object")
    return value


def _parameters(value: Any, where: str) -> dict[str, Any]:
    """A ``parameters`` object; absent or null is none."""
    return {} if value is None else _object(value, f"{where}.parameters")


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool | None:
    value = parameters.get(key)
    if value is not None and not isinstance(value, bool):
        raise invalid(f"{where}.parameters.{key} must be true or false")
    return value


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid(f"{where} must be a whole number >= 0")
    return value


def _wanted(request: dict[str, Any]) -> Wanted:
    """The request's ``outputs`` and ``binary_data_output``: the one output, and how."""
    parameters = _parameters(request.get("parameters"), "the request")
    binary = _flag(parameters, "binary_data_output", "the request") or False
    outputs = request.get("outputs")
    if outputs is None:
        return Wanted(binary)
    if not isinstance(outputs, list) or len(outputs) > 1:
        raise invalid(f"outputs: the model has one output, {PROBABILITIES!r}")
    if not outputs:
        return Wanted(binary)
    output = _object(outputs[0], "outputs[0]")
    if output.get("name") != PROBABILITIES:
        raise invalid(f"no output named {output.get('name')!r}; the output is {PROBABILITIES!r}")
    where = f"output {PROBABILITIES!r}"
    parameters = _parameters(output.get("parameters"), where)
    if "shared_memory_region" in parameters:
        raise invalid("shared memory is not supported: ask for the output in the body")
    own = _flag(parameters, "binary_data", where)
    top = _count(parameters.get("classification", 0), f"{where}.parameters.classification")
    return Wanted(binary if own is None else own, top)


def _shape(tensor: dict[str, Any], name: str, max_items: int) -> int:
    """N, from the input's shape, which must be [N] or [N, 28, 28] as the metadata says."""
    shape, want = tensor.get("shape"), INPUTS[name][1]
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in shape
    ):
        raise invalid(f"input {name!r}: shape must be a list of whole numbers")
    if len(shape) != len(want) or shape[1:] != want[1:] or shape[0] < 0:
        shown = ", ".join(["N", *map(str, want[1:])])
        raise invalid(f"input {name!r}: shape {shape} is not [{shown}]")
    n: int = shape[0]
    if n == 0:
        raise Failure.NO_FILES.error(f"input {name!r} holds no {name}s (shape {shape})")
    if n > max_items:
        raise Failure.TOO_MANY_FILES.error(
            f"too many {name}s: {n}; at most {max_items} per request (MAX_FILES)"
        )
    return n


def _bytes_elements(raw: memoryview, n: int) -> list[bytes]:
    """BYTES binary tensor data: n elements, each a 4-byte little-endian length and its bytes."""
    out, at = [], 0
    for i in range(n):
        if at + 4 > len(raw):
            raise invalid(f"input {IMAGE!r}: the binary data ends before element {i}")
        (size,) = _LENGTH.unpack_from(raw, at)
        if at + 4 + size > len(raw):
            raise invalid(f"input {IMAGE!r}: element {i} runs past the binary data")
        out.append(bytes(raw[at + 4 : at + 4 + size]))
        at += 4 + size
    if at != len(raw):
        raise invalid(f"input {IMAGE!r}: {len(raw) - at} bytes after its {n} elements")
    return out


def _base64_elements(data: list[Any], n: int) -> list[bytes]:
    if len(data) != n or not all(isinstance(d, str) for d in data):
        raise invalid(f"input {IMAGE!r}: data must be {n} base64 strings, one per image file")
    out = []
    for i, text in enumerate(data):
        try:
            out.append(binascii.a2b_base64(text, strict_mode=True))
        except binascii.Error:
            raise invalid(f"input {IMAGE!r}: element {i} is not base64") from None
    return out


def _digit_values(data: list[Any], n: int) -> np.ndarray:
    """Digits from JSON: N x 784 whole numbers 0-255, flat or nested as [N][28][28]."""
    try:
        values = np.asarray(data)
    except ValueError:  # ragged nesting
        values = np.asarray([], dtype=object)
    if values.dtype.kind not in "iu" or values.size != n * DIGIT_BYTES:
        raise invalid(
            f"input {DIGIT!r}: data must be {n * DIGIT_BYTES} whole numbers 0-255 "
            f"({n} x {DIGIT_SHAPE[0]} x {DIGIT_SHAPE[1]}), flat or nested"
        )
    if values.ndim not in (1, 3) or (values.ndim == 3 and values.shape[1:] != DIGIT_SHAPE):
        raise invalid(f"input {DIGIT!r}: nested data must be [N][28][28]")
    if values.min() < 0 or values.max() > 255:
        raise invalid(f"input {DIGIT!r}: values must be 0-255 (UINT8)")
    return values.astype(np.uint8).reshape(n, *DIGIT_SHAPE)


def parse(body: bytes, header_length: int | None, max_items: int) -> InferRequest:
    """A request body (with the binary extension's JSON length, if it had the header) ->
    the request, or the error that says what does not fit."""
    if header_length is not None and header_length > len(body):
        raise invalid(
            f"Inference-Header-Content-Length is {header_length}, the body {len(body)} bytes"
        )
    end = len(body) if header_length is None else header_length
    try:
        request = _object(orjson.loads(memoryview(body)[:end]), "the request")
    except orjson.JSONDecodeError as exc:
        raise invalid(f"the request is not valid JSON: {exc}") from None
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise invalid("id must be a string")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise invalid(f"inputs: one input per request, {IMAGE!r} or {DIGIT!r}")
    tensor = _object(inputs[0], "inputs[0]")
    name = tensor.get("name")
    if name not in DATATYPES:
        raise invalid(f"no input named {name!r}; the inputs are {IMAGE!r} and {DIGIT!r}")
    if tensor.get("datatype") != DATATYPES[name]:
        got = tensor.get("datatype")
        raise invalid(f"input {name!r}: datatype {got!r}, the model takes {DATATYPES[name]}")
    n = _shape(tensor, name, max_items)
    parameters = _parameters(tensor.get("parameters"), f"input {name!r}")
    if "shared_memory_region" in parameters:
        raise invalid("shared memory is not supported: send the input in the body")
    binary = memoryview(body)[end:]
    wanted = _wanted(request)
    if "binary_data_size" in parameters:
        size = _count(parameters["binary_data_size"], f"input {name!r}.parameters.binary_data_size")
        if size != len(binary):
            raise invalid(
                f"input {name!r}: binary_data_size is {size}; {len(binary)} bytes follow the JSON"
            )
        if name == IMAGE:
            return InferRequest(request_id, _named(_bytes_elements(binary, n)), None, wanted)
        if size != n * DIGIT_BYTES:
            need = n * DIGIT_BYTES
            raise invalid(f"input {DIGIT!r}: {size} bytes; shape [{n}, 28, 28] needs {need}")
        digits = np.frombuffer(binary, np.uint8).reshape(n, *DIGIT_SHAPE).copy()
        return InferRequest(request_id, None, digits, wanted)
    if binary:
        raise invalid(f"{len(binary)} bytes follow the JSON, but no input has binary_data_size")
    data = tensor.get("data")
    if not isinstance(data, list):
        raise invalid(f"input {name!r}: no data (a JSON list, or binary_data_size and the bytes)")
    if name == IMAGE:
        return InferRequest(request_id, _named(_base64_elements(data, n)), None, wanted)
    return InferRequest(request_id, None, _digit_values(data, n), wanted)


def _named(files: list[bytes]) -> list[Upload]:
    """The image files as uploads named by their place, which every error about one names."""
    return [Upload(f"image[{i}]", data) for i, data in enumerate(files)]


def _top(probabilities: np.ndarray, labels: tuple[str, ...], k: int) -> list[bytes]:
    """Each row's k most probable classes, best first, as ``value:index:label``."""
    return [
        f"{row[j]!s}:{j}:{labels[j]}".encode()  # str(): float32 shortest digits
        for row, top in zip(probabilities, top_k(probabilities, k), strict=True)
        for j in top
    ]


def encode(
    request: InferRequest, model: str, version: str, labels: tuple[str, ...], probs: np.ndarray
) -> tuple[bytes, int | None]:
    """The response body, and the length of its JSON when binary data follows it."""
    wanted, (n, classes) = request.wanted, probs.shape
    output: dict[str, Any] = {"name": PROBABILITIES}
    if wanted.top:
        k = min(wanted.top, classes)  # as Triton: never more classes than the model has
        elements = _top(probs, labels, k)
        output |= {"datatype": "BYTES", "shape": [n, k]}
        raw = b"".join(_LENGTH.pack(len(e)) + e for e in elements) if wanted.binary else None
        data: Any = [e.decode() for e in elements]
    else:
        output |= {"datatype": "FP32", "shape": [n, classes]}
        raw = probs.astype("<f4").tobytes() if wanted.binary else None
        data = probs.reshape(-1)
    if raw is None:
        output["data"] = data
    else:
        output["parameters"] = {"binary_data_size": len(raw)}
    response: dict[str, Any] = {"model_name": model, "model_version": version}
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = [output]
    head = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    return (head, None) if raw is None else (head + raw, len(head))
