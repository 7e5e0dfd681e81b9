"""Operational pages and browsers: the admin key on ``/metrics`` and the docs, CORS origins,
and how the app's edge logs a client that left and a bug (``server.admin``,
``server.boundary``). In process: ``create_app(settings, backend=...)`` over an ASGI transport.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from core.backend import Completion
from server.app import create_app
from server.config import settings_from_dict
from tests.fakes import ScriptedBackend

ADMIN = ("/metrics", "/docs", "/redoc", "/openapi.json")
CHAT = {
    "model": "auto",
    "messages": [{"role": "user", "content": "hi"}],
    "ttc": {"policy": "single"},
}


def app_with(backend: ScriptedBackend | None = None, **server: Any) -> FastAPI:
    settings = settings_from_dict(
        {
            "tiers": {"small": {"model": "m", "endpoints": ["http://127.0.0.1:9"]}},
            "router": {"probe": {"mode": "never"}},
            "server": server,
        }
    )
    return create_app(settings, backend=backend or ScriptedBackend(lambda t, b: ["x"]))


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def test_by_default_the_operational_pages_are_open_and_no_origin_is_allowed() -> None:
    async with client(app_with()) as http:
        for path in ADMIN:
            assert (await http.get(path)).status_code == 200, path
        answer = await http.get("/health", headers={"origin": "https://app.example"})
        assert "access-control-allow-origin" not in answer.headers


async def test_an_admin_key_guards_metrics_and_docs_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TTC_TEST_ADMIN_KEY", "s3cret")
    async with client(app_with(admin_key_env="TTC_TEST_ADMIN_KEY")) as http:
        for path in ADMIN:
            refused = await http.get(path)
            assert refused.status_code == 401, path
            assert refused.json()["error"]["code"] == "admin_key_required"
            assert refused.headers["www-authenticate"].startswith("Basic")
            wrong = await http.get(path, headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401
            bearer = await http.get(path, headers={"authorization": "Bearer s3cret"})
            assert bearer.status_code == 200, path
        basic = "Basic " + base64.b64encode(b"anyone:s3cret").decode()  # a browser's prompt
        assert (await http.get("/docs", headers={"authorization": basic})).status_code == 200
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/v1/models")).status_code == 200


def test_an_admin_key_variable_that_is_not_set_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TTC_TEST_ADMIN_KEY", raising=False)
    with pytest.raises(ValueError, match="TTC_TEST_ADMIN_KEY is not set"):
        app_with(admin_key_env="TTC_TEST_ADMIN_KEY")


async def test_cors_allows_the_listed_origins_and_their_preflight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TTC_TEST_ADMIN_KEY", "s3cret")
    app = app_with(cors_origins=["https://app.example"], admin_key_env="TTC_TEST_ADMIN_KEY")
    async with client(app) as http:
        preflight = await http.options(
            "/v1/chat/completions",
            headers={
                "origin": "https://app.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        answer = await http.post(
            "/v1/chat/completions", json=CHAT, headers={"origin": "https://app.example"}
        )
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-ttc-tier" in answer.headers["access-control-expose-headers"]
        other = await http.get("/health", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


class Hanging(ScriptedBackend):
    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_client_leaving_before_its_answer_is_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Driven at the ASGI level: the client sends its body, then disconnects."""
    app = app_with(Hanging(lambda t, b: ["x"]), request_timeout_s=30)
    body = json.dumps(CHAT).encode()
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError(f"nothing is sent to a client that left: {message}")

    path = "/v1/chat/completions"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("gw", 80),
        "client": ("127.0.0.1", 5),
        "headers": [(b"content-type", b"application/json")],
    }
    caplog.set_level(logging.INFO)
    call = asyncio.ensure_future(app(scope, receive, send))  # type: ignore[arg-type]
    await asyncio.sleep(0.2)
    gone.set()
    await asyncio.wait_for(call, 5.0)  # returns: nothing reaches uvicorn's error log
    assert [r.levelno for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any(
        r.getMessage() == "client left before its answer: POST /v1/chat/completions"
        and r.levelno == logging.INFO
        for r in caplog.records
    )


async def test_a_bug_outside_the_request_lifecycle_is_one_traceback_and_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = app_with()

    def broken() -> dict[str, bool]:
        raise KeyError("a bug")

    app.state.ttc.pool.ready = broken
    async with client(app) as http:  # raise_app_exceptions: an exception uvicorn would log
        answer = await http.get("/ready")
    assert answer.status_code == 500 and answer.headers["connection"] == "close"
    assert answer.json()["error"]["code"] == "internal_error"
    assert len([r for r in caplog.records if r.exc_info]) == 1
