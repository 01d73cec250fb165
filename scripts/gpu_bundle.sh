#!/usr/bin/env bash
# Assembles what travels to the lent GPU machine beside the repository's files, in the ignored
# folder .gpu-bundle/ (carry it: run(..., carry=[".gpu-bundle"])):
#   wheels/          scripts/gpu_wheels.txt: what the machine's python3 lacks, for its CPython
#   pip/             pip's own wheel, run from the wheel: the installer is the same everywhere
#   data/MNIST/raw/  MNIST's four IDX files, gzipped (models/data.py reads .gz)
#   wrk/             Debian's wrk and LuaJIT, unpacked here with dpkg -x (usr/bin, usr/lib)
#   COMMIT           the commit the tree was at (the machine may have no git)
# Prints the bundle's size and the travelling tree's in all; fails when that is over the limit.
#
#   scripts/gpu_bundle.sh                       # for the lent machine: CPython 3.12
#   PYTHON_VERSION=3.11 scripts/gpu_bundle.sh   # the rehearsal here (tests/test_gpu_check.py):
#                                               # the same packages, built for this Python
# Environment: BUNDLE (.gpu-bundle), PYTHON_VERSION (3.12), PYTHON (python3: its pip downloads),
# MNIST_DATA_DIR (../shared/data), CACHE (.cache/gpu-bundle: wheels and .debs downloaded once,
# reused offline), LIMIT_MIB (64: the working tree that travels, in all).
# Exit status: 0 done, 1 something is wrong, 3 a download failed (no network, and not cached).
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${BUNDLE:-.gpu-bundle}
PYTHON=${PYTHON:-python3}
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
MNIST_DATA_DIR=${MNIST_DATA_DIR:-../shared/data}
CACHE=${CACHE:-.cache/gpu-bundle}
LIMIT_MIB=${LIMIT_MIB:-64}
say() { echo "gpu_bundle.sh: $*" >&2; }

rm -rf "$BUNDLE"
mkdir -p "$BUNDLE"/wheels "$BUNDLE"/pip "$BUNDLE"/data/MNIST/raw "$BUNDLE"/wrk "$CACHE/wheels-$PYTHON_VERSION" "$CACHE/debs"

# Wheels: into the cache from PyPI only when not there yet, then exactly the listed ones from it.
wheels=$CACHE/wheels-$PYTHON_VERSION
pip_download=("$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps
    --only-binary=:all: --implementation cp --python-version "$PYTHON_VERSION"
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux_2_28_x86_64 -r scripts/gpu_wheels.txt)
if ! "${pip_download[@]}" --no-index --find-links "$wheels" -d "$wheels" 2>/dev/null; then
    say "downloading wheels for CPython $PYTHON_VERSION into $wheels"
    "${pip_download[@]}" -d "$wheels" || { say "cannot download the wheels"; exit 3; }
fi
"${pip_download[@]}" --no-index --find-links "$wheels" -d "$BUNDLE/wheels" 2>/dev/null
# pip 26.3 runs from its wheel (python pip-26.3-py3-none-any.whl/pip) on Python 3.9 and later.
if ! compgen -G "$wheels/pip-26.3-*.whl" >/dev/null; then
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        -d "$wheels" pip==26.3 2>/dev/null || { say "cannot download pip's wheel"; exit 3; }
fi
cp "$wheels"/pip-26.3-*.whl "$BUNDLE/pip/"

# MNIST, gzipped: 52 MiB of IDX files are 11 MiB.
for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    src=$MNIST_DATA_DIR/MNIST/raw/$name
    if [[ -f $src.gz ]]; then
        cp "$src.gz" "$BUNDLE/data/MNIST/raw/"
    elif [[ -f $src ]]; then
        gzip -6 -c "$src" > "$BUNDLE/data/MNIST/raw/$name.gz"
    else
        say "MNIST's $name is not in $MNIST_DATA_DIR/MNIST/raw (MNIST_DATA_DIR=<folder>)"
        exit 1
    fi
done

# wrk, unpacked: the machine has no apt and maybe no dpkg.
debs=(wrk libluajit-5.1-2 libluajit-5.1-common)
for deb in "${debs[@]}"; do
    if ! compgen -G "$CACHE/debs/${deb}_*.deb" >/dev/null; then
        (cd "$CACHE/debs" && apt-get download "$deb" 2>/dev/null) || {
            say "cannot download the Debian package $deb (apt-get download)"
            exit 3
        }
    fi
    dpkg -x "$(compgen -G "$CACHE/debs/${deb}_*.deb" | head -1)" "$BUNDLE/wrk"
done
rm -rf "$BUNDLE"/wrk/usr/share/{doc,man,lintian}
said=$(LD_LIBRARY_PATH=$BUNDLE/wrk/usr/lib/x86_64-linux-gnu "$BUNDLE/wrk/usr/bin/wrk" -v 2>&1 || true)
if [[ $said != "wrk "* ]]; then  # wrk -v prints its version and exits 1
    say "the unpacked wrk does not start: $said"
    exit 1
fi

{ git rev-parse HEAD 2>/dev/null || echo unknown; } > "$BUNDLE/COMMIT"

# What travels: tracked files and untracked ones git does not ignore, plus this folder.
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- | tail -1 | cut -f1)
bundle_bytes=$(du -sb "$BUNDLE" | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
total=$((tree_bytes + bundle_bytes))
echo "bundle $BUNDLE: $(mib "$bundle_bytes") MiB ($(ls "$BUNDLE/wheels" | wc -l) wheels" \
    "$(mib "$(du -sb "$BUNDLE/wheels" | cut -f1)") MiB, pip $(mib "$(du -sb "$BUNDLE/pip" | cut -f1)") MiB, MNIST $(mib "$(du -sb "$BUNDLE/data" | cut -f1)") MiB," \
    "wrk $(mib "$(du -sb "$BUNDLE/wrk" | cut -f1)") MiB); the tree that travels: $(mib "$tree_bytes") MiB;" \
    "in all $(mib "$total") MiB of $LIMIT_MIB"
if ((total > LIMIT_MIB * 1048576)); then
    say "over the limit: $(mib "$total") MiB > $LIMIT_MIB MiB"
    exit 1
fi
