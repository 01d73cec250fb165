"""The LitServe peer of the serving benchmark: the same model and preprocessing, its batching.

LitServe (Lightning AI) runs uvicorn API servers that hand requests to inference workers over
a queue, where ``decode_request`` and ``predict`` run, batched up to ``max_batch_size``
requests waiting at most ``batch_timeout``. Each request's images go through our
preprocessing (app/digits/pipeline.py) and the checkpoint's own input transform, so only the
serving differs. The benchmark gives it as many API servers and inference workers as our
service has workers, each worker with as many torch threads as ours.

``--max-batch-size 1`` serves without batching: LitServe 0.2.19 then runs its SingleLoop,
which blocks on its queue and answers each request as it comes. ``--batch-timeout 0`` would
not do that: its batched loop then asks the queue (a Manager proxy) with ``get_nowait`` and,
finding it empty, asks again at once (loops/base.py, ``collate_requests``). Idle, with two
inference workers on the 2-core host, that spin took 110% of a core (the workers and the
Manager); SingleLoop took none, and the batched loop at 2 ms about 30%.

    python -m benchmarks.litserve_server --port 8000 --api-servers 2 --workers 2 --model lenet
"""

import argparse
import os
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np
import torch
from fastapi import Request

from app.digits.decode import ImageLimits
from app.digits.pipeline import to_digits
from models.checkpoint import load_checkpoint
from models.runtime import inference_dtype
from models.weights import checkpoint_path


class DigitAPI(ls.LitAPI):
    """Multipart ``files`` in, the service's JSON out; a batch is a list of requests."""

    def __init__(
        self, name: str, weights: Path, device: str, dtype: str, threads: int, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.name, self.weights, self.device_name, self.dtype_name = name, weights, device, dtype
        self.threads = threads

    def setup(self, device: str) -> None:
        """Load the checkpoint onto the worker's device."""
        # Here, in the inference worker: it is spawned, so the launcher's setting never reaches
        # it, and torch's default (a thread per core) would oversubscribe the cores.
        torch.set_num_threads(self.threads)
        self.dev = torch.device(self.device_name)
        self.dtype = inference_dtype(self.dev, self.dtype_name)
        ckpt = load_checkpoint(checkpoint_path(self.name, self.weights))
        self.net = ckpt.model.to(device=self.dev, dtype=self.dtype).eval()
        self.transform, self.labels = ckpt.transform, ckpt.meta.labels

    def decode_request(self, request: Request) -> tuple[list[str], np.ndarray]:
        """The form's ``files`` -> (filenames, N x 28 x 28 uint8 digits).

        Annotated as a Request so that LitServe passes the parsed multipart form.
        """
        files = request.getlist("files")  # type: ignore[attr-defined]
        digits, rejections = to_digits([f.file.read() for f in files], ImageLimits())
        if rejections:
            raise ValueError(rejections[0].detail)
        return [f.filename for f in files], digits

    def batch(self, inputs: list[tuple[list[str], np.ndarray]]) -> list[Any]:
        """Requests stay whole; ``predict`` concatenates their digits."""
        return inputs

    def predict(self, batch: list[tuple[list[str], np.ndarray]]) -> list[Any]:
        """One model call for every image of every request in the batch."""
        digits = torch.from_numpy(np.concatenate([d for _, d in batch])).unsqueeze(1)
        with torch.inference_mode():
            x = self.transform(digits.to(self.dev)).to(self.dtype)
            probs = torch.softmax(self.net(x).float(), dim=1).cpu()
        out, start = [], 0
        for names, d in batch:
            out.append((names, probs[start : start + len(d)]))
            start += len(d)
        return out

    def unbatch(self, output: list[Any]) -> list[Any]:
        """One answer per request."""
        return output

    def encode_response(self, output: tuple[list[str], torch.Tensor]) -> dict[str, Any]:
        """The service's response shape."""
        names, probs = output
        top_p, top_i = probs.topk(3, dim=1)
        return {
            "model": self.name,
            "device": str(self.dev),
            "predictions": [
                {
                    "filename": n,
                    "label": self.labels[int(i[0])],
                    "confidence": float(p[0]),
                    "probabilities": row,
                    "top_k": [
                        {"label": self.labels[j], "probability": q}
                        for q, j in zip(p.tolist(), i.tolist(), strict=True)
                    ],
                }
                for n, row, p, i in zip(names, probs.tolist(), top_p, top_i, strict=True)
            ],
        }


class OneRequestAPI(DigitAPI):
    """DigitAPI for LitServe's unbatched loop (``max_batch_size`` 1): one request per call."""

    # LitServe's own batch/unbatch: overridden ones make it warn that batching is not set up.
    batch = ls.LitAPI.batch
    unbatch = ls.LitAPI.unbatch

    def predict(self, x: tuple[list[str], np.ndarray]) -> Any:  # type: ignore[override]
        """One request's images in one model call."""
        return super().predict([x])[0]


def main() -> None:
    """Serve one model with LitServe's batching."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model", default="lenet")
    p.add_argument("--weights-dir", type=Path, default=Path("weights"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--api-servers", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="inference workers (per device)")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--batch-timeout", type=float, default=0.002)
    args = p.parse_args()
    api = (OneRequestAPI if args.max_batch_size == 1 else DigitAPI)(
        args.model,
        args.weights_dir,
        args.device,
        args.dtype,
        int(os.environ.get("TORCH_THREADS", "1")),
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
        api_path=f"/predict/{args.model}",
    )
    accelerator = "cuda" if args.device.startswith("cuda") else "cpu"
    server = ls.LitServer(
        api, accelerator=accelerator, workers_per_device=args.workers, fast_queue=True
    )
    server.run(
        host="127.0.0.1",
        port=args.port,
        num_api_servers=args.api_servers,
        log_level="warning",
        generate_client_file=False,
    )


if __name__ == "__main__":
    main()
