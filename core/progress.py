"""What a multi-sample policy says while it works: ``Progress``, one event per round.

``adaptive_bon`` yields one after every round of samples, ``cascade`` forwards its stages'
rounds and adds one after each stage (the tier tried, whether it escalates). The server
renders each as a chunk with no choices and ``ttc.progress`` (chat, completions) or a
``response.ttc.progress`` event (responses), so a client sees life within the first round
instead of silence until the answer. Progress is informational: the answer, ``ttc`` and
``usage`` that follow are what count, and the counts here are consistent with them (``samples``
and ``completion_tokens`` only grow, and the last progress of a run equals the final report's
``samples``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# 80 characters: a status line's worth; the whole answer follows as content.
LEADER_CHARS = 80


def short_leader(answer: str | None) -> str | None:
    """The leading answer as a label: whitespace collapsed, cut at ``LEADER_CHARS``."""
    if answer is None:
        return None
    flat = " ".join(answer.split())
    return flat if len(flat) <= LEADER_CHARS else flat[: LEADER_CHARS - 1] + "…"


@dataclass(frozen=True)
class Progress:
    """The state of a request after one round (``round`` counts from 1).

    ``samples`` and ``completion_tokens`` are the whole request's so far (every stage's);
    ``leader`` is the leading extracted answer (normalised, short), ``votes`` its votes and
    ``confidence`` the policy's confidence in it; ``stop_reason`` is set on the round after
    which sampling stopped (the answer follows). ``stage`` and ``escalating`` are a cascade's:
    the stage that ran ("small" / "large") and, after a stage, whether it escalates.
    """

    policy: str
    tier: str
    round: int
    samples: int
    completion_tokens: int
    leader: str | None = None
    votes: int = 0
    confidence: float | None = None
    stop_reason: str | None = None
    stage: str | None = None
    escalating: bool | None = None

    def body(self) -> dict[str, Any]:
        """The wire form (``ttc.progress``); a cascade's fields only when set."""
        out: dict[str, Any] = {
            "policy": self.policy,
            "tier": self.tier,
            "round": self.round,
            "samples": self.samples,
            "completion_tokens": self.completion_tokens,
            "leader": self.leader,
            "votes": self.votes,
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "stop_reason": self.stop_reason,
        }
        if self.stage is not None:
            out["stage"] = self.stage
        if self.escalating is not None:
            out["escalating"] = self.escalating
        return out
