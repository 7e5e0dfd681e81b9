"""Checks of ``deploy/check.py``: Prometheus can read the gateway's ``/metrics``.

A gateway that listens beyond loopback serves ``/metrics`` only to the admin key holder
(``server.admin``). Wherever the stack's gateway does, its scrape must send that key, read
from the same secret the gateway reads it from: in compose, the ``ttc-gateway`` job of
``deploy/prometheus/prometheus.yml`` reads a credentials file that is a secret of the
``prometheus`` service whose source is the gateway's ``server.admin_key_env`` variable; on
Kubernetes, the ServiceMonitor ``ttc-gateway`` sends the key of the Secret the gateway
container takes that variable from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.admin import pages_open
from server.config import ServerConfig

Problems = list[str]
CLOSED = "/metrics is closed (beyond loopback, no server.admin_key_env): nothing can scrape it"
ENV_PREFIX = "TTC_SERVER__"
GATEWAY_JOB = "ttc-gateway"


def with_env(server: ServerConfig, env: Mapping[str, str]) -> ServerConfig:
    """``server`` as the container's ``TTC_SERVER__*`` variables override it."""
    updates = {k[len(ENV_PREFIX) :].lower(): v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    return ServerConfig.model_validate({**server.model_dump(), **updates})


def compose_problems(
    server: ServerConfig, where: str, prometheus: dict[str, Any], compose: dict[str, Any]
) -> Problems:
    """A compose gateway (``server`` with its service's environment applied)."""
    if pages_open(server):
        return []
    if server.admin_key_env is None:
        return [f"{where}: {CLOSED}"]
    jobs: list[dict[str, Any]] = prometheus["scrape_configs"]
    job = next((j for j in jobs if j["job_name"] == GATEWAY_JOB), {})
    path = (job.get("authorization") or {}).get("credentials_file")
    if path is None:
        return [f"{where}: /metrics needs the admin key; job {GATEWAY_JOB} sends none"]
    mounted = {
        s["target"]: s["source"] for s in compose["services"]["prometheus"].get("secrets") or []
    }
    source = (compose.get("secrets") or {}).get(mounted.get(path, ""), {}).get("environment")
    if source is None or source != server.admin_key_env:
        return [
            f"{where}: job {GATEWAY_JOB} reads {path}, not a prometheus secret from "
            f"{server.admin_key_env} (the gateway's server.admin_key_env)"
        ]
    return []


def kube_problems(
    server: ServerConfig, container: dict[str, Any], monitor: dict[str, Any] | None
) -> Problems:
    """The gateway container (``server`` with its environment applied) and its monitor."""
    if pages_open(server) or monitor is None:
        return []
    if server.admin_key_env is None:
        return [f"gateway: {CLOSED}"]
    endpoints = monitor["spec"]["endpoints"]
    sent = [(e.get("authorization") or {}).get("credentials") for e in endpoints]
    given = next(
        (
            e.get("valueFrom", {}).get("secretKeyRef")
            for e in container.get("env") or []
            if e["name"] == server.admin_key_env
        ),
        None,
    )
    if given is None:
        return [f"gateway: server.admin_key_env {server.admin_key_env} is no Secret key"]
    wanted = {"name": given["name"], "key": given["key"]}
    if any(creds != wanted for creds in sent):
        return [
            f"ServiceMonitor {GATEWAY_JOB}: /metrics needs the admin key; send "
            f"authorization.credentials {wanted}"
        ]
    return []


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The plain ``value`` variables of a container (those a config override can be)."""
    return {e["name"]: str(e["value"]) for e in container.get("env") or [] if "value" in e}
