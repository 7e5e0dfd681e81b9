"""Self-consistency over tool calls: what a sample votes for when the request sends ``tools``.

A sample's vote is the call itself: the function name plus its arguments as canonical JSON
(keys sorted, no whitespace), several calls joined in order, or ``NO_CALL`` when it answered in
text. A call whose arguments do not parse as a JSON object, name a function the request did not
offer, or do not match that function's JSON schema (``parameters``, checked with
``jsonschema``) votes for nothing (``None``): an invalid call never wins. Pure functions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema  # type: ignore[import-untyped]

NO_CALL = "no call"

Schemas = Mapping[str, Mapping[str, Any]]


def tool_schemas(tools: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Function name -> its parameters' JSON schema (``{}``, anything, when it has none)."""
    schemas: dict[str, Mapping[str, Any]] = {}
    for tool in tools:
        function = tool.get("function") or {}
        if tool.get("type", "function") == "function" and isinstance(function.get("name"), str):
            schemas[function["name"]] = function.get("parameters") or {}
    return schemas


def parse_arguments(arguments: Any) -> dict[str, Any] | None:
    """A call's arguments as a JSON object (OpenAI sends them as a JSON string); None if not."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    return arguments if isinstance(arguments, dict) else None


def matches_schema(arguments: Mapping[str, Any], schema: Mapping[str, Any]) -> bool:
    """Whether ``arguments`` validate against ``schema``; a schema that is itself invalid
    cannot judge, so only the object shape counts then."""
    try:
        validator = jsonschema.validators.validator_for(schema)
        validator.check_schema(schema)
    except jsonschema.SchemaError:
        return True
    return bool(validator(schema).is_valid(arguments))


def canonical(arguments: Mapping[str, Any]) -> str:
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def call_key(call: Mapping[str, Any], schemas: Schemas) -> str | None:
    """``name(canonical arguments)`` of one valid call; None when it is invalid."""
    function = call.get("function") or {}
    name = function.get("name")
    if not isinstance(name, str) or name not in schemas:
        return None
    arguments = parse_arguments(function.get("arguments", "{}"))
    if arguments is None or not matches_schema(arguments, schemas[name]):
        return None
    return f"{name}({canonical(arguments)})"


def vote_key(tool_calls: Sequence[Mapping[str, Any]], schemas: Schemas) -> str | None:
    """What a sample votes for: its calls (in order), ``NO_CALL``, or None if any is invalid."""
    if not tool_calls:
        return NO_CALL
    keys = [call_key(call, schemas) for call in tool_calls]
    if any(key is None for key in keys):
        return None
    return "; ".join(key for key in keys if key is not None)


def sample_tool_calls(raw_choice: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """The tool calls of an upstream chat choice (``message.tool_calls``)."""
    message = raw_choice.get("message") or {}
    return tuple(message.get("tool_calls") or ())
