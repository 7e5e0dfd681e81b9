"""Early stopping of long thinking traces: ``convergence`` against the full trace, same seeds.

    python -m bench.thinking_stop --gateway http://127.0.0.1:8300 --worker http://127.0.0.1:8101

Each seed asks the same step-by-step question twice through the gateway's reasoning tier: once
with ``single`` (the whole trace, up to the thinking budget) and once with ``convergence``
(probes inside the thinking; the trace is cancelled once two agree). ``min_tokens`` holds the
trace's end of text back, so every trace is long: the bundled 135M thinking variant would
otherwise stop thinking by itself within a few dozen tokens. Between requests the worker's own
``vllm:generation_tokens_total`` is read, so the table shows what the worker generated next to
what the gateway billed (run it alone on the worker: anything else it serves counts too).
Results: ``bench/results/reasoning/thinking-stop.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import openai

QUESTION = "What is 2 + 3? Think step by step."
OUT = Path("bench/results/reasoning/thinking-stop.json")


def generated(worker: str) -> float:
    text = httpx.get(worker + "/metrics", trust_env=False, timeout=10).text
    return sum(float(v) for v in re.findall(r"vllm:generation_tokens_total\{[^}]*\} (\S+)", text))


def idle(worker: str, timeout_s: float = 30.0) -> None:
    """Wait until the worker runs nothing (a cancelled trace has left it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = httpx.get(worker + "/metrics", trust_env=False, timeout=10).text
        found = re.findall(r"vllm:num_requests_(?:running|waiting)\{[^}]*\} (\S+)", text)
        if sum(float(v) for v in found) == 0:
            return
        time.sleep(0.25)


def ask(client: openai.OpenAI, worker: str, policy: str, seed: int, args: Any) -> dict[str, Any]:
    ttc: dict[str, Any] = {"policy": policy, "thinking_budget": args.budget}
    if policy == "convergence":
        ttc["probe_every"] = args.probe_every
    before = generated(worker)
    started = time.perf_counter()
    reply = client.chat.completions.create(
        model=args.tier,
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0.7,
        seed=seed,
        extra_body={"min_tokens": args.min_tokens, "ttc": ttc},
    )
    latency = time.perf_counter() - started
    idle(worker)
    report = (reply.model_extra or {}).get("ttc") or {}
    usage = reply.usage
    return {
        "policy": policy,
        "seed": seed,
        "answer": reply.choices[0].message.content,
        "thinking_tokens": report.get("thinking_tokens"),
        "early_stopped": report.get("early_stopped"),
        "reasoning_tokens_saved": report.get("reasoning_tokens_saved"),
        "billed_completion_tokens": usage.completion_tokens if usage else None,
        "worker_generated_tokens": generated(worker) - before,
        "latency_s": round(latency, 3),
    }


def mean(rows: list[dict[str, Any]], key: str) -> float:
    return round(statistics.fmean(float(r[key] or 0) for r in rows), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gateway", default="http://127.0.0.1:8300")
    parser.add_argument("--worker", default="http://127.0.0.1:8101")
    parser.add_argument("--tier", default="thinking")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--min-tokens", type=int, default=160)
    parser.add_argument("--probe-every", type=int, default=16)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.gateway + "/v1", api_key="unused", timeout=600)
    rows = [
        ask(client, args.worker, policy, seed, args)
        for seed in range(1, args.seeds + 1)
        for policy in ("single", "convergence")
    ]
    summary = {}
    for policy in ("single", "convergence"):
        mine = [r for r in rows if r["policy"] == policy]
        summary[policy] = {
            "thinking_tokens": mean(mine, "thinking_tokens"),
            "billed_completion_tokens": mean(mine, "billed_completion_tokens"),
            "worker_generated_tokens": mean(mine, "worker_generated_tokens"),
            "early_stop_rate": round(sum(bool(r["early_stopped"]) for r in mine) / len(mine), 3),
            "latency_s_p50": round(statistics.median(r["latency_s"] for r in mine), 3),
            "answers": sorted({str(r["answer"]) for r in mine}),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "summary": summary, "rows": rows},
            indent=2,
        )
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
