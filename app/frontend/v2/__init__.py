"""The Open Inference Protocol (KServe v2 REST) beside /predict, on the same serving core.

Server and model metadata and health (routes.py), inference (infer.py, on the lean path), the
wire format with Triton's binary tensor data and classification extensions (tensors.py), and
errors as the protocol's ``{"error"}`` objects (errors.py).
"""

from fastapi import FastAPI

from app.frontend.v2 import routes
from app.frontend.v2.errors import V2ErrorMiddleware
from app.frontend.v2.infer import add_infer_routes


def add_v2_routes(app: FastAPI) -> None:
    """Add every /v2 route (the error translation is a middleware: see create_app)."""
    app.include_router(routes.router)
    add_infer_routes(app)


__all__ = ["V2ErrorMiddleware", "add_v2_routes"]
