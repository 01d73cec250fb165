#!/bin/bash
# Make again, one at a time in a copy of the project, each change an outside review once made
# without any test noticing (docs/mutation.md), and each HTTP guard taken out again (8-18,
# tests/test_hostile_http.py and friends); run the tests that name it. Each must fail.
#   bash scripts/review_changes.sh        (about 5 minutes; a line per change, "rc=1" = caught)
#   bash scripts/review_changes.sh 8 9    (only the changes whose names start so)
set -u
ONLY=("$@")
SRC=$(cd "$(dirname "$0")/.." && pwd)
export MNIST_DATA_DIR=${MNIST_DATA_DIR:-$(cd "$SRC/.." && pwd)/shared/data}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
check() {  # name, python edit (old -> new in file), tests...
  local name=$1 file=$2 old=$3 new=$4; shift 4
  if ((${#ONLY[@]})); then
    local wanted=0 prefix
    for prefix in "${ONLY[@]}"; do [[ $name == "$prefix"-* ]] && wanted=1; done
    ((wanted)) || return 0
  fi
  local dir=$WORK/$name
  rm -rf "$dir"; mkdir -p "$dir"
  (cd "$SRC" && git ls-files -co --exclude-standard | grep -v '^mutants/' | tar -cf - -T - 2>/dev/null) | tar -xf - -C "$dir"
  ln -s "$SRC/.venv" "$dir/.venv"
  python3 - "$dir/$file" "$old" "$new" <<'PY' || { echo "$name: EDIT FAILED"; return; }
import sys, pathlib
p, old, new = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
s = p.read_text()
for o, n in zip(old.split("|||"), new.split("|||")):
    assert s.count(o) == 1, f"{o!r} found {s.count(o)} times"
    s = s.replace(o, n)
p.write_text(s)
PY
  (cd "$dir" && timeout 1500 .venv/bin/python -m pytest -q -x -p no:cacheprovider "$@" > "$dir.log" 2>&1)
  local rc=$?
  echo "$name: rc=$rc $(tail -1 "$dir.log")"
  grep -m3 "^FAILED" "$dir.log"
}
check 1-content-length app/frontend/uploads.py \
  'if length is not None and length > self.max_bytes:' \
  'if False:' tests/test_faults.py tests/test_corpus.py tests/test_api.py
check 2-lifo app/engine/batching.py 'self._jobs.append(job)' 'self._jobs.appendleft(job)' \
  tests/test_batching.py tests/test_api.py tests/test_faults.py
check 3-one-worker app/__main__.py 'workers=layout.workers,' 'workers=1,' \
  tests/test_launcher.py tests/test_api.py
check 4-readiness app/serving/zoo.py \
  'and all(isinstance(m, Loaded) or m.status in ("missing", "invalid") for m in served)' \
  'and True' tests/test_api.py tests/test_faults.py
check 5a-pixels-after-decode-png app/digits/pipeline.py \
  '        check_pixels(*size, limits)
        try:
            pixels: np.ndarray = pyspng.load(data)' \
  '        try:
            pixels: np.ndarray = pyspng.load(data)
            check_pixels(*size, limits)' tests/test_corpus.py
check 5b-pixels-after-decode-pillow app/digits/decode.py \
  '        check_pixels(*size, limits)
        if data[:4]|||    check_pixels(*img.size, limits)
    check_work(img, data)|||        img.load()  # multi-frame files (GIF, WebP, TIFF) open positioned on frame 0
    except MemoryError:' \
  '        pass
        if data[:4]|||    check_work(img, data)|||        img.load()  # multi-frame files (GIF, WebP, TIFF) open positioned on frame 0
        check_pixels(*img.size, limits)
    except MemoryError:' tests/test_corpus.py tests/test_preprocess.py tests/test_decoding.py
check 6-19px-resized app/digits/frame.py 'MNIST_SIDES = (BOX - 1, BOX)' 'MNIST_SIDES = (BOX,)' \
  tests/test_preprocess.py tests/test_api_accuracy.py tests/test_corpus.py
check 7-success-raises app/serving/answer.py '        yield ticket
        status = 200' '        yield ticket
        raise RuntimeError("broken on purpose")' tests/test_schema_fuzz.py
check 8-no-head-limit app/frontend/protocol.py \
  'while self._in_head and len(data) > self._head_left:' 'while False:' \
  tests/test_hostile_http.py -k "huge_head or twenty or at_the_limit"
check 9-no-body-pace app/main.py 'min_body_rate=settings.min_body_rate,' 'min_body_rate=0,' \
  tests/test_faults.py tests/test_hostile_http.py -k "pace or trickling"
check 10-leaving-is-a-500 app/frontend/uploads.py \
  'raise client_closed(seen, length)|||raise Failure.CLIENT_CLOSED.error()' \
  'return message|||raise ConnectionError("the client went away")' \
  tests/test_hostile_http.py -k leaves
check 11-content-type-cache app/frontend/multipart.py 'def _multipart_params(' \
  '@__import__("functools").lru_cache(256)
def _multipart_params(' tests/test_hostile_http.py -k no_cache
check 12-blank-api-keys app/config.py \
  'return tuple(k.strip() for k in v.split(",")) if v else ()' \
  'return tuple(k.strip() for k in v.split(",") if k.strip())' \
  tests/test_security.py tests/test_launcher.py -k no_key
check 13-redirect-slashes app/main.py 'redirect_slashes=False,' 'redirect_slashes=True,' \
  tests/test_security.py -k redirect
check 14-server-header app/__main__.py 'server_header=False,' 'server_header=True,' \
  tests/test_hostile_http.py -k server_header
check 15-library-words app/frontend/multipart.py '    said = str(exc).lower()' \
  '    return malformed(str(exc))
    said = str(exc).lower()' tests/test_lean_path.py -k services_words
check 16-no-filename-star app/frontend/multipart.py \
  'extended = extended_filename(self._disposition)' 'extended = None' \
  tests/test_lean_path.py -k extended
check 17-plain-503 app/frontend/protocol.py \
  'app = too_many_connections  # type: ignore[assignment]' 'pass' \
  tests/test_slow_clients.py -k max_connections
check 18-plain-400 app/frontend/protocol.py 'def send_400_response(' 'def _send_400_response(' \
  tests/test_hostile_http.py -k refusals
