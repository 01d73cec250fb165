"""A client generated from the live /openapi.json by openapi-python-client, used for real."""

import io
from collections.abc import Iterator
from types import ModuleType

import pytest

from models.data import MnistSplit
from tests.generated import generate_client
from tests.helpers import png
from tests.server import GRACEFUL, Server, start_service, stop_server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = start_service(MODELS="lenet,vgg16", WORKERS="2")
    yield s
    assert stop_server(s) in GRACEFUL


@pytest.fixture(scope="module")
def generated(server: Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, str]:
    """Generate the client into a temporary folder; the module and the generator's output."""
    return generate_client(server.url, tmp_path_factory.mktemp("client"), "zoo_client")


@pytest.fixture(scope="module")
def sevens(mnist_test: MnistSplit) -> list[bytes]:
    return [png(mnist_test.images[i, 0].numpy()) for i in (0, 1)]  # a 7 and a 2


def test_the_generator_warns_about_nothing(generated: tuple[ModuleType, str]) -> None:
    _, output = generated
    assert "Generating" in output and "arning" not in output, output


def test_predict_with_two_files_and_a_raw_body(
    generated: tuple[ModuleType, str], server: Server, sevens: list[bytes]
) -> None:
    from zoo_client import Client
    from zoo_client.api.predict import predict
    from zoo_client.models import PredictFilesBody, Prediction, PredictResponse
    from zoo_client.types import File

    client = Client(base_url=server.url, raise_on_unexpected_status=True)
    files = [File(payload=io.BytesIO(b), file_name=f"{i}.png", mime_type="image/png")
             for i, b in enumerate(sevens)]  # fmt: skip
    answer = predict.sync(model="lenet", client=client, body=PredictFilesBody(files=files), top_k=2)
    assert isinstance(answer, PredictResponse) and answer.model == "lenet"
    assert all(isinstance(p, Prediction) for p in answer.predictions)
    assert [p.label for p in answer.predictions] == ["7", "2"]  # type: ignore[union-attr]
    assert [p.filename for p in answer.predictions] == ["0.png", "1.png"]
    assert len(answer.predictions[0].top_k) == 2  # type: ignore[union-attr]
    raw = predict.sync(model="lenet", client=client, body=File(payload=io.BytesIO(sevens[0])))
    assert isinstance(raw, PredictResponse) and raw.predictions[0].label == "7"  # type: ignore[union-attr]


def test_documented_errors_come_back_typed(
    generated: tuple[ModuleType, str], server: Server, sevens: list[bytes]
) -> None:
    from zoo_client import Client
    from zoo_client.api.predict import predict
    from zoo_client.models import ImageProblem, PredictFilesBody, PredictResponse, Problem
    from zoo_client.types import File

    client = Client(base_url=server.url, raise_on_unexpected_status=True)
    seven = File(payload=io.BytesIO(sevens[0]), file_name="7.png")
    missing = predict.sync(model="resnet", client=client, body=PredictFilesBody(files=[seven]))
    assert isinstance(missing, Problem) and missing.status == 404
    assert missing.type_ == "/problems/unknown-model"
    assert missing.additional_properties["known_models"] == ["lenet", "vgg16"]
    bad = File(payload=io.BytesIO(b"not an image"), file_name="bad.png")
    invalid = predict.sync(model="lenet", client=client, body=PredictFilesBody(files=[bad]))
    assert isinstance(invalid, Problem) and invalid.status == 422
    assert invalid.type_ == "/problems/invalid-image"
    unloaded = predict.sync(model="vgg16", client=client, body=PredictFilesBody(files=[seven]))
    assert isinstance(unloaded, Problem) and unloaded.type_ == "/problems/model-not-loaded"
    seven = File(payload=io.BytesIO(sevens[0]), file_name="7.png")
    bad = File(payload=io.BytesIO(b"not an image"), file_name="bad.png")
    mixed = predict.sync(model="lenet", client=client, body=PredictFilesBody(files=[seven, bad]))
    assert isinstance(mixed, PredictResponse)
    assert isinstance(mixed.predictions[1], ImageProblem) and mixed.predictions[1].index == 1


def test_models_and_readiness_through_the_client(
    generated: tuple[ModuleType, str], server: Server
) -> None:
    from zoo_client import Client
    from zoo_client.api.health import live, ready
    from zoo_client.api.models import get_model, list_models

    client = Client(base_url=server.url, raise_on_unexpected_status=True)
    listed = list_models.sync(client=client)
    assert [(m.name, m.status) for m in listed.models] == [("lenet", "ready"), ("vgg16", "missing")]
    assert get_model.sync("lenet", client=client).parameters == 61_610
    readiness = ready.sync(client=client)
    assert readiness.ready and readiness.models.additional_properties == {
        "lenet": "ready",
        "vgg16": "missing",
    }
    assert live.sync(client=client).status == "alive"
