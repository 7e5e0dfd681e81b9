"""Prompts counted, not guessed: a per-tier calibration of ``prompt_estimate``.

``prompt_estimate`` prices a prompt conservatively (bytes / 3 plus template overheads), about
twice the real count on English chat; contracts refused requests they could hold, and a stream
cut before it reported was billed about twice its prompt. Every answer a tier gives reports
its ``prompt_tokens``: ``PromptCalibration`` keeps each tier's recent (estimate, reported)
pairs and maps an estimate to the count the tier would report, a line fitted by least squares
(one pair: the ratio). No extra call on the hot path, and it works for every engine. Until a
tier has answered, the conservative estimate stands.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from core.contract import prompt_estimate, token_ids

# 64 answers per tier: enough pairs that one odd prompt moves the fit little, few enough that a
# changed chat template is learned within a minute of traffic.
WINDOW = 64
# Once a tier's window is full, one answer in 16 refreshes it: estimating a prompt serialises
# it (4% of a plain request's CPU in ``python -m bench.hot_path`` when every answer did).
REFRESH_EVERY = 16


class PromptCalibration:
    """Per tier: estimate -> the prompt tokens the tier reports (``count``)."""

    def __init__(self, window: int = WINDOW) -> None:
        self._window = window
        self._pairs: dict[str, deque[tuple[int, int]]] = {}
        self._fits: dict[str, tuple[float, float]] = {}
        self._seen: dict[str, int] = {}

    def observe(self, tier: str, body: Mapping[str, Any], reported: int) -> None:
        """A call on ``tier`` for ``body`` reported ``reported`` prompt tokens."""
        if reported <= 0 or token_ids(body.get("prompt")) is not None:
            return
        pairs = self._pairs.setdefault(tier, deque(maxlen=self._window))
        seen = self._seen[tier] = self._seen.get(tier, 0) + 1
        if len(pairs) == self._window and seen % REFRESH_EVERY:
            return
        pairs.append((prompt_estimate(body), reported))
        self._fits[tier] = _fit(pairs)

    def count(self, tier: str, body: Mapping[str, Any]) -> int:
        """The prompt tokens ``tier`` would report for ``body``: calibrated once the tier has
        answered, the conservative estimate before (and for token ids, their exact count)."""
        estimate = prompt_estimate(body)
        fit = self._fits.get(tier)
        if fit is None or token_ids(body.get("prompt")) is not None:
            return estimate
        slope, intercept = fit
        return max(1, math.ceil(slope * estimate + intercept))


def _fit(pairs: deque[tuple[int, int]]) -> tuple[float, float]:
    """(slope, intercept) of reported against estimated; the ratio through 0 while the
    estimates do not spread."""
    n = len(pairs)
    mean_x = sum(x for x, _ in pairs) / n
    mean_y = sum(y for _, y in pairs) / n
    var = sum((x - mean_x) ** 2 for x, _ in pairs)
    if var < 1.0:
        return mean_y / mean_x, 0.0
    slope = sum((x - mean_x) * (y - mean_y) for x, y in pairs) / var
    return slope, mean_y - slope * mean_x
