"""``/openapi.json`` that describes every request body, response and error.

The generation routes read their raw body (the lifecycle bounds and parses it before any
work), so FastAPI cannot infer their request schemas; ``install`` adds them from the same
pydantic models that validate the bodies, and declares the SSE form of streamed answers.
Response and error schemas come from ``server.api.common.models`` via each route's
``responses=``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

REF = "#/components/schemas/{model}"
# One server-sent event of a streamed answer: ``data`` is a JSON chunk (chat, completions) or a
# typed event (responses), or ``[DONE]``; responses also name the event type.
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {"type": "string", "description": "a JSON object, or [DONE]"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The ``openapi_extra`` of a route whose JSON body ``model`` validates."""
    ref = {"$ref": REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def install(app: FastAPI, models: list[type[BaseModel]], model_names: list[str]) -> None:
    """Add ``models`` (request bodies named by ``request_body``) to the generated document;
    their ``model`` field lists ``model_names`` (``auto`` and the configured tiers)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, routes=app.routes, description=app.description
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                body = model.model_json_schema(ref_template=REF)
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
                if "model" in body.get("properties", {}):
                    body["properties"]["model"]["enum"] = model_names
            _stream_forms(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _stream_forms(schema: dict[str, Any]) -> None:
    """A 200 of a generation route may also be a ``text/event-stream`` (``stream: true``)."""
    for path in ("/v1/chat/completions", "/v1/responses", "/v1/completions"):
        ok = schema["paths"].get(path, {}).get("post", {}).get("responses", {}).get("200")
        if ok is not None:
            ok.setdefault("content", {})["text/event-stream"] = {"schema": SSE_EVENT}
