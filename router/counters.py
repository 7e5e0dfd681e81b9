"""Plain counters the router keeps; ``server.metrics`` reads them at scrape time.

The router never imports Prometheus: like the worker pool, it counts in plain integers and a
collector in ``server/metrics.py`` turns them into ``ttc_router_*`` metrics.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class RouterCounters:
    probe_prompt_tokens: int = 0
    probe_completion_tokens: int = 0
    # probe outcomes: ok, failed, skipped_rate, skipped_load
    probes: Counter[str] = field(default_factory=Counter)
    # shadow outcomes: agree, disagree, same_decision, dropped, failed
    shadow: Counter[str] = field(default_factory=Counter)
    # completion tokens of the requests shadowed, by arm: primary, shadow
    shadow_tokens: Counter[str] = field(default_factory=Counter)
    load_shed: int = 0
