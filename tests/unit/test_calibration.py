"""Prompts counted, not guessed: after a tier has answered, a prompt is counted as that tier
reports prompts (``core.calibration``), in contracts and in the bill of a call cut before it
reported; before, the conservative estimate stands."""

from __future__ import annotations

from core.calibration import PromptCalibration
from core.contract import ComputeContract, ContractMeter, prompt_estimate


def chat(text: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": text}]}


def test_before_any_answer_the_estimate_stands_and_after_one_the_count_follows_it() -> None:
    calibration = PromptCalibration()
    hi = chat("hi")
    assert calibration.count("small", hi) == prompt_estimate(hi)
    calibration.observe("small", hi, 30)  # SmolLM2's template: ~30 tokens for "hi"
    assert calibration.count("small", hi) == 30
    assert calibration.count("large", hi) == prompt_estimate(hi)  # per tier


def test_a_line_through_several_answers_counts_new_prompts_within_ten_percent() -> None:
    calibration = PromptCalibration()
    # What a template of 30 tokens plus ~4.2 characters a token reports.
    for text in ("hi", "What is the capital of Japan?", "word " * 200, "x y z " * 40):
        calibration.observe("small", chat(text), 30 + round(len(text) / 4.2))
    new = "Name a famous painter. Answer briefly."
    truth = 30 + round(len(new) / 4.2)
    assert abs(calibration.count("small", chat(new)) - truth) <= 0.1 * truth
    assert prompt_estimate(chat(new)) > 1.5 * truth  # what was billed before


def test_token_id_prompts_are_counted_exactly() -> None:
    calibration = PromptCalibration()
    calibration.observe("small", chat("hi"), 10)
    assert calibration.count("small", {"prompt": [[1, 2, 3]]}) == 3


def test_a_contract_that_one_sample_fits_is_held_once_the_tier_has_answered() -> None:
    calibration = PromptCalibration()
    body = {**chat("Name a famous painter. Answer briefly."), "max_tokens": 24}
    calibration.observe("small", body, 38)  # the worker's own count of this prompt
    meter = ContractMeter(ComputeContract(max_total_tokens=80), counter=calibration)
    _, clamped = meter.open("small", dict(body), reserve=True)
    assert clamped["max_tokens"] == 24
