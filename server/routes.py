"""The API routes: each hands its endpoint to the request lifecycle. HTTP only, no logic."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from server.chat import ChatEndpoint
from server.context import AppContext

api = APIRouter()
CHAT = ChatEndpoint()


def context_of(request: Request) -> AppContext:
    context: AppContext = request.app.state.ttc
    return context


@api.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request) -> Response:
    return await context_of(request).lifecycle.handle(request, CHAT)


@api.post("/v1/responses", response_model=None)
async def create_response(request: Request) -> Response:
    context = context_of(request)
    return await context.lifecycle.handle(request, context.responses)


@api.get("/v1/responses/{response_id}")
async def get_response(response_id: str, request: Request) -> dict[str, Any]:
    context = context_of(request)
    caller = await context.guard.authenticate(request)
    return await context.responses.retrieve(response_id, caller.identity)


@api.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> dict[str, Any]:
    context = context_of(request)
    caller = await context.guard.authenticate(request)
    return await context.responses.delete(response_id, caller.identity)
