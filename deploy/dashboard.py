"""The Grafana dashboard against the gateway's real /metrics output.

``promql_metrics`` finds the metric names a PromQL expression selects; ``exposed_metrics`` lists
the sample names the gateway exposes, from an app built in-process (never started: no lifespan,
no worker). ``dashboard_problems`` ties them together for ``deploy/check.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources"

# Sample names each metric type exposes beside (or instead of) its family name.
_SUFFIXES = {
    "counter": ("",),  # prometheus_client's TYPE line already ends in _total
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "untyped": ("",),
}
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w$.:])([A-Za-z_:][\w:]*)(?![\w:]|\s*\()")
_LABEL_VALUES = re.compile(r"label_values\(\s*([^,()]+?)\s*,")


def promql_metrics(expr: str) -> set[str]:
    """Metric names an expression selects (not functions, labels, keywords or $variables)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries' steps
    text = _GROUPING.sub(" ", text)
    return {m for m in _IDENT.findall(text) if m.lower() not in _KEYWORDS}


def template_metrics(query: str) -> set[str]:
    """Metrics of a Grafana variable query: label_values(metric, label) or plain PromQL."""
    if "label_values(" in query:
        return {promql for m in _LABEL_VALUES.findall(query) for promql in promql_metrics(m)}
    return promql_metrics(query)


def exposed_metrics(exposition: str) -> set[str]:
    """Sample names from a text exposition's ``# TYPE name type`` lines."""
    names: set[str] = set()
    for line in exposition.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[:2] == ["#", "TYPE"]:
            names.update(parts[2] + suffix for suffix in _SUFFIXES.get(parts[3], ("",)))
    return names


def gateway_exposition() -> str:
    """/metrics of an app with one unreachable worker: every family, no traffic needed."""
    from prometheus_client import generate_latest

    from server.app import create_app
    from server.config import settings_from_dict

    config = {"tiers": {"small": {"model": "small", "endpoints": ["http://127.0.0.1:9"]}}}
    app = create_app(settings_from_dict(config))
    return generate_latest(app.state.ttc.metrics.registry).decode()


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from panels(item.get("panels", []))  # a collapsed row nests its panels


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, set[str]]]:
    """(where, metric names) for every panel target and every query variable."""
    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            yield f"panel {panel.get('title')!r}", promql_metrics(target.get("expr", ""))
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query", "")
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        yield f"variable {var.get('name')!r}", template_metrics(text)


def datasource_uids() -> set[str]:
    uids: set[str] = set()
    for path in DATASOURCES.glob("*.y*ml"):
        uids.update(d["uid"] for d in yaml.safe_load(path.read_text()).get("datasources", []))
    return uids


def datasource_problems(dashboard: dict[str, Any], uids: set[str]) -> list[str]:
    used = [
        (p.get("title"), (p.get("datasource") or {}).get("uid"))
        for p in panels(dashboard.get("panels", []))
        if p.get("type") != "row"
    ]
    return [
        f"panel {title!r}: datasource {uid!r} is not provisioned ({sorted(uids)})"
        for title, uid in used
        if uid not in uids
    ]


def dashboard_problems() -> list[str]:
    exposed = exposed_metrics(gateway_exposition())
    problems, files = [], sorted(DASHBOARDS.glob("*.json"))
    if not files:
        return [f"no dashboard in {DASHBOARDS}"]
    for path in files:
        dashboard = json.loads(path.read_text())
        problems += [f"{path.name}: {p}" for p in datasource_problems(dashboard, datasource_uids())]
        for where, names in queries(dashboard):
            problems += [
                f"{path.name}: {where} queries {name}, not in the gateway's /metrics"
                for name in sorted(names - exposed)
            ]
    return problems
