"""Routing cost is bounded whatever the prompt's size, and unchanged for normal prompts.

Feature extraction and the learned predictor read a bounded prefix and suffix of the prompt and
a bounded number of messages (``router.features``); a request within the bounds gets exactly
the features and score it got before. The router skips prediction when no difficulty could
change the decision.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.request import GenRequest
from policies.config import PoliciesConfig
from router import features
from router import router as router_module
from router.config import ProbeConfig, RouterConfig, TracesConfig
from router.features import ENDS, PROMPT_CHARS, Features, bounded, extract, prompt_text
from router.learned import LearnedPredictor, hashed_ngrams
from router.predictor import LearnedConfig
from router.router import Router

DATA = Path(__file__).parents[2] / "bench" / "data"
FILLER = "A tank holds 200 litres; it leaks 15 litres an hour. "


def user(content: Any) -> GenRequest:
    return GenRequest(messages=({"role": "user", "content": content},))


def test_a_1_mib_prompt_has_the_features_of_its_bounded_ends() -> None:
    middle = "def f(x): return x ** 2  # 123 + 456 = ? " * 30_000  # code, numbers, maths
    text = "Tell me a story" + " about gardens" * 300 + middle + "and end it kindly" * 300
    assert len(text) > 2**20
    clipped = bounded(text)
    assert len(clipped) <= PROMPT_CHARS + 1 and bounded(clipped) == clipped
    assert prompt_text(user(text)) == clipped
    assert extract(user(text)) == extract(user(clipped))
    assert extract(user(text)).code == 0.0 and extract(user(text)).numbers == 0.0  # unread


def test_many_parts_and_many_messages_are_read_from_their_ends() -> None:
    parts = [{"type": "text", "text": f"part {i}"} for i in range(31_768)]
    assert prompt_text(user(parts)) == prompt_text(user(parts[:ENDS] + parts[-ENDS:]))
    tiny = tuple({"role": r, "content": "ok"} for r in ["user", "assistant"] * 15_884)
    at_ends = (*tiny[:ENDS], *tiny[-ENDS:])
    assert extract(GenRequest(messages=tiny)) == extract(GenRequest(messages=at_ends))


def _prompts() -> list[str]:
    texts = []
    for path in sorted(DATA.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            texts += [v for v in json.loads(line).values() if isinstance(v, str)]
    return texts


def _requests(text: str) -> list[GenRequest]:
    parts = [{"type": "text", "text": text}, {"type": "text", "text": "Answer briefly."}]
    chat = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": parts})
    history = tuple({"role": "user" if i % 2 else "assistant", "content": text} for i in range(9))
    return [
        user(text),
        GenRequest(messages=chat, sampling={"max_tokens": 64}),
        GenRequest(messages=history),
    ]


def test_normal_prompts_score_as_they_did_without_the_bounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    predictor = LearnedPredictor(LearnedConfig())  # the bundled model in router/data
    requests = [r for text in _prompts() for r in _requests(text)]
    assert len(requests) > 1000

    def scores() -> list[tuple[Features, float]]:
        return [(f, predictor.score(r, f)) for r in requests for f in [extract(r)]]

    bounded_scores = scores()
    monkeypatch.setattr(features, "PROMPT_CHARS", 10**9)
    monkeypatch.setattr(features, "ENDS", 10**9)
    assert bounded_scores == scores()


def test_ngram_hashing_survives_a_lone_surrogate() -> None:
    assert hashed_ngrams("a b", 4096) == hashed_ngrams("a b", 4096)
    assert len(hashed_ngrams("a \ud800 b", 4096)) == 5  # 3 unigrams, 2 bigrams


def counting_extract(monkeypatch: pytest.MonkeyPatch) -> list[GenRequest]:
    seen: list[GenRequest] = []
    real: Callable[[GenRequest], Features] = features.extract

    def spy(req: GenRequest) -> Features:
        seen.append(req)
        return real(req)

    monkeypatch.setattr(router_module, "extract", spy)
    return seen


def pinned(model: str = "small", policy: str = "single") -> GenRequest:
    return GenRequest(
        messages=({"role": "user", "content": "hi"},), model=model, ttc={"policy": policy}
    )


def test_prediction_is_skipped_when_tier_and_policy_are_pinned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = counting_extract(monkeypatch)
    router = Router(RouterConfig(), PoliciesConfig(), ("small", "large"))  # bands: adaptive_bon
    decision = router.decide(pinned())
    assert (decision.tier, decision.params.name, seen) == ("small", "single", [])
    assert any("predictor skipped" in reason for reason in decision.reasons)
    for req in (pinned(model="auto"), pinned(policy="adaptive_bon")):  # the band decides
        router.decide(req)
    assert len(seen) == 2


@pytest.mark.parametrize("case", ["probe always", "probe from 0", "traces"])
async def test_prediction_runs_when_a_probe_or_a_trace_needs_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, case: str
) -> None:
    seen = counting_extract(monkeypatch)
    config = {
        "probe always": RouterConfig(probe=ProbeConfig(mode="always")),
        "probe from 0": RouterConfig(probe=ProbeConfig(mode="unsure", unsure_low=0.0)),
        "traces": RouterConfig(traces=TracesConfig(path=str(tmp_path / "traces.jsonl"))),
    }[case]
    router = Router(config, PoliciesConfig(), ("small", "large"))
    router.decide(pinned())
    await router.aclose()
    assert len(seen) == 1
