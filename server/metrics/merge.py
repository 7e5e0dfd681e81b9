"""Merge the metrics of several gateway processes into what one process would show.

Prometheus' multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) keeps only the standard metric
types in mmap files: it drops custom collectors (the pool's and the router's, read at scrape
time) and exemplars (the trace ids). So each process keeps its own ordinary registry, and the
process that answers ``/metrics`` parses every process's OpenMetrics text (exemplars included)
and merges it here, sample by sample (same name, same labels):

- counters, histogram buckets, ``_count`` and ``_sum``: summed, as one process counting all the
  requests would have counted them;
- ``_created`` timestamps: the earliest;
- gauges in ``SUMMED_GAUGES`` count each process's own work (requests in flight): summed;
  every other gauge is one process's view of something they share (a worker's health, a
  breaker, a queue scraped from vLLM): the largest view, not N times it;
- exemplars: the first process's that has one for the sample (any trace id is a true example).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

# Gauges of a process's own work in progress; the sum is the gateway's.
SUMMED_GAUGES = frozenset(
    {"ttc_requests_in_flight", "ttc_budget_reserved_in_flight_tokens", "ttc_worker_in_flight"}
)
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def _combine(kind: str, family: str, prior: Sample, new: Sample) -> Sample:
    if new.name.endswith("_created"):
        value = min(prior.value, new.value)
    elif kind in ("counter", "histogram", "summary", "gaugehistogram") or family in SUMMED_GAUGES:
        value = prior.value + new.value
    else:  # a shared view (gauge), an info or a state set
        value = max(prior.value, new.value)
    return prior._replace(value=value, exemplar=prior.exemplar or new.exemplar, timestamp=None)


def merge(expositions: Iterable[str]) -> list[Metric]:
    """The families of every OpenMetrics text, merged; order of first appearance is kept."""
    families: dict[str, Metric] = {}
    samples: dict[str, dict[SampleKey, Sample]] = {}
    for text in expositions:
        for family in text_string_to_metric_families(text):  # type: ignore[no-untyped-call]
            if family.name not in families:
                families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            merged = samples.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                prior = merged.get(key)
                merged[key] = (
                    sample if prior is None else _combine(family.type, family.name, prior, sample)
                )
    for name, family in families.items():
        family.samples = list(samples[name].values())
    return list(families.values())


class _Fixed:
    """A collector that yields families already gathered."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def merged_registry(expositions: Iterable[str]) -> CollectorRegistry:
    """A registry for the usual encoders (text or OpenMetrics) holding the merged families."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(merge(expositions)))
    return registry
