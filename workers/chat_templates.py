"""Chat templates the prepared bundled models carry.

SmolLM2-135M-Instruct ships a ChatML template that knows nothing of tools: it drops ``tools``
and fails on an assistant message whose ``content`` is null (a tool call). ``SMOLLM2_TOOLS``
is the same ChatML plus what the families with tool support do in their templates: the tool
definitions (JSON schemas) in the system turn, the instruction to answer with a Python-style
list of calls (what vLLM's ``pythonic`` tool-call parser reads, the ``smollm2`` profile), an
assistant's earlier calls rendered in that form, and ``role: tool`` results as their own turn.
"""

from __future__ import annotations

_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

SMOLLM2_TOOLS = (
    "{%- set default_system = '" + _DEFAULT_SYSTEM + "' -%}\n"
    """{%- if messages and messages[0]['role'] == 'system' -%}
{%- set system = messages[0]['content'] -%}{%- set rest = messages[1:] -%}
{%- else -%}{%- set system = default_system -%}{%- set rest = messages -%}{%- endif -%}
{{- '<|im_start|>system\\n' + system -}}
{%- if tools -%}
{{- '\\n\\nYou can call these functions (JSON schemas):\\n' -}}
{%- for tool in tools -%}
{{- (tool['function'] if tool['function'] is defined else tool) | tojson -}}
{{- '\\n' -}}
{%- endfor -%}
{{- 'To call functions, answer with only a Python list of calls, for example '
    '[get_weather(city=\"Paris\")]. Otherwise answer in plain text.' -}}
{%- endif -%}
{{- '<|im_end|>\\n' -}}
{%- for message in rest -%}
{%- if message['role'] == 'assistant' and message['tool_calls'] -%}
{{- '<|im_start|>assistant\\n' -}}
{%- if message['content'] -%}{{- message['content'] + '\\n' -}}{%- endif -%}
{{- '[' -}}
{%- for call in message['tool_calls'] -%}
{%- set fn = call['function'] -%}
{{- fn['name'] + '(' -}}
{%- if fn['arguments'] is mapping -%}
{%- for key, value in fn['arguments'].items() -%}
{{- key + '=' + (value | tojson) -}}{%- if not loop.last -%}{{- ', ' -}}{%- endif -%}
{%- endfor -%}
{%- else -%}{{- fn['arguments'] -}}{%- endif -%}
{{- ')' -}}{%- if not loop.last -%}{{- ', ' -}}{%- endif -%}
{%- endfor -%}
{{- ']<|im_end|>\\n' -}}
{%- else -%}
{{- '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') + '<|im_end|>\\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"""
)
