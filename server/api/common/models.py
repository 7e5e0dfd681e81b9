"""Pydantic models of what the gateway answers, for ``/openapi.json`` only.

Responses are built as plain dicts on the hot path (the ``render`` module of each API in
``server.api``); these models describe those dicts so ``/docs``, client generators and API
fuzzers see the real API. Objects allow extra fields, as OpenAI's own schemas do for
fields a newer server may add.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorObject(_Open):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(_Open):
    """Every error, whatever its status: OpenAI's envelope."""

    error: ErrorObject


class UsageItem(_Open):
    kind: str  # sample, probe, judge, draft
    tier: str
    prompt_tokens: int
    completion_tokens: int


class ChatUsage(_Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    ttc_details: list[UsageItem] = []


class ChatMessageOut(_Open):
    role: Literal["assistant"]
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatChoice(_Open):
    index: int
    message: ChatMessageOut
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None = None


class ChatCompletion(_Open):
    """``POST /v1/chat/completions`` without ``stream``; with it, ``text/event-stream`` of
    ``chat.completion.chunk`` objects, the last one carrying ``ttc``, then ``data: [DONE]``.
    A policy that draws in rounds sends, before the answer, a chunk with empty ``choices`` and
    ``ttc: {"progress": {...}}`` after each round (``core.progress.Progress.body``)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage
    ttc: dict[str, Any]


class ResponseUsage(_Open):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: dict[str, int] = {}
    output_tokens_details: dict[str, int] = {}


class ResponseObject(_Open):
    """``POST /v1/responses`` without ``stream``, and ``GET /v1/responses/{id}``; with
    ``stream``, ``text/event-stream`` of typed events ending in ``response.completed`` (a
    round's progress: one more ``response.in_progress`` with ``ttc.progress``)."""

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["completed", "incomplete", "failed", "in_progress"]
    model: str
    output: list[dict[str, Any]]
    usage: ResponseUsage | None = None
    error: dict[str, Any] | None = None
    ttc: dict[str, Any] | None = None


class InputItemList(_Open):
    """``GET /v1/responses/{id}/input_items``: the items the response was given, a page."""

    object: Literal["list"]
    data: list[dict[str, Any]]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class DeletedResponse(_Open):
    id: str
    object: Literal["response.deleted"]
    deleted: bool


class CompletionChoice(_Open):
    index: int
    text: str
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None = None


class TextCompletion(_Open):
    """``POST /v1/completions`` without ``stream``."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: ChatUsage
    ttc: dict[str, Any]


class ModelCard(_Open):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(_Open):
    object: Literal["list"]
    data: list[ModelCard]


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (400, "invalid JSON or an invalid field (`param` names it)"),
        (401, "missing or wrong API key"),
        (403, "the key may not use the decided tier"),
        (404, "unknown model, or no such stored object for this key"),
        (413, "body over `server.max_body_bytes`"),
        (429, "over a limit; `Retry-After` says when to retry"),
        (500, "a bug in the gateway"),
        (502, "the worker answered something unusable"),
        (503, "no healthy worker; `Retry-After` says when to retry"),
        (504, "past the request deadline"),
    )
}
