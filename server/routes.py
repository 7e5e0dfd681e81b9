"""The API routes: each hands its endpoint to the request lifecycle. HTTP only, no logic."""

from __future__ import annotations

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
