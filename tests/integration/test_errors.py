"""Every bad input gets an OpenAI error object with the right status: never a 500, never a hang."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.integration.conftest import GatewayFactory, free_port, gateway_config

MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def post(gateway: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(
        gateway + "/v1/chat/completions",
        trust_env=False,
        timeout=30,
        **kwargs,
        **({"json": body} if body is not None else {}),
    )


def assert_envelope(response: httpx.Response, status: int, param: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param


def test_malformed_json(gateway: str) -> None:
    response = post(
        gateway,
        None,
        content=b'{"model": "auto", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert_envelope(response, 400)
    assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "auto"}, "messages"),
        ({"model": "auto", "messages": []}, "messages"),
        ({"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"model": "auto", "messages": MSG, "temperature": 2.5}, "temperature"),
        ({"model": "auto", "messages": MSG, "top_p": 0}, "top_p"),
        ({"model": "auto", "messages": MSG, "n": 0}, "n"),
        ({"model": "auto", "messages": MSG, "max_tokens": 0}, "max_tokens"),
        ({"model": "auto", "messages": MSG, "max_tokens": -5}, "max_tokens"),
        ({"model": "auto", "messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": MSG}, "model"),
    ],
)
def test_invalid_requests_are_400_naming_the_param(
    gateway: str, body: dict[str, Any], param: str
) -> None:
    assert_envelope(post(gateway, body), 400, param)


def test_unknown_field_is_refused_not_dropped(gateway: str) -> None:
    response = post(gateway, {"model": "auto", "messages": MSG, "frobnicate": 1})
    assert_envelope(response, 400)
    assert "frobnicate" in response.json()["error"]["message"]


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-17", messages=MSG)
    assert info.value.code == "model_not_found"


def test_body_over_limit_is_413(gateway: str) -> None:
    huge = [{"role": "user", "content": "x" * 70_000}]
    assert_envelope(post(gateway, {"model": "auto", "messages": huge}), 413)


def test_prompt_longer_than_context_is_400_from_upstream(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="auto", messages=MSG, max_tokens=100_000)


def test_unknown_route_is_404_envelope(gateway: str) -> None:
    assert_envelope(httpx.get(gateway + "/v1/nothing", trust_env=False), 404)


def test_worker_down_is_503_with_retry_after(
    start_gateway: GatewayFactory, worker_url: str
) -> None:
    config = gateway_config(worker_url)
    config["tiers"]["dead"] = {"model": "dead", "endpoints": [f"http://127.0.0.1:{free_port()}"]}
    url = start_gateway(config, wait_ready=False)
    assert httpx.get(url + "/ready", trust_env=False).status_code == 503
    for stream in (False, True):
        response = post(url, {"model": "dead", "messages": MSG, "stream": stream})
        assert_envelope(response, 503)
        assert int(response.headers["retry-after"]) >= 1
