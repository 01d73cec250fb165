"""HTTP load from wrk (C, light on the cores it shares with the server): payloads and one run.

wrk posts prebuilt bodies of MNIST test digits (multipart for /predict, the binary tensor data
extension for the v2 protocol), rotating through them, on keep-alive connections, and a Lua
``done`` hook prints its counts and latency percentiles as JSON.
"""

import io
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

BOUNDARY = "zoobenchboundary7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
BODIES = 64  # distinct bodies per payload set, rotated through
LUA = r"""
init = function(args)
  bodies = {}
  for i = 0, tonumber(args[2]) - 1 do
    local f = assert(io.open(args[1] .. "/" .. i .. ".bin", "rb"))
    bodies[i + 1] = f:read("*a")
    f:close()
  end
  headers = {["Content-Type"] = args[3]}
  local extra = io.open(args[1] .. "/headers", "r")  -- headers of the payload set, if any
  if extra then
    for line in extra:lines() do
      local name, value = line:match("^([^:]+):%s*(.*)$")
      if name then headers[name] = value end
    end
    extra:close()
  end
  counter = 0
end
request = function()
  counter = counter + 1
  return wrk.format("POST", nil, headers, bodies[(counter % #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


WRK_MISSING = (
    "wrk (the HTTP load generator) is needed and {why}. Put it on PATH, or set "
    "WRK=/path/to/wrk, with LD_LIBRARY_PATH naming the folder of its libraries (libluajit-5.1, "
    "libssl: e.g. Debian's wrk and libluajit-5.1-2 packages unpacked with dpkg-deb -x); "
    "where a package index is reachable: apt-get install wrk"
)


def find_wrk() -> str:
    """The wrk to run: $WRK, else wrk on PATH; checked to start. Nothing is installed: a
    RuntimeError says what is missing before any measurement begins."""
    given = os.environ.get("WRK")
    found = given or shutil.which("wrk")
    if not found:
        raise RuntimeError(WRK_MISSING.format(why="is not on PATH and WRK is not set"))
    if not os.access(found, os.X_OK) or not Path(found).is_file():
        raise RuntimeError(WRK_MISSING.format(why=f"WRK={found} is not an executable file"))
    try:  # prints its version and exits 1; a missing library shows here
        out = subprocess.run([found, "-v"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        raise RuntimeError(WRK_MISSING.format(why=f"{found} does not start: {exc}")) from exc
    if not out.stdout.startswith("wrk "):
        why = f"{found} does not start: {(out.stderr or out.stdout).strip()}"
        raise RuntimeError(WRK_MISSING.format(why=why))
    return found


def digit_pngs(digits: np.ndarray) -> list[bytes]:
    """uint8 N x 28 x 28 digits as PNG files."""
    from PIL import Image

    out = []
    for d in digits:
        buf = io.BytesIO()
        Image.fromarray(d).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def multipart(pngs: list[bytes], first: int) -> bytes:
    """One multipart body with ``pngs`` as parts named ``files``."""
    parts = [
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{first + j}.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + png
        + b"\r\n"
        for j, png in enumerate(pngs)
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def write_payloads(pngs: list[bytes], images: int, folder: Path) -> Path:
    """BODIES multipart bodies of ``images`` digits each, as files wrk's script reads."""
    folder.mkdir(parents=True, exist_ok=True)
    for r in range(BODIES):
        idx = [(r * images + j) % len(pngs) for j in range(images)]
        (folder / f"{r}.bin").write_bytes(multipart([pngs[i] for i in idx], r * images))
    (folder / "post.lua").write_text(LUA)
    return folder


V2_HEAD = 256  # every v2 body's JSON is padded to this length: one header value for them all


def v2_binary(pngs: list[bytes]) -> bytes:
    """One v2 inference request body: ``image`` as binary tensor data, the output asked for
    in binary, its JSON padded with spaces to V2_HEAD bytes."""
    raw = b"".join(struct.pack("<I", len(p)) + p for p in pngs)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [len(pngs)],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        },
        separators=(",", ":"),
    ).encode()
    assert len(head) <= V2_HEAD, len(head)
    return head.ljust(V2_HEAD) + raw


def write_v2_payloads(pngs: list[bytes], images: int, folder: Path) -> Path:
    """As :func:`write_payloads`, for the v2 protocol's binary path (and its headers)."""
    write_payloads(pngs, images, folder)
    for r in range(BODIES):
        idx = [(r * images + j) % len(pngs) for j in range(images)]
        (folder / f"{r}.bin").write_bytes(v2_binary([pngs[i] for i in idx]))
    (folder / "headers").write_text(
        f"Content-Type: application/octet-stream\nInference-Header-Content-Length: {V2_HEAD}\n"
    )
    return folder


def wrk_command(
    url: str, payloads: Path, connections: int, seconds: float, script: str = "post.lua"
) -> list[str]:
    """The wrk command line (one thread) that posts ``payloads`` to ``url``; extra script
    arguments may follow it."""
    return [
        find_wrk(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",  # whole seconds: wrk takes no fractions
        "--timeout",
        "30s",
        "-s",
        str(payloads / script),
        url,
        "--",
        str(payloads),
        str(BODIES),
        CONTENT_TYPE,
    ]


def run_wrk(url: str, payloads: Path, connections: int, seconds: float) -> dict[str, Any]:
    """One wrk run (one thread) against ``url``; its counts, rates and latencies."""
    cmd = wrk_command(url, payloads, connections, seconds)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=True)
    return wrk_result(out.stdout, out.stderr)


def wrk_result(stdout: str, stderr: str = "") -> dict[str, Any]:
    """What the script's ``done`` printed: counts, rates and latencies."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{stdout}\n{stderr}")
    r = json.loads(line[4:])
    secs = r["duration_us"] / 1e6
    errors = r["status_errors"] + r["socket_errors"]
    return {
        "requests": r["requests"],
        "errors": errors,
        "req_s": (r["requests"] - r["status_errors"]) / secs,  # answered, and answered 200
        "p50_ms": r["p50_us"] / 1e3,
        "p99_ms": r["p99_us"] / 1e3,
        "seconds": secs,
    }
