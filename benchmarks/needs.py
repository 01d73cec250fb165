"""What the service, its tests and the GPU check import beyond torch and numpy: import name ->
the package that provides it. Standard library only: scripts/gpu_check.sh asks it what is
still missing after installing the bundle's wheels (scripts/gpu_wheels.txt)."""

import importlib.util
import sys

SERVICE = {
    "fastapi": "fastapi",
    "fastapi_offline": "fastapi-offline",
    "starlette": "starlette",
    "uvicorn": "uvicorn",
    "httptools": "httptools",
    "pydantic": "pydantic",
    "pydantic_settings": "pydantic-settings",
    "python_multipart": "python-multipart",
    "prometheus_client": "prometheus-client",
    "orjson": "orjson",
    "pyspng": "pyspng",
    "PIL": "pillow",
    "safetensors": "safetensors",
    "httpx": "httpx",
    "cv2": "opencv-python-headless",
    "tqdm": "tqdm",  # training
    "matplotlib": "matplotlib",  # training's accuracy plot
    "torchvision": "torchvision",
}
TESTS = {"pytest": "pytest", "pytest_asyncio": "pytest-asyncio", "pytest_timeout": "pytest-timeout"}


def missing(modules: dict[str, str] = SERVICE) -> list[str]:
    """The import names of ``modules`` this interpreter cannot import."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


if __name__ == "__main__":  # the packages to install, one per line
    wanted = {**SERVICE, **TESTS}
    print("\n".join(sorted({wanted[name] for name in missing(wanted)})))
    sys.exit(0)
