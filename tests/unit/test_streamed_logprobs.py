"""A vote's streamed answer carries the winner's logprobs when the client asked for them.

The backend is a fake that returns logprobs in vLLM's chat form: what is asserted is how the
gateway passes them through a multi-sample policy's stream.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from core.backend import Completion
from tests.fakes import ScriptedBackend
from tests.unit.test_billing_paths import CAPITAL, client_for, make_app


class WithLogprobs(ScriptedBackend):
    """Chat answers carrying logprobs in the worker's form when asked for them."""

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        done = await super().chat(tier, body, affinity=affinity)
        if not body.get("logprobs"):
            return done
        choices = tuple(
            replace(
                c,
                raw={
                    **c.raw,
                    "logprobs": {
                        "content": [
                            {"token": t, "logprob": lp, "top_logprobs": []}
                            for t, lp in zip(c.tokens, c.token_logprobs, strict=True)
                        ]
                    },
                },
            )
            for c in done.choices
        )
        return replace(done, choices=choices)


@pytest.mark.parametrize("asked", [True, False])
async def test_a_streamed_vote_carries_the_winners_logprobs_when_asked(asked: bool) -> None:
    backend = WithLogprobs(lambda t, b: ["The answer is 5"] * int(b.get("n") or 1))
    app = make_app(backend)
    extra: Any = {"logprobs": True, "top_logprobs": 1} if asked else {}
    stream = await client_for(app).chat.completions.create(
        model="small",
        messages=CAPITAL,
        stream=True,
        **extra,
        extra_body={"ttc": {"policy": "adaptive_bon", "single_sample_confidence": None}},
    )
    texts = [c.choices[0] async for c in stream if c.choices and c.choices[0].delta.content]
    assert "".join(t.delta.content or "" for t in texts) == "The answer is 5"
    streamed = [t.logprobs for t in texts if t.logprobs is not None]
    if asked:
        assert streamed and [x.token for x in streamed[0].content or []] == [
            "The",
            "answer",
            "is",
            "5",
        ]
    else:
        assert streamed == []
