"""The active check of one worker, as its engine allows: liveness, credentials, the model.

vLLM and SGLang answer ``/health``; the llama.cpp server and hosted APIs have none, so their
liveness is ``GET /v1/models`` alone. That listing also proves the tier's key is accepted (it
is authenticated wherever a key is) and that the worker serves the tier's model (a wrong pod
behind a DNS name, a worker restarted with another model). A 401/403 there is reported apart:
it is the tier's credentials, not the worker, and ``/ready`` says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from workers.engines import Engine
from workers.urls import api_root, server_root
from workers.worker import Check


@dataclass(frozen=True)
class Verdict:
    """One check's verdict; ``refused``: the 401/403 of the listing; ``missing_model``: the
    listing answered but lacks the tier's model."""

    check: Check
    refused: int | None = None
    missing_model: bool = False


def lists(models: Any, model: str) -> bool:
    """Does a ``/v1/models`` body list ``model``?"""
    data = models.get("data") if isinstance(models, dict) else None
    return isinstance(data, list) and any(
        isinstance(m, dict) and m.get("id") == model for m in data
    )


async def check(
    http: httpx.AsyncClient,
    url: str,
    model: str,
    engine: Engine,
    headers: Mapping[str, str],
    timeout_s: float,
) -> Verdict:
    """Check the worker at ``url``; ``timeout_s`` bounds the whole check, so a hung worker
    holds a round of checks up no longer than that."""
    try:
        async with asyncio.timeout(timeout_s):
            if engine.health_path is not None:
                health = await http.get(server_root(url) + engine.health_path, headers=headers)
                if health.status_code != 200:
                    return Verdict(Check.FAILED)
            listed = await http.get(api_root(url) + "/models", headers=headers)
    except (TimeoutError, httpx.TimeoutException):
        return Verdict(Check.TIMED_OUT)
    except httpx.HTTPError:
        return Verdict(Check.FAILED)
    if listed.status_code in (401, 403):
        return Verdict(Check.FAILED, refused=listed.status_code)
    if listed.status_code != 200:
        return Verdict(Check.FAILED)
    try:
        found = lists(listed.json(), model)
    except ValueError:
        return Verdict(Check.FAILED)
    return Verdict(Check.OK) if found else Verdict(Check.FAILED, missing_model=True)
