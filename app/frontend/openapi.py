"""The OpenAPI document as clients need it: one Problem component (and the v2 protocol's one
error object), no responses never sent."""

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from app.failures import Failure
from app.frontend.problems import problem_responses
from app.frontend.schemas import Problem
from app.frontend.security import needs_key
from app.frontend.v2.schemas import V2Error

_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def _drop_unsent_422(operation: dict[str, Any]) -> None:
    """FastAPI documents a 422 for every route with parameters; only ours are ever sent."""
    content = operation.get("responses", {}).get("422", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    if schema.get("$ref") == _FASTAPI_422:
        del operation["responses"]["422"]


def _require_key(doc: dict[str, Any]) -> None:
    """The bearer scheme, and on every guarded operation its requirement and its 401."""
    doc["components"]["securitySchemes"] = {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "one of the service's API_KEYS",
        }
    }
    unauthorized = {str(k): v for k, v in problem_responses(Failure.UNAUTHORIZED).items()}
    for path, operations in doc["paths"].items():
        if needs_key(re.sub(r"\{[^}]*\}", "x", path)):  # any value of its parameters
            for operation in operations.values():
                operation["security"] = [{"apiKey": []}]
                operation["responses"] = {**unauthorized, **operation["responses"]}


def install_openapi(app: FastAPI, secured: bool) -> None:
    """Build the document once, on first request, from the routes and the problem table;
    ``secured``: API keys are on, and the document says so."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            for path in doc["paths"].values():
                for operation in path.values():
                    _drop_unsent_422(operation)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
            schemas["Problem"] = TypeAdapter(Problem).json_schema(
                ref_template="#/components/schemas/{model}"
            )
            schemas["V2Error"] = V2Error.model_json_schema()  # the v2 protocol's errors
            if secured:
                _require_key(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
