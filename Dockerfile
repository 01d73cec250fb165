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
# docker-compose.yml forwards every ARG below from the environment or .env (tests check that).
#
# One Python from the tests to the image: 3.11, the suite's (pyproject's mypy and ruff target,
# requirements.lock). python:3.11-slim is it; pytorch/pytorch's images are built on conda's
# Python 3.11 (its Dockerfile's PYTHON_VERSION). The runtime stage stops the build on any other.
ARG BASE=cuda
ARG CUDA_IMAGE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime
ARG CPU_IMAGE=python:3.11-slim

# PIP_BREAK_SYSTEM_PACKAGES in every stage that runs pip: on a PEP 668 base (Debian's or
# Ubuntu's python3) pip refuses to install otherwise. The image is the environment.
FROM ${CUDA_IMAGE} AS base-cuda
ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

FROM ${CPU_IMAGE} AS base-cpu
ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# --no-deps: only the two builds come from TORCH_INDEX_URL; their own dependencies (sympy,
# networkx, ...) are installed from PyPI at requirements.lock's versions in the runtime stage.
RUN python3 -m pip install --no-cache-dir --no-deps --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

# DL3006 (untagged image) is a false positive here: base-${BASE} names one of the stages above.
# hadolint ignore=DL3006
FROM base-${BASE} AS runtime
# MPLCONFIGDIR: matplotlib (imported by the training CLI) wants a writable config dir.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    MPLCONFIGDIR=/tmp/matplotlib \
    WEIGHTS_DIR=/app/weights
WORKDIR /app

# Runtime dependencies: [project].dependencies of pyproject.toml at the versions of
# requirements.lock (the lock the test suite's environment is installed with too), in a layer
# that changes only with those two files. The base's torch and torchvision are pinned as
# constraints as well, so pip keeps them (and fails loudly if they do not satisfy pyproject)
# instead of pulling other builds from PyPI.
COPY pyproject.toml requirements.lock ./
RUN python3 -c "import sys; v = '%d.%d' % sys.version_info[:2]; sys.exit(None if v == '3.11' else f'python3 is {v}: requirements.lock and the tests are for Python 3.11; use a Python 3.11 base')" \
 && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && python3 -c "from importlib.metadata import distributions as ds; v = {d.metadata['Name'].lower(): d.version for d in ds()}; print('\n'.join(f'{n}=={v[n]}' for n in ('torch', 'torchvision') if n in v))" > /tmp/torch.txt \
 && python3 -m pip install --no-cache-dir -r /tmp/requirements.txt -c requirements.lock -c /tmp/torch.txt \
 && rm /tmp/requirements.txt /tmp/torch.txt

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
# The one health check (compose uses the image's): exit 0 only while /health/ready answers 200.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-m", "app.healthcheck"]
CMD ["python3", "-m", "app", "--host", "0.0.0.0", "--port", "8000"]
