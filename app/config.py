"""Settings(BaseSettings): the service's configuration, read from the environment.

Every setting of the service is a field here; the few other environment variables the service
touches are its own plumbing between processes (PROMETHEUS_MULTIPROC_DIR, which
prometheus_client reads, set by the launcher), not configuration.
"""

import os
import stat
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.weights import WEIGHTS_DIR


class Settings(BaseSettings):
    """Service configuration; every field is an environment variable of the same name."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    weights_dir: Path = Field(
        WEIGHTS_DIR,
        description="folder of checkpoints: <model>.safetensors is version 1, "
        "<model>/<N>.safetensors version N",
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="auto (CUDA when present, else CPU), cpu, cuda, cuda:N",
    )
    models: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="comma-separated models to serve; empty = every registered model"
    )
    model_versions: Annotated[dict[str, int], NoDecode] = Field(
        {},
        description="comma-separated model:version pins, e.g. mnist_cnn:3: the version a request "
        "without ?version gets; unpinned models answer with their highest loaded version",
    )
    reload_interval_s: float = Field(
        0,
        ge=0,
        description="seconds between looks at WEIGHTS_DIR for new, changed or removed "
        "checkpoints (a stat per file); 0 = only on POST /models/reload",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="inference dtype on CUDA: auto = bfloat16 from compute capability 8.0, "
        "float16 before; float32 is float32 (no TF32); the CPU always runs float32",
    )
    max_batch_size: int = Field(64, ge=1, le=4096, description="images per model call")
    max_batch_delay_ms: float = Field(
        2.0, ge=0, le=1000, description="longest wait to fill a batch while the model is busy"
    )
    max_queue: int = Field(2048, ge=1, description="images waiting per model before 503")
    request_timeout_s: float = Field(30.0, gt=0, description="queue + inference time before 504")
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="request body limit (413)")
    max_files: int = Field(256, ge=1, description="images per request (422 beyond)")
    header_timeout_s: float = Field(
        10.0, gt=0, description="a request's line and headers must arrive within this (slowloris)"
    )
    max_header_bytes: int = Field(
        32 * 1024,
        ge=1024,
        description="a request's line and headers together, in bytes (431 beyond, as nginx's "
        "default buffers allow)",
    )
    body_timeout_s: float = Field(
        15.0,
        gt=0,
        description="longest pause between two reads of a request body, and the grace a body "
        "has before MIN_BODY_RATE applies (408 beyond)",
    )
    min_body_rate: int = Field(
        500,
        ge=0,
        description="bytes per second a body must average: it may take BODY_TIMEOUT_S plus one "
        "second per MIN_BODY_RATE bytes (Apache's mod_reqtimeout); 0 = no pace, pauses only",
    )
    keep_alive_s: float = Field(
        5.0, gt=0, description="an idle keep-alive connection is closed after this"
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="open connections plus requests in progress per worker process; 503 beyond",
    )
    max_image_pixels: int = Field(40_000_000, ge=1, description="width x height per image (413)")
    decode_timeout_s: float = Field(
        3.0,
        gt=0,
        description="longest an image may take to decode and preprocess (its decoder process "
        "is then killed, and the image refused with 413)",
    )
    decode_memory_mb: int = Field(
        256,
        ge=64,
        description="memory a worker's decoder process may add to decode one request's images "
        "(beyond it the image is refused with 413)",
    )
    torch_threads: int = Field(
        0,
        ge=0,
        description="intra-op threads per process that runs a model; 0 = on the CPU half of "
        "each worker's share of the cores (worker layout) or half the cores (shared), on CUDA "
        "1; at least 1",
    )
    engine: Literal["auto", "shared", "worker"] = Field(
        "auto",
        description="where models run: shared = one model-owner process per device that batches "
        "for every frontend worker; worker = a copy in each worker; auto = shared on CUDA, "
        "worker on the CPU (both chosen by measurement, see the README)",
    )
    workers: int = Field(
        0,
        ge=0,
        le=64,
        description="frontend worker processes (HTTP, parsing, decoding, preprocessing); "
        "0 = one per core on the CPU, all cores but two on CUDA (at most 16)",
    )
    host: str = Field("127.0.0.1", description="address `python -m app` listens on")
    port: int = Field(8000, ge=0, le=65535, description="port `python -m app` listens on")
    root_path: str = Field(
        "", description="path prefix a proxy serves the service under, e.g. /zoo (ASGI root_path)"
    )
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (),
        description="comma-separated API keys; when any is set (here or in API_KEYS_FILE), "
        "predict, /models and /metrics need `Authorization: Bearer <key>`",
    )
    api_keys_file: Path | None = Field(
        None,
        description="a file of API keys (comma- or line-separated), e.g. a Docker or Kubernetes "
        "secret mounted into the container",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="comma-separated origins whose pages may call the API from a browser "
        "(CORS); empty = none",
    )
    engine_socket: str | None = Field(
        None,
        description="internal: the model owner's socket, set by `python -m app` for its workers",
    )
    run_dir: Path | None = Field(
        None,
        description="internal: the launcher's run folder, set by `python -m app` for its workers "
        "(a reload reaches every worker through it)",
    )
    warmup: bool = Field(
        True,
        description="run a batch of each size at start-up before reporting ready (CUDA: the "
        "powers of two up to MAX_BATCH_SIZE, and it; CPU: 1 and MAX_BATCH_SIZE)",
    )
    retry_after_s: int = Field(1, ge=1, description="Retry-After seconds sent with 503")

    @field_validator("models", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, v: object) -> object:
        if isinstance(v, str):
            return tuple(m.strip() for m in v.split(",") if m.strip())
        return v

    @field_validator("model_versions", mode="before")
    @classmethod
    def _split_pins(cls, v: object) -> object:
        if not isinstance(v, str):
            return v
        pins: dict[str, object] = {}
        for item in filter(None, (p.strip() for p in v.split(","))):
            name, sep, version = item.partition(":")
            if not sep or not name.strip() or not version.strip().isdigit():
                raise ValueError(f"MODEL_VERSIONS: {item!r} is not model:version, e.g. lenet:2")
            pins[name.strip()] = int(version)
        return pins

    @field_validator("model_versions")
    @classmethod
    def _positive_pins(cls, v: dict[str, int]) -> dict[str, int]:
        if bad := [f"{m}:{n}" for m, n in v.items() if n < 1]:
            raise ValueError(f"MODEL_VERSIONS: versions are positive integers, not {bad}")
        return v

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, v: object) -> object:
        # Blanks are kept for keys(): API_KEYS=" , " is set yet names no key, and must stop
        # start-up rather than turn authentication off. Only an empty value means "no keys".
        if isinstance(v, str):
            return tuple(k.strip() for k in v.split(",")) if v else ()
        return v

    def keys(self) -> tuple[bytes, ...]:
        """Every API key, from API_KEYS and the API_KEYS_FILE; none = no authentication."""
        given = [k.get_secret_value() for k in self.api_keys]
        keys = [k for k in given if k]
        if given and not keys:
            # Set, yet no key in it: refusing is safer than serving unguarded.
            raise ValueError("API_KEYS is set but holds no key (only commas and blanks)")
        if self.api_keys_file is not None:
            try:
                text = self.api_keys_file.read_text()
            except PermissionError as exc:
                raise ValueError(unreadable_keys_file(self.api_keys_file, exc)) from exc
            except OSError as exc:
                raise ValueError(f"API_KEYS_FILE {self.api_keys_file}: {exc.strerror}") from exc
            in_file = [k.strip() for k in text.replace(",", "\n").splitlines() if k.strip()]
            if not in_file:
                # An empty secret must not quietly turn authentication off.
                raise ValueError(f"API_KEYS_FILE {self.api_keys_file} holds no key")
            keys += in_file
        return tuple(k.encode() for k in keys)

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> "Settings":
        if self.max_files > self.max_queue:
            raise ValueError("MAX_FILES must not exceed MAX_QUEUE, or a full request never fits")
        return self


def unreadable_keys_file(path: Path, exc: OSError) -> str:
    """What to change when this process may not read the API keys file: which file, who, how."""
    uid, gid = os.getuid(), os.getgid()
    try:
        st = path.stat()
        found = f"it is owned by {st.st_uid}:{st.st_gid} with mode {stat.S_IMODE(st.st_mode):04o}"
    except OSError:
        found = "its folder cannot be searched"
    return (
        f"API_KEYS_FILE {path}: {exc.strerror}: the service runs as uid {uid} gid {gid} and "
        f"{found}. Make it readable to group {gid} where it is created (for Docker Compose, "
        f"the host's ./secrets/api_keys or API_KEYS_SECRET_FILE): "
        f"sudo chgrp {gid} FILE && sudo chmod 0640 FILE; or serve through "
        f"docker-compose.keys.yml, which copies the file for the service"
    )


@lru_cache
def get_settings() -> Settings:
    """Settings read once from the environment."""
    return Settings()
