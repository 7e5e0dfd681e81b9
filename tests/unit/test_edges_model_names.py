"""A model name the client sent is quoted at most ``core.errors.QUOTED_CHARS`` (256) characters
wherever the gateway repeats it: the 404 of every generation endpoint, and the request span."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.errors import QUOTED_CHARS, quoted
from server.app import create_app
from server.config import settings_from_dict
from tests.fakes import ScriptedBackend

LONG = "m" * 9_000 + "z" * 1_000  # 10,000 characters; its tail must never come back
BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"prompt": "hi"},
    "/v1/responses": {"input": "hi"},
}


def client(exporter: InMemorySpanExporter | None = None) -> httpx2.AsyncClient:
    settings = settings_from_dict(
        {
            "tiers": {"small": {"model": "m", "endpoints": ["http://127.0.0.1:9"]}},
            "router": {"probe": {"mode": "never"}},
            "tracing": {"enabled": exporter is not None},
        }
    )
    app = create_app(settings, backend=ScriptedBackend(lambda t, b: ["x"]), span_exporter=exporter)
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw")


def test_a_name_is_quoted_whole_up_to_the_limit_and_cut_past_it() -> None:
    assert quoted("gpt-4o") == "'gpt-4o'"
    assert quoted("a" * QUOTED_CHARS) == "'" + "a" * QUOTED_CHARS + "'"
    cut = quoted("a" * (QUOTED_CHARS + 1))
    assert cut.startswith("'" + "a" * QUOTED_CHARS + "...'") and "257 characters" in cut


@pytest.mark.parametrize("path", sorted(BODIES))
async def test_an_unknown_long_model_name_is_quoted_at_most_256_characters(path: str) -> None:
    async with client() as http:
        answer = await http.post(path, json={"model": LONG, **BODIES[path]})
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "m" * QUOTED_CHARS in error["message"]
    assert "m" * (QUOTED_CHARS + 1) not in error["message"] and "z" not in error["message"]
    assert "10,000 characters" in error["message"]
    assert len(answer.content) < 1_000


async def test_an_unknown_short_model_name_is_quoted_whole() -> None:
    name = "x" * QUOTED_CHARS
    async with client() as http:
        answer = await http.post(
            "/v1/chat/completions", json={"model": name, **BODIES["/v1/chat/completions"]}
        )
    assert answer.json()["error"]["message"] == f"The model '{name}' does not exist"


async def test_the_request_span_holds_at_most_256_characters_of_the_name() -> None:
    exporter = InMemorySpanExporter()
    async with client(exporter) as http:
        answer = await http.post("/v1/completions", json={"model": LONG, "prompt": "hi"})
    assert answer.status_code == 404
    (span,) = [s for s in exporter.get_finished_spans() if s.attributes]
    model = str((span.attributes or {})["ttc.model"])
    assert model == "m" * QUOTED_CHARS + "..."
