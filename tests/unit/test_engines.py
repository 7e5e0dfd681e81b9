"""Tier engines as data: what each serves, how a body is fit to it, the tier config around
it (engine, credentials, endpoints with a path, split prices)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import UnsupportedByTier, UnsupportedEndpoint
from server.app import create_app
from server.config import load_settings
from workers.config import TierConfig
from workers.credentials import REDACTED, TierCredentials
from workers.engines import CAPABILITIES, ENGINES, capabilities, engine_for, serves
from workers.engines.bodies import adapt, stream_body
from workers.engines.sglang import GAUGES as SGLANG_GAUGES
from workers.parsing import parse_choice
from workers.signals import parse_metrics
from workers.statuses import retry_after_s
from workers.urls import api_root, api_url, server_root

ROOT = Path(__file__).resolve().parents[2]
CHAT: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
CONTINUED: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "It is"}],
    "continue_final_message": True,
    "add_generation_prompt": False,
    "max_tokens": 4,
}


def tier(**fields: Any) -> TierConfig:
    return TierConfig(**{"model": "m", "endpoints": ("http://w:8000",), **fields})


def test_the_capability_names_are_the_ten_the_router_matches() -> None:
    assert CAPABILITIES == {
        "chat",
        "completions",
        "n",
        "logprobs",
        "top_logprobs",
        "continue_final_message",
        "reasoning",
        "tools",
        "structured_outputs",
        "token_prompts",
    }


def test_each_engine_declares_what_it_serves() -> None:
    assert set(ENGINES) == {"vllm", "sglang", "llamacpp", "openai"}
    assert ENGINES["vllm"].serves == CAPABILITIES
    assert ENGINES["sglang"].serves == CAPABILITIES
    llama, hosted = ENGINES["llamacpp"], ENGINES["openai"]
    assert llama.one_at_a_time and not llama.can("n") and not llama.can("token_prompts")
    assert not llama.can("continue_final_message") and not llama.stream_usage
    assert llama.health_path is None and llama.load is None
    assert not hosted.can("completions") and not hosted.can("continue_final_message")
    assert hosted.can("n") and hosted.can("tools") and hosted.max_completion_tokens
    assert hosted.health_path is None and hosted.load is None and hosted.health_every_s >= 30


def test_a_tier_names_its_engine_vllm_by_default() -> None:
    assert engine_for(tier()).name == "vllm"
    assert engine_for(tier(engine="openai", endpoints=("https://api.x.com/v1",))).name == "openai"
    assert serves(tier(engine="llamacpp"), "completions")
    assert not serves(tier(engine="llamacpp"), "n")
    with pytest.raises(ValueError, match="unknown capability"):
        serves(tier(), "telepathy")
    both = capabilities({"small": tier(engine="llamacpp"), "large": tier()})
    assert "n" not in both["small"] and "n" in both["large"]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"engine": "tgi"}, "unknown engine 'tgi'"),
        ({"engine": "openai", "endpoints": (), "launch": {}}, "'launch' starts a vLLM worker"),
        ({"endpoints": ("https://user:sk-secret@api.x.com/v1",)}, "no credentials"),
        ({"endpoints": ("ftp://w",)}, "not an http"),
        ({"endpoints": ("https://api.x.com/v1?key=1",)}, "no query"),
        ({"headers": {"Authorization": "Bearer x"}}, "api_key_env or api_key_file"),
        ({"api_key_env": "A", "api_key_file": "/k"}, "not both"),
    ],
)
def test_a_tier_config_that_cannot_work_is_refused(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        tier(**fields)


def test_only_vllm_holds_a_thinking_budget() -> None:
    profile = {"thinking": {"parser": "qwen3", "budget_mechanism": "vllm"}}
    assert tier(profile=profile).engine == "vllm"
    with pytest.raises(ValidationError, match="budget_mechanism 'vllm' needs engine vllm"):
        tier(engine="sglang", profile=profile)


def test_prices_split_into_input_and_output_with_the_old_price_as_fallback() -> None:
    old = tier(cost_per_1k_tokens=0.002)
    assert old.price_per_1k("input") == old.price_per_1k("output") == 0.002
    split = tier(cost_per_1k_input_tokens=0.00015, cost_per_1k_output_tokens=0.0006)
    assert (split.price_per_1k("input"), split.price_per_1k("output")) == (0.00015, 0.0006)
    half = tier(cost_per_1k_tokens=0.001, cost_per_1k_output_tokens=0.004)
    assert (half.price_per_1k("input"), half.price_per_1k("output")) == (0.001, 0.004)


def test_an_endpoint_with_a_path_is_the_api_root_as_the_sdk_takes_it() -> None:
    assert api_root("http://10.0.0.5:8000") == "http://10.0.0.5:8000/v1"
    assert server_root("http://10.0.0.5:8000/") == "http://10.0.0.5:8000"
    assert api_root("https://api.x.com/v1/") == "https://api.x.com/v1"
    assert server_root("https://gw/vllm-small/v1") == "https://gw/vllm-small"
    assert api_url("https://host/openai/v1", "/v1/chat/completions") == (
        "https://host/openai/v1/chat/completions"
    )
    assert api_url("https://host/v1beta/openai", "/v1/chat/completions") == (
        "https://host/v1beta/openai/chat/completions"
    )


def test_vllm_takes_every_body_as_it_is() -> None:
    body = {**CONTINUED, "chat_template_kwargs": {"enable_thinking": False}, "top_k": 5}
    assert adapt(ENGINES["vllm"], "small", body) == body


def test_a_hosted_api_gets_max_completion_tokens_and_no_template_switches() -> None:
    body = {**CHAT, "max_tokens": 16, "chat_template_kwargs": {"enable_thinking": False}}
    sent = adapt(ENGINES["openai"], "large", body)
    assert sent == {**CHAT, "max_completion_tokens": 16}


def test_what_would_change_the_answer_is_refused_naming_the_tier_and_capability() -> None:
    with pytest.raises(UnsupportedByTier) as info:
        adapt(ENGINES["openai"], "large", CONTINUED)
    error = info.value
    assert (error.status, error.tier, error.capability, error.param) == (
        400,
        "large",
        "continue_final_message",
        "continue_final_message",
    )
    assert "tier 'large'" in error.message and "continue_final_message" in error.message
    with pytest.raises(UnsupportedByTier, match="does not take 'top_k'"):
        adapt(ENGINES["openai"], "large", {**CHAT, "top_k": 5})
    with pytest.raises(UnsupportedByTier, match="does not take 'guided_json'"):
        adapt(ENGINES["sglang"], "small", {**CHAT, "guided_json": {"type": "object"}})
    with pytest.raises(UnsupportedByTier, match="lacks n"):
        adapt(ENGINES["llamacpp"], "small", {**CHAT, "n": 3})


def test_a_field_at_its_default_is_dropped_not_refused() -> None:
    body = {**CHAT, "continue_final_message": False, "add_generation_prompt": True, "n": 1}
    assert adapt(ENGINES["llamacpp"], "small", body) == CHAT
    assert adapt(ENGINES["openai"], "large", {**CHAT, "response_format": {"type": "text"}}) == {
        **CHAT,
        "response_format": {"type": "text"},
    }


def test_token_prompts_and_text_completions_go_only_where_they_are_served() -> None:
    tokens = {"model": "m", "prompt": [1, 2, 3], "max_tokens": 1}
    assert adapt(ENGINES["sglang"], "small", tokens) == tokens
    with pytest.raises(UnsupportedByTier, match="lacks token_prompts"):
        adapt(ENGINES["llamacpp"], "small", {**tokens, "prompt": [[1, 2, 3]]})
    text = {**tokens, "prompt": "Once"}
    assert adapt(ENGINES["llamacpp"], "small", text) == text
    with pytest.raises(UnsupportedEndpoint, match="tier 'large' does not serve /v1/completions"):
        adapt(ENGINES["openai"], "large", text)


def test_a_stream_asks_for_usage_only_where_the_engine_sends_it() -> None:
    running = {**CHAT, "stream_options": {"continuous_usage_stats": True}}
    assert stream_body(ENGINES["vllm"], running)["stream_options"] == {
        "continuous_usage_stats": True,
        "include_usage": True,
    }
    assert stream_body(ENGINES["openai"], running)["stream_options"] == {"include_usage": True}
    assert "stream_options" not in stream_body(ENGINES["llamacpp"], running)
    assert stream_body(ENGINES["llamacpp"], CHAT)["stream"] is True


def test_sglang_load_is_read_from_its_own_gauges() -> None:
    page = (
        'sglang:num_running_reqs{model_name="m"} 3\n'
        'sglang:num_queue_reqs{model_name="m"} 2\n'
        'sglang:token_usage{model_name="m"} 0.5\n'
        "vllm:num_requests_running 99\n"
    )
    load = parse_metrics(page, 1.0, SGLANG_GAUGES)
    assert load is not None and (load.running, load.waiting, load.kv_usage) == (3.0, 2.0, 0.5)


def test_a_missing_key_variable_is_a_start_up_error_naming_it() -> None:
    config = tier(api_key_env="TTC_TEST_NOT_SET")
    with pytest.raises(ValueError, match=r"tiers.large.api_key_env: \$TTC_TEST_NOT_SET is not set"):
        TierCredentials("large", config, env={})
    creds = TierCredentials("large", config, env={"TTC_TEST_NOT_SET": "sk-live-123456"})
    assert creds.headers() == {"Authorization": "Bearer sk-live-123456"}


def test_a_key_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("sk-first-0000000\n")
    creds = TierCredentials("large", tier(api_key_file=str(path), headers={"X-Org": "org-1"}))
    assert creds.headers() == {"X-Org": "org-1", "Authorization": "Bearer sk-first-0000000"}
    path.write_text("sk-second-111111\n")
    assert creds.headers()["Authorization"] == "Bearer sk-second-111111"
    path.unlink()  # a rotation in progress: the last key stays
    assert creds.headers()["Authorization"] == "Bearer sk-second-111111"
    text = "quoted sk-first-0000000 and sk-second-111111"
    assert creds.redact(text) == f"quoted {REDACTED} and {REDACTED}"
    with pytest.raises(ValueError, match="api_key_file: cannot read it"):
        TierCredentials("large", tier(api_key_file=str(tmp_path / "missing")))


def test_retry_after_is_read_as_seconds_or_a_date() -> None:
    assert retry_after_s("7") == 7.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:10 GMT", now=lambda: 1445412480.0) == 10.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None


def test_the_hybrid_example_loads_and_stops_at_start_up_naming_a_missing_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(ROOT / "config" / "hybrid.yaml")
    small, large = settings.tiers["small"], settings.tiers["large"]
    assert (small.engine, large.engine) == ("vllm", "openai")
    assert api_root(large.endpoints[0]) == "https://api.openai.com/v1"
    assert large.price_per_1k("input") < large.price_per_1k("output")
    monkeypatch.setenv("TTC_WORKER_KEY", "local-key-000000")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match=r"tiers.large.api_key_env: \$OPENAI_API_KEY is not set"):
        create_app(settings)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-hosted-000000")
    assert create_app(settings).state.ttc.pool.engine("large").name == "openai"


def test_sglangs_matched_stop_string_reads_as_vllms_stop_reason() -> None:
    """speculative tells a step's end (a blank line) from the end of the answer by it."""
    stop = parse_choice(
        {"message": {"content": "x"}, "finish_reason": "stop", "matched_stop": "\n\n"}
    )
    assert stop.raw["stop_reason"] == "\n\n"
    eos = parse_choice({"message": {"content": "x"}, "finish_reason": "stop", "matched_stop": 2})
    assert "stop_reason" not in eos.raw
    vllm = {"message": {"content": "x"}, "finish_reason": "stop", "stop_reason": None}
    assert parse_choice(vllm).raw is vllm
