"""The deployment files against the code they deploy (the offline part of ``make lint-deploy``).

The external tools (hadolint, compose, kubectl, kubernetes-validate) run in ``deploy/check.py``;
these tests cover what only the Python side can break: a config key renamed, a metric renamed
in server/metrics.py that the Grafana dashboard still queries, a policy whose tiers the shipped
configs do not define.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.dashboard import dashboard_problems, exposed_metrics, promql_metrics, template_metrics
from deploy.kube import check_gateway_pod, check_service_monitor
from policies.cascade import CascadeParams
from policies.speculative import SpeculativeParams
from policies.tiers import TierLadder, with_tiers
from server.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIGS = [
    "config/gpu.yaml",
    "config/cpu-compose.yaml",
    "deploy/k8s/base/config.yaml",
    "deploy/k8s/overlays/cpu/config.yaml",
]


@pytest.mark.parametrize("path", SHIPPED_CONFIGS)
def test_shipped_configs_load_and_listen_where_the_images_expect(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTC_SERVER__HOST", "0.0.0.0")  # what the image and manifests set
    settings = load_settings(ROOT / path)
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == 8000  # the port the healthcheck, Service and probes use
    tiers = set(settings.tiers)
    ladder = TierLadder.by_cost({n: t.cost_per_1k_tokens for n, t in settings.tiers.items()})
    speculative, _ = with_tiers(settings.policies.of(SpeculativeParams), ladder)
    cascade, _ = with_tiers(settings.policies.of(CascadeParams), ladder)
    assert {speculative.draft_tier, speculative.judge_tier} <= tiers
    assert {cascade.small_tier, cascade.large_tier} <= tiers
    # Workers run in their own containers: listed or discovered, never launched by the gateway.
    for tier in settings.tiers.values():
        assert tier.launch is None and (tier.endpoints or tier.discovery)
    assert settings.redis.url is not None  # every stack runs Redis for shared state


def test_dashboard_queries_only_metrics_the_gateway_exposes() -> None:
    assert dashboard_problems() == []


def test_promql_metrics_ignores_functions_labels_keywords_and_variables() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le, policy) (rate(a_bucket{policy=~"$policy", '
        'x="rate(b)"}[$__rate_interval] offset 1h))) / on (tier) group_left (c) b_total '
        "and bool d:recorded > 0"
    )
    assert promql_metrics(expr) == {"a_bucket", "b_total", "d:recorded"}
    assert promql_metrics("sum(rate(x_total[5m])) by (tier)") == {"x_total"}


def test_template_metrics_reads_label_values_queries() -> None:
    assert template_metrics('label_values(ttc_requests_total{tier="a"}, policy)') == {
        "ttc_requests_total"
    }
    assert template_metrics("label_values(policy)") == set()


def test_exposed_metrics_expand_histograms_and_keep_counter_names() -> None:
    text = (
        "# HELP r_total Requests.\n# TYPE r_total counter\nr_total 1.0\n"
        '# TYPE lat histogram\nlat_bucket{le="1"} 0\n# TYPE up gauge\n'
    )
    assert exposed_metrics(text) == {"r_total", "lat_bucket", "lat_sum", "lat_count", "up"}


def _service(name: str, labels: dict[str, str], port: str) -> dict[str, Any]:
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": "ttc", "labels": labels},
        "spec": {"ports": [{"name": port, "port": 8000}]},
    }


def test_service_monitor_must_select_a_service_with_its_port() -> None:
    monitor = {
        "metadata": {"name": "m"},
        "spec": {"selector": {"matchLabels": {"app": "gw"}}, "endpoints": [{"port": "http"}]},
    }
    assert check_service_monitor(monitor, [_service("gw", {"app": "gw"}, "http")]) == []
    assert check_service_monitor(monitor, [_service("gw", {"app": "gw"}, "web")]) == [
        "ServiceMonitor m: Service gw has no port http"
    ]
    assert "no Service has labels" in check_service_monitor(monitor, [])[0]


def _gateway(readiness: str, sleep_s: int, grace_s: int) -> list[dict[str, Any]]:
    container = {
        "name": "gateway",
        "livenessProbe": {"httpGet": {"path": "/health"}},
        "readinessProbe": {"httpGet": {"path": readiness}},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(sleep_s)]}}},
    }
    pod = {"terminationGracePeriodSeconds": grace_s, "containers": [container]}
    return [
        {
            "kind": "Deployment",
            "metadata": {"name": "ttc-gateway"},
            "spec": {"template": {"spec": pod}},
        }
    ]


def test_gateway_pod_must_probe_ready_and_leave_time_to_drain() -> None:
    assert check_gateway_pod(_gateway("/ready", 10, 60)) == []
    assert check_gateway_pod(_gateway("/health", 10, 60)) == [
        "gateway readinessProbe is '/health', not /ready"
    ]
    (problem,) = check_gateway_pod(_gateway("/ready", 10, 40))  # 10 s sleep + 30 s drain
    assert "terminationGracePeriodSeconds" in problem
