"""Schemathesis over the whole OpenAPI schema: no 5xx, every response matches its schema.

Binary fields are drawn from real MNIST digits as PNG as well as random bytes, so the fuzzer
reaches successful predictions, not only refusals; the last test makes sure it did, and every
200 body is checked beyond its schema (probabilities, labels, top k, order).
"""

import math

import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.main import create_app
from models.data import load_mnist
from tests.conftest import mnist_root
from tests.helpers import png
from tests.helpers import settings as app_settings

DIGITS = [png(x) for x in load_mnist(mnist_root(), train=False).images[:40, 0].numpy()]
schemathesis.openapi.format("binary", st.one_of(st.sampled_from(DIGITS), st.binary()))
app = create_app(app_settings(models=("lenet", "vgg16"), max_upload_bytes=64 * 1024))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
# Valid and invalid requests alike: invalid ones must get a documented 4xx, never a 5xx.
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
# Schemathesis runs the app's lifespan itself and keeps it up between requests.
SUCCESSES: list[int] = []


def check_prediction(body: dict) -> None:
    """What a 200 from /predict must say, beyond the shapes its schema gives."""
    assert body["model"] == "lenet" and body["predictions"]
    for p in body["predictions"]:
        probs = p["probabilities"]
        assert len(probs) == 10 and math.isclose(sum(probs), 1.0, abs_tol=1e-4)
        assert p["label"] == str(max(range(10), key=probs.__getitem__))
        assert p["confidence"] == max(probs)
        ranked = [t["probability"] for t in p["top_k"]]
        assert ranked == sorted(ranked, reverse=True) and ranked[0] == p["confidence"]
        assert all(probs[int(t["label"])] == t["probability"] for t in p["top_k"])


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    # Random bytes fit "format: binary" but are no image: a 422 for them is right, so the check
    # that schema-valid data must be accepted does not apply; every other check does, except
    # that the one 5xx the API documents for a request (503: a configured model that is not
    # loaded, here vgg16 without a checkpoint) is checked here rather than refused outright.
    response = case.call_and_validate(
        excluded_checks=[positive_data_acceptance, not_a_server_error]
    )
    if response.status_code >= 500:
        body = response.json()
        assert case.path_parameters["model"] == "vgg16", (case.path, response.text)
        assert response.status_code == 503
        if case.path.endswith("/ready"):  # the v2 protocol's model readiness: not ready
            assert body == {"name": "vgg16", "ready": False}
        elif case.path.startswith("/v2"):  # its error object
            assert "'vgg16' is not loaded" in body["error"]
        else:
            assert body["type"] == "/problems/model-not-loaded"
    if case.path == "/predict/{model}" and response.status_code == 200:
        check_prediction(response.json())
        SUCCESSES.append(len(response.json()["predictions"]))


def test_the_fuzzer_reached_successful_predictions() -> None:
    assert len(SUCCESSES) >= 5, SUCCESSES  # runs after the fuzzing above (file order)
