"""Unit tests for a mixed-set eval end to end, with a stand-in for the gateway: repeated runs,
resuming an interrupted one, the files written, and the options ``ttc eval`` refuses.

The stand-in answers from the prompt's id: what is tested is the eval's bookkeeping, which
a real gateway's answers would only make slower and nondeterministic.
"""

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from bench.eval import Outcome, PartialStore, Setting, parse_setting
from bench.mixed import Prompt, load_mixed
from bench.mixed_run import Options, ask_runs, partial_path, prompts_digest, run
from bench.scoring import Question
from ttc.cli import app

LINES: list[dict[str, Any]] = [
    {
        "id": "poem",
        "endpoint": "chat",
        "shape": "open",
        "kind": "poem",
        "messages": [{"role": "user", "content": "Write a haiku."}],
        "max_tokens": 48,
        "split": "heldout",
    },
    {
        "id": "color",
        "endpoint": "chat",
        "shape": "many_valid",
        "kind": "name_one",
        "messages": [{"role": "user", "content": "Name a color."}],
        "max_tokens": 16,
        "split": "heldout",
    },
    {
        "id": "capital",
        "endpoint": "completions",
        "shape": "closed",
        "kind": "qa",
        "prompt": "Q: Capital of France?\nA:",
        "max_tokens": 8,
        "answer": "Paris",
        "split": "heldout",
    },
    {
        "id": "tuning-only",
        "endpoint": "chat",
        "shape": "open",
        "kind": "poem",
        "messages": [{"role": "user", "content": "Write a limerick."}],
        "max_tokens": 48,
        "split": "tune",
    },
]


class StandIn:
    """Answers every prompt (Paris for the closed one); raises for ids in ``fail``."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.fail = fail or set()
        self.asked: list[tuple[str, str]] = []

    async def __call__(self, setting: Setting, question: Question) -> Outcome:
        self.asked.append((setting.name, question.id))
        if question.id in self.fail:
            raise ConnectionError("gateway went away")
        samples = 8 if setting.name == "bon8" else 1
        reply = "Paris" if question.id == "capital" else "Blue skies."
        return Outcome(reply, completion_tokens=10 * samples, prompt_tokens=5, samples=samples)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(line) + "\n" for line in LINES))
    path = tmp_path / "set.json"
    path.write_text(json.dumps({"prompts": ["prompts.jsonl"]}))
    return path


def options(manifest: Path, out: Path, **changes: Any) -> Options:
    base: dict[str, Any] = {
        "data": manifest,
        "gateway": "http://127.0.0.1:1",
        "api_key": "unused",
        "timeout": 5.0,
        "settings": tuple(parse_setting(n, tier="small") for n in ("greedy", "bon8")),
        "split": "heldout",
        "shapes": ("closed", "open", "many_valid"),
        "limit": None,
        "runs": 2,
        "concurrency": 2,
        "temperature": None,
        "tier": "small",
        "model": "auto",
        "out": out,
    }
    return Options(**{**base, **changes})


def quiet() -> Console:
    return Console(quiet=True)


def test_runs_write_results_plot_and_one_record_file_per_run(
    manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results" / "eval.json"
    stand_in = StandIn()
    results = run(options(manifest, out), quiet(), ask=stand_in)
    assert len(stand_in.asked) == 2 * 2 * 3  # runs x settings x held-out prompts
    assert "tuning-only" not in {item for _, item in stand_in.asked}
    written = json.loads(out.read_text())
    assert written == results
    assert out.with_suffix(".png").exists()
    assert [partial_path(out, n).exists() for n in (1, 2, 3)] == [True, True, False]
    greedy = written["settings"][0]
    assert greedy["shapes"]["closed"]["accuracy"]["mean"] == 1.0
    assert greedy["shapes"]["open"]["accuracy"] is None
    bon8 = written["settings"][1]["shapes"]["many_valid"]
    assert (bon8["samples_per_request"]["mean"], bon8["tokens_vs_greedy"]) == (8.0, 8.0)
    assert written["meta"]["runs"] == 2 and written["meta"]["split"] == "heldout"


def test_an_interrupted_eval_resumes_and_more_runs_ask_only_the_new_ones(
    manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval.json"
    run(options(manifest, out, runs=1), quiet(), ask=StandIn(fail={"poem"}))
    retry = StandIn()
    run(options(manifest, out, runs=1), quiet(), ask=retry)
    assert sorted(retry.asked) == [("bon8", "poem"), ("greedy", "poem")]
    more = StandIn()
    results = run(options(manifest, out, runs=3), quiet(), ask=more)
    assert len(more.asked) == 2 * 2 * 3  # runs 2 and 3 only
    runs = results["settings"][0]["shapes"]["open"]["runs"]
    assert [r["errors"] for r in runs] == [0, 0, 0]


def test_records_of_other_prompts_are_refused(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    run(options(manifest, out, runs=1), quiet(), ask=StandIn())
    with pytest.raises(ValueError, match="prompts"):
        run(options(manifest, out, runs=1, split="all"), quiet(), ask=StandIn())
    assert run(options(manifest, out, runs=1, split="all", fresh=True), quiet(), ask=StandIn())


async def test_ask_runs_tells_each_record_its_run(manifest: Path, tmp_path: Path) -> None:
    prompts = load_mixed(manifest)[:2]
    stores = [PartialStore(tmp_path / f"r{n}.jsonl", {"n": n}) for n in (1, 2)]
    seen: list[tuple[int, str]] = []
    runs = await ask_runs(
        StandIn(),
        [parse_setting("greedy", tier="small")],
        [p.question() for p in prompts],
        stores,
        concurrency=1,
        on_record=lambda number, record: seen.append((number, record.id)),
    )
    assert sorted(seen) == [(1, "color"), (1, "poem"), (2, "color"), (2, "poem")]
    assert [len(records) for records in runs] == [2, 2]


def test_digest_follows_what_is_sent_not_the_answers() -> None:
    prompt = Prompt("q", "closed", "qa", "tune", 8, endpoint="completions", text="Q?", answer="a")
    same = Prompt("q", "closed", "qa", "tune", 8, endpoint="completions", text="Q?", answer="b")
    longer = Prompt("q", "closed", "qa", "tune", 16, endpoint="completions", text="Q?")
    assert prompts_digest([prompt]) == prompts_digest([same]) != prompts_digest([longer])


@pytest.mark.parametrize(
    "arguments",
    [
        ["--data", "bench/data/facts-dev.jsonl", "--runs", "3"],
        ["--data", "bench/data/facts-dev.jsonl", "--split", "heldout"],
        ["--data", "bench/data/mixed.json", "--max-tokens", "64"],
        ["--data", "bench/data/mixed.json", "--split", "test"],
        ["--data", "bench/data/mixed.json", "--shapes", "closed,wide"],
        ["--data", "bench/data/mixed.json", "--settings", "best8"],
    ],
)
def test_eval_refuses_options_that_do_not_apply(arguments: list[str], tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    arguments = [str(root / a) if a.startswith("bench/") else a for a in arguments]
    result = CliRunner().invoke(app, ["eval", *arguments, "--out", str(tmp_path / "e.json")])
    assert result.exit_code == 2, result.output
    assert not list(tmp_path.iterdir())  # refused before anything was asked or written
