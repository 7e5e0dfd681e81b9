"""Config reload on SIGHUP or when the file changes, without dropping a request.

What reloads: the ``router`` and ``policies`` sections (bands, predictor, budgets, policy
parameters and caps). A new ``Router`` is built and swapped in; requests already running keep
the decision and policy they were given, and the old router is closed after a grace period so
their traces still land. Sections that own connections or processes (``server``, ``tiers``,
``pool``, ``redis``, ``auth``, ``limits``, ``cache``) take effect on restart; a change to them
is logged. A file that fails validation is refused with the error logged; the running config
stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from router.router import Router
from server.config import ConfigError, Settings, load_settings
from server.context import AppContext

log = logging.getLogger("ttc.reload")

RESTART_SECTIONS = ("server", "tiers", "pool", "redis", "auth", "limits", "cache")
# 2 s: a hand edit shows up at once to a human, and a stat() every 2 s costs nothing.
POLL_S = 2.0
# 60 s: long enough for the requests the old router planned to finish and write their traces.
OLD_ROUTER_GRACE_S = 60.0

RouterFactory = Callable[[Settings], Router]


class ConfigReloader:
    def __init__(self, path: Path, state: AppContext, build_router: RouterFactory) -> None:
        self.path = path
        self.state = state
        self.build_router = build_router
        self.reloads = {"ok": 0, "error": 0}
        self._wake = asyncio.Event()
        self._mtime = self._stat()
        self._tasks: set[asyncio.Task[None]] = set()

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self._wake.set)
        self._spawn(self._watch())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S):
                    await self._wake.wait()
            signalled = self._wake.is_set()
            self._wake.clear()
            mtime = self._stat()
            if signalled or mtime != self._mtime:
                self._mtime = mtime
                await self.reload()

    async def reload(self) -> bool:
        """Apply the file's router and policies sections; False if the file is invalid."""
        try:
            new = await asyncio.to_thread(load_settings, self.path)
            router = self.build_router(new)
        except (ConfigError, ValueError) as exc:
            self.reloads["error"] += 1
            log.error("config reload refused, keeping the running config: %s", exc)
            return False
        old = self.state.settings
        changed = [s for s in RESTART_SECTIONS if getattr(new, s) != getattr(old, s)]
        if changed:
            log.warning("config sections %s changed; they apply on restart", ", ".join(changed))
        previous = self.state.lifecycle.router
        self.state.lifecycle.router = router
        self.state.settings = old.model_copy(
            update={"router": new.router, "policies": new.policies}
        )
        self._spawn(_close_later(previous))
        self.reloads["ok"] += 1
        log.warning("config reloaded from %s", self.path)
        return True


async def _close_later(router: Router) -> None:
    try:
        await asyncio.sleep(OLD_ROUTER_GRACE_S)
    finally:
        await router.aclose()
