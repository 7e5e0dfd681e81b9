"""The eval's only network call: one chat completion through the gateway, with the OpenAI SDK."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from openai import AsyncOpenAI, omit
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionMessageParam

from bench.eval import Ask, Outcome, Setting
from bench.mixed import Prompt
from bench.scoring import Question


def openai_ask(
    client: AsyncOpenAI, *, max_tokens: int, temperature: float | None, suffix: str = ""
) -> Ask:
    """An ``Ask`` that sends the question (plus ``suffix``) as one user message, non-streaming.

    ``temperature`` (None: not sent) applies unless the setting fixes its own.

    ``usage.completion_tokens`` counts every token the gateway spent (all samples and probes),
    of which ``completion_tokens_details.reasoning_tokens`` were thinking (reasoning tiers);
    ``samples`` comes from the response's ``ttc`` object (1 when a peer gateway has none).
    """

    async def ask(setting: Setting, question: Question) -> Outcome:
        chosen = temperature if setting.temperature is None else setting.temperature
        extra: dict[str, Any] | None = {"ttc": dict(setting.ttc)} if setting.ttc else None
        response = await client.chat.completions.create(
            model=setting.model,
            messages=[{"role": "user", "content": question.question + suffix}],
            max_tokens=max_tokens,
            temperature=omit if chosen is None else chosen,
            extra_body=extra,
        )
        reply = response.choices[0].message.content if response.choices else None
        return _outcome(reply, response.usage, response.model_extra)

    return ask


def prompt_ask(
    client: AsyncOpenAI, prompts: Mapping[str, Prompt], *, temperature: float | None
) -> Ask:
    """An ``Ask`` for the mixed set: each question is the prompt of the same id, sent as it is
    (its messages to chat, its text to completions) with its own ``max_tokens`` and ``stop``.

    Tokens and samples are read as in ``openai_ask``: ``usage`` as the gateway reports it
    (every sample, probe and judge), ``ttc.samples`` (1 when absent).
    """

    async def ask(setting: Setting, question: Question) -> Outcome:
        prompt = prompts[question.id]
        chosen = temperature if setting.temperature is None else setting.temperature
        common: dict[str, Any] = {
            "model": setting.model,
            "max_tokens": prompt.max_tokens,
            "temperature": omit if chosen is None else chosen,
            "stop": list(prompt.stop) if prompt.stop else omit,
            "extra_body": {"ttc": dict(setting.ttc)} if setting.ttc else None,
        }
        if prompt.endpoint == "completions":
            text = await client.completions.create(prompt=prompt.text, **common)
            reply = text.choices[0].text if text.choices else None
            return _outcome(reply, text.usage, text.model_extra)
        # Roles were checked when the set was loaded (system, user or assistant).
        messages = cast(
            "list[ChatCompletionMessageParam]",
            [{"role": role, "content": content} for role, content in prompt.messages],
        )
        chat = await client.chat.completions.create(messages=messages, **common)
        reply = chat.choices[0].message.content if chat.choices else None
        return _outcome(reply, chat.usage, chat.model_extra)

    return ask


def _outcome(reply: str | None, usage: CompletionUsage | None, extra: Any) -> Outcome:
    ttc: dict[str, Any] = dict((extra or {}).get("ttc") or {})
    details = usage.completion_tokens_details if usage else None
    return Outcome(
        reply=reply or "",
        completion_tokens=usage.completion_tokens if usage else 0,
        reasoning_tokens=(details.reasoning_tokens or 0) if details else 0,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        samples=int(ttc.get("samples") or 1),
        ttc=ttc,
    )
