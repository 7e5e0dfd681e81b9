"""The Completions API end to end: official OpenAI SDK -> gateway -> real vLLM worker."""

from __future__ import annotations

import openai


def test_a_text_completion_of_a_raw_prompt(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model="auto", prompt="The capital of Japan is", max_tokens=8, temperature=0, logprobs=2
    )
    choice = reply.choices[0]
    assert choice.text and choice.finish_reason in {"stop", "length"}
    assert choice.logprobs is not None and choice.logprobs.token_logprobs
    usage = reply.usage
    assert usage is not None and 0 < usage.completion_tokens <= 8 and usage.prompt_tokens > 0
    ttc = (reply.model_extra or {})["ttc"]
    assert ttc["tier"] == "smollm2-135m" and ttc["policy"] == "single"


def test_a_streamed_text_completion_with_usage(client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model="auto",
        prompt="One, two, three,",
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        echo=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text.startswith("One, two, three,") and len(text) > len("One, two, three,")
    last = chunks[-1]
    assert last.usage is not None and 0 < last.usage.completion_tokens <= 8
    assert (last.model_extra or {})["ttc"]["policy"] == "single"


def test_adaptive_bon_on_a_raw_prompt_counts_every_sample(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model="auto",
        prompt="Q: What is the capital of France?\nA:",
        max_tokens=8,
        extra_body={"ttc": {"policy": "adaptive_bon", "max_samples": 4}},
    )
    ttc = (reply.model_extra or {})["ttc"]
    assert ttc["policy"] == "adaptive_bon" and 1 <= ttc["samples"] <= 4
    assert reply.usage is not None and reply.usage.completion_tokens >= ttc["samples"]


def test_echo_with_logprobs_scores_the_prompt_as_eval_harnesses_ask(client: openai.OpenAI) -> None:
    """A log-likelihood request (lm-eval's form): the prompt's own token logprobs, the first
    one null, offsets into the echoed text; nothing generated with max_tokens 0."""
    prompt = "The capital of France is Paris"
    for max_tokens in (0, 1):
        reply = client.completions.create(
            model="auto", prompt=prompt, echo=True, logprobs=1, max_tokens=max_tokens, temperature=0
        )
        choice = reply.choices[0]
        assert choice.text.startswith(prompt) and choice.text.count(prompt) == 1
        lp = choice.logprobs
        assert lp is not None and lp.tokens and lp.token_logprobs and lp.text_offset
        assert lp.token_logprobs[0] is None  # the first prompt token has no context
        assert all(isinstance(x, float) for x in lp.token_logprobs[1:])
        assert prompt in "".join(lp.tokens) and lp.text_offset[0] == 0
        assert reply.usage is not None and reply.usage.prompt_tokens >= len(lp.tokens) - 1
        assert (reply.model_extra or {})["ttc"]["policy"] == "single"
        if max_tokens == 0:  # vLLM still runs one decoding step, and counts it
            assert choice.text == prompt and reply.usage.completion_tokens <= 1
