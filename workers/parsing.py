"""OpenAI wire answers parsed into the policies' data types: completions, choices, stream
chunks and usage, as vLLM and the other engines send them (``reasoning`` or the older
``reasoning_content``; chat choices or text-completion choices)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.backend import Choice, Completion, Delta
from core.usage import TokenUsage


def parse_usage(raw: Mapping[str, Any] | None) -> TokenUsage:
    if not raw:
        return TokenUsage()
    details = raw.get("completion_tokens_details") or {}
    return TokenUsage(
        int(raw.get("prompt_tokens") or 0),
        int(raw.get("completion_tokens") or 0),
        int(details.get("reasoning_tokens") or 0),
    )


def reasoning_of(message: Mapping[str, Any]) -> str:
    """vLLM's ``reasoning`` (or the deprecated ``reasoning_content`` of older servers)."""
    return str(message.get("reasoning") or message.get("reasoning_content") or "")


def with_stop_reason(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """``raw`` with vLLM's ``stop_reason`` (the stop string that ended the choice) where the
    engine names it otherwise: SGLang's ``matched_stop``, which is a string for a stop string
    (a token id otherwise, which vLLM reports as no stop string either)."""
    matched = raw.get("matched_stop")
    if "stop_reason" in raw or not isinstance(matched, str):
        return raw
    return {**raw, "stop_reason": matched}


def parse_choice(raw: Mapping[str, Any]) -> Choice:
    raw = with_stop_reason(raw)
    if "message" not in raw and "text" in raw:
        return _text_choice(raw)
    message = raw.get("message") or {}
    content = (raw.get("logprobs") or {}).get("content") or []
    return Choice(
        index=int(raw.get("index", 0)),
        text=message.get("content") or "",
        finish_reason=raw.get("finish_reason"),
        reasoning=reasoning_of(message),
        token_logprobs=tuple(float(t["logprob"]) for t in content),
        tokens=tuple(str(t.get("token", "")) for t in content),
        raw=raw,
    )


def _text_choice(raw: Mapping[str, Any]) -> Choice:
    """A choice of ``/v1/completions``: ``text``, and logprobs as parallel lists."""
    logprobs = raw.get("logprobs") or {}
    pairs = [
        (t, lp)
        for t, lp in zip(
            logprobs.get("tokens") or [], logprobs.get("token_logprobs") or [], strict=False
        )
        if lp is not None
    ]
    return Choice(
        index=int(raw.get("index", 0)),
        text=raw.get("text") or "",
        finish_reason=raw.get("finish_reason"),
        token_logprobs=tuple(float(lp) for _, lp in pairs),
        tokens=tuple(str(t) for t, _ in pairs),
        raw=raw,
    )


def parse_completion(raw: Mapping[str, Any]) -> Completion:
    choices = tuple(parse_choice(c) for c in raw.get("choices") or [])
    return Completion(choices=choices, usage=parse_usage(raw.get("usage")), model=raw["model"])


def parse_chunk(raw: Mapping[str, Any]) -> list[Delta]:
    deltas = [
        Delta(
            index=int(c.get("index", 0)),
            text=(c.get("delta") or {}).get("content") or c.get("text") or "",
            finish_reason=c.get("finish_reason"),
            reasoning=reasoning_of(c.get("delta") or {}),
            raw=c,
        )
        for c in raw.get("choices") or []
    ]
    if raw.get("usage"):
        deltas.append(Delta(usage=parse_usage(raw["usage"])))
    return deltas
