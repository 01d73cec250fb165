#!/usr/bin/env bash
# The GPU check on the lent machine: prepares Python from what scripts/gpu_bundle.sh put in
# .gpu-bundle/ (carried beside the tree), then runs benchmarks/gpu_check.py; what it measured
# goes to $OUT/gpu_check*.json and .md, written again after each section. Exit status 0 only
# when everything passed; the last lines name what did not.
#
#   scripts/gpu_check.sh               quick mode: the whole check in under 5 minutes
#   scripts/gpu_check.sh --part 1      the full check's first part (within one 600 s command)
#   scripts/gpu_check.sh --part 2      ... and its second
#   scripts/gpu_check.sh --dry-run     the same on the CPU with tiny sizes (also DEVICE=cpu)
# Other arguments go to python -m benchmarks.gpu_check (--sections, --budget-s, ...).
#
# Environment:
#   PYTHON=python3        the interpreter with torch. On the lent machine it is itself a venv:
#                         a venv made from it would not see torch, so none is made; the
#                         bundle's wheels go to SITE with pip --target and SITE is put first
#                         on PYTHONPATH (prepended: whatever PYTHONPATH held stays after it)
#   BUNDLE=.gpu-bundle    wheels/, data/MNIST/raw/*.gz, wrk/, COMMIT (scripts/gpu_bundle.sh)
#   SITE=$BUNDLE/site     where the wheels are installed (once: a rerun reuses it)
#   MNIST_DATA_DIR        default $BUNDLE/data when the bundle has MNIST, else ../shared/data
#   WRK                   default the bundle's wrk (its libraries on LD_LIBRARY_PATH)
#   OUT                   where the results go (default benchmarks/results)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
PYTHON=${PYTHON:-python3}
BUNDLE=${BUNDLE:-$root/.gpu-bundle}
SITE=${SITE:-$BUNDLE/site}
say() { echo "gpu_check.sh: $*" >&2; }

mode=quick
args=()
while (($#)); do
    case $1 in
        --quick) mode=quick ;;
        --part) mode=full${2:?--part takes 1 or 2}; shift ;;
        --dry-run) args+=(--dry-run) ;;
        *) args+=("$1") ;;
    esac
    shift
done
[[ ${DEVICE:-cuda} == cpu ]] && args+=(--dry-run)

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    say "$PYTHON cannot import torch: set PYTHON to an interpreter that has it"
    exit 2
fi

if [[ -d $BUNDLE/wheels ]]; then
    if [[ ! -f $SITE/.installed ]]; then
        say "installing $(ls "$BUNDLE"/wheels | wc -l) wheels into $SITE (pip --target, no index)"
        # pip run from its carried wheel: the machine's own pip may be missing or old.
        pip=$(ls -d "$BUNDLE"/pip/pip-*.whl | head -1)/pip
        "$PYTHON" "$pip" install --quiet --disable-pip-version-check --no-index --no-deps \
            --upgrade --target "$SITE" "$BUNDLE"/wheels/*.whl
        touch "$SITE/.installed"
    fi
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"  # every child finds the repository too

# The packages the service, its tests and the check import, that are still missing.
missing=$("$PYTHON" -m benchmarks.needs)
if [[ -n $missing ]]; then
    say "missing Python packages: $(echo "$missing" | tr '\n' ' ')"
    say "add them to scripts/gpu_wheels.txt and run scripts/gpu_bundle.sh (OpenCV does not fit: the machine must have it)"
    exit 2
fi

if [[ -z ${MNIST_DATA_DIR:-} && -d $BUNDLE/data/MNIST/raw ]]; then
    export MNIST_DATA_DIR=$BUNDLE/data
fi
if [[ -z ${WRK:-} && -x $BUNDLE/wrk/usr/bin/wrk ]]; then
    export WRK=$BUNDLE/wrk/usr/bin/wrk
    export LD_LIBRARY_PATH="$BUNDLE/wrk/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

exec "$PYTHON" -m benchmarks.gpu_check --mode "$mode" ${args[@]+"${args[@]}"}
