"""What a server answers before it is loaded: its accuracy on the first 640 MNIST test digits,
64 per request, through /predict (multipart) and through the v2 protocol's binary path."""

import httpx
import numpy as np

from benchmarks.harness import Server
from benchmarks.wrk import CONTENT_TYPE, V2_HEAD, multipart, v2_binary


def accuracy(server: Server, path: str, pngs: list[bytes], labels: np.ndarray) -> float:
    """Fraction of the digits a server labels right, sent 64 per request."""
    right = 0
    for start in range(0, 640, 64):
        body = multipart(pngs[start : start + 64], start)
        r = httpx.post(
            server.url + path, content=body, headers={"content-type": CONTENT_TYPE}, timeout=120
        )
        r.raise_for_status()
        got = [p["label"] for p in r.json()["predictions"]]
        right += sum(g == str(y) for g, y in zip(got, labels[start : start + 64], strict=True))
    return right / 640


def v2_accuracy(server: Server, model: str, pngs: list[bytes], labels: np.ndarray) -> float:
    """Fraction of the digits the v2 binary path labels right, 64 per request."""
    right = 0
    for start in range(0, 640, 64):
        r = httpx.post(
            server.url + f"/v2/models/{model}/infer",
            content=v2_binary(pngs[start : start + 64]),
            headers={"inference-header-content-length": str(V2_HEAD)},
            timeout=120,
        )
        r.raise_for_status()
        head = int(r.headers["inference-header-content-length"])
        probs = np.frombuffer(r.content[head:], "<f4").reshape(64, -1)
        right += int((probs.argmax(1) == labels[start : start + 64]).sum())
    return right / 640
