"""``ChatService``: the request's deadline bounds routing too."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from policies.base import GenRequest
from policies.errors import DeadlineExceeded
from server.metrics import Metrics
from server.service import ChatService


class ProbeThatNeverAnswers:
    """A router whose probe of the small tier hangs (a stuck worker, a lost node)."""

    async def route(self, req: GenRequest, backend: Any) -> Any:
        await asyncio.Event().wait()


async def test_a_hanging_probe_ends_at_the_request_deadline_with_a_504() -> None:
    service = ChatService(ProbeThatNeverAnswers(), backend=None, metrics=Metrics())  # type: ignore[arg-type]
    req = GenRequest(messages=({"role": "user", "content": "hi"},),
                     deadline=time.monotonic() + 0.2)  # fmt: skip
    with pytest.raises(DeadlineExceeded) as info:
        await asyncio.wait_for(service.plan(req, service.meter()), 5.0)
    assert info.value.status == 504
