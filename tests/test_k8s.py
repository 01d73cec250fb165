"""deploy/k8s: a kustomize base and a GPU overlay, rendered, checked against Kubernetes' schema.

Rendering follows kustomize for what these files use (``resources`` and JSON 6902 ``patches``),
and where kubectl is installed its own ``kubectl kustomize`` must agree. Every object is
validated offline by kubernetes-validate against the pinned Kubernetes version's schema.
"""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from app.__main__ import GRACEFUL_SHUTDOWN_S
from app.config import Settings
from app.engine.owner_process import START_TIMEOUT_S
from tests.helpers import ROOT

K8S = ROOT / "deploy" / "k8s"
KUBERNETES = "1.33.0"  # the schema the manifests are validated against


def render(folder: Path) -> list[dict[str, Any]]:
    """The objects ``kustomize build folder`` makes of these files."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    objects: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        path = folder / resource
        objects += render(path) if path.is_dir() else list(yaml.safe_load_all(path.read_text()))
    for patch in spec.get("patches", []):
        target = patch["target"]
        ops = yaml.safe_load(patch["patch"])
        for i, obj in enumerate(objects):
            if obj["kind"] == target["kind"] and obj["metadata"]["name"] == target["name"]:
                objects[i] = jsonpatch.apply_patch(obj, ops)
    return objects


def _by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = {o["kind"]: o for o in objects}
    assert len(kinds) == len(objects), "one object of each kind"
    return kinds


@pytest.fixture(scope="module", params=["base", "gpu"])
def rendered(request: pytest.FixtureRequest) -> tuple[str, dict[str, dict[str, Any]]]:
    return request.param, _by_kind(render(K8S / request.param))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("overlay", ["base", "gpu"])
def test_kubectl_kustomize_renders_the_same(overlay: str) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / overlay)], capture_output=True, text=True, check=True
    )
    assert _by_kind(list(yaml.safe_load_all(out.stdout))) == _by_kind(render(K8S / overlay))


def test_every_object_is_valid_kubernetes(rendered: tuple[str, dict[str, Any]]) -> None:
    _, objects = rendered
    assert set(objects) == {
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for obj in objects.values():
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_an_invalid_object_is_caught() -> None:
    deployment = _by_kind(render(K8S / "base"))["Deployment"]
    broken = jsonpatch.apply_patch(
        deployment, [{"op": "add", "path": "/spec/template/spec/containers/0/prots", "value": []}]
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_the_pod_runs_as_the_service_needs(rendered: tuple[str, dict[str, Any]]) -> None:
    overlay, objects = rendered
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (api,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in api["env"]}
    mounts = {m["name"]: m for m in api["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # GPU only in the overlay, with the CUDA image and DEVICE=cuda
    gpus = api["resources"]["limits"].get("nvidia.com/gpu")
    assert (gpus, env["DEVICE"], api["image"].endswith(":cuda")) == (
        (1, "cuda", True) if overlay == "gpu" else (None, "cpu", False)
    )
    # probes: live for liveness and start-up, ready for traffic; start-up as long as loading VGG
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health/live"
    startup = api["startupProbe"]
    assert startup["httpGet"]["path"] == "/health/live"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= START_TIMEOUT_S
    # non-root, read-only root filesystem; writable only /dev/shm (memory) and /tmp
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert api["securityContext"]["readOnlyRootFilesystem"]
    assert not api["securityContext"]["allowPrivilegeEscalation"]
    assert (
        volumes["shm"]["emptyDir"]["medium"] == "Memory"
        and mounts["shm"]["mountPath"] == "/dev/shm"
    )
    assert mounts["tmp"]["mountPath"] == "/tmp"
    writable = {m["mountPath"] for m in api["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/dev/shm", "/tmp"}
    # weights: a read-only claim; keys: a Secret, read through a file, never in the environment
    claim = volumes["weights"]["persistentVolumeClaim"]
    assert (
        claim["readOnly"]
        and claim["claimName"] == objects["PersistentVolumeClaim"]["metadata"]["name"]
    )
    assert mounts["weights"]["mountPath"] == "/app/weights" == env["WEIGHTS_DIR"]
    assert (
        "API_KEYS" not in env
        and str(Path(env["API_KEYS_FILE"]).parent) == mounts["api-keys"]["mountPath"]
    )
    assert volumes["api-keys"]["secret"]["secretName"] == "mnist-zoo-api-keys"
    assert {name.lower() for name in env} <= set(Settings.model_fields)
    # graceful termination: the preStop pause plus the service's drain fit in the grace period
    pause = int(api["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pause + GRACEFUL_SHUTDOWN_S
    assert api["resources"]["requests"]["cpu"] and api["resources"]["limits"]["memory"]


def test_service_autoscaler_and_disruption_budget_select_the_pods(
    rendered: tuple[str, dict[str, Any]],
) -> None:
    _, objects = rendered
    deployment = objects["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert objects["Service"]["spec"]["selector"] == labels
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert 1 <= objects["PodDisruptionBudget"]["spec"]["minAvailable"] < hpa["minReplicas"]
    (port,) = objects["Service"]["spec"]["ports"]
    assert (
        port["targetPort"]
        == deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"]
    )
