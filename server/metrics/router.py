"""``ttc_router_*`` metrics read from the router's plain counters at scrape time.

Decisions by band, tier and policy and the difficulty histogram are recorded per request in
``server.metrics.Metrics.record``; what the router keeps itself (controller offset, probes,
shadow comparisons, load shedding, dropped trace records) is collected here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from router.router import Router


class RouterCollector(Collector):
    """Reads whichever router is current: a config reload swaps it."""

    def __init__(self, current: Callable[[], Router]) -> None:
        self._current = current

    @property
    def _router(self) -> Router:
        return self._current()

    def collect(self) -> Iterator[Metric]:
        c = self._router.counters
        offset = GaugeMetricFamily(
            "ttc_router_controller_offset",
            "Budget controller's shift of the band thresholds (positive: cheaper bands).",
        )
        offset.add_metric([], self._router.controller.offset)
        probe_tokens = CounterMetricFamily(
            "ttc_router_probe_tokens", "Tokens spent on difficulty probes.", labels=["direction"]
        )
        probe_tokens.add_metric(["prompt"], c.probe_prompt_tokens)
        probe_tokens.add_metric(["completion"], c.probe_completion_tokens)
        probes = CounterMetricFamily(
            "ttc_router_probes", "Difficulty probes, by outcome.", labels=["outcome"]
        )
        for outcome, count in sorted(c.probes.items()):
            probes.add_metric([outcome], count)
        yield from (offset, probe_tokens, probes, *self._shadow(), *self._load())

    def _shadow(self) -> Iterator[Metric]:
        c = self._router.counters
        agreement = CounterMetricFamily(
            "ttc_router_shadow_agreement",
            "Shadow decisions compared with the live one, by outcome "
            "(agree, disagree, same_decision, dropped, failed).",
            labels=["outcome"],
        )
        for outcome, count in sorted(c.shadow.items()):
            agreement.add_metric([outcome], count)
        tokens = CounterMetricFamily(
            "ttc_router_shadow_tokens",
            "Completion tokens of shadowed requests, by arm (primary, shadow).",
            labels=["arm"],
        )
        for arm, count in sorted(c.shadow_tokens.items()):
            tokens.add_metric([arm], count)
        yield from (agreement, tokens)

    def _load(self) -> Iterator[Metric]:
        shed = CounterMetricFamily(
            "ttc_router_load_shed", "Decisions whose budget was cut because a tier was saturated."
        )
        shed.add_metric([], self._router.counters.load_shed)
        dropped = CounterMetricFamily(
            "ttc_router_traces_dropped", "Trace records dropped because the writer fell behind."
        )
        sink = self._router.recorder.sink
        dropped.add_metric([], sink.dropped if sink is not None else 0)
        yield from (shed, dropped)
