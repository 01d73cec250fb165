#!/usr/bin/env bash
# Every GPU check in order, on a machine that may reach no package index; what they measured
# goes to one small results file: $OUT/gpu_check.json and its summary $OUT/gpu_check.md.
#
#   scripts/gpu_check.sh              the GPU run (about 9 minutes on an H100)
#   scripts/gpu_check.sh --dry-run    every section on the CPU with tiny sizes (also DEVICE=cpu)
#
# Environment:
#   PYTHON=python3       the interpreter (with torch)
#   WHEELS=<folder>      wheels for what that interpreter lacks (fastapi, uvicorn, pydantic, ...):
#                        installed with pip --no-index into a venv (VENV=.gpu-check-venv) that
#                        sees the system's packages (torch among them)
#   WRK=<path to wrk>    when wrk is not on PATH; LD_LIBRARY_PATH for its libraries
#   MNIST_DATA_DIR       the folder holding MNIST/raw (default ../shared/data)
#   DEVICE=cuda          or cuda:N; cpu = --dry-run
#   OUT=<folder>         where the results go (default benchmarks/results)
#   BUDGET_S=540         the whole run's time budget, shared out among the sections
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.gpu-check-venv}
args=()
[[ "${1:-}" == "--dry-run" || "${DEVICE:-cuda}" == "cpu" ]] && args+=(--dry-run)

say() { echo "gpu_check.sh: $*" >&2; }

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    say "$PYTHON cannot import torch: set PYTHON to an interpreter that has it"
    exit 2
fi

# The packages the service and its tests import, by package name, that this Python lacks.
missing=$("$PYTHON" -m benchmarks.needs)
if [[ -n "$missing" ]]; then
    if [[ -z "${WHEELS:-}" ]]; then
        say "missing Python packages: $(echo "$missing" | tr '\n' ' ')"
        say "carry their wheels (with their dependencies) into a folder and set WHEELS=<folder>"
        exit 2
    fi
    say "installing from $WHEELS into $VENV: $(echo "$missing" | tr '\n' ' ')"
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv --system-site-packages "$VENV"
    # shellcheck disable=SC2086  # one package per word
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-index \
        --find-links "$WHEELS" $missing
    PYTHON="$VENV/bin/python"
    still=$("$PYTHON" -m benchmarks.needs)
    if [[ -n "$still" ]]; then
        say "still missing after installing from $WHEELS: $(echo "$still" | tr '\n' ' ')"
        exit 2
    fi
fi

if [[ -n "${WRK:-}" ]]; then
    say "wrk: $WRK"
elif ! command -v wrk >/dev/null; then
    say "wrk is not on PATH and WRK is not set: the serve_bench section will say so and fail"
fi

[[ -n "${BUDGET_S:-}" ]] && args+=(--budget-s "$BUDGET_S")
exec "$PYTHON" -m benchmarks.gpu_check "${args[@]}"
