"""Run by test_train.py under torchrun (or plainly): train a tiny probe on the test rooms."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from synth import features_for, write_rooms

from vfm3d.clip import ClipFolder
from vfm3d.probe import InMemoryFeatureSource, ProbeConfig, train


def main() -> None:
    torch.set_num_threads(1)
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    clips = (
        ClipFolder(data) if (data / "index.json").is_file() else write_rooms(data, 3, 24, (32, 48))
    )
    source = InMemoryFeatureSource(features_for(clips, "oracle"))
    config = ProbeConfig.cpu_small(
        first_n=24, min_gap=3, num_frames=2, output_size=(16, 24), batch_size=2, warmup_steps=2
    )
    train(config, data, source, out, steps=4, backbone="oracle", layer=0, seed=0, progress=False)


if __name__ == "__main__":
    main()
