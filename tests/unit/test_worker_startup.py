"""Reading a starting vLLM worker's output: its stage, and why it failed, in one line each."""

from __future__ import annotations

from workers.startup import LAUNCHING, Progress, stage_of, why_it_failed

# Lines of a real vLLM 0.32 CPU start (``ttc serve``'s worker log), in order, shortened.
START = [
    "(APIServer pid=15293) INFO 12-07 17:54:24 [model.py:733] Resolved architecture: Llama",
    "(APIServer pid=15293) WARNING 12-07 17:54:24 [cpu.py:224] Triton is not installed.",
    "(Worker pid=15998) INFO 12-07 17:54:52 [cpu_model_runner.py:68] Starting to load model /m",
    "Loading safetensors checkpoint shards: 100% Completed | 1/1 [00:00<00:00,  3.00it/s]",
    "(EngineCore pid=15866) INFO 12-07 17:54:54 [utils.py:347] Using LBHNC KV cache layout.",
    "(Worker pid=15998) INFO 12-07 17:54:54 [cpu_model_runner.py:87] Warming up model for the"
    " compilation...",
    "(EngineCore pid=15866) INFO 12-07 17:55:56 [shm_broadcast.py:871] No available shared"
    " memory broadcast block found in 60 seconds.",
    "(Worker pid=15998) INFO 12-07 18:00:09 [cpu_model_runner.py:91] Warming up done.",
    "(Worker pid=15998) INFO 12-07 18:00:09 [cpu_worker.py:260] Explicitly set (2.0/23.59) GiB"
    " for KV cache on node 0.",
    "(EngineCore pid=15866) INFO 12-07 18:00:09 [kv_cache_utils.py:2327] CPU KV cache size:"
    " 93,184 tokens",
    "(APIServer pid=15293) INFO 12-07 18:00:17 [entry.py:140] Starting vLLM server on"
    " http://127.0.0.1:8201",
    "(APIServer pid=15293) INFO 12-07 18:00:17 [launcher.py:186] Available routes are:",
]


def stages(lines: list[str]) -> list[str]:
    seen, stage = [LAUNCHING], LAUNCHING
    for line in lines:
        stage = stage_of(line, stage)
        if stage != seen[-1]:
            seen.append(stage)
    return seen


def test_a_real_start_goes_through_each_stage_once_in_order() -> None:
    assert stages(START) == [
        LAUNCHING,
        "loading the model",
        "warming up the model",  # not the KV cache stage: the layout line comes first
        "allocating the KV cache",
        "starting the API server",
    ]


def test_a_stage_never_goes_back() -> None:
    assert stage_of(START[2], "allocating the KV cache") == "allocating the KV cache"


def test_the_root_cause_wins_over_the_generic_error_after_it() -> None:
    lines = [
        "(APIServer pid=1) WARNING 12-07 17:54:08 [system_utils.py:255] Found ulimit of 20000."
        " This can cause fd limit errors like `OSError: [Errno 24] Too many open files`.",
        "(EngineCore pid=2) ERROR 12-07 17:55:01 [core.py:1100] EngineCore failed to start.",
        "(EngineCore pid=2) ERROR 12-07 17:55:01 [core.py:1100] Traceback (most recent call last):",
        "(EngineCore pid=2) ERROR 12-07 17:55:01 [core.py:1100] ValueError: No available memory"
        " for the cache blocks.",
        "RuntimeError: Engine core initialization failed. See root cause above.",
    ]
    assert why_it_failed(lines) == "ValueError: No available memory for the cache blocks."


def test_without_an_exception_the_last_error_line_then_the_last_line() -> None:
    error = "(APIServer pid=1) ERROR 12-07 17:55:01 [entry.py:9] port 8100 is already in use"
    assert why_it_failed(["starting", error, "bye"]) == "port 8100 is already in use"
    assert why_it_failed(["starting", "Killed"]) == "Killed"
    assert why_it_failed([]) == "it wrote nothing"


def test_the_progress_line_says_stage_elapsed_time_and_what_to_expect() -> None:
    progress = Progress("smollm2-135m", "loading the model", 100.0, "about 2 minutes")
    assert progress.line(now=142.4) == (
        "starting worker smollm2-135m: loading the model · 42 s (about 2 minutes)"
    )
    done = Progress("smollm2-135m", "ready", 100.0, "about 2 minutes", done=True)
    assert done.line(now=190.0) == "starting worker smollm2-135m: ready · 90 s"
