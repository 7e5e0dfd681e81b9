"""The bad-input corpus: request bodies the gateway must refuse with a 400, never a 500.

Each entry is ``(name, raw body bytes, param)``: ``param`` is the field the error must name
(its dotted path, or a prefix of it such as ``messages``), or None where no one field is to
blame (malformed JSON, nesting too deep). Items 1 and 4 of issue 12 come first, then more of
the same kinds. Built from valid JSON text so that a lone surrogate or a NaN reaches the
server exactly as a careless client would send it.
"""

from __future__ import annotations

import json
from typing import Any

BadInput = tuple[str, bytes, str | None]
USER = {"role": "user", "content": "hi"}


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "fast", "messages": [USER], **fields}


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()  # ensure_ascii: "\ud800" goes out as its escape


def _deep(levels: int) -> bytes:
    return b'{"model": "fast", "messages": [' + b"[" * levels + b"]" * levels + b"]}"


def _surrogates() -> list[BadInput]:
    lone = "\ud800"
    part = {"role": "user", "content": [{"type": "text", "text": lone}]}
    return [
        (
            "surrogate in content",
            _json(chat(messages=[{"role": "user", "content": lone}])),
            "messages",
        ),
        (
            "surrogate in system",
            _json(chat(messages=[{"role": "system", "content": lone}, USER])),
            "messages",
        ),
        ("surrogate in content part", _json(chat(messages=[part])), "messages"),
        (
            "surrogate in stream",
            _json(chat(messages=[{"role": "user", "content": lone}], stream=True)),
            "messages",
        ),
    ]


def _strict_types() -> list[BadInput]:
    wrong: list[tuple[str, Any]] = [
        ("temperature", "0.5"),
        ("temperature", True),
        ("n", "2"),
        ("max_tokens", "16"),
        ("stream", "yes"),
        ("seed", True),
        ("logprobs", "yes"),
        ("tools", "x"),
        ("tool_choice", 1),
        ("response_format", 1),
        ("logit_bias", "x"),
        ("max_tokens", 10**30),
        ("seed", 2**70),
        ("top_p", "1"),
        ("stop", 5),
        ("max_completion_tokens", -1),
        ("n", 0),
        ("temperature", -1),
        ("top_logprobs", "3"),
        ("stream_options", "x"),
        ("user", 5),
        ("presence_penalty", "0"),
    ]
    return [
        (f"{field}={value!r}"[:60], _json(chat(**{field: value})), field) for field, value in wrong
    ]


def _shapes() -> list[BadInput]:
    return [
        (
            "logit_bias NaN",
            b'{"model": "fast", "messages": [{"role": "user", "content": "hi"}],'
            b' "logit_bias": {"1": NaN}}',
            "logit_bias",
        ),
        (
            "temperature Infinity",
            b'{"model": "fast", "messages": [{"role": "user", '
            b'"content": "hi"}], "temperature": Infinity}',
            "temperature",
        ),
        ("nested 1000 deep", _deep(1000), None),
        ("nested 100000 deep", _deep(100_000), None),
        ("malformed JSON", b'{"model": "fast", "messages": [', None),
        ("empty body", b"", None),
        ("body is a list", b"[]", None),
        ("body is a string", b'"hi"', None),
        (
            "invalid UTF-8",
            b'{"model": "fast", "messages": [{"role": "user", "content": "\xff"}]}',
            None,
        ),
        ("messages missing", _json({"model": "fast"}), "messages"),
        ("messages empty", _json(chat(messages=[])), "messages"),
        ("messages not a list", _json(chat(messages="hi")), "messages"),
        ("role unknown", _json(chat(messages=[{"role": "wizard", "content": "hi"}])), "messages"),
        ("content a number", _json(chat(messages=[{"role": "user", "content": 5}])), "messages"),
        ("model missing", _json({"messages": [USER]}), "model"),
        ("model a number", _json(chat(model=5)), "model"),
        ("unknown field", _json(chat(temprature=0.5)), None),  # as OpenAI: param null
        ("ttc not an object", _json(chat(ttc="x")), "ttc"),
        ("ttc unknown policy", _json(chat(ttc={"policy": "nope"})), "ttc"),
        ("ttc unknown field", _json(chat(ttc={"bogus": 1})), "ttc"),
        ("ttc max_samples a string", _json(chat(ttc={"max_samples": "8"})), "ttc"),
        ("reasoning_effort unknown", _json(chat(reasoning_effort="extreme")), "reasoning_effort"),
    ]


def corpus() -> list[BadInput]:
    return [*_surrogates(), *_strict_types(), *_shapes()]
