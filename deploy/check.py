"""Offline validation of the deployment files: ``python deploy/check.py`` (``make lint-deploy``).

1. ``hadolint`` on every Dockerfile (``Dockerfile``, ``docker/*.Dockerfile``); ``.dockerignore``
   lets in every package pyproject.toml installs; a wheel built from that build context, as
   the image installs it, builds the gateway app (``deploy/image.py``).
2. ``docker compose config`` without a profile and with each profile; every gateway config the
   stack mounts loads with ``server.config.load_settings`` and its endpoints are services of the
   same profile; every worker of a tier that calls tools carries its tool-call parser flags
   (``deploy/tool_flags.py``); Prometheus scrapes only services of the stack, and a gateway
   whose /metrics needs the admin key with that key (``deploy/scrape.py``).
3. ``kubectl kustomize`` of each overlay piped into ``kubernetes-validate --strict``, plus the
   cross-checks of ``deploy/kube.py`` (CRDs, gateway config, probes, draining, the scrape's
   admin key).
4. The Grafana dashboard parses, uses the provisioned datasource, and every metric it queries is
   in the gateway's /metrics output (``deploy/dashboard.py``).

Prints one line per check and exits 0 when every check passes, 1 otherwise. A missing tool
fails its check and says how to install it. Run it with the project's virtualenv
(``.venv/bin/python deploy/check.py``): it builds the gateway app in-process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache, partial
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `deploy` and the packages importable
    sys.path.insert(0, str(ROOT))

from deploy import tool_flags  # noqa: E402
from deploy.dashboard import dashboard_problems  # noqa: E402
from deploy.image import check_image_install  # noqa: E402
from deploy.kube import CONFIG_PATH, check_overlay, crd_note  # noqa: E402
from deploy.scrape import compose_problems, with_env  # noqa: E402
from deploy.tools import ToolMissing, compose_command, run, tool, upstreams  # noqa: E402

COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_PROFILES: tuple[str | None, ...] = (None, "gpu", "cpu")
OVERLAYS = ROOT / "deploy" / "k8s" / "overlays"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"

Problems = list[str]


# --- Dockerfiles -----------------------------------------------------------------------------


def dockerfiles() -> list[Path]:
    return [ROOT / "Dockerfile", *sorted((ROOT / "docker").glob("*.Dockerfile"))]


def check_hadolint(path: Path) -> Problems:
    code, out = run([tool("hadolint"), "--no-color", str(path.relative_to(ROOT))])
    return [] if code == 0 else out.splitlines() or [f"hadolint exited {code}"]


def check_dockerignore() -> Problems:
    """The allowlist must let in the readme and every package pyproject.toml installs."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    needed = [p.rstrip("*") + "/" for p in packages] + [project["project"]["readme"]]
    allowed = {
        line[1:].strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    return [f".dockerignore does not let in {n} (add !{n})" for n in needed if n not in allowed]


# --- docker compose --------------------------------------------------------------------------


@cache
def compose_config(profile: str | None) -> dict[str, Any]:
    cmd = [*compose_command(), "-f", str(COMPOSE_FILE)]
    cmd += ["--profile", profile] if profile else []
    code, out = run([*cmd, "config", "--format", "json"])
    if code != 0:
        raise ValueError(f"docker compose config failed:\n{out}")
    data: dict[str, Any] = json.loads(out[out.index("{") :])  # warnings may precede the JSON
    return data


def service_names(services: dict[str, Any]) -> set[str]:
    names = set(services)
    for svc in services.values():
        for net in (svc.get("networks") or {}).values():
            names.update((net or {}).get("aliases") or [])
    return names


def gateway_configs(services: dict[str, Any]) -> Iterator[tuple[str, Path]]:
    for name, svc in services.items():
        for vol in svc.get("volumes") or []:
            if vol.get("target") == CONFIG_PATH:
                yield name, Path(vol["source"])


def check_compose(profile: str | None) -> Problems:
    from server.config import ConfigError, load_settings

    services = compose_config(profile)["services"]
    names, problems = service_names(services), []
    for service, path in gateway_configs(services):
        try:
            settings = load_settings(path)
        except ConfigError as exc:
            problems.append(f"service {service}: {exc}")
            continue
        workers = tool_flags.compose_worker_args(services)
        where = f"{path.name} (service {service})"
        problems += tool_flags.problems(settings, workers, where)
        server = with_env(settings.server, services[service].get("environment") or {})
        prometheus = yaml.safe_load(PROMETHEUS.read_text())
        problems += compose_problems(server, where, prometheus, compose_config(profile))
        for what, host, _ in upstreams(settings):
            if host not in names:
                problems.append(
                    f"{path.name} (service {service}): {what} calls {host}, "
                    f"not a service of this profile"
                )
    return problems


def check_prometheus() -> Problems:
    every: set[str] = set()
    for profile in COMPOSE_PROFILES:
        every |= service_names(compose_config(profile)["services"])
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets = [
        t
        for job in config["scrape_configs"]
        for sc in job.get("static_configs", [])
        for t in sc["targets"]
    ]
    return [
        f"{PROMETHEUS.name}: target {t} is no compose service"
        for t in targets
        if t.split(":")[0] not in every
    ]


# --- runner ----------------------------------------------------------------------------------


def overlays() -> list[Path]:
    return sorted(p for p in OVERLAYS.iterdir() if p.is_dir())


def checks() -> Iterator[tuple[str, Callable[[], Problems]]]:
    for path in dockerfiles():
        yield f"hadolint {path.relative_to(ROOT)}", partial(check_hadolint, path)
    yield ".dockerignore allowlist", check_dockerignore
    yield "image install (wheel of the build context builds the app)", check_image_install
    for profile in COMPOSE_PROFILES:
        label = f"--profile {profile}" if profile else "no profile"
        yield f"docker compose config ({label})", partial(check_compose, profile)
    yield "prometheus targets", check_prometheus
    for overlay in overlays():
        name = f"kustomize {overlay.relative_to(ROOT)} | kubernetes-validate"
        yield name, partial(check_overlay, overlay)
    yield "grafana dashboard metrics", dashboard_problems


def run_check(name: str, check: Callable[[], Problems]) -> bool:
    try:
        problems = check()
    except (ToolMissing, ValueError, OSError, subprocess.TimeoutExpired) as exc:
        problems = [str(exc)]
    except Exception as exc:  # noqa: BLE001 - any crash of a check is its failure, reported
        problems = [f"{type(exc).__name__}: {exc}"]
    sys.stdout.write(f"{'ok  ' if not problems else 'FAIL'}  {name}\n")
    for line in "\n".join(problems).splitlines():
        sys.stdout.write(f"      {line}\n")
    return not problems


def main() -> int:
    results = [run_check(name, check) for name, check in checks()]
    for overlay in overlays():
        try:
            note = crd_note(overlay)
        except (ToolMissing, ValueError):  # already reported as that overlay's failure
            continue
        sys.stdout.write(f"note  {overlay.name}: {note}\n" if note else "")
    failed = results.count(False)
    verdict = f"{failed} of {len(results)} failed" if failed else f"all {len(results)} ok"
    sys.stdout.write(f"lint-deploy: {verdict}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
