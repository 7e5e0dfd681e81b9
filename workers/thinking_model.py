"""The thinking variant of a bundled model: ``<think>``/``</think>`` in its vocabulary and a
chat template whose generation prompt opens the thinking.

vLLM's think-delimited reasoning parsers (``deepseek_r1``, ...) look both delimiters up in the
tokenizer's vocabulary and refuse to start without them, and SmolLM2 has neither. Adding them
as ordinary (not special) tokens keeps them in decoded text, so a prefix the gateway writes
(``...</think>The final answer is``) tokenizes to the same ids the parser looks for. The new
embedding rows are the mean of the old ones (``mean_resizing``), so the model sees them as an
average token rather than noise. This variant never closes its own thinking (see
ENVIRONMENT.md): it is the runaway thinker that budget forcing and convergence exist for.
"""

from __future__ import annotations

from pathlib import Path

THINK_START = "<think>"
THINK_END = "</think>"

# The opening of every thinking turn: the delimiter and a seed sentence. With the delimiter
# alone the bare model ends at once (1 token, ENVIRONMENT.md); seeded, it thinks until stopped:
# the runaway trace budgets and convergence exist for, on every request.
THINK_OPENING = THINK_START + "\nLet me think step by step."

# SmolLM2's ChatML template; the assistant turn opens the thinking, as DeepSeek-R1's does.
THINKING_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n"
    + THINK_OPENING.replace("\n", "\\n")
    + "' }}"
    "{% endif %}"
)


def add_thinking(folder: Path) -> None:
    """Turn the model saved in ``folder`` into its thinking variant, in place (~10 s on CPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.add_tokens([THINK_START, THINK_END])
    tokenizer.chat_template = THINKING_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16)
    torch.manual_seed(0)  # mean_resizing samples the new rows: the same variant every time
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
