"""The app's outer edge: what reaches uvicorn, and so its error log.

A client that disconnects before its (non-streamed) answer cancels the request's task (see
``server.lifecycle.until_disconnect``); that cancellation used to reach uvicorn, which logs any
exception out of the app as an ERROR traceback. Here it ends as one INFO line. A bug that
escapes every exception handler is logged once, here, and answered with the 500 envelope
(``Connection: close``); uvicorn never sees it, so it is not logged twice. A cancellation of
the server's own (shutdown) still propagates.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.api.common.render import envelope

log = logging.getLogger("ttc.server")


class Boundary:
    """Pure ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        seen = {"gone": False, "started": False}

        async def receiving() -> Message:
            message = await receive()
            seen["gone"] |= message["type"] == "http.disconnect"
            return message

        async def sending(message: Message) -> None:
            seen["started"] |= message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, receiving, sending)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not seen["gone"] or task is None or task.uncancel() > 0:
                raise
            log.info("client left before its answer: %s %s", scope["method"], scope["path"])
        except Exception:
            log.exception("internal error in the gateway: %s %s", scope["method"], scope["path"])
            if seen["started"]:
                return  # too late for a status: the connection ends, uvicorn logs nothing more
            await _internal_error(send)


async def _internal_error(send: Send) -> None:
    body = json.dumps(
        envelope("internal error in the gateway", "internal_error", None, "internal_error")
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})
