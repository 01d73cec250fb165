"""The OpenAPI document as clients need it: one Problem component, no responses never sent."""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.schemas import Problem

_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def _drop_unsent_422(operation: dict[str, Any]) -> None:
    """FastAPI documents a 422 for every route with parameters; only ours are ever sent."""
    content = operation.get("responses", {}).get("422", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    if schema.get("$ref") == _FASTAPI_422:
        del operation["responses"]["422"]


def install_openapi(app: FastAPI) -> None:
    """Build the document once, on first request, from the routes and the problem table."""

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
            schemas["Problem"] = Problem.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
