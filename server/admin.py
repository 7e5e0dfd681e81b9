"""Who may read the operational pages: ``/metrics`` (it names internal worker addresses),
``/docs``, ``/redoc`` and ``/openapi.json``; and which browser origins may call the API.

``server.admin_key_env`` names an environment variable holding the admin key (the config never
holds the key itself); once set, those pages answer 401 without ``Authorization: Bearer <key>``
or HTTP Basic auth with the key as password (any user name: a browser asks for it once, then
sends it with the docs' own request for ``/openapi.json``); two ``Authorization`` headers are a
401 too, whichever holds the key. Without a key the pages are open while the gateway listens
on loopback only (``server.host`` 127.0.0.1, ::1 or localhost: ``make serve`` and a local
scrape just work) and closed (403 saying how to open them) when it listens beyond, unless
``server.open_admin_pages`` says otherwise (``admin_access``).

``server.cors_origins`` lists the origins whose browser pages may call the API (starlette's
``CORSMiddleware``); the API authenticates with a bearer key, never a cookie, so credentials
mode stays off.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
import os
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from server.api.common.render import envelope
from server.config import ServerConfig

log = logging.getLogger("ttc.server")
# The headers a browser client may read: the gateway's own and the 429/503 retry hint.
EXPOSED = ["x-ttc-tier", "x-ttc-policy", "retry-after"]
ONE_AUTHORIZATION = "You provided several Authorization headers. Provide exactly one."


@dataclass(frozen=True)
class AdminAccess:
    """How the operational pages answer: behind ``key``, closed (``closed`` says why and how
    to open them), or open (neither)."""

    key: str | None = None
    closed: str | None = None

    @property
    def open(self) -> bool:
        return self.key is None and self.closed is None


def loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def pages_open(config: ServerConfig) -> bool:
    """Whether anyone may read the pages: no admin key, and the config opens them or the
    gateway listens on loopback only (what Prometheus needs no credentials for)."""
    opened = config.open_admin_pages
    if config.admin_key_env is not None or opened is False:
        return False
    return opened is True or loopback(config.host)


def admin_access(config: ServerConfig) -> AdminAccess:
    """The key when one is configured; else open (``pages_open``) or closed, saying why."""
    key = admin_key(config)
    if key is not None:
        return AdminAccess(key=key)
    if pages_open(config):
        return AdminAccess()
    opened = config.open_admin_pages
    why = (
        f"the gateway listens on {config.host}, beyond loopback"
        if opened is None
        else "server.open_admin_pages is false"
    )
    return AdminAccess(
        closed=f"this page is closed ({why}): set server.admin_key_env to serve it to the "
        "admin key holder, or server.open_admin_pages: true to serve it to anyone"
    )


def admin_key(config: ServerConfig) -> str | None:
    """The admin key from the environment; a variable named but unset is a config error."""
    if config.admin_key_env is None:
        return None
    key = os.environ.get(config.admin_key_env, "")
    if not key:
        raise ValueError(f"server.admin_key_env: {config.admin_key_env} is not set")
    return key


def protect(app: FastAPI, config: ServerConfig) -> None:
    """Install the admin guard (unless the pages are open) and CORS (when origins are)."""
    access = admin_access(config)
    if access.closed is not None:
        log.warning("/metrics, /docs and /openapi.json are closed: %s", access.closed)
    if not access.open:
        paths = {
            "/metrics",
            app.docs_url,
            app.redoc_url,
            app.openapi_url,
            app.swagger_ui_oauth2_redirect_url,
        }
        app.add_middleware(AdminGuard, access=access, paths=frozenset(p for p in paths if p))
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
    """Pure ASGI middleware: ``paths`` need the admin key (or are closed); everything else
    passes through."""

    def __init__(self, app: ASGIApp, *, access: AdminAccess, paths: frozenset[str]) -> None:
        self._app = app
        self._key = (access.key or "").encode()
        self._closed = access.closed
        self._paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self._paths:
            await self._app(scope, receive, send)
            return
        given = [v for k, v in scope["headers"] if k == b"authorization"]
        if self._closed is not None:
            await _refuse(send, 403, self._closed, "admin_pages_closed")
        elif len(given) > 1:
            await _refuse(send, 401, ONE_AUTHORIZATION, "ambiguous_credentials")
        elif given and self._allowed(given[0]):
            await self._app(scope, receive, send)
        else:
            await _refuse(send, 401, "this page needs the admin key", "admin_key_required")

    def _allowed(self, header: bytes) -> bool:
        given = presented(header.decode("latin-1"))
        return hmac.compare_digest(given.encode(), self._key)


async def _refuse(send: Send, status: int, message: str, code: str) -> None:
    kind = "authentication_error" if status == 401 else "permission_error"
    body = json.dumps(envelope(message, kind, None, code)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
    ]
    if status == 401:  # a browser asks for the key (Basic: any user name, the key as password)
        headers.append((b"www-authenticate", b'Basic realm="ttc-gateway admin"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
