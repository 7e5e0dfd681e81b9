"""``deploy/scrape.py``: a gateway whose ``/metrics`` needs the admin key is scraped with it,
from the secret the gateway reads it from (compose and Kubernetes), checked offline."""

from __future__ import annotations

from typing import Any

from deploy.scrape import compose_problems, kube_problems, with_env
from server.config import ServerConfig

PUBLIC = ServerConfig(host="0.0.0.0", admin_key_env="TTC_ADMIN_KEY")
JOB = {
    "job_name": "ttc-gateway",
    "authorization": {"type": "Bearer", "credentials_file": "/run/secrets/k"},
}
COMPOSE: dict[str, Any] = {
    "services": {"prometheus": {"secrets": [{"source": "k", "target": "/run/secrets/k"}]}},
    "secrets": {"k": {"environment": "TTC_ADMIN_KEY"}},
}
MONITOR = {
    "spec": {
        "endpoints": [
            {"port": "http", "authorization": {"credentials": {"name": "s", "key": "ADMIN"}}}
        ]
    }
}
CONTAINER = {
    "env": [
        {"name": "TTC_SERVER__HOST", "value": "0.0.0.0"},
        {"name": "TTC_ADMIN_KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "ADMIN"}}},
    ]
}


def test_the_containers_environment_overrides_the_config() -> None:
    server = with_env(ServerConfig(), {"TTC_SERVER__HOST": "0.0.0.0", "OTHER": "x"})
    assert server.host == "0.0.0.0" and server.admin_key_env is None


def test_compose_scrape_must_send_the_key_from_the_gateways_variable() -> None:
    assert compose_problems(PUBLIC, "gw", {"scrape_configs": [JOB]}, COMPOSE) == []
    (none,) = compose_problems(
        PUBLIC, "gw", {"scrape_configs": [{"job_name": "ttc-gateway"}]}, COMPOSE
    )
    assert "sends none" in none
    other = PUBLIC.model_copy(update={"admin_key_env": "SOMETHING_ELSE"})
    (wrong,) = compose_problems(other, "gw", {"scrape_configs": [JOB]}, COMPOSE)
    assert "SOMETHING_ELSE" in wrong
    (closed,) = compose_problems(ServerConfig(host="0.0.0.0"), "gw", {"scrape_configs": []}, {})
    assert "closed" in closed


def test_a_gateway_on_loopback_or_opened_needs_no_credentials() -> None:
    empty: dict[str, Any] = {"scrape_configs": [{"job_name": "ttc-gateway"}]}
    assert compose_problems(ServerConfig(), "gw", empty, {"services": {}}) == []
    opened = ServerConfig(host="0.0.0.0", open_admin_pages=True)
    assert compose_problems(opened, "gw", empty, {"services": {}}) == []


def test_service_monitor_must_send_the_secret_key_the_gateway_reads() -> None:
    assert kube_problems(PUBLIC, CONTAINER, MONITOR) == []
    bare = {"spec": {"endpoints": [{"port": "http"}]}}
    (missing,) = kube_problems(PUBLIC, CONTAINER, bare)
    assert "'key': 'ADMIN'" in missing
    plain = {"env": [{"name": "TTC_ADMIN_KEY", "value": "inline"}]}
    (inline,) = kube_problems(PUBLIC, plain, MONITOR)
    assert "no Secret key" in inline
