"""Every deployed worker of a tier that calls tools or thinks carries its profile's parser flags.

A tier whose model profile names a tool-call parser (``core.profile.ModelProfile.calls_tools``)
is only useful if each worker serving it runs vLLM with ``--enable-auto-tool-choice
--tool-call-parser X`` (``workers.profiles.worker_args``): without them vLLM refuses
``tool_choice: auto``. A reasoning tier (``ModelProfile.thinks``) needs ``--reasoning-parser
X``: without it the thinking arrives inside ``content`` and no budget or probe can find it. A
worker's arguments are either vLLM's own (the vllm/vllm-openai image) or ``ttc worker``'s (the
CPU image), where ``--profile NAME`` stands for that preset's flags.
Used by ``deploy/check.py`` for compose and by ``deploy/kube.py`` for the overlays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from core.profile import ModelProfile
from server.config import Settings
from workers.profiles import PRESETS, worker_args

Problems = list[str]
# The argv of the worker(s) behind a host name (None: no worker found there).
WorkerArgs = Callable[[str], Sequence[str] | None]


def tool_flags(profile: ModelProfile) -> tuple[str, ...]:
    """The parser flags of ``profile``: its reasoning parser and its tool-call parser."""
    return worker_args(profile)


def effective_args(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--profile NAME`` (``ttc worker``) expanded into the preset's flags."""
    out: list[str] = []
    args = list(argv)
    for position, arg in enumerate(args):
        if args[position - 1 : position] == ["--profile"]:
            continue
        if arg == "--profile" and position + 1 < len(args) and args[position + 1] in PRESETS:
            out += worker_args(PRESETS[args[position + 1]])
        else:
            out.append(arg)
    return out


def missing_flags(argv: Sequence[str], profile: ModelProfile) -> list[str]:
    """The tool flags of ``profile`` that ``argv`` lacks (a flag and its value stay together)."""
    have = effective_args(argv)
    wanted = tool_flags(profile)
    missing: list[str] = []
    for position, flag in enumerate(wanted):
        if not flag.startswith("--"):
            continue
        value = wanted[position + 1 : position + 2]
        pair = [flag, *value] if value and not value[0].startswith("--") else [flag]
        if not any(have[i : i + len(pair)] == pair for i in range(len(have))):
            missing.append(" ".join(pair))
    return missing


def tier_hosts(settings: Settings, tier: str) -> list[str]:
    config = settings.tiers[tier]
    hosts = [urlsplit(url).hostname or "" for url in config.endpoints]
    return hosts + ([config.discovery.dns] if config.discovery is not None else [])


def problems(settings: Settings, workers: WorkerArgs, where: str) -> Problems:
    """Each worker of each tools-capable or reasoning tier of ``settings`` that lacks its
    parser flags."""
    found: Problems = []
    for name, tier in settings.tiers.items():
        profile = tier.model_profile()
        does = [
            w
            for w, yes in (("thinks", profile.thinks), ("calls tools", profile.calls_tools))
            if yes
        ]
        if not does:
            continue
        for host in tier_hosts(settings, name):
            argv = workers(host)
            lacking = [] if argv is None else missing_flags(argv, profile)
            if lacking:
                found.append(
                    f"{where}: tier {name} (profile {profile.name}) "
                    f"{' and '.join(does)} but its worker {host} lacks "
                    f"{', '.join(lacking)}"
                )
    return found


def compose_worker_args(services: dict[str, Any]) -> WorkerArgs:
    """Host name (service or alias) -> the service's command, for a rendered compose config."""
    by_host: dict[str, Sequence[str]] = {}
    for name, svc in services.items():
        command = svc.get("command") or []
        by_host[name] = command
        for net in (svc.get("networks") or {}).values():
            for alias in (net or {}).get("aliases") or []:
                by_host[alias] = command
    return by_host.get


def kube_worker_args(docs: list[dict[str, Any]]) -> WorkerArgs:
    """Host name of a Service (``name.namespace.svc.cluster.local``) -> the args of the
    Deployment its selector picks, for a rendered overlay."""
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    by_host: dict[str, Sequence[str]] = {}
    for svc in (d for d in docs if d["kind"] == "Service"):
        selector = (svc["spec"].get("selector") or {}).items()
        meta = svc["metadata"]
        for deployment in deployments:
            template = deployment["spec"]["template"]
            if selector and selector <= template["metadata"].get("labels", {}).items():
                container = template["spec"]["containers"][0]
                by_host[f"{meta['name']}.{meta['namespace']}.svc.cluster.local"] = [
                    *container.get("command", []),
                    *container.get("args", []),
                ]
    return by_host.get
