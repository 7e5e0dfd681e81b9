"""Where a worker's API and its server root are, from the URL the config gives.

An endpoint without a path is a server root (``http://10.0.0.5:8000``): its API is under
``/v1``, its health and metrics at the root, as vLLM serves them. An endpoint with a path is
the API root as the OpenAI SDK's ``base_url`` takes it (``https://api.example.com/v1``,
``https://host/openai/v1``, ``https://gw/vllm-small/v1``); its server root, for health and
metrics, is that path without a trailing ``/v1``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

API_VERSION = "/v1"


def api_root(url: str) -> str:
    """The URL that ``/chat/completions``, ``/completions`` and ``/models`` go under."""
    url = url.rstrip("/")
    return url if urlsplit(url).path else url + API_VERSION


def server_root(url: str) -> str:
    """The URL that an engine's health path and ``/metrics`` go under."""
    url = url.rstrip("/")
    return url.removesuffix(API_VERSION) if urlsplit(url).path else url


def api_url(url: str, path: str) -> str:
    """The full URL of an OpenAI ``path`` (``/v1/chat/completions``) on the worker at ``url``."""
    return api_root(url) + path.removeprefix(API_VERSION)
