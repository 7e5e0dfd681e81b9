"""Reading and parsing a request body: bounded in size and depth before any work.

``read_body`` refuses a body over the size limit (413) while it arrives. ``parse_json_object``
turns the bytes into a JSON object or refuses them with a 400 that names the field when one
can be named (``param``, dotted as pydantic's locations are: ``messages.0.content``):

- nesting deeper than ``MAX_JSON_DEPTH`` is refused before parsing, from a scan of the raw
  bytes that runs in C (a recursive parser or serializer would otherwise fail on it later);
- NaN, Infinity, a float that overflows to infinity and an integer past Python's conversion
  limit are refused: they are not JSON numbers, and no upstream could be sent them;
- a lone UTF-16 surrogate (``"\\ud800"`` without its pair) is refused, as OpenAI refuses it:
  no text holding one can be encoded as UTF-8, so nothing downstream could handle it.

The checks for the last two walk the parsed value only when the parse saw such a number or the
raw bytes hold a surrogate escape; a well-formed body pays for neither walk.
"""

from __future__ import annotations

import asyncio
import json
import math
import operator
import re
from collections.abc import Iterator
from itertools import accumulate, count
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from core.errors import InvalidRequest, PayloadTooLarge
from server.errors import from_validation_error

# 64: ten times what the OpenAI shapes need (a tool's JSON schema nests two levels per level of
# its properties), and far below the ~1,000 levels at which Python's recursive JSON code fails.
MAX_JSON_DEPTH = 64
# Components of a path named in ``param``: "messages.0.content", not 64 levels of "0".
_PARAM_PARTS = 3

_OPENERS = b"[{"
# '[' and '{' -> 2, ']' and '}' -> 0: the running sum minus the count of brackets is the depth.
_DEPTH_TABLE = bytes(2 if b in _OPENERS else 0 for b in range(256))
_NOT_BRACKET_OR_QUOTE = bytes(b for b in range(256) if b not in b'[]{}"')
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]')
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


# 64 KiB: parsing and validating a body this size costs well under a millisecond; a larger one
# (a 1 MiB prompt costs ~20 ms) is decoded in a worker thread so the event loop keeps serving
# the small requests beside it.
OFF_LOOP_BYTES = 65_536
M = TypeVar("M", bound=BaseModel)


def parse_as(raw: bytes, model: type[M]) -> M:
    """The body validated as ``model``; a 400 naming the field otherwise."""
    try:
        return model.model_validate(parse_json_object(raw))
    except ValidationError as exc:
        raise from_validation_error(exc) from exc


async def decode(raw: bytes, model: type[M]) -> M:
    """``parse_as(raw, model)``, on the event loop for a small body and in a thread for a
    large one."""
    if len(raw) < OFF_LOOP_BYTES:
        return parse_as(raw, model)
    return await asyncio.to_thread(parse_as, raw, model)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the {limit}-byte limit")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
    return bytes(body)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; ``InvalidRequest`` (400) for anything else, see the module."""
    if nests_deeper(raw, MAX_JSON_DEPTH):
        param = _path_param(_path_where(raw, depth=MAX_JSON_DEPTH + 1))
        raise InvalidRequest(
            f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels"
            + (f" in '{param}'" if param else ""),
            param=param,
            code="invalid_json",
        )
    numbers = _Numbers()
    data = _loads(raw, numbers)
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object", code="invalid_json")
    if numbers.invalid or _SURROGATE_ESCAPE.search(raw):
        _refuse_bad_values(data)
    return data


def nests_deeper(raw: bytes, limit: int) -> bool:
    """Whether arrays and objects in ``raw`` (JSON text) nest deeper than ``limit``, brackets
    inside strings not counted; linear, and in C but for one pass of ``max`` over the brackets.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # cannot nest deeper than it has brackets
    # Escaped backslashes, then escaped quotes, go first, so every '"' left delimits a string.
    skeleton = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = skeleton.translate(None, _NOT_BRACKET_OR_QUOTE)
    # Adjacent quotes enclose nothing, inside a string or out: dropping them keeps every
    # bracket and the alternation of opening and closing quotes; what is left is short.
    skeleton = skeleton.replace(b'""', b"")
    brackets = b"".join(skeleton.split(b'"')[::2]).translate(_DEPTH_TABLE)
    return max(map(operator.sub, accumulate(brackets), count(1)), default=0) > limit


class _Numbers:
    """``json.loads`` hooks: every number that is not a finite JSON number becomes ``_Invalid``."""

    def __init__(self) -> None:
        self.invalid = False

    def constant(self, text: str) -> Any:
        self.invalid = True
        return _Invalid(f"{text} is not a valid JSON number")

    def real(self, text: str) -> Any:
        value = float(text)
        if math.isfinite(value):
            return value
        self.invalid = True
        return _Invalid("number out of range")

    def integer(self, text: str) -> Any:
        try:
            return int(text)
        except ValueError:  # past sys.get_int_max_str_digits()
            self.invalid = True
            return _Invalid("number out of range")


class _Invalid:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _loads(raw: bytes, numbers: _Numbers) -> Any:
    try:
        return json.loads(
            raw,
            parse_constant=numbers.constant,
            parse_float=numbers.real,
            parse_int=numbers.integer,
        )
    except json.JSONDecodeError as exc:  # pos counts characters of the decoded text
        offset = len(exc.doc[: exc.pos].encode("utf-8", "surrogatepass"))
        raise _unparsable(raw, offset) from exc
    except UnicodeDecodeError as exc:
        raise _unparsable(raw, exc.start) from exc
    except (ValueError, RecursionError) as exc:  # RecursionError: a bound missed, never a 500
        raise _unparsable(raw, None) from exc


def _unparsable(raw: bytes, offset: int | None) -> InvalidRequest:
    param = None if offset is None else _path_param(_path_where(raw, offset=offset))
    where = f" (at '{param}')" if param else ""
    return InvalidRequest(
        f"We could not parse the JSON body of your request{where}.",
        param=param,
        code="invalid_json",
    )


def _refuse_bad_values(data: dict[str, Any]) -> None:
    for path, reason in _bad_values(data):
        param = ".".join(str(p) for p in path) or None
        where = f" for '{param}'" if param else ""
        raise InvalidRequest(f"Invalid value{where}: {reason}", param=param, code="invalid_value")


def _bad_values(data: Any) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path, reason) of each value no upstream could be sent; iterative: no recursion."""
    surrogate = "lone UTF-16 surrogate in a string (not valid Unicode)"
    pending: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str) and _SURROGATE.search(value):
            yield path, surrogate
        elif isinstance(value, _Invalid):
            yield path, value.reason
        elif isinstance(value, list):
            pending.extend(((*path, i), v) for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, dict):
            for key in reversed(value):
                if _SURROGATE.search(key):
                    yield path, surrogate  # the key itself is never echoed: it cannot be
                pending.append(((*path, key), value[key]))


def _path_where(
    raw: bytes, *, offset: int | None = None, depth: int | None = None
) -> list[str | int | None]:
    """The path (object keys, array indices) of the value at byte ``offset`` of ``raw``, or of
    the first container nested ``depth`` deep; a scan in Python, run only on a refusal."""
    path: list[str | int | None] = []  # one entry per open container: current key or index
    last_string = b""
    for match in _TOKEN.finditer(raw):
        if offset is not None and match.start() >= offset:
            break
        token = match.group()
        if token.startswith(b'"'):
            last_string = token
        else:
            _step(path, token, last_string)
        if depth is not None and len(path) >= depth:
            break
    return path


def _step(path: list[str | int | None], token: bytes, last_string: bytes) -> None:
    """Follow one structural token: ``{`` ``[`` open a level, ``,`` moves to the next index,
    ``:`` names the key ``last_string``, ``}`` ``]`` close the level."""
    if token in (b"{", b"["):
        path.append(None if token == b"{" else 0)
    elif not path:
        return
    elif token in (b"}", b"]"):
        path.pop()
    elif isinstance(path[-1], int):
        path[-1] += int(token == b",")
    elif token == b":":
        path[-1] = _key(last_string)


def _key(token: bytes) -> str | None:
    try:
        key = json.loads(token)
    except ValueError:
        return None
    return key if isinstance(key, str) and not _SURROGATE.search(key) else None


def _path_param(path: list[str | int | None]) -> str | None:
    """``messages.0.content`` from a path; it stops at the first unnamed part. A body that is
    not an object names no field."""
    if not path or isinstance(path[0], int):
        return None
    parts: list[str] = []
    for part in path[:_PARAM_PARTS]:
        if part is None:
            break
        parts.append(str(part))
    return ".".join(parts) or None
