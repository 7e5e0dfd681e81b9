"""What the data plane sends a worker: the body the gateway built, byte for byte as JSON."""

from __future__ import annotations

import json

import pytest

from workers.transport import encoded


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "messages": [{"role": "user", "content": "What is 7 + 5?"}]},
        {"messages": [{"role": "user", "content": 'ü€ 日本 \n\t"\\'}], "temperature": 0.7},
        {"messages": [{"role": "user", "content": "x" * 2**20}], "max_tokens": 16},
        {"logit_bias": {"50256": -100}, "stop": ["\n"], "seed": 2**63 - 1, "n": 2},
        {"seed": 2**70},  # past orjson's 64 bits: the json fallback
        {"messages": [{"role": "user", "content": "\ud800"}]},  # orjson refuses lone surrogates
    ],
)
def test_a_worker_receives_the_body_the_gateway_built(body: dict[str, object]) -> None:
    assert json.loads(encoded(body)) == body
