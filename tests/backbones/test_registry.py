"""The backbone registry: names, load() errors, offline mode, the baselines' factories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import vfm3d.backbones as backbones
from vfm3d.backbones import registry


def test_available_lists_every_adapter_and_the_baselines() -> None:
    names = backbones.available()
    for name in ("wan2.1", "cogvideox", "vjepa2", "videomae", "dinov2", "random", "pixels"):
        assert name in names
    assert {"constant", "oracle"} <= set(names)
    assert names[: len(registry.ADAPTERS)] == list(registry.ADAPTERS)


def test_offline_mode_is_forced() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_unknown_and_conflicting_requests() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'nope'; available: wan2\.1"):
        backbones.load("nope")
    with pytest.raises(ValueError, match="not both"):
        backbones.load("random", weights="/tmp", tiny=True)


def test_missing_weights_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="weights directory not found"):
        backbones.load("wan2.1", weights=tmp_path / "absent")


def test_model_needing_weights_refuses_none() -> None:
    with pytest.raises(ValueError, match="needs weights=<local directory>"):
        backbones.load("wan2.1")


def test_zoo_names_refuse_weights_and_report_missing_files(monkeypatch, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shipped zoo model"):
        backbones.load("zoo/wan-mini", tiny=True)
    monkeypatch.setattr(registry, "zoo_root", lambda: tmp_path)
    assert "zoo/wan-mini" not in backbones.available()
    with pytest.raises(FileNotFoundError, match="vfm3d zoo train"):
        backbones.load("zoo/wan-mini")
    (tmp_path / "wan-mini").mkdir()
    assert "zoo/wan-mini" in backbones.available()


@pytest.mark.parametrize("name", ["random", "pixels", "constant", "oracle"])
def test_baselines_need_no_weights_and_are_frozen(name: str) -> None:
    model = backbones.load(name)
    tiny = backbones.load(name, tiny=True)
    assert model.name == name and not model.training
    assert all(not p.requires_grad for p in model.parameters())
    assert model.fingerprint == tiny.fingerprint
    assert model.fingerprint.startswith(f"{name}-")
    assert model.describe()["rules"] == "any T, H, W multiples of 8"
