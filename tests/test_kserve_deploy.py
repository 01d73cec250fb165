"""deploy/kserve: the InferenceService and its ServingRuntime, validated offline against KServe's
own schema (the kserve package's models, and the Kubernetes client's for the pod parts they
embed) in the KServe environment (tests/kserve_env.py), and checked against the service.
"""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.__main__ import GRACEFUL_SHUTDOWN_S
from app.config import Settings
from app.engine.owner_process import START_TIMEOUT_S
from app.frontend.security import needs_key
from tests.helpers import ROOT
from tests.kserve_env import run_script

KSERVE = ROOT / "deploy" / "kserve"
K8S = ROOT / "deploy" / "k8s" / "base"
CLASSES = {
    "InferenceService": "V1beta1InferenceService",
    "ServingRuntime": "V1alpha1ServingRuntime",
}

# Every key must be a field of its model (a typo is not silently dropped), every value of the
# field's type, and every model must construct: its required fields set, its enums kept. The
# kserve models are checked field by field here; the Kubernetes client's (pydantic, strict,
# no extra fields) validate the pod parts they embed themselves.
VALIDATE = """
import json, re, sys
import kserve.models as kserve_models
import kubernetes.client.models as k8s_models
from pydantic import BaseModel, ValidationError

PRIMITIVE = {"str": str, "int": int, "bool": bool, "float": (int, float)}

def check(value, kind, where, problems):
    if value is None or kind == "object":
        return
    listed = re.fullmatch(r"(?:list|List)\\[(.*)\\]", kind)
    mapped = re.fullmatch(r"dict\\(str, (.*)\\)|Dict\\[str, (.*)\\]", kind)
    if listed:
        if not isinstance(value, list):
            return problems.append(f"{where}: not a list")
        for i, item in enumerate(value):
            check(item, listed.group(1), f"{where}[{i}]", problems)
    elif mapped:
        if not isinstance(value, dict):
            return problems.append(f"{where}: not a map")
        for key, item in value.items():
            check(item, mapped.group(1) or mapped.group(2), f"{where}.{key}", problems)
    elif kind in PRIMITIVE:
        if isinstance(value, bool) != (kind == "bool") or not isinstance(value, PRIMITIVE[kind]):
            problems.append(f"{where}: {value!r} is not {kind}")
    elif issubclass(model := getattr(kserve_models, kind, None) or getattr(k8s_models, kind),
                    BaseModel):
        try:
            model.model_validate(value)
        except ValidationError as exc:
            for e in exc.errors():
                problems.append(f"{where}.{'.'.join(map(str, e['loc']))}: {e['msg']}")
    elif not isinstance(value, dict):
        problems.append(f"{where}: not an object ({kind})")
    else:
        fields = {key: attr for attr, key in model.attribute_map.items()}
        for key, item in value.items():
            if key not in fields:
                problems.append(f"{where}.{key}: no such field in {kind}")
            else:
                check(item, model.openapi_types[fields[key]], f"{where}.{key}", problems)
        try:  # required fields and enums, as the model's setters check them
            model(**{fields[k]: v for k, v in value.items() if k in fields})
        except (ValueError, TypeError) as exc:
            problems.append(f"{where}: {kind}: {exc}")

out = []
for kind, document in json.load(open(sys.argv[1])):
    problems = []
    check(document, kind, document.get("kind", kind), problems)
    out.append(problems)
print(json.dumps(out))
"""


def validate(documents: list[dict[str, Any]], tmp_path: Path) -> list[list[str]]:
    """KServe's schema's complaints about each document (none: valid)."""
    given = tmp_path / "documents.json"
    given.write_text(json.dumps([[CLASSES[d["kind"]], d] for d in documents]))
    return run_script(VALIDATE, str(given))  # type: ignore[no-any-return]


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((KSERVE / name).read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def isvc() -> dict[str, Any]:
    return load("inferenceservice.yaml")


@pytest.fixture(scope="module")
def runtime() -> dict[str, Any]:
    return load("servingruntime.yaml")


def test_every_object_is_valid_for_kserve(
    isvc: dict[str, Any], runtime: dict[str, Any], tmp_path: Path
) -> None:
    assert sorted(p.name for p in KSERVE.iterdir()) == [
        "inferenceservice.yaml",
        "servingruntime.yaml",
    ]
    assert validate([isvc, runtime], tmp_path) == [[], []]


def test_mistakes_are_caught(isvc: dict[str, Any], runtime: dict[str, Any], tmp_path: Path) -> None:
    typo = json.loads(json.dumps(isvc))
    typo["spec"]["predictor"]["model"]["protocolVersoin"] = "v2"
    wrong_type = json.loads(json.dumps(isvc))
    wrong_type["spec"]["predictor"]["minReplicas"] = "one"
    nameless = json.loads(json.dumps(runtime))
    del nameless["spec"]["containers"][0]["name"]
    found = validate([typo, wrong_type, nameless], tmp_path)
    assert "protocolVersoin: no such field" in found[0][0]
    assert "minReplicas: 'one' is not int" in found[1][0]
    assert any(".name: Field required" in p for p in found[2]), found[2]


def test_the_service_runs_as_it_needs(isvc: dict[str, Any], runtime: dict[str, Any]) -> None:
    predictor, model = isvc["spec"]["predictor"], isvc["spec"]["predictor"]["model"]
    # our image, through our runtime, speaking v2
    assert (model["runtime"], model["modelFormat"]["name"]) == (
        runtime["metadata"]["name"],
        runtime["spec"]["supportedModelFormats"][0]["name"],
    )
    assert model["protocolVersion"] == "v2" and runtime["spec"]["protocolVersions"] == ["v2"]
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container" and container["image"].endswith(":cuda")
    args = container["args"]
    port = int(args[args.index("--port") + 1])
    assert [p["containerPort"] for p in container["ports"]] == [port]
    # probes on the v2 health paths, open without a key; start-up as long as loading VGG
    kinds = ("readinessProbe", "livenessProbe", "startupProbe")
    probes = {k: container[k]["httpGet"] for k in kinds}
    assert probes["readinessProbe"]["path"] == "/v2/health/ready"
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/v2/health/live"
    assert all(p["port"] == port and not needs_key(p["path"]) for p in probes.values())
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= START_TIMEOUT_S
    # one GPU per pod, on CUDA, tolerated on GPU nodes; scaled between 1 and 8 on CPU
    env = {e["name"]: e["value"] for e in container["env"]}
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1" and env["DEVICE"] == "cuda"
    assert predictor["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 8)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("cpu", 70)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert predictor["timeout"] > Settings.model_fields["request_timeout_s"].default
    # the checkpoints: deploy/k8s's claim, where KServe mounts it; the keys from its Secret
    claim = yaml.safe_load((K8S / "weights-pvc.yaml").read_text())["metadata"]["name"]
    assert model["storageUri"] == f"pvc://{claim}" and env["WEIGHTS_DIR"] == "/mnt/models"
    volumes = {v["name"]: v for v in runtime["spec"]["volumes"]}
    assert volumes["api-keys"]["secret"]["secretName"] == "mnist-zoo-api-keys"
    assert {name.lower() for name in env} <= set(Settings.model_fields) and "API_KEYS" not in env
    # non-root, read-only root filesystem; a drain that fits the grace period
    assert predictor["securityContext"]["runAsNonRoot"]
    assert container["securityContext"]["readOnlyRootFilesystem"]
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert predictor["terminationGracePeriodSeconds"] > pause + GRACEFUL_SHUTDOWN_S
