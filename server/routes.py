"""The API routes: each hands its endpoint to the request lifecycle. HTTP only, no logic.

Their request and response schemas are declared for ``/openapi.json`` (``server.openapi``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from core.errors import InvalidRequest
from server.api.chat.endpoint import ChatEndpoint
from server.api.chat.schema import ChatCompletionRequest
from server.api.common.models import (
    ERRORS,
    ChatCompletion,
    DeletedResponse,
    InputItemList,
    ResponseObject,
    TextCompletion,
)
from server.api.completions.endpoint import CompletionsEndpoint
from server.api.completions.schema import CompletionRequest
from server.api.responses.schema import ResponsesRequest
from server.context import AppContext
from server.openapi import request_body

api = APIRouter()
CHAT = ChatEndpoint()
COMPLETIONS = CompletionsEndpoint()
BODIES: list[type[BaseModel]] = [ChatCompletionRequest, ResponsesRequest, CompletionRequest]


def context_of(request: Request) -> AppContext:
    context: AppContext = request.app.state.ttc
    return context


@api.post(
    "/v1/chat/completions",
    response_model=None,
    responses={200: {"model": ChatCompletion}, **ERRORS},
    openapi_extra=request_body(ChatCompletionRequest),
)
async def chat_completions(request: Request) -> Response:
    """A chat completion: the router picks tier and policy (``model: auto``) unless pinned."""
    return await context_of(request).lifecycle.handle(request, CHAT)


@api.post(
    "/v1/completions",
    response_model=None,
    responses={200: {"model": TextCompletion}, **ERRORS},
    openapi_extra=request_body(CompletionRequest),
)
async def completions(request: Request) -> Response:
    """A text completion of a raw prompt (no chat template), through the same router."""
    return await context_of(request).lifecycle.handle(request, COMPLETIONS)


@api.post(
    "/v1/responses",
    response_model=None,
    responses={200: {"model": ResponseObject}, **ERRORS},
    openapi_extra=request_body(ResponsesRequest),
)
async def create_response(request: Request) -> Response:
    """A response (OpenAI's Responses API), through the same router and policies as chat."""
    context = context_of(request)
    return await context.lifecycle.handle(request, context.responses)


@api.get("/v1/responses/{response_id}", responses={200: {"model": ResponseObject}, **ERRORS})
async def get_response(response_id: str, request: Request, stream: bool = False) -> dict[str, Any]:
    """A stored response; only the API key that made it can see it."""
    context = context_of(request)
    caller = await context.guard.authenticate(request)
    if stream:  # replaying a finished stream's events: not kept, so said rather than ignored
        raise InvalidRequest("streaming a stored response is not supported", param="stream")
    return await context.responses.retrieve(response_id, caller.identity)


@api.get(
    "/v1/responses/{response_id}/input_items",
    responses={200: {"model": InputItemList}, **ERRORS},
)
async def list_input_items(
    response_id: str,
    request: Request,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    """The input items of a stored response of this API key, a page at a time."""
    context = context_of(request)
    caller = await context.guard.authenticate(request)
    return await context.responses.input_items(
        response_id, caller.identity, after=after, limit=limit, order=order
    )


@api.delete("/v1/responses/{response_id}", responses={200: {"model": DeletedResponse}, **ERRORS})
async def delete_response(response_id: str, request: Request) -> dict[str, Any]:
    """Delete a stored response of this API key."""
    context = context_of(request)
    caller = await context.guard.authenticate(request)
    return await context.responses.delete(response_id, caller.identity)
