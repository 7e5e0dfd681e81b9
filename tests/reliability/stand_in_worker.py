"""A stand-in for a launched vLLM worker: vLLM's start-up lines, then a fake worker, or a crash.

    python -m tests.reliability.stand_in_worker --port 8601 [--fail] [--quiet]

A real vLLM worker takes minutes to start on two cores, cannot fail on demand, and a second
one cannot run beside the shared worker; this process writes the lines of a real vLLM 0.32
start (copied from one, the stages ``workers.startup`` reads among them), then serves as
``tests.reliability.fake_worker``. With ``--fail`` it ends as a failed vLLM start does: the
engine's traceback, then the API server's generic error, exit code 1. With ``--quiet`` it
writes nothing and only serves (a long-lived child for the process-death tests).
"""

from __future__ import annotations

import argparse
import sys

from tests.reliability import fake_worker

START = (
    "(APIServer pid=1) INFO 12-07 17:54:07 [api_utils.py:347] version 0.32.0",
    "(APIServer pid=1) WARNING 12-07 17:54:24 [cpu.py:224] Triton is not installed.",
    "(Worker pid=3) INFO 12-07 17:54:52 [cpu_model_runner.py:68] Starting to load model /m...",
    "Loading safetensors checkpoint shards: 100% Completed | 1/1 [00:00<00:00,  3.01it/s]\r",
    "(Worker pid=3) INFO 12-07 17:54:54 [cpu_model_runner.py:87] Warming up model for the"
    " compilation...",
    "(EngineCore pid=2) INFO 12-07 18:00:09 [kv_cache_utils.py:2327] CPU KV cache size: 93,184"
    " tokens, Maximum concurrency for 2,048 tokens per request: 45.50x",
    "(APIServer pid=1) INFO 12-07 18:00:17 [entry.py:140] Starting vLLM server on"
    " http://127.0.0.1:8201",
)
FAILURE = (
    "(EngineCore pid=2) ERROR 12-07 17:55:01 [core.py:1100] EngineCore failed to start.",
    "(EngineCore pid=2) ERROR 12-07 17:55:01 [core.py:1100] Traceback (most recent call last):",
    '(EngineCore pid=2) ERROR 12-07 17:55:01 [core.py:1100]   File "core.py", line 1, in run',
    "(EngineCore pid=2) ERROR 12-07 17:55:01 [core.py:1100] ValueError: 2 GiB of KV cache do"
    " not fit in the memory left",
    "RuntimeError: Engine core initialization failed. See root cause above.",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a stand-in for a starting vLLM worker")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fail", action="store_true", help="fail as a vLLM start does")
    parser.add_argument("--quiet", action="store_true", help="write nothing, only serve")
    args = parser.parse_args(argv)
    if not args.quiet:
        for line in START[:-1] if args.fail else START:
            sys.stdout.write(line + ("" if line.endswith("\r") else "\n"))
        sys.stdout.flush()
    if args.fail:
        sys.stdout.write("\n".join(FAILURE) + "\n")
        sys.exit(1)
    fake_worker.main(["--port", str(args.port)])


if __name__ == "__main__":
    main()
