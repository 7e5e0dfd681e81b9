"""The merge behind ``/metrics`` under ``server.processes``: what one process would show."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.samples import Sample

from server.metrics.merge import merged_registry


def _process(requests: int, seconds: float, trace: str | None, in_flight: int) -> str:
    r = CollectorRegistry()
    c = Counter("ttc_requests", "Requests.", ["tier"], registry=r)
    h = Histogram("ttc_request_seconds", "Latency.", buckets=(0.1, 1.0), registry=r)
    Gauge("ttc_requests_in_flight", "In flight.", registry=r).set(in_flight)
    Gauge("ttc_worker_healthy", "Healthy.", ["tier"], registry=r).labels("small").set(1)
    c.labels("small").inc(requests)
    h.observe(seconds, exemplar={"trace_id": trace} if trace else None)
    return str(generate_latest(r).decode())  # type: ignore[no-untyped-call]


def _merged(*texts: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], Sample]:
    registry = merged_registry(texts)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s
        for family in registry.collect()
        for s in family.samples
    }


def test_counters_and_histograms_are_summed_and_exemplars_kept() -> None:
    merged = _merged(_process(3, 0.05, None, 1), _process(4, 0.5, "abc", 2))
    total = merged[("ttc_requests_total", (("tier", "small"),))]
    assert total.value == 7
    low = merged[("ttc_request_seconds_bucket", (("le", "0.1"),))]
    high = merged[("ttc_request_seconds_bucket", (("le", "1.0"),))]
    assert (low.value, high.value) == (1, 2)
    assert merged[("ttc_request_seconds_count", ())].value == 2
    assert merged[("ttc_request_seconds_sum", ())].value == 0.55
    exemplar = high.exemplar
    assert exemplar is not None and exemplar.labels == {"trace_id": "abc"}


def test_own_work_gauges_sum_and_shared_views_do_not() -> None:
    merged = _merged(_process(1, 0.05, None, 1), _process(1, 0.05, None, 2))
    assert merged[("ttc_requests_in_flight", ())].value == 3
    healthy = merged[("ttc_worker_healthy", (("tier", "small"),))]
    assert healthy.value == 1


def test_the_merged_registry_renders_in_both_formats() -> None:
    from prometheus_client import generate_latest as text_format

    registry = merged_registry([_process(2, 0.5, "t1", 0), _process(5, 0.5, None, 0)])
    plain = text_format(registry).decode()
    assert 'ttc_requests_total{tier="small"} 7.0' in plain
    open_metrics = generate_latest(registry).decode()  # type: ignore[no-untyped-call]
    assert '# {trace_id="t1"}' in open_metrics
