"""The bad-input corpus (``bad_inputs.py``) sent to a real ``ttc serve`` over one socket.

``tests/unit/test_bad_input.py`` checks the same inputs in process; this case checks what a
client on the wire sees: each bad body gets a 400 whose OpenAI error names the field, the
connection is kept (no ``Connection: close``, the same socket serves the next request), a valid
request on it right after succeeds, and ``ttc_requests_in_flight`` is 0 once the corpus is done.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.reliability.bad_inputs import BadInput, chat, corpus
from tests.reliability.harness import Gateway, Report, gateway_on_fast_upstream

HEADERS = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with gateway_on_fast_upstream(tmp_path_factory.mktemp("bad-input")) as running:
        yield running


def post(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, dict[str, Any], str]:
    conn.request("POST", "/v1/chat/completions", body=body, headers=HEADERS)
    response = conn.getresponse()
    raw = response.read()
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = {"unparsed": raw[:200].decode(errors="replace")}
    return response.status, payload, (response.getheader("connection") or "").lower()


def problem(conn: http.client.HTTPConnection, case: BadInput) -> str | None:
    """What is wrong with the gateway's answer to ``case`` and the request after it, if any."""
    name, body, param = case
    sock = conn.sock
    status, payload, connection = post(conn, body)
    error = payload.get("error") if isinstance(payload, dict) else None
    if status != 400 or not isinstance(error, dict):
        return f"{name}: {status} {json.dumps(payload)[:160]}"
    named = error.get("param") or ""
    if param is not None and not named.startswith(param):
        return f"{name}: param {named!r}, expected {param!r}"
    if connection == "close" or conn.sock is not sock or sock is None:
        return f"{name}: connection closed"
    status, payload, _ = post(conn, json.dumps(chat()).encode())
    if status != 200 or conn.sock is not sock:
        return f"{name}: the next request on the connection got {status}"
    return None


def test_every_bad_input_is_a_400_and_the_connection_survives(gw: Gateway) -> None:
    address = urlsplit(gw.url)
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
    conn.connect()
    cases = corpus()
    problems: list[str] = []
    for case in cases:
        if (found := problem(conn, case)) is not None:
            problems.append(found)
            conn.close()
            conn.connect()
    conn.close()
    in_flight = gw.metric("ttc_requests_in_flight")
    Report(
        "bad-input",
        {
            "inputs": len(cases),
            "answered_right": len(cases) - len(problems),
            "problems": problems,
            "in_flight_after": in_flight,
        },
    ).write()
    assert not problems, "\n".join(problems)
    assert in_flight == 0.0
