"""Ambiguous credentials and the operational pages by listen address (``server.auth``,
``server.admin``), in process: ``create_app(settings, backend=...)`` over an ASGI transport.

Two ``Authorization`` headers are refused whichever of them holds the key; ``/metrics``,
``/docs``, ``/redoc`` and ``/openapi.json`` are open on loopback, closed beyond it, and
``server.open_admin_pages`` or an admin key say otherwise.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from server.app import create_app
from server.config import ConfigError, settings_from_dict
from tests.fakes import ScriptedBackend

ADMIN = ("/metrics", "/docs", "/redoc", "/openapi.json")
KEY, ADMIN_KEY = "sk-right", "admin-right"
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = {"model": "auto", "prompt": "hi", "max_tokens": 2}


def app_with(auth: bool = False, **server: Any) -> FastAPI:
    settings = settings_from_dict(
        {
            "tiers": {"small": {"model": "m", "endpoints": ["http://127.0.0.1:9"]}},
            "router": {"probe": {"mode": "never"}},
            "auth": {
                "enabled": auth,
                "redis_keys": False,
                "keys": [{"name": "tester", "key_env": "TTC_TEST_EDGE_KEY"}],
            },
            "server": server,
        }
    )
    return create_app(settings, backend=ScriptedBackend(lambda t, b: ["x"]))


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTC_TEST_EDGE_KEY", KEY)
    monkeypatch.setenv("TTC_TEST_EDGE_ADMIN_KEY", ADMIN_KEY)


def bearers(*secrets: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {s}") for s in secrets]


# --- duplicate Authorization headers ---------------------------------------------------------


@pytest.mark.parametrize(
    "secrets",
    [("wrong", KEY), (KEY, "wrong"), (KEY, KEY)],
    ids=["wrong-right", "right-wrong", "twice"],
)
async def test_two_authorization_headers_are_refused_whichever_holds_the_key(
    secrets: tuple[str, str],
) -> None:
    async with client(app_with(auth=True)) as http:
        for path, body in (("/v1/chat/completions", CHAT), ("/v1/completions", COMPLETION)):
            answer = await http.post(path, json=body, headers=bearers(*secrets))
            assert answer.status_code == 401, path
            error = answer.json()["error"]
            assert error["code"] == "ambiguous_credentials"
            assert error["type"] == "authentication_error"
            assert "several Authorization headers" in error["message"]
            assert KEY not in answer.text
        stored = await http.get("/v1/responses/resp_x", headers=bearers(*secrets))
        assert stored.status_code == 401
        assert stored.json()["error"]["code"] == "ambiguous_credentials"


async def test_one_authorization_header_is_judged_as_before() -> None:
    async with client(app_with(auth=True)) as http:
        right = await http.post("/v1/chat/completions", json=CHAT, headers=bearers(KEY))
        assert right.status_code == 200
        wrong = await http.post("/v1/chat/completions", json=CHAT, headers=bearers("wrong"))
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"


async def test_two_authorization_headers_to_an_admin_page_are_refused() -> None:
    async with client(app_with(admin_key_env="TTC_TEST_EDGE_ADMIN_KEY")) as http:
        for secrets in (("wrong", ADMIN_KEY), (ADMIN_KEY, "wrong"), (ADMIN_KEY, ADMIN_KEY)):
            answer = await http.get("/metrics", headers=bearers(*secrets))
            assert answer.status_code == 401, secrets
            assert answer.json()["error"]["code"] == "ambiguous_credentials"
        assert (await http.get("/metrics", headers=bearers(ADMIN_KEY))).status_code == 200


# --- the operational pages by listen address ------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
async def test_on_loopback_the_pages_are_open_without_a_key(host: str) -> None:
    async with client(app_with(host=host)) as http:
        for path in ADMIN:
            assert (await http.get(path)).status_code == 200, path


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "gateway.example"])
async def test_beyond_loopback_the_pages_are_closed_and_say_how_to_open_them(
    host: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ttc.server"):
        app = app_with(host=host)
    assert any("closed" in r.getMessage() for r in caplog.records)
    async with client(app) as http:
        for path in ADMIN:
            answer = await http.get(path)
            assert answer.status_code == 403, path
            error = answer.json()["error"]
            assert error["code"] == "admin_pages_closed" and error["type"] == "permission_error"
            assert "server.admin_key_env" in error["message"]
            assert "server.open_admin_pages" in error["message"]
            assert "www-authenticate" not in answer.headers  # no key could open it
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/v1/models")).status_code == 200
        assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_beyond_loopback_the_admin_key_opens_them() -> None:
    async with client(app_with(host="0.0.0.0", admin_key_env="TTC_TEST_EDGE_ADMIN_KEY")) as http:
        for path in ADMIN:
            assert (await http.get(path)).status_code == 401, path
            assert (await http.get(path, headers=bearers(ADMIN_KEY))).status_code == 200


async def test_the_config_opens_or_closes_them_explicitly() -> None:
    async with client(app_with(host="0.0.0.0", open_admin_pages=True)) as http:
        for path in ADMIN:
            assert (await http.get(path)).status_code == 200, path
    async with client(app_with(host="127.0.0.1", open_admin_pages=False)) as http:
        answer = await http.get("/metrics")
        assert answer.status_code == 403
        assert "open_admin_pages is false" in answer.json()["error"]["message"]


def test_an_admin_key_and_open_pages_together_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="open_admin_pages"):
        app_with(open_admin_pages=True, admin_key_env="TTC_TEST_EDGE_ADMIN_KEY")
