"""The baseline of the serving benchmark: the endpoint everyone writes first.

An ``async def`` FastAPI route taking ``list[UploadFile]``, each image opened with Pillow,
``convert("L").resize((28, 28))``, normalised, and one model call per image inline on the
event loop; run by uvicorn, one worker unless the benchmark asks for as many as ours. It loads
the same checkpoint and answers the same JSON shape as the service, so only serving differs.

    WEIGHTS_DIR=weights MODELS=lenet DEVICE=cpu TORCH_THREADS=1 \\
        uvicorn --factory benchmarks.naive_server:create_app --workers 1

Torch threads: TORCH_THREADS if given, else one per worker, as the service's workers have
(each request computes one image at a time, which gives intra-op threads little to split).
``--server-env`` does not reach the baselines: run the naive app by hand with TORCH_THREADS=2
to compare.
"""

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, UploadFile
from PIL import Image

from models.checkpoint import load_checkpoint
from models.runtime import inference_dtype
from models.weights import checkpoint_path


def create_app() -> FastAPI:
    """The naive app for the first model of MODELS, from WEIGHTS_DIR, on DEVICE."""
    name = os.environ.get("MODELS", "lenet").split(",")[0].strip()
    device = torch.device(os.environ.get("DEVICE", "cpu"))
    dtype = inference_dtype(device, os.environ.get("DTYPE", "bfloat16"))
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
    weights = Path(os.environ.get("WEIGHTS_DIR", "weights"))
    ckpt = load_checkpoint(checkpoint_path(name, weights), expect_architecture=name)
    net = ckpt.model.to(device=device, dtype=dtype).eval()
    transform, labels = ckpt.transform, ckpt.meta.labels
    app = FastAPI(title=f"naive {name}")

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Up and loaded (the model loads before the app exists)."""
        return {"status": "ok"}

    @app.post("/predict/{model}")
    async def predict(model: str, files: list[UploadFile], top_k: int = 3) -> dict[str, Any]:
        """Classify each upload with its own model call."""
        predictions = []
        for f in files:
            img = Image.open(io.BytesIO(await f.read())).convert("L").resize((28, 28))
            x = torch.from_numpy(np.array(img, dtype=np.uint8))[None, None].to(device)
            with torch.inference_mode():
                probs = torch.softmax(net(transform(x).to(dtype)).float(), dim=1)[0].cpu()
            top_p, top_i = probs.topk(min(top_k, probs.numel()))
            predictions.append(
                {
                    "filename": f.filename,
                    "label": labels[int(top_i[0])],
                    "confidence": float(top_p[0]),
                    "probabilities": probs.tolist(),
                    "top_k": [
                        {"label": labels[i], "probability": p}
                        for p, i in zip(top_p.tolist(), top_i.tolist(), strict=True)
                    ],
                }
            )
        return {"model": name, "device": str(device), "predictions": predictions}

    return app
