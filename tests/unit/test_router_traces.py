"""Learning from traffic: trace records and their sink, shared statistics, shadow evaluation."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.backend import Completion
from core.request import GenRequest
from core.result import PolicyResult
from policies import registry
from policies.adaptive_bon import AdaptiveBonParams
from policies.config import PoliciesConfig
from router.config import BandConfig, BudgetConfig, RouterConfig, ShadowConfig, TracesConfig
from router.router import Router
from router.stats import LocalStats
from router.traces import TraceSink, agreement
from tests.fakes import ScriptedBackend
from tests.unit.test_router import constant

PROMPT = "Tom has 3 boxes of 12 apples and gives away 10. How many are left?"

# Gate off: these tests need several samples to vote, whatever the fake's token confidence.
VOTING = PoliciesConfig(adaptive_bon=AdaptiveBonParams(single_sample_confidence=None))


def request() -> GenRequest:
    return GenRequest(messages=({"role": "user", "content": PROMPT},), request_id="req-1")


def backend(*answers: str) -> ScriptedBackend:
    cycle = iter(answers * 20)
    return ScriptedBackend(lambda tier, body: [next(cycle) for _ in range(body.get("n", 1))])


async def serve(router: Router, fake: ScriptedBackend) -> PolicyResult:
    """What the server's settlement does: route, run the policy, bill the probe, record."""
    req = request()
    routing = await router.route(req, fake)
    result = await registry.build(routing.decision.params).run(req, routing.decision, fake)
    routing.bill_probe(result)
    router.record(routing, req, result, latency_s=0.01)
    return result


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_agreement_is_the_leaders_share_of_at_least_two_samples() -> None:
    assert agreement({"votes": {"26": 3, "30": 1}, "samples": 4}) == 0.75
    assert agreement({"votes": {"26": 1}, "samples": 1}) is None
    assert agreement({"samples": 1, "early_stopped": False}) is None


async def test_each_request_leaves_a_trace_without_its_prompt(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    config = RouterConfig(predictor=constant(0.9), traces=TracesConfig(path=str(path)))
    router = Router(config, VOTING, ("small",))
    await serve(router, backend("The answer is 26.", "The answer is 26.", "The answer is 30."))
    await router.aclose()
    (record,) = lines(path)
    assert PROMPT not in path.read_text() and "prompt" not in record
    assert (record["kind"], record["band"], record["policy"]) == ("request", "hard", "adaptive_bon")
    assert record["samples"] >= 2 and 0 < record["agreement"] <= 1
    assert record["features"]["numbers"] > 0 and record["difficulty"] == 0.9
    assert record["completion_tokens"] > 0 and record["latency_s"] >= 0
    assert record["ngram_buckets"] == 4096 and record["ngrams"]


async def test_the_prompt_is_kept_only_when_config_allows(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    traces = TracesConfig(path=str(path), include_prompt=True, include_ngrams=False)
    router = Router(RouterConfig(predictor=constant(0.1), traces=traces), VOTING, ("s",))
    await serve(router, backend("26"))
    await router.aclose()
    (record,) = lines(path)
    assert record["prompt"] == PROMPT and "ngrams" not in record


def test_a_full_buffer_drops_records_instead_of_blocking(tmp_path: Path) -> None:
    sink = TraceSink(tmp_path / "t.jsonl", buffer=3)
    sink._start = lambda: None  # type: ignore[method-assign]  # a writer that never catches up
    for i in range(5):
        sink.emit({"i": i})
    assert sink.dropped == 2


async def test_finished_requests_feed_the_shared_statistics() -> None:
    stats = LocalStats()
    budget = BudgetConfig(target=1.0, min_requests=1, update_interval_s=0.01)
    config = RouterConfig(predictor=constant(0.9), budget=budget)
    router = Router(config, VOTING, ("small",), stats=stats)
    await serve(router, backend("26", "27"))
    totals = await stats.totals(60)
    assert totals.requests == 1 and totals.samples >= 2
    await asyncio.sleep(0.02)
    await serve(router, backend("26"))  # its route() starts the controller's update
    await asyncio.sleep(0)
    assert router.controller.offset > 0  # spent more than one sample per request
    await router.aclose()


def shadowed(
    tmp_path: Path, bands: tuple[BandConfig, ...] | None, fake: ScriptedBackend, **shadow: Any
) -> Router:
    config = RouterConfig(
        predictor=constant(0.9),
        traces=TracesConfig(path=str(tmp_path / "t.jsonl")),
        shadow=ShadowConfig(fraction=1.0, bands=bands, **shadow),
    )
    return Router(config, VOTING, ("small",), rng=random.Random(0), shadow_backend=fake)


ALL_SINGLE = (BandConfig(name="all", policy="single"),)


async def test_shadow_runs_the_alternative_and_compares_answers(tmp_path: Path) -> None:
    fake = backend("The answer is 26.")
    router = shadowed(tmp_path, ALL_SINGLE, fake)
    await serve(router, fake)
    shadow = router.recorder.shadow
    assert shadow is not None
    while shadow.running:
        await asyncio.sleep(0.01)
    counters = router.counters
    assert counters.shadow["agree"] == 1
    assert counters.shadow_tokens["shadow"] < counters.shadow_tokens["primary"]
    await router.aclose()
    shadow_record = [r for r in lines(tmp_path / "t.jsonl") if r["kind"] == "shadow"]
    assert shadow_record[0]["shadow"]["policy"] == "single"
    assert shadow_record[0]["primary"]["policy"] == "adaptive_bon"
    assert shadow_record[0]["agree"] is True


async def test_shadow_skips_identical_decisions_and_respects_its_limit(tmp_path: Path) -> None:
    fake = backend("26")
    same = shadowed(tmp_path, None, fake)
    await serve(same, fake)
    assert same.counters.shadow["same_decision"] == 1
    await same.aclose()
    gate = GatedBackend(lambda tier, body: ["26"] * body.get("n", 1))
    busy = shadowed(tmp_path, ALL_SINGLE, gate, max_concurrent=1)
    await serve(busy, gate)
    await serve(busy, gate)  # the first shadow still waits on the gate
    assert (busy.counters.shadow["dropped"], busy.recorder.shadow.running) == (1, 1)  # type: ignore[union-attr]
    await busy.aclose()  # cancels the waiting shadow


@dataclass
class GatedBackend(ScriptedBackend):
    """Single-sample calls (the shadow's: no ``n``) wait until ``gate`` is set."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        if "n" not in body:
            await self.gate.wait()
        return await super().chat(tier, body, affinity=affinity)
