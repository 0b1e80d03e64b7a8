"""The shipped zoo: each model loads offline through its adapter with the documented feature
shapes; vggt-mini beats its random-init twin in a short probe; wan-mini samples are not noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vfm3d.backbones import load
from vfm3d.features.extract import extract
from vfm3d.geometry import probe_targets
from vfm3d.metrics.points import point_error
from vfm3d.world import clip_seed, render_clip
from vfm3d.zoo import MODELS, DataSpec, weights_dir

#: zoo models that are backbones (sora3r-mini is a reconstructor: tests/recon4d).
BACKBONE_MODELS = [name for name, (_, adapter) in MODELS.items() if adapter is not None]

#: name -> (input frames, documented feature shape [B, T', h, w, C] of every layer)
SHAPES = {
    "wan-mini": (9, (1, 3, 4, 4, 128)),
    "dinov2-mini": (9, (1, 9, 4, 4, 128)),
    "videomae-mini": (8, (1, 4, 4, 4, 128)),
    "vggt-mini": (9, (1, 9, 4, 4, 256)),
}
HELDOUT = DataSpec()


def heldout_clip(i: int, kind: str = "scene"):
    """Clip ``i`` drawn from the zoo's held-out seed (never seen in training)."""
    return render_clip(kind, clip_seed(HELDOUT.heldout_seed, i), 9, 32, 32)


def video(clips: list) -> torch.Tensor:
    frames = np.stack([c.frames for c in clips])
    return torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float() / 255.0


def test_total_size_within_budget() -> None:
    root = weights_dir("wan-mini").parent
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert total <= 60 * 2**20, f"shipped zoo is {total / 2**20:.1f} MB"


@pytest.mark.parametrize("name", BACKBONE_MODELS)
def test_loads_offline_with_documented_shapes(name: str) -> None:
    folder = weights_dir(name)
    record = json.loads((folder / "provenance.json").read_text())
    assert record["name"] == name and record["git_commit"] and record["wall_time_s"] > 0
    backbone = load(f"zoo/{name}")
    assert backbone.num_layers == 4
    frames, shape = SHAPES[name]
    clip = heldout_clip(0)
    x = video([clip])[:, :frames]
    timesteps = [749] if backbone.is_diffusion else None
    feats = extract(backbone, x, range(backbone.num_layers), timesteps)
    assert len(feats) == 4
    for (layer, _), item in feats.items():
        tokens = item.tokens
        assert tuple(tokens.shape) == shape, (layer, tokens.shape)
        assert torch.isfinite(tokens).all() and tokens.std() > 0


def _ridge_point_error(backbone, train: list, test: list, layer: int) -> float:
    """Closed-form ridge probe: each token predicts the normalised 3D points of its 8x8 patch."""

    def data(clips: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens = extract(backbone, video(clips), [layer])[(layer, None)].tokens  # [B,T,4,4,C]
        t = probe_targets(
            torch.from_numpy(np.stack([c.depth for c in clips])).double(),
            torch.from_numpy(np.stack([c.valid for c in clips])),
            torch.from_numpy(np.stack([c.intrinsics for c in clips])).double(),
            torch.from_numpy(np.stack([c.cam_to_world for c in clips])),
        )
        b, f = t.points.shape[:2]
        patches = t.points.reshape(b, f, 4, 8, 4, 8, 3).permute(0, 1, 2, 4, 3, 5, 6)
        return tokens.double(), patches.reshape(b, f, 4, 4, 192), t.valid

    x_tr, y_tr, _ = data(train)
    x_te, _, valid = data(test)
    x_tr = torch.cat([x_tr.reshape(-1, x_tr.shape[-1]), torch.ones(x_tr[..., :1].numel(), 1)], 1)
    y_tr = y_tr.reshape(-1, 192)
    ridge = 1e-2 * torch.eye(x_tr.shape[1], dtype=torch.float64)
    weights = torch.linalg.solve(x_tr.T @ x_tr + ridge, x_tr.T @ y_tr)
    xt = torch.cat([x_te.reshape(-1, x_te.shape[-1]), torch.ones(x_te[..., :1].numel(), 1)], 1)
    pred = (xt @ weights).reshape(*x_te.shape[:4], 8, 8, 3).permute(0, 1, 2, 4, 3, 5, 6)
    b, f = valid.shape[:2]
    gt = data(test)[1].reshape(b, f, 4, 4, 8, 8, 3).permute(0, 1, 2, 4, 3, 5, 6)
    return point_error(pred.reshape(b, f, 32, 32, 3), gt.reshape(b, f, 32, 32, 3), valid)


def test_vggt_mini_beats_random_twin(tmp_path: Path) -> None:
    """A closed-form ridge probe on the last layer (6 held-out clips to fit, 4 others to score)
    reaches a lower Point Err with vggt-mini's features than with its random-init twin's.

    Measured when shipped: 0.612 vs 0.651; the margin asserted is 3%.
    """
    from vfm3d.zoo import vggt_mini

    trained = load("zoo/vggt-mini")
    twin = load("vggt", weights=vggt_mini.twin(tmp_path / "twin", 1, weights_dir("vggt-mini")))
    kinds = ["object", "scene"]
    train = [heldout_clip(i, kinds[i % 2]) for i in range(6)]
    test = [heldout_clip(10 + i, kinds[i % 2]) for i in range(4)]
    err_trained = _ridge_point_error(trained, train, test, layer=3)
    err_twin = _ridge_point_error(twin, train, test, layer=3)
    assert err_trained < 0.97 * err_twin, (err_trained, err_twin)


def _row_profile(videos: torch.Tensor) -> torch.Tensor:
    """Mean brightness of each image row of ``[N, T, 3, H, W]``: ``[H]`` (sky above ground)."""
    return videos.mean(dim=(0, 1, 2, 4))


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def _roughness(v: torch.Tensor) -> float:
    """Mean absolute difference of horizontally adjacent pixels."""
    return float((v[..., 1:] - v[..., :-1]).abs().mean())


def _flicker(v: torch.Tensor) -> float:
    """Mean absolute difference of consecutive frames."""
    return float((v[:, 1:] - v[:, :-1]).abs().mean())


def _colour_histogram(v: torch.Tensor, bins: int = 16, block: int = 4) -> torch.Tensor:
    """Per-channel histograms of the ``block`` x ``block``-pixel means of ``[N, T, 3, H, W]`` in
    [0, 1] (the VAE latent's resolution): ``[3, bins]``, rows sum to 1."""
    pooled = F.avg_pool2d(v.flatten(0, 1), block)  # [N*T, 3, H/block, W/block]
    q = (pooled.clamp(0, 1) * bins).long().clamp_max(bins - 1).transpose(0, 1).reshape(3, -1)
    hist = torch.stack([torch.bincount(row, minlength=bins) for row in q]).float()
    return hist / hist.sum(dim=1, keepdim=True)


def _histogram_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over channels of the total-variation distance of two colour histograms (0..1)."""
    return float(0.5 * (_colour_histogram(a) - _colour_histogram(b)).abs().sum(dim=1).mean())


def test_wan_mini_samples_are_not_noise() -> None:
    """Generated videos have the world's colours (histogram of 4x4-block colours far closer to
    real held-out frames' than uniform noise's or a flat grey's, and within 1.8x the distance
    between two disjoint sets of real clips: 0.21 vs 0.13 here; the first, under-trained release
    scored 0.26 and fails), its vertical layout (bright sky over ground: row-brightness profile
    correlated with real clips'), and are spatially smooth and temporally coherent; uniform noise
    has none of this."""
    from vfm3d.zoo.wan_mini import sample_videos

    backbone = load("zoo/wan-mini")
    samples = sample_videos(
        backbone.transformer, backbone.vae, backbone.prompt_tensor("embeds"), num=8, steps=12
    )
    assert samples.shape == (8, 9, 3, 32, 32)
    real = video([heldout_clip(i, ["object", "scene"][i % 2]) for i in range(16)])
    noise = torch.rand(samples.shape, generator=torch.Generator().manual_seed(0))
    grey = torch.full(samples.shape, float(real.mean()))
    colour = _histogram_distance(samples, real)
    assert colour < 0.5 * _histogram_distance(noise, real), colour
    assert colour < 0.5 * _histogram_distance(grey, real), colour
    other = video([heldout_clip(16 + i, ["object", "scene"][i % 2]) for i in range(16)])
    assert colour < 1.8 * _histogram_distance(other, real), colour
    target = _row_profile(real)
    assert _correlation(_row_profile(samples), target) > 0.5
    assert _correlation(_row_profile(noise), target) < 0.5
    assert _roughness(samples) < 0.25 * _roughness(noise)
    assert _flicker(samples) < 0.25 * _flicker(noise)
