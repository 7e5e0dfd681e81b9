"""Kubernetes checks of ``deploy/check.py``: render an overlay, validate it, cross-check it.

``kubernetes-validate --strict`` checks every object against the Kubernetes schemas. CRD kinds it
has no schema for (``CRD_KINDS``) are not sent to it; this module checks them instead: a
ServiceMonitor's selector must match a Service that has the port it scrapes. The gateway's
rendered ConfigMap must be a valid config whose endpoints are rendered Services, and the gateway
must probe /health (liveness) and /ready (readiness) and drain before it is killed; every
worker of a tier that calls tools carries its tool-call parser flags (``deploy.tool_flags``);
the ServiceMonitor sends the admin key a gateway beyond loopback needs (``deploy.scrape``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from deploy import tool_flags
from deploy.scrape import GATEWAY_JOB, container_env, kube_problems, with_env
from deploy.tools import run, tool, upstreams

CONFIG_PATH = "/etc/ttc/config.yaml"  # where the gateway Deployment mounts its config
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
DRAIN_S = 30  # uvicorn's timeout_graceful_shutdown in ttc/cli.py

Problems = list[str]


@cache
def render(overlay: Path) -> list[dict[str, Any]]:
    """The overlay's objects as ``kubectl kustomize`` renders them (cached: rendered once)."""
    code, out = run([tool("kubectl"), "kustomize", str(overlay)])
    if code != 0:
        raise ValueError(f"kubectl kustomize failed:\n{out}")
    return [doc for doc in yaml.safe_load_all(out) if doc]


def is_crd(doc: dict[str, Any]) -> bool:
    return (doc["apiVersion"], doc["kind"]) in CRD_KINDS


def kubernetes_validate(docs: list[dict[str, Any]]) -> Problems:
    """Pipe every non-CRD object into ``kubernetes-validate --strict``; its complaints."""
    stream = yaml.safe_dump_all([d for d in docs if not is_crd(d)])
    code, out = run([tool("kubernetes-validate"), "--strict", "--quiet", "-"], stdin=stream)
    # A WARN is a kind without a schema: only the CRDs above may be one, and they are not sent.
    bad = [line for line in out.splitlines() if line.startswith(("WARN", "ERROR", "FATAL"))]
    return bad or ([] if code == 0 else [out or f"kubernetes-validate exited {code}"])


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def check_service_monitor(monitor: dict[str, Any], services: list[dict[str, Any]]) -> Problems:
    name, spec = monitor["metadata"]["name"], monitor["spec"]
    wanted = spec["selector"].get("matchLabels", {})
    matched = [s for s in services if wanted.items() <= s["metadata"].get("labels", {}).items()]
    if not matched:
        return [f"ServiceMonitor {name}: no Service has labels {wanted}"]
    problems = []
    for svc in matched:
        where = f"ServiceMonitor {name}: Service {svc['metadata']['name']}"
        ports = {p.get("name") for p in svc["spec"]["ports"]}
        labels = svc["metadata"].get("labels", {})
        problems += [
            f"{where} has no port {e['port']}" for e in spec["endpoints"] if e["port"] not in ports
        ]
        problems += [
            f"{where} lacks label {t}" for t in spec.get("targetLabels", []) if t not in labels
        ]
    return problems


def gateway_container(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, gateway container) of the Deployment ttc-gateway."""
    deployments = of_kind(docs, "Deployment")
    deployment = next(d for d in deployments if d["metadata"]["name"] == "ttc-gateway")
    pod = deployment["spec"]["template"]["spec"]
    return pod, next(c for c in pod["containers"] if c["name"] == "gateway")


def check_gateway_pod(docs: list[dict[str, Any]]) -> Problems:
    pod, container = gateway_container(docs)
    problems = []
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        got = container.get(probe, {}).get("httpGet", {}).get("path")
        if got != path:
            problems.append(f"gateway {probe} is {got!r}, not {path}")
    sleep = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pause = int(sleep[-1]) if sleep[:1] == ["sleep"] else 0
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if pause == 0 or grace <= pause + DRAIN_S:
        problems.append(
            f"gateway drain: need a preStop sleep and terminationGracePeriodSeconds "
            f"> sleep + {DRAIN_S}s (sleep {pause}s, grace {grace}s)"
        )
    return problems


def service_host(service: dict[str, Any]) -> str:
    meta = service["metadata"]
    return f"{meta['name']}.{meta['namespace']}.svc.cluster.local"


def check_gateway_config(docs: list[dict[str, Any]]) -> Problems:
    """The ConfigMap the gateway mounts is a valid config whose endpoints are rendered Services."""
    from server.config import ConfigError, settings_from_dict

    pod, container = gateway_container(docs)
    mount = next(m for m in container["volumeMounts"] if CONFIG_PATH.startswith(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    name = volume["configMap"]["name"]
    config_map = next(c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"] == name)
    text = config_map["data"][Path(CONFIG_PATH).name]
    try:
        settings = settings_from_dict(yaml.safe_load(text), f"in ConfigMap {name}")
    except ConfigError as exc:
        return [str(exc)]
    services = {
        service_host(s): {p["port"] for p in s["spec"]["ports"]} for s in of_kind(docs, "Service")
    }
    flags = tool_flags.problems(settings, tool_flags.kube_worker_args(docs), f"ConfigMap {name}")
    server = with_env(settings.server, container_env(container))
    monitors = of_kind(docs, "ServiceMonitor")
    monitor = next((m for m in monitors if m["metadata"]["name"] == GATEWAY_JOB), None)
    return (
        flags
        + kube_problems(server, container, monitor)
        + [
            f"ConfigMap {name}: {what} calls {host}:{port}, not a rendered Service port"
            for what, host, port in upstreams(settings)
            if port not in services.get(host, set())
        ]
    )


def check_overlay(overlay: Path) -> Problems:
    """Everything wrong with one rendered overlay (empty: it is fine)."""
    docs = render(overlay)
    problems = kubernetes_validate(docs)
    services = of_kind(docs, "Service")
    for monitor in of_kind(docs, "ServiceMonitor"):
        problems += check_service_monitor(monitor, services)
    return problems + check_gateway_pod(docs) + check_gateway_config(docs)


def crd_note(overlay: Path) -> str:
    """Names the CRD objects kubernetes-validate did not see ('' if none)."""
    kinds = sorted({f"{d['kind']}/{d['metadata']['name']}" for d in render(overlay) if is_crd(d)})
    return f"not sent to kubernetes-validate (CRDs, checked here): {', '.join(kinds)}" * bool(kinds)
