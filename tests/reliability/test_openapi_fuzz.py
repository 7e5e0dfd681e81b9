"""A schemathesis run over the gateway's published ``/openapi.json``, against ``ttc serve``.

Every operation the document declares gets generated requests, valid ones (positive: they fit
the declared request schema) and invalid ones (negative: they violate it), about
``form().fuzz_cases`` in all (~100 in CI, over 1,000 in the full form), split evenly. The upstream
is ``bench.fast_upstream``, so valid requests are served for real.

What must hold: no 5xx for any input, and every response with a documented status code
matches its declared schema (schemathesis' ``not_a_server_error`` and
``response_schema_conformance`` checks). Failures are collected, not raised at the first, so
one run lists them all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.reliability.harness import Gateway, Report, form, gateway_on_fast_upstream

CHECKS = [not_a_server_error, response_schema_conformance]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with gateway_on_fast_upstream(tmp_path_factory.mktemp("openapi-fuzz")) as running:
        yield running


@dataclass
class Findings:
    """What one operation's generated requests got: statuses by mode, check failures, and a
    few valid (positive) requests the gateway refused, which say where the document is wider
    than what the gateway accepts."""

    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    refused_valid: list[str] = field(default_factory=list)


def fuzz(operation: Any, mode: GenerationMode, examples: int, url: str, found: Findings) -> None:
    """Run up to ``examples`` generated requests of one operation in one mode."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call(base_url=url, timeout=30)
        found.statuses[f"{mode.value} {response.status_code}"] += 1
        if mode is GenerationMode.POSITIVE and 400 <= response.status_code < 500:
            found.refused_valid.append(f"{response.status_code} {response.text[:160]}")
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:  # schemathesis raises a group of check failures
            found.failures.append(
                f"{operation.label} [{mode.value}] {response.status_code}: "
                f"{str(exc).strip().splitlines()[0][:200]}"
            )

    try:
        run()
    except Unsatisfiable:  # no invalid request exists for an operation without inputs
        pass


def budget(operation: Any, total: int, with_inputs: int) -> int:
    """Requests per mode: an operation without inputs has one request to make; the rest of
    ``total`` is shared by the ``with_inputs`` operations that take a body or parameters."""
    if not has_inputs(operation):
        return 1
    return max(1, total // (with_inputs * len(MODES)))


def has_inputs(operation: Any) -> bool:
    return bool(operation.body) or any(True for _ in operation.iter_parameters())


def test_openapi_document_holds_for_generated_requests(gw: Gateway) -> None:
    schema = schemathesis.openapi.from_url(gw.url + "/openapi.json")
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "the document has operations schemathesis rejects"
    with_inputs = sum(has_inputs(op) for op in operations)
    findings: dict[str, Findings] = {}
    for operation in operations:
        found = findings[operation.label] = Findings()
        for mode in MODES:
            examples = budget(operation, form().fuzz_cases - len(operations), with_inputs)
            fuzz(operation, mode, examples, gw.url, found)
    failures = sorted({f for found in findings.values() for f in found.failures})
    Report(
        "openapi-fuzz",
        {
            "operations": len(operations),
            "cases": sum(sum(f.statuses.values()) for f in findings.values()),
            "failures": sum(len(f.failures) for f in findings.values()),
            "distinct_failures": failures[:30],
            "statuses": {label: dict(sorted(f.statuses.items())) for label, f in findings.items()},
            "valid_requests_refused": {
                label: f.refused_valid[:3] for label, f in findings.items() if f.refused_valid
            },
        },
    ).write()
    assert not failures, "\n".join(failures[:30])
