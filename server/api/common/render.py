"""Response pieces every API renders the same way: the error envelope, ``usage``, ``ttc``.

The error envelope is OpenAI's: ``{"error": {message, type, param, code}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.errors import TtcError
from core.request import Decision
from core.usage import UsageLedger


def envelope(message: str, error_type: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_body(exc: TtcError) -> dict[str, Any]:
    return envelope(exc.message, exc.error_type, exc.param, exc.code)


# The token terms of ``ttc.contract`` repeated in ``usage.ttc_contract`` (the SDKs keep extra
# usage fields, as they keep ``ttc_details``); the rest stays in ``ttc.contract``.
USAGE_CONTRACT_FIELDS = ("max_total_tokens", "used_tokens", "reserved", "shrunk_from")


def usage_body(ledger: UsageLedger, report: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``usage``; with the result's ``report``, its contract's token terms as ``ttc_contract``."""
    total = ledger.total
    body: dict[str, Any] = {
        "prompt_tokens": total.prompt_tokens,
        "completion_tokens": total.completion_tokens,
        "total_tokens": total.total_tokens,
        "completion_tokens_details": {"reasoning_tokens": total.reasoning_tokens},
        "ttc_details": ledger.details(),
    }
    contract = (report or {}).get("contract")
    if isinstance(contract, Mapping):
        body["ttc_contract"] = {k: contract[k] for k in USAGE_CONTRACT_FIELDS if k in contract}
    return body


def ttc_body(decision: Decision, report: Mapping[str, Any]) -> dict[str, Any]:
    return {**decision.report(), **report}
