"""``/openapi.json`` describes every generation endpoint's body, answers and errors, and what
the gateway really answers conforms to it."""

from __future__ import annotations

from typing import Any

import httpx2

from server.api.common.models import ChatCompletion, ErrorResponse, ResponseObject
from server.app import create_app
from server.config import settings_from_dict
from tests.fakes import ScriptedBackend


def app() -> Any:
    settings = settings_from_dict(
        {
            "tiers": {"small": {"model": "m", "endpoints": ["http://127.0.0.1:9"]}},
            "router": {"probe": {"mode": "never"}},
        }
    )
    return create_app(settings, backend=ScriptedBackend(lambda tier, body: ["Paris"]))


def client(application: Any) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=application), base_url="http://gw")


async def test_every_generation_route_declares_its_body_answers_and_errors() -> None:
    document = (await client(app()).get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    for path, model in (
        ("/v1/chat/completions", "ChatCompletionRequest"),
        ("/v1/responses", "ResponsesRequest"),
        ("/v1/completions", "CompletionRequest"),
    ):
        post = document["paths"][path]["post"]
        ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model}" and model in schemas
        assert set(post["responses"]) >= {"200", "400", "401", "404", "429", "503", "504"}
        assert "text/event-stream" in post["responses"]["200"]["content"]
    assert "messages" in schemas["ChatCompletionRequest"]["required"]
    for body in ("ChatCompletionRequest", "ResponsesRequest", "CompletionRequest"):
        assert schemas[body]["properties"]["model"]["enum"] == ["auto", "small"]
    assert "input" in schemas["ResponsesRequest"]["required"]
    for ref in _refs(document):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


async def test_real_answers_conform_to_the_declared_schemas() -> None:
    http = client(app())
    question = [{"role": "user", "content": "Capital of France?"}]
    chat = await http.post("/v1/chat/completions", json={"model": "auto", "messages": question})
    ChatCompletion.model_validate(chat.json())
    response = await http.post("/v1/responses", json={"model": "auto", "input": "hi"})
    ResponseObject.model_validate(response.json())
    bad = await http.post("/v1/chat/completions", json={"model": "auto"})
    assert bad.status_code == 400
    ErrorResponse.model_validate(bad.json())


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []
