#!/usr/bin/env bash
# The CPU image as a user builds and runs it, checked end to end with podman (not part of
# `make test`: it needs podman, podman-compose and root). Writes its figures and each check's
# outcome to benchmarks/results/image_check.json (OUT to change), naming the commit and command.
#
#   sudo scripts/image_check.sh
#
# Checks: the build; ready; one predict (an MNIST test digit, a 7); the page, /docs, /metrics;
# uid 10001; read-only weights; the image's HEALTHCHECK; `podman stop` draining under a loop of
# requests with none failed; docker-compose.keys.yml with a root-owned 0600 secret (401 without
# the key, 200 with it, the service still uid 10001); the train profile (lenet, 1 short epoch)
# writing weights/lenet/2.safetensors, which the running api then serves as the default.
#
# Environment:
#   CPU_IMAGE      the base (default python:3.11-slim). Where no registry answers, a stand-in:
#                  Debian bookworm's python3.11 made with debootstrap (a PEP 668 Python, so it
#                  also checks the image's pip settings), imported as localhost/python-standin.
#   STANDIN_ROOT   a debootstrap tree to reuse (default /var/tmp/image-check/bookworm)
#   TORCH_WHEELS   folders holding a cp311 torch wheel (CPU build preferred) and a torchvision
#                  wheel (default: pip's find-links here, /opt/wheels and /opt/pypi-more/files);
#                  they become a file index mounted into the build (TORCH_INDEX_URL).
#   MNIST_DATA_DIR MNIST/raw for the train run (default ../shared/data)
#   PORT           host port for the api (default 18080)
#   PODMAN_COMPOSE podman-compose command (default podman-compose)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-benchmarks/results}
PORT=${PORT:-18080}
PODMAN_COMPOSE=${PODMAN_COMPOSE:-podman-compose}
MNIST_DATA_DIR=${MNIST_DATA_DIR:-../shared/data}
TAG=mnist-zoo-check
WORK=$(mktemp -d /var/tmp/image-check.XXXXXX)
CHECKS="$WORK/checks.tsv"
: >"$CHECKS"
say() { echo "image_check.sh: $*" >&2; }
check() {  # check NAME PASS|FAIL DETAIL
    printf '%s\t%s\t%s\n' "$1" "$2" "${3:-}" >>"$CHECKS"
    say "$2 $1 ${3:-}"
}
compose() {
    "$PODMAN_COMPOSE" -p zoo-check -f docker-compose.yml -f docker-compose.cpu.yml \
        -f docker-compose.keys.yml "$@"
}
cleanup() {
    podman rm -f zoo-check-api >/dev/null 2>&1 || true
    compose --profile train down >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export IMAGE_REPO=$TAG API_PORT=$PORT WEIGHTS_HOST_DIR=$WORK/weights \
    MNIST_HOST_DIR=$(realpath "$MNIST_DATA_DIR") API_KEYS_SECRET_FILE=$WORK/secrets/api_keys

for tool in podman "$PODMAN_COMPOSE" python3 curl; do
    command -v "$tool" >/dev/null || { say "needs $tool"; exit 2; }
done

# ---- the base: the real one where a registry answers, else the debootstrap stand-in
CPU_IMAGE=${CPU_IMAGE:-python:3.11-slim}
base_kind=registry
if ! podman image exists "$CPU_IMAGE" && ! podman pull -q "docker.io/library/$CPU_IMAGE" \
    >/dev/null 2>&1; then
    base_kind="stand-in (debootstrap bookworm, python3.11)"
    STANDIN_ROOT=${STANDIN_ROOT:-/var/tmp/image-check/bookworm}
    if [[ ! -x "$STANDIN_ROOT/usr/bin/python3.11" ]]; then
        say "no registry: making a stand-in for $CPU_IMAGE with debootstrap in $STANDIN_ROOT"
        debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates bookworm \
            "$STANDIN_ROOT" http://deb.debian.org/debian >"$WORK/debootstrap.log"
    fi
    CPU_IMAGE=localhost/python-standin:3.11-bookworm
    podman image exists "$CPU_IMAGE" || tar -C "$STANDIN_ROOT" \
        --exclude=./var/cache/apt/archives --exclude=./var/lib/apt/lists -c . |
        podman import --change 'CMD ["python3"]' - "$CPU_IMAGE" >/dev/null
fi
say "base: $CPU_IMAGE ($base_kind)"

# ---- podman on a host like this one (a VM whose root lacks CAP_SYS_RESOURCE, cgroups v1+v2
# hybrid): crun refuses hybrid cgroups and podman's default rlimits are above the host's; runc
# with the host's own limits works. CONTAINERS_CONF set by the caller wins.
if [[ -z "${CONTAINERS_CONF:-}" ]] && command -v runc >/dev/null &&
    ! podman run --rm "$CPU_IMAGE" true >/dev/null 2>&1; then
    printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=8192:8192"]\n[engine]\nruntime = "runc"\n' \
        "$(ulimit -Sn)" "$(ulimit -Hn)" >"$WORK/containers.conf"
    export CONTAINERS_CONF=$WORK/containers.conf
fi

# ---- torch and torchvision: a file index of the wheels found, mounted into the build. A pair
# whose torchvision asks for that torch and shares its build (+cpu or not): PyPI's torchvision
# is a CUDA build and fails to import beside a CPU torch. A CPU pair first, else PyPI's pair.
read -r -a wheel_dirs <<<"${TORCH_WHEELS:-/opt/wheels /opt/pypi-more/files}"
read -r torch_whl vision_whl < <(python3 - "${wheel_dirs[@]}" <<'EOF'
import re, sys, zipfile
from pathlib import Path
wheels = [w for d in sys.argv[1:] for w in Path(d).glob("*-cp311-cp311-*x86_64.whl")]
def version(w): return w.name.split("-")[1]
def wanted_torch(w):
    with zipfile.ZipFile(w) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    m = re.search(r"^Requires-Dist: torch ?\(?(?:==|>=)(\d+\.\d+)", meta, re.M)
    return m.group(1) if m else None  # the torch release (major.minor) it was built for
pairs = [(t, v) for t in wheels if t.name.startswith("torch-") for v in wheels
         if v.name.startswith("torchvision-") and wanted_torch(v) == ".".join(version(t).split(".")[:2])
         and ("+cpu" in version(t)) == ("+cpu" in version(v))]
def ints(w): return [int(x) for x in re.findall(r"\d+", version(w))]
key = lambda p: ("+cpu" in version(p[0]), ints(p[0]), ints(p[1]))
print(*max(pairs, key=key) if pairs else ())
EOF
)
[[ -n "${vision_whl:-}" ]] || { say "no matching torch/torchvision cp311 wheels in ${wheel_dirs[*]}"; exit 2; }
torch_version=$(basename "$torch_whl" | cut -d- -f2)
vision_version=$(basename "$vision_whl" | cut -d- -f2)
for whl in "$torch_whl" "$vision_whl"; do
    name=$(basename "$whl" | cut -d- -f1)
    mkdir -p "$WORK/wheels/simple/$name"
    ln "$whl" "$WORK/wheels/" 2>/dev/null || cp "$whl" "$WORK/wheels/"
    printf '<a href="../../%s">%s</a>\n' "$(basename "$whl" | sed 's/+/%2B/')" \
        "$(basename "$whl")" >"$WORK/wheels/simple/$name/index.html"
done
say "torch $torch_version, torchvision $vision_version"

# ---- build (docker format: OCI images drop HEALTHCHECK)
# The host's CA bundle replaces the base's during the build: pip reaches PyPI through whatever
# TLS interception the host trusts (Debian's pip reads the system bundle).
build_cmd=(podman build --format docker --no-cache --volume "$WORK/wheels:/wheels:ro"
    --volume "${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}:/etc/ssl/certs/ca-certificates.crt:ro"
    --build-arg BASE=cpu --build-arg "CPU_IMAGE=$CPU_IMAGE"
    --build-arg TORCH_INDEX_URL=file:///wheels/simple
    --build-arg "TORCH_VERSION=${torch_version%%+*}" --build-arg "TORCHVISION_VERSION=${vision_version%%+*}"
    -t "$TAG:cpu" .)
t0=$(date +%s.%N)
if "${build_cmd[@]}" >"$WORK/build.log" 2>&1; then
    build_s=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))")
    check build PASS "${build_s} s"
else
    tail -30 "$WORK/build.log" >&2
    check build FAIL "see the log above"
    exit 1
fi
size_bytes=$(podman image inspect --format '{{.Size}}' "$TAG:cpu")
image_python=$(podman run --rm "$TAG:cpu" python3 -c 'import sys, torch, numpy; print(sys.version.split()[0], torch.__version__, numpy.__version__)')
say "image: $size_bytes bytes; python, torch, numpy: $image_python"

# ---- a digit to predict: the first MNIST test image (a 7), as a PNG made with the stdlib
python3 - "$MNIST_DATA_DIR/MNIST/raw" "$WORK/seven.png" <<'EOF'
import gzip, struct, sys, zlib
from pathlib import Path
raw = Path(sys.argv[1]) / "t10k-images-idx3-ubyte"
data = raw.read_bytes() if raw.exists() else gzip.open(f"{raw}.gz").read()
pixels = data[16:16 + 784]
rows = b"".join(b"\0" + pixels[r * 28:(r + 1) * 28] for r in range(28))
def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0))
Path(sys.argv[2]).write_bytes(png + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
EOF

wait_ready() {  # wait_ready URL SECONDS [START]: seconds since START (now), fails after SECONDS
    local start=${3:-$(date +%s.%N)}
    while ! curl -sf -o /dev/null "$1"; do
        python3 -c "import sys; sys.exit($(date +%s.%N) - $start > $2)" || return 1
        sleep 0.2
    done
    python3 -c "print(round($(date +%s.%N) - $start, 1))"
}
api=http://127.0.0.1:$PORT

# ---- the image on its own, as `docker run` runs it (weights mounted read-only, as compose does)
mkdir -p "$WORK/weights" "$WORK/secrets"
cp -r weights/. "$WORK/weights/"
chown -R 10001:10001 "$WORK/weights"  # train (uid 10001) writes here later
run_t0=$(date +%s.%N)  # time to ready counts from `podman run`
podman run -d --name zoo-check-api -p "127.0.0.1:$PORT:8000" --stop-timeout 45 \
    -e DEVICE=cpu -e WORKERS=2 -v "$WORK/weights:/app/weights:ro" "$TAG:cpu" >/dev/null
if ready_s=$(wait_ready "$api/health/ready" 180 "$run_t0"); then check ready PASS "${ready_s} s"; else
    podman logs zoo-check-api 2>&1 | tail -20 >&2; check ready FAIL "not ready in 180 s"; exit 1; fi
answer=$(curl -s -F "files=@$WORK/seven.png" "$api/predict/lenet")
label=$(python3 -c "import json, sys; print(json.loads(sys.argv[1])['predictions'][0]['label'])" "$answer" 2>/dev/null || true)
[[ "$label" == 7 ]] && check predict PASS "lenet says 7" || check predict FAIL "$answer"
for path in / /docs /metrics; do
    code=$(curl -s -o "$WORK/body" -w '%{http_code}' "$api$path")
    case $path in /) want='<html' ;; /docs) want='swagger' ;; *) want='# HELP' ;; esac
    [[ $code == 200 ]] && grep -qi "$want" "$WORK/body" && check "get $path" PASS "200" ||
        check "get $path" FAIL "$code"
done
uids=$(podman exec --user 10001 zoo-check-api sh -c 'for s in /proc/[0-9]*/status; do awk "/^Uid:/ {print \$2}" $s; done' | sort -u | tr '\n' ' ')
[[ "$uids" == "10001 " ]] && check uid PASS "every process uid 10001" || check uid FAIL "uids: $uids"
if podman exec zoo-check-api touch /app/weights/x 2>/dev/null ||
    podman exec zoo-check-api touch /app/weights/lenet.safetensors 2>/dev/null ||
    podman exec zoo-check-api touch /app/app/x 2>/dev/null; then
    check read-only-weights FAIL "the service could write"
else check read-only-weights PASS "mounted weights and baked code unwritable"; fi
if podman healthcheck run zoo-check-api >/dev/null 2>&1; then
    check healthcheck PASS "$(podman image inspect --format '{{json .Config.Healthcheck.Test}}' "$TAG:cpu")"
else check healthcheck FAIL "podman healthcheck run failed"; fi

# ---- drain: `podman stop` while 8 clients send requests; accepted requests must all answer 200
python3 - "$PORT" "$WORK/seven.png" "$WORK/drain.json" <<'EOF' &
import http.client, json, sys, threading, time
port, body, out = int(sys.argv[1]), open(sys.argv[2], "rb").read(), sys.argv[3]
counts = {"ok": 0, "refused": 0, "failed": 0}
errors, lock, last_ok = [], threading.Lock(), [time.monotonic()]
def client():
    while time.monotonic() - last_ok[0] < 3:  # until the service has been gone 3 s
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.connect()
        except OSError:
            with lock: counts["refused"] += 1
            time.sleep(0.05)
            continue
        try:
            c.request("POST", "/predict/lenet", body, {"Content-Type": "image/png", "Connection": "close"})
            status = c.getresponse().status
            kind = "ok" if status == 200 else "failed"
            if kind == "failed": errors.append(status)
        except (OSError, http.client.HTTPException) as exc:
            # Connected, yet no answer: a request the drain dropped.
            kind = "failed"
            errors.append(repr(exc))
        finally:
            c.close()
        with lock:
            counts[kind] += 1
            if kind == "ok": last_ok[0] = time.monotonic()
threads = [threading.Thread(target=client) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
json.dump({**counts, "errors": errors[:10]}, open(out, "w"))
EOF
load=$!
sleep 3
t0=$(date +%s.%N)
podman stop -t 45 zoo-check-api >/dev/null
stop_s=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))")
wait "$load"
exit_code=$(podman inspect --format '{{.State.ExitCode}}' zoo-check-api)
drain=$(cat "$WORK/drain.json")
if [[ $exit_code == 0 ]] && python3 -c "import json, sys; d = json.loads(sys.argv[1]); sys.exit(not (d['ok'] > 0 and d['failed'] == 0))" "$drain"; then
    check drain PASS "stopped in ${stop_s} s, exit 0, $drain"
else check drain FAIL "stopped in ${stop_s} s, exit $exit_code, $drain"; fi
podman rm -f zoo-check-api >/dev/null

# ---- compose: the keys override with a root-owned 0600 secret, then the train profile
key=$(python3 -c "import secrets; print(secrets.token_hex(24))")
(umask 077; echo "$key" >"$WORK/secrets/api_keys")
chown 0:0 "$WORK/secrets/api_keys"
run_t0=$(date +%s.%N)
compose up -d api >"$WORK/compose.log" 2>&1 || { cat "$WORK/compose.log" >&2; check compose-up FAIL; exit 1; }
if compose_ready_s=$(wait_ready "$api/health/ready" 180 "$run_t0"); then check compose-ready PASS "${compose_ready_s} s"
else compose logs api 2>&1 | tail -20 >&2; check compose-ready FAIL "not ready"; fi
without=$(curl -s -o /dev/null -w '%{http_code}' "$api/models")
with=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $key" "$api/models")
[[ $without == 401 && $with == 200 ]] && check keys PASS "401 without, 200 with (secret root:root 0600)" ||
    check keys FAIL "without $without, with $with"
ctr=$(podman ps -q --filter label=com.docker.compose.project=zoo-check \
    --filter label=com.docker.compose.service=api | head -1)
uids=$(podman exec --user 10001 "$ctr" sh -c 'for s in /proc/[0-9]*/status; do awk "/^Uid:/ {print \$2}" $s; done' | sort -u | tr '\n' ' ')
[[ "$uids" == "10001 " ]] && check keys-uid PASS "the service runs as 10001" || check keys-uid FAIL "uids: $uids"

t0=$(date +%s.%N)
if compose --profile train run --rm train --model lenet --epochs 1 --limit-train 2048 \
    --limit-test 512 --no-download --out weights/lenet/2.safetensors >"$WORK/train.log" 2>&1 &&
    [[ -f "$WORK/weights/lenet/2.safetensors" ]]; then
    train_s=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))")
    reload=$(curl -s -X POST -H "Authorization: Bearer $key" "$api/models/reload")
    version=$(curl -s -H "Authorization: Bearer $key" "$api/models/lenet" |
        python3 -c "import json, sys; print(json.load(sys.stdin).get('default_version'))" || true)
    [[ $version == 2 ]] && check train PASS "${train_s} s; the api serves lenet v2 after reload" ||
        check train FAIL "served version '$version' after reload: $reload"
else tail -20 "$WORK/train.log" >&2; check train FAIL "see the log above"; fi
compose --profile train down >/dev/null 2>&1 || true

# ---- the results file
mkdir -p "$OUT"
python3 - "$CHECKS" "$OUT/image_check.json" <<EOF
import json, subprocess, sys
checks = [dict(zip(("check", "outcome", "detail"), line.rstrip("\n").split("\t"))) for line in open(sys.argv[1])]
commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip())
python, torch, numpy = "$image_python".split()
json.dump({
    "command": "scripts/image_check.sh", "commit": commit, "dirty": dirty,
    "podman": "$(podman --version | cut -d' ' -f3)", "podman_compose": "$("$PODMAN_COMPOSE" --version 2>/dev/null | head -1)",
    "base": "$CPU_IMAGE", "base_kind": "$base_kind", "host_cores": $(nproc),
    "image": {"python": python, "torch": torch, "numpy": numpy, "torch_wheel": "$(basename "$torch_whl")", "torchvision_wheel": "$(basename "$vision_whl")"},
    "build_s": $build_s, "build_command": "${build_cmd[*]}",
    "image_size_bytes": $size_bytes, "image_size_gb": round($size_bytes / 1e9, 2),
    "time_to_ready_s": $ready_s, "stop_s": $stop_s, "drain": $drain,
    "checks": checks, "passed": all(c["outcome"] == "PASS" for c in checks),
}, open(sys.argv[2], "w"), indent=1)
print(open(sys.argv[2]).read())
EOF
! grep -q $'\tFAIL' "$CHECKS"
