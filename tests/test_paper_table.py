"""docs/paper_table/{co3d,dl3dv}.toml: the paper's six rows with their settings, parseable as specs.

No weights or clips are needed: the specs are read with ``tomllib`` and ``parse_spec``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vfm3d.backbones.registry import ADAPTERS
from vfm3d.probe import sweep
from vfm3d.probe.sweep import parse_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TABLE = Path(__file__).resolve().parents[1] / "docs" / "paper_table"
#: Per-row input keys the specs carry (input size, frames, dtype), read by `parse_spec`.
INPUT_KEYS = ("resize", "num_frames", "dtype")

# label -> (adapter, layer, timestep, (H, W), dtype); frames per dataset below
ROWS: dict[str, tuple[str, int, int | None, tuple[int, int], str]] = {
    "DINOv2": ("dinov2", 23, None, (420, 728), "float32"),
    "V-JEPA": ("vjepa2", 31, None, (256, 256), "float32"),
    "CogVideoX": ("cogvideox", 20, 749, (480, 720), "bfloat16"),
    "Open-Sora2.0": ("opensora2", 39, 250, (480, 848), "bfloat16"),
    "WAN2.1-14B": ("wan2.1", 20, 749, (480, 832), "bfloat16"),
    "Fast3R": ("fast3r", 24, None, (288, 512), "bfloat16"),
}
FRAMES = {
    "co3d": {"DINOv2": 81, "V-JEPA": 80, "CogVideoX": 81, "Open-Sora2.0": 81, "WAN2.1-14B": 81,
             "Fast3R": 81},
    "dl3dv": {"DINOv2": 150, "V-JEPA": 80, "CogVideoX": 81, "Open-Sora2.0": 129,
              "WAN2.1-14B": 81, "Fast3R": 150},
}  # fmt: skip
CLIP_FRAMES = {"co3d": 81, "dl3dv": 150}


@pytest.mark.parametrize("dataset", ["co3d", "dl3dv"])
def test_paper_table_spec_has_the_six_rows(dataset: str) -> None:
    path = TABLE / f"{dataset}.toml"
    data = tomllib.loads(path.read_text())
    rows = {entry["label"]: entry for entry in data["backbones"]}
    assert list(rows) == list(ROWS)  # the paper's row order
    for label, (name, layer, timestep, size, dtype) in ROWS.items():
        entry = rows[label]
        assert entry["name"] == name and name in ADAPTERS, label
        assert entry["layers"] == [layer], label
        assert entry.get("timesteps") == (None if timestep is None else [timestep]), label
        patch = 14 if name == "dinov2" else 16
        assert tuple(entry["resize"]) == size, label
        assert size[0] % patch == 0 and size[1] % patch == 0, label
        assert entry["num_frames"] == FRAMES[dataset][label] <= CLIP_FRAMES[dataset], label
        assert entry["dtype"] == dtype, label
        weights = Path(entry["weights"])
        assert weights.parts[0] == "weights" and not weights.is_absolute(), label

    # the settings the paper states
    assert rows["Open-Sora2.0"]["timesteps"] == [250]  # noise level 0.25 before the shift
    assert (480 // 16, 848 // 16) == (30, 53)
    assert rows["WAN2.1-14B"]["num_frames"] == 81 and (480 // 16, 832 // 16) == (30, 52)
    assert (288 // 16, 512 // 16) == (18, 32)

    assert set(INPUT_KEYS) <= sweep._BACKBONE_KEYS
    spec = parse_spec(data, base=path.parent)
    fast3r = next(b for b in spec.backbones if b.name == "fast3r")
    assert fast3r.resize == (288, 512) and fast3r.dtype == "bfloat16"
    assert [b.display for b in spec.backbones] == list(ROWS)
    assert spec.train == (path.parent / "clips" / f"{dataset}-train").resolve()
    assert spec.eval == {dataset: (path.parent / "clips" / f"{dataset}-val").resolve()}
    assert all(b.weights and Path(b.weights).is_absolute() for b in spec.backbones)
    assert spec.probe["preset"] == "paper" and spec.probe["conf_mode"] == "gt"
    assert spec.probe["batch_size"] == 10 and spec.seed == 42


def test_probe_settings_build_a_paper_probe_config() -> None:
    from vfm3d.probe.config import ProbeConfig

    data = tomllib.loads((TABLE / "co3d.toml").read_text())
    options = dict(data["probe"])
    assert options.pop("preset") == "paper" and options.pop("steps") > 0
    config = ProbeConfig(**options)
    assert (config.num_frames, config.first_n, config.min_gap) == (4, 76, 5)
    assert config.output_size == (294, 518)
