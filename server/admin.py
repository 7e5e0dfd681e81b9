"""Who may read the operational pages: ``/metrics`` (it names internal worker addresses),
``/docs``, ``/redoc`` and ``/openapi.json``; and which browser origins may call the API.

Both are off by default. ``server.admin_key_env`` names an environment variable holding the
admin key (the config never holds the key itself); once set, those pages answer 401 without
``Authorization: Bearer <key>`` or HTTP Basic auth with the key as password (any user name:
a browser asks for it once, then sends it with the docs' own request for ``/openapi.json``).
``server.cors_origins`` lists the origins whose browser pages may call the API (starlette's
``CORSMiddleware``); the API authenticates with a bearer key, never a cookie, so credentials
mode stays off.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from server.api.common.render import envelope
from server.config import ServerConfig

# The headers a browser client may read: the gateway's own and the 429/503 retry hint.
EXPOSED = ["x-ttc-tier", "x-ttc-policy", "retry-after"]


def admin_key(config: ServerConfig) -> str | None:
    """The admin key from the environment; a variable named but unset is a config error."""
    if config.admin_key_env is None:
        return None
    key = os.environ.get(config.admin_key_env, "")
    if not key:
        raise ValueError(f"server.admin_key_env: {config.admin_key_env} is not set")
    return key


def protect(app: FastAPI, config: ServerConfig) -> None:
    """Install the admin guard (when a key is configured) and CORS (when origins are)."""
    key = admin_key(config)
    if key is not None:
        paths = {
            "/metrics",
            app.docs_url,
            app.redoc_url,
            app.openapi_url,
            app.swagger_ui_oauth2_redirect_url,
        }
        app.add_middleware(AdminGuard, key=key, paths=frozenset(p for p in paths if p))
    if config.cors_origins:  # added last: outermost, so a preflight never meets the guard
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=EXPOSED,
        )


def presented(header: str) -> str:
    """The key in an ``Authorization`` header: a bearer token or a Basic password."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return ""


class AdminGuard:
    """Pure ASGI middleware: ``paths`` need the admin key; everything else passes through."""

    def __init__(self, app: ASGIApp, *, key: str, paths: frozenset[str]) -> None:
        self._app = app
        self._key = key.encode()
        self._paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self._paths or self._allowed(scope):
            await self._app(scope, receive, send)
            return
        await _unauthorized(send)

    def _allowed(self, scope: Scope) -> bool:
        headers = dict(scope["headers"])
        given = presented(headers.get(b"authorization", b"").decode("latin-1"))
        return hmac.compare_digest(given.encode(), self._key)


async def _unauthorized(send: Send) -> None:
    body = json.dumps(
        envelope(
            "this page needs the admin key", "authentication_error", None, "admin_key_required"
        )
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"www-authenticate", b'Basic realm="ttc-gateway admin"'),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})
