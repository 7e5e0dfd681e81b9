"""``ttc serve``'s logging: third-party loggers stay at warning unless the config names them."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from ttc.cli import QUIET_LOGGERS, configure_logging


@pytest.fixture(autouse=True)
def restore_levels() -> Iterator[None]:
    names = (*QUIET_LOGGERS, "ttc.workers")
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_debug_logs_the_gateway_not_httpcore_unless_asked() -> None:
    configure_logging("debug", {})
    assert logging.getLogger("httpcore").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("aiohttp.access").getEffectiveLevel() == logging.WARNING
    configure_logging("debug", {"httpcore": "debug", "ttc.workers": "warning"})
    assert logging.getLogger("httpcore").getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("ttc.workers").getEffectiveLevel() == logging.WARNING
