"""The eval's only network call: one chat completion through the gateway, with the OpenAI SDK."""

from __future__ import annotations

from typing import Any

from openai import AsyncOpenAI, omit

from bench.eval import Ask, Outcome, Setting
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
        ttc: dict[str, Any] = dict((response.model_extra or {}).get("ttc") or {})
        usage = response.usage
        reply = response.choices[0].message.content if response.choices else None
        details = usage.completion_tokens_details if usage else None
        return Outcome(
            reply=reply or "",
            completion_tokens=usage.completion_tokens if usage else 0,
            reasoning_tokens=(details.reasoning_tokens or 0) if details else 0,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            samples=int(ttc.get("samples") or 1),
            ttc=ttc,
        )

    return ask
