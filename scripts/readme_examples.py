"""The README's API examples, made by running them: ``python scripts/readme_examples.py``.

It starts ``python -m app`` on the committed checkpoints (CPU, one worker), sends each example
request, and writes the command and the service's answer between the README's
``<!-- example: NAME -->`` and ``<!-- /example -->`` markers, so the examples cannot drift from
what the service says. ``--check`` writes nothing and exits 1 when the README's examples differ
from the service's answers (floats compared to 3 significant digits: other CPUs may differ in
the last bits).
"""

import argparse
import io
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import free_port, service_command, start_server  # noqa: E402
from models.data import load_mnist  # noqa: E402

MARKER = re.compile(r"(<!-- example: (\S+) -->\n)(.*?)(<!-- /example -->)", re.S)
FLOAT = re.compile(r"-?\d+\.\d+(?:e-?\d+)?|-?\d+e-?\d+")
SMALL = 1e-3  # probabilities below this are shown in 3 significant digits


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def _number(test_images: np.ndarray, test_labels: np.ndarray, text: str) -> bytes:
    """``text`` written with MNIST test digits side by side, dark ink on white."""
    parts = [255 - test_images[int(np.flatnonzero(test_labels == int(c))[k])]
             for k, c in enumerate(text)]  # fmt: skip
    row = np.full((40, 8 + 26 * len(parts)), 255, np.uint8)
    for i, part in enumerate(parts):
        row[6:34, 4 + 26 * i : 32 + 26 * i] = np.minimum(row[6:34, 4 + 26 * i : 32 + 26 * i], part)
    return _png(np.asarray(Image.fromarray(row).resize((row.shape[1] * 3, 120))))


def _word(text: str) -> bytes:
    """``text`` typed in DejaVu Sans (Pillow's own font without it), dark on white."""
    from PIL import ImageDraw, ImageFont

    try:
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.truetype(
            "DejaVuSans.ttf", 64
        )
    except OSError:
        font = ImageFont.load_default(64)
    img = Image.new("L", (260, 110), 255)
    ImageDraw.Draw(img).text((14, 14), text, fill=20, font=font)
    return _png(np.asarray(img))


def example_files(data_dir: Path) -> dict[str, bytes]:
    """The files the examples upload: two MNIST test digits, a scan, a text file, a typed word
    and a number written with MNIST digits."""
    test = load_mnist(data_dir, train=False, download=False)
    images, labels = test.images[:, 0].numpy(), test.labels.numpy()
    seven, two = images[0], images[1]
    page = np.full((480, 640), 255, np.uint8)
    big = np.asarray(Image.fromarray(255 - two).resize((168, 168), Image.Resampling.BICUBIC))
    page[60:228, 380:548] = np.minimum(page[60:228, 380:548], big)
    buf = io.BytesIO()
    Image.fromarray(page).save(buf, "JPEG", quality=90)
    return {"seven.png": _png(seven), "two-scan.jpg": buf.getvalue(), "notes.png": b"hello\n",
            "hello.png": _word("hello"), "9984.png": _number(images, labels, "9984")}  # fmt: skip


def _short(value: Any) -> Any:
    """Small probabilities in 3 significant digits, as a reader wants them."""
    if isinstance(value, float) and abs(value) < SMALL:
        return float(f"{value:.3g}")
    if isinstance(value, list):
        return [_short(v) for v in value]
    if isinstance(value, dict):
        return {k: _short(v) for k, v in value.items()}
    return value


def _json(r: httpx.Response) -> str:
    return json.dumps(_short(r.json()), separators=(",", ":"), ensure_ascii=False)


def _status_line(r: httpx.Response) -> str:
    head = [f"HTTP/1.1 {r.status_code} {r.reason_phrase}"]
    for name in ("content-type", "retry-after", "x-model-version"):
        if name in r.headers:
            head.append(f"{name}: {r.headers[name]}")
    return "\n".join(head)


Example = Callable[[httpx.Client, dict[str, bytes]], str]


def _predict_two(c: httpx.Client, f: dict[str, bytes]) -> str:
    files = [("files", (name, f[name])) for name in ("seven.png", "two-scan.jpg")]
    r = c.post("/predict/mnist_cnn?top_k=2", files=files)
    command = "curl -s -F files=@seven.png -F files=@two-scan.jpg"
    return f"$ {command} 'localhost:8000/predict/mnist_cnn?top_k=2'\n" + _json(r)


def _predict_partial(c: httpx.Client, f: dict[str, bytes]) -> str:
    files = [("files", ("seven.png", f["seven.png"])), ("files", ("notes.png", f["notes.png"]))]
    r = c.post("/predict/lenet?top_k=1", files=files)
    return (
        "$ curl -s -F files=@seven.png -F files=@notes.png 'localhost:8000/predict/lenet?top_k=1'"
        "   # notes.png: a text file\n" + _json(r)
    )


def _not_a_digit(c: httpx.Client, f: dict[str, bytes]) -> str:
    files = [("files", (name, f[name])) for name in ("seven.png", "hello.png", "9984.png")]
    r = c.post("/predict/mnist_cnn?top_k=1", files=files)
    return (
        "$ curl -s -F files=@seven.png -F files=@hello.png -F files=@9984.png "
        "'localhost:8000/predict/mnist_cnn?top_k=1'\n" + _json(r)
    )


def _predict_raw(c: httpx.Client, f: dict[str, bytes]) -> str:
    r = c.post("/predict/lenet?top_k=1", content=f["seven.png"],
               headers={"content-type": "image/png"})  # fmt: skip
    return (
        "$ curl -s -i --data-binary @seven.png -H 'content-type: image/png' "
        "'localhost:8000/predict/lenet?top_k=1'\n" + _status_line(r) + "\n\n" + _json(r)
    )


def _model(c: httpx.Client, f: dict[str, bytes]) -> str:
    return "$ curl -s localhost:8000/models/lenet\n" + _json(c.get("/models/lenet"))


def _health(c: httpx.Client, f: dict[str, bytes]) -> str:
    return (
        "$ curl -s localhost:8000/health/live\n" + _json(c.get("/health/live")) + "\n"
        "$ curl -s localhost:8000/health/ready\n" + _json(c.get("/health/ready"))
    )


def _errors(c: httpx.Client, f: dict[str, bytes]) -> str:
    seven = {"files": ("seven.png", f["seven.png"])}
    unknown = c.post("/predict/resnet", files=seven)
    bad = c.post("/predict/lenet", files={"files": ("notes.png", f["notes.png"])})
    missing = c.post("/predict/vgg16", files=seven)
    return "\n".join([
        "$ curl -s localhost:8000/predict/resnet -F files=@seven.png", _json(unknown),
        "$ curl -s localhost:8000/predict/lenet -F files=@notes.png", _json(bad),
        "$ curl -s -i localhost:8000/predict/vgg16 -F files=@seven.png", _status_line(missing),
        "", _json(missing),
    ])  # fmt: skip


def _metrics(c: httpx.Client, f: dict[str, bytes]) -> str:
    text = c.get("/metrics").text
    lines = [
        line for line in text.splitlines()
        if re.match(r"^zoo_(requests_total|batch_size_sum)\{", line)
    ]  # fmt: skip
    return "$ curl -s localhost:8000/metrics | grep -E '^zoo_(requests_total|batch_size_sum)'\n" + (
        "\n".join(sorted(lines))
    )


EXAMPLES: dict[str, Example] = {
    "predict": _predict_two,
    "predict-partial": _predict_partial,
    "not-a-digit": _not_a_digit,
    "predict-raw": _predict_raw,
    "model": _model,
    "health": _health,
    "errors": _errors,
    "metrics": _metrics,
}


def run_examples(data_dir: Path) -> dict[str, str]:
    """Every example's text, from a service started for the purpose."""
    port = free_port()
    env = {"WEIGHTS_DIR": str(ROOT / "weights"), "DEVICE": "cpu", "WORKERS": "1",
           "MODELS": "alexnet,lenet,mnist_cnn,vgg11,vgg13,vgg16,vgg19"}  # fmt: skip
    server = start_server("service", service_command(port), env, "/health/ready", port=port)
    files = example_files(data_dir)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            return {name: make(c, files) for name, make in EXAMPLES.items()}
    finally:
        server.stop()


def _normalised(text: str) -> str:
    return FLOAT.sub(lambda m: f"{float(m.group()):.3g}", text)


def render(readme: str, examples: dict[str, str]) -> str:
    """The README with each marked example replaced by the service's own."""

    def fill(m: re.Match[str]) -> str:
        name = m.group(2)
        if name not in examples:
            raise KeyError(f"README marks an example {name!r} this script does not make")
        return f"{m.group(1)}```console\n{examples[name]}\n```\n{m.group(4)}"

    return MARKER.sub(fill, readme)


def main(argv: list[str] | None = None) -> int:
    """Write (or check) the README's examples."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p.add_argument("--check", action="store_true", help="exit 1 if the README differs")
    args = p.parse_args(argv)
    readme = args.readme.read_text()
    made = render(readme, run_examples(args.data_dir))
    if args.check:
        if _normalised(made) != _normalised(readme):
            print("the README's examples differ from the service's answers; run "
                  "python scripts/readme_examples.py", file=sys.stderr)  # fmt: skip
            return 1
        return 0
    args.readme.write_text(made)
    return 0


if __name__ == "__main__":
    sys.exit(main())
