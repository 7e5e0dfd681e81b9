"""The credentials a tier's upstream wants: a bearer key and extra headers, on every call.

The key comes from an environment variable (``api_key_env``, read once: a missing one is a
start-up error naming it) or a file (``api_key_file``, read again whenever it changes, so a
rotated secret, e.g. a Kubernetes Secret volume, takes effect without a restart; a file that
vanishes or empties keeps the last key and says so once).

The key goes out in ``Authorization: Bearer`` and nowhere else: ``redact`` removes it from any
upstream text the gateway keeps (error messages, logs), and workers are named by URL, which
the config refuses to carry credentials in.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from workers.config import TierConfig

log = logging.getLogger("ttc.workers")

REDACTED = "[redacted]"


class KeyFile:
    """A key file, re-read when its identity, size or modification time changes."""

    def __init__(self, tier: str, path: Path) -> None:
        self._tier = tier
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        self._stale = False
        self.key = self._read(first=True)

    def _read(self, *, first: bool = False) -> str:
        try:
            stat = self._path.stat()
            key = self._path.read_text().strip()
        except OSError as exc:
            if first:
                raise ValueError(
                    f"tiers.{self._tier}.api_key_file: cannot read it ({exc.strerror})"
                ) from exc
            return self._keep("cannot be read")
        if not key:
            if first:
                raise ValueError(f"tiers.{self._tier}.api_key_file: the file is empty")
            return self._keep("is empty")
        self._stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        self._stale = False
        return key

    def _keep(self, why: str) -> str:
        if not self._stale:
            log.warning("tier %s: the key file %s; keeping the last key", self._tier, why)
            self._stale = True
        return self.key

    def current(self) -> str:
        try:
            stat = self._path.stat()
            stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self.key = self._read()
        return self.key


class TierCredentials:
    """The headers of every call to one tier's upstream (data plane, health, metrics)."""

    def __init__(self, tier: str, config: TierConfig, env: Mapping[str, str] = os.environ) -> None:
        self._static = dict(config.headers)
        self._env_key: str | None = None
        self._file: KeyFile | None = None
        # Header values may be secrets too (some providers take an ``x-api-key``); 8: shorter
        # values are words ("json", "beta") whose removal would garble any message.
        self._seen: set[str] = {v for v in self._static.values() if len(v) >= 8}
        if config.api_key_env is not None:
            self._env_key = env.get(config.api_key_env) or None
            if self._env_key is None:
                raise ValueError(f"tiers.{tier}.api_key_env: ${config.api_key_env} is not set")
        if config.api_key_file is not None:
            self._file = KeyFile(tier, Path(config.api_key_file).expanduser())

    def key(self) -> str | None:
        key = self._file.current() if self._file is not None else self._env_key
        if key is not None:
            self._seen.add(key)
        return key

    def headers(self) -> dict[str, str]:
        key = self.key()
        if key is None:
            return self._static
        return {**self._static, "Authorization": f"Bearer {key}"}

    def redact(self, text: str) -> str:
        """``text`` without any key this tier has used (a rotated one included) or any
        header value it sends."""
        for key in self._seen:
            text = text.replace(key, REDACTED)
        return text
