"""What the rest of the gateway knows of a policy, declared once on its registration.

The router, load scaling, key reservations and tool routing read a policy's ``Facts`` from the
registry (``policies.registry.facts``); none of them names a policy. A new policy states its
facts in its ``REGISTRATION`` line and is then routed, shed, reserved and offered to tool
requests by them alone.

- ``worst_case``: the most tokens it can spend on a request, known before it runs (a
  ``policies.worst_case.Bound``: the key reservation holds this much).
- ``plain``: the one-sample baseline the router falls back to when a request cannot use the
  band's policy (exactly one policy is plain).
- ``text_prompts``: runs on a raw prompt (``/v1/completions``); the others continue or judge chat
  messages.
- ``one_answer``: builds one answer (a chain, a trace of steps, an escalation), never ``n``.
- ``votes``: its samples vote, so greedy samples (temperature 0) cannot settle anything.
- ``logprobs``: can return the answer's logprobs (joined steps cannot).
- ``tool_votes``: its samples can vote on tool calls.
- ``shed_under_load``: an easy request skips it while its tier is saturated.
- ``needs``: what it needs from the tier's engine (``"n"``, ``"top_logprobs"``,
  ``"continue_final_message"``, ...), matched against what an engine serves.
- ``shapes``: the answer shapes it serves under ``model: "auto"`` (``"closed"``: one short
  answer two samples can share; ``"open"``: prose, code, lists, many valid answers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ANSWER_SHAPES = frozenset({"closed", "open"})


@dataclass(frozen=True)
class Facts:
    worst_case: Callable[[Any, Any], int]
    plain: bool = False
    text_prompts: bool = False
    one_answer: bool = False
    votes: bool = False
    logprobs: bool = True
    tool_votes: bool = False
    shed_under_load: bool = False
    needs: frozenset[str] = frozenset()
    shapes: frozenset[str] = ANSWER_SHAPES
