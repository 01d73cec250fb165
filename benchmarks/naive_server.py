"""The CPU baseline of ``benchmarks/serve_bench.py``: the naive endpoint everyone writes first.

``create_app``: a plain FastAPI endpoint, one model call per image and no batching. It loads the
same checkpoint, preprocesses with the same ``app.preprocess.preprocess`` and answers the same
JSON as the service, so only the serving differs. A sync ``def`` endpoint: FastAPI runs it in its
threadpool, so concurrent requests call the model concurrently, each with one image. Run it as
``WEIGHTS_DIR=weights MODELS=lenet DEVICE=cpu uvicorn --factory benchmarks.naive_server:create_app``
(the same variables the service reads; only the first of MODELS is served).

The GPU target's baseline, the bare model, is ``benchmarks.serve_gpu.bare_throughput``.
"""

import os
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, HTTPException, UploadFile

from app.preprocess import ImageRejected, preprocess
from models.checkpoint import load_checkpoint
from models.transforms import ModelInputTransform

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def create_app() -> FastAPI:
    """The naive app for the first model of MODELS, from WEIGHTS_DIR, on DEVICE."""
    name = os.environ.get("MODELS", "lenet").split(",")[0].strip()
    weights = Path(os.environ.get("WEIGHTS_DIR", "weights"))
    device = torch.device(os.environ.get("DEVICE", "cpu"))
    # As the service does: DTYPE applies on CUDA only, the CPU runs float32.
    dtype = _DTYPES[os.environ.get("DTYPE", "bfloat16")] if device.type == "cuda" else torch.float32
    ckpt = load_checkpoint(weights / f"{name}.safetensors", expect_architecture=name)
    net = ckpt.model.to(device=device, dtype=dtype).eval()
    transform = ModelInputTransform(ckpt.meta.input_spec, ckpt.meta.mean, ckpt.meta.std)
    labels = ckpt.meta.labels
    app = FastAPI(title=f"naive {name}")

    @app.get("/health")
    def health() -> dict[str, str]:
        """Up and loaded (the model loads before the app exists)."""
        return {"status": "ok"}

    @app.post("/predict/{model}")
    def predict(model: str, files: list[UploadFile], top_k: int = 3) -> dict[str, Any]:
        """Classify each upload with its own model call."""
        if model != name:
            raise HTTPException(404, f"no model named {model!r}; known models: {name}")
        predictions = []
        for f in files:
            try:
                digit = preprocess(f.file.read())
            except ImageRejected as exc:
                raise HTTPException(exc.status_code, f"{f.filename}: {exc.detail}") from None
            x = torch.from_numpy(digit)[None, None].to(device)
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
