# The MNIST model zoo service: `python -m app` on port 8000 (see docs/deploy.md): frontend worker
# processes (one per core) and, on a GPU, the model owner they share; 30 s graceful drain.
#
#   GPU image (default): docker build -t mnist-zoo:cuda .
#   CPU-only image:      docker build --build-arg BASE=cpu -t mnist-zoo:cpu .
#
# BASE picks the stage the image grows from (BuildKit builds only that one):
#   cuda  CUDA_IMAGE, the official PyTorch CUDA runtime image; torch and torchvision come with it.
#   cpu   CPU_IMAGE (python slim) plus PyTorch's CPU-only wheels: no CUDA libraries, a far
#         smaller image, runs anywhere. TORCH_VERSION / TORCHVISION_VERSION match CUDA_IMAGE.
# CUDA 13 needs an NVIDIA driver >= 580; on an older driver pass e.g.
#   --build-arg CUDA_IMAGE=pytorch/pytorch:2.14.1-cuda12.6-cudnn9-runtime
ARG BASE=cuda
ARG CUDA_IMAGE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime
ARG CPU_IMAGE=python:3.12-slim

FROM ${CUDA_IMAGE} AS base-cuda

FROM ${CPU_IMAGE} AS base-cpu
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python3 -m pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

# DL3006 (untagged image) is a false positive here: base-${BASE} names one of the stages above.
# hadolint ignore=DL3006
FROM base-${BASE} AS runtime
# PIP_BREAK_SYSTEM_PACKAGES: recent PyTorch images use Ubuntu's (PEP 668) Python; the image is the
# environment. MPLCONFIGDIR: matplotlib (imported by the training CLI) wants a writable config dir.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    WEIGHTS_DIR=/app/weights
WORKDIR /app

# Runtime dependencies: [project].dependencies of pyproject.toml, in a layer that changes only with
# that file. The base stage's torch and torchvision are pinned as constraints, so pip keeps them
# (and fails loudly if they do not satisfy pyproject) instead of pulling other builds from PyPI.
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && python3 -c "from importlib.metadata import distributions as ds; v = {d.metadata['Name'].lower(): d.version for d in ds()}; print('\n'.join(f'{n}=={v[n]}' for n in ('torch', 'torchvision') if n in v))" > /tmp/constraints.txt \
 && python3 -m pip install --no-cache-dir -r /tmp/requirements.txt -c /tmp/constraints.txt \
 && rm /tmp/requirements.txt /tmp/constraints.txt

RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/app --shell /usr/sbin/nologin app

# Source and the committed small checkpoints (.dockerignore lets nothing else in), owned by root:
# the service reads them and cannot change them. Larger checkpoints are mounted at /app/weights.
COPY app/ ./app/
COPY models/ ./models/
COPY weights/ ./weights/
# safetensors writes checkpoints owner-only (0600): make any such file readable by the app user.
RUN find /app/app /app/models /app/weights ! -perm -a+r -exec chmod a+rX {} +

USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4)"]
CMD ["python3", "-m", "app", "--host", "0.0.0.0", "--port", "8000"]
