"""The official Node SDK (``openai`` from npm) against the gateway and the real worker.

``tests/integration/node/sdk_check.mjs`` makes the basic calls (chat, chat stream, responses,
responses stream) and prints what it saw; this test installs the pinned SDK with npm if
needed and checks the output.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def node_sdk() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the Node SDK check")
    if not (NODE_DIR / "node_modules" / "openai").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return NODE_DIR / "sdk_check.mjs"


def test_the_node_sdk_makes_chat_and_responses_calls(node_sdk: Path, gateway: str) -> None:
    done = subprocess.run(
        ["node", str(node_sdk), gateway], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["chat"]["content"] and seen["chat"]["ttc"]["policy"] == "single"
    assert seen["chat"]["usage"]["completion_tokens"] > 0
    assert seen["chat_stream"]["content"] and seen["chat_stream"]["ttc"]["tier"]
    assert seen["chat_stream"]["usage"]["completion_tokens"] > 0
    assert seen["response"]["output_text"] and seen["response"]["usage"]["output_tokens"] > 0
    assert seen["response"]["ttc"]["policy"] == "single"
    kinds = seen["response_stream"]["kinds"]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in {"response.completed", "response.incomplete"}
    assert seen["response_stream"]["text"]
