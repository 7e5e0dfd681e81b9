from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import ModelPrepareError
from workers import models
from workers.models import BundledModel


def test_missing_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = BundledModel("m", "not-a-package==1.0", "not_a_package_xyz", "m.gguf")
    monkeypatch.setitem(models.BUNDLED, "m", fake)
    with pytest.raises(ModelPrepareError, match="not-a-package==1.0"):
        models.prepare("m")


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(ModelPrepareError, match="smollm2-135m"):
        models.prepare("nope")


def test_prepared_only_when_marker_matches_source(tmp_path: Path) -> None:
    record = {"format": models._FORMAT_VERSION, "source_sha256": "abc"}
    (tmp_path / "ttc-model.json").write_text(json.dumps(record))
    assert models.is_prepared(tmp_path, "abc")
    assert not models.is_prepared(tmp_path, "def")
    (tmp_path / "ttc-model.json").write_text("{not json")
    assert not models.is_prepared(tmp_path, "abc")


def test_checksum(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"hello")
    assert models.sha256_of(f).startswith("2cf24dba")
