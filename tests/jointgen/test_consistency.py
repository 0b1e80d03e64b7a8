"""The video 3D-consistency score (`vfm3d.jointgen.consistency`): exact on exact input, near 0
on ground-truth world clips, low with the shipped expert, rising with injected inconsistency,
and flagging pairs that share no view."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vfm3d.backbones import registry
from vfm3d.clip import Clip
from vfm3d.geometry import make_rigid, project, transform_points
from vfm3d.geometry.rotation import axis_angle_to_rotation
from vfm3d.jointgen.consistency import (
    ConsistencyScorer,
    DenseFeatures,
    ExpertGeometry,
    GroundTruthGeometry,
    corrupt,
    expert_windows,
    load_features,
    load_geometry,
)
from vfm3d.world import render_clip


@pytest.fixture(scope="module")
def features():
    return load_features("zoo/dinov2-mini")


@pytest.fixture(scope="module")
def expert():
    return load_geometry("zoo/vggt-mini")


@pytest.fixture(scope="module")
def clips():
    """A static object clip and a static scene clip, 9 frames at 64x64 (see docs/jointgen.md)."""
    return [
        render_clip("object", seed=0, frames=9, height=64, width=64),
        render_clip("scene", seed=1, frames=9, height=64, width=64),
    ]


@pytest.fixture(scope="module")
def others():
    return [
        render_clip("scene", seed=1000, frames=9, height=64, width=64),
        render_clip("object", seed=1001, frames=9, height=64, width=64),
    ]


def _still(clip: Clip, frames: int = 4) -> Clip:
    """``frames`` copies of the clip's first frame with its geometry (a camera that never moves)."""
    pick = [0] * frames
    return Clip(
        frames=clip.frames[pick],
        intrinsics=clip.intrinsics[pick],
        cam_to_world=clip.cam_to_world[pick],
        depth=clip.depth[pick],
        valid=clip.valid[pick],
        meta={"id": "still"},
    )


# ------------------------------------------------------------------ features
def test_one_shift_is_plain_bilinear_upsampling_of_the_normed_tokens() -> None:
    from vfm3d.features.extract import extract

    backbone = registry.load("dinov2", tiny=True)  # 4 px patches
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 12, 20, 3), dtype=np.uint8)
    dense = DenseFeatures(backbone, shifts=1)(frames)
    pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)[None]
    tokens = backbone.model.layernorm(extract(backbone, pixels, [1])[(1, None)].tokens[0])
    want = F.interpolate(tokens.permute(0, 3, 1, 2), size=(12, 20), mode="bilinear")
    assert dense.shape == (3, 12, 20, 32)
    torch.testing.assert_close(dense, want.permute(0, 2, 3, 1), atol=1e-5, rtol=1e-5)


def test_shifted_features_are_the_mean_of_shifted_upsamplings() -> None:
    """The tent-smoothed lattice equals the mean over the n^2 sub-patch shifts of each shifted
    image's bilinearly upsampled features, moved back (away from the replicated border)."""
    from vfm3d.features.extract import extract

    backbone = registry.load("dinov2", tiny=True)
    frames = np.random.default_rng(1).integers(0, 256, size=(2, 16, 24, 3), dtype=np.uint8)
    n, p = 2, 4
    dense = DenseFeatures(backbone, shifts=n)(frames)
    image = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)
    padded = F.pad(image, (p, p, p, p), mode="replicate")
    total = torch.zeros(2, 32, 16, 24)
    for dy, dx in itertools.product(range(0, p, p // n), repeat=2):
        moved = padded[..., p - dy : p - dy + 16, p - dx : p - dx + 24]
        tokens = backbone.model.layernorm(extract(backbone, moved[None], [1])[(1, None)].tokens[0])
        up = F.interpolate(tokens.permute(0, 3, 1, 2), size=(16, 24), mode="bilinear")
        up = F.pad(up, (0, p, 0, p), mode="replicate")
        total += up[..., dy : dy + 16, dx : dx + 24]
    want = (total / n**2).permute(0, 2, 3, 1)
    inner = (slice(None), slice(p, -p), slice(p, -p))
    torch.testing.assert_close(dense[inner], want[inner], atol=1e-5, rtol=1e-4)


def test_features_refuse_bad_settings(features) -> None:
    with pytest.raises(ValueError, match="divide the patch size"):
        DenseFeatures(features.backbone, shifts=3)
    with pytest.raises(ValueError, match="layer"):
        DenseFeatures(features.backbone, layer=9)
    with pytest.raises(ValueError, match="not an image backbone"):
        load_features("zoo/videomae-mini")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_features("/nowhere/dinov2")


# ------------------------------------------------------------------ geometry
def test_expert_windows_hold_every_consecutive_pair_and_are_full() -> None:
    for frames, window in [(9, 9), (10, 9), (17, 9), (30, 9), (5, 2), (4, 9)]:
        spans = expert_windows(frames, window)
        assert spans[0][0] == 0 and spans[-1][1] == frames
        assert all(b - a == min(window, frames) for a, b in spans)
        assert all(any(a <= i and i + 1 < b for a, b in spans) for i in range(frames - 1))


@pytest.mark.parametrize("window", [2, 9])
def test_expert_pair_geometry_puts_frame_one_back_on_its_pixels(expert, clips, window) -> None:
    clip = ConsistencyScorer(expert, None).prepare(clips[0])  # type: ignore[arg-type]
    assert (clip.height, clip.width) == (32, 32)  # the expert's input size
    geometry = ExpertGeometry(expert.model, window=window)
    pairs = geometry.pairs(clip, [0, 3, 7])
    assert len(pairs) == 3
    for pair in pairs:
        assert pair.points_world_1.shape == (32, 32, 3) and bool(pair.valid_1.all())
        uv, z = project(
            transform_points(pair.world_to_cam_1, pair.points_world_1), pair.intrinsics_1
        )
        grid = torch.stack(
            torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="xy"), -1
        )
        torch.testing.assert_close(uv, grid.double(), atol=1e-6, rtol=0)
        assert bool((z > 0).all())


def test_ground_truth_geometry_needs_ground_truth(clips) -> None:
    bare = Clip(
        frames=clips[0].frames,
        intrinsics=clips[0].intrinsics,
        cam_to_world=clips[0].cam_to_world,
        meta={"id": "video"},
    )
    with pytest.raises(ValueError, match="needs clips with depth"):
        GroundTruthGeometry().check(bare)


# ------------------------------------------------------------------ the score
def test_identical_frames_with_exact_geometry_score_zero(features, clips) -> None:
    scorer = ConsistencyScorer(GroundTruthGeometry(), features, progress=False)
    still = _still(clips[1])
    result = scorer.score_clip(still)
    assert result.score is not None and result.score < 1e-9
    assert len(result.pairs) == 3 and result.flagged == 0
    sky_free = float(still.valid[0].mean())  # 1 px splats on pixel centres cover valid pixels
    assert 0.5 < sky_free < 1.0
    assert all(p.overlap == pytest.approx(sky_free) for p in result.pairs)


def test_ground_truth_world_clips_score_near_zero_and_foreign_frames_high(
    features, clips, others
) -> None:
    scorer = ConsistencyScorer(GroundTruthGeometry(), features, progress=False)
    for clip, other in zip(clips, others, strict=True):
        clean = scorer.score_clip(clip)
        assert clean.score is not None and clean.score < 0.05  # measured 0.021, 0.018
        assert clean.size == (64, 64) and len(clean.pairs) == 8
        spliced = scorer.score_clip(corrupt(clip, "splice", 1.0, other=other))
        assert spliced.score is not None and spliced.score > 10 * clean.score


def test_default_expert_scores_world_clips_low(features, expert, clips, others) -> None:
    scorer = ConsistencyScorer(expert, features, progress=False)
    for clip, other in zip(clips, others, strict=True):
        clean = scorer.score_clip(clip)
        assert clean.score is not None and clean.score < 0.1  # measured 0.058, 0.040
        spliced = scorer.score_clip(corrupt(clip, "splice", 1.0, other=other))
        assert spliced.score is not None and spliced.score > 0.3 > clean.score


@pytest.mark.parametrize("kind", ["region", "warp", "splice"])
def test_score_rises_monotonically_with_injected_inconsistency(
    features, clips, others, kind
) -> None:
    scorer = ConsistencyScorer(GroundTruthGeometry(), features, progress=False)
    for clip, other in zip(clips, others, strict=True):
        scores = [
            scorer.score_clip(corrupt(clip, kind, s, other=other)).score for s in (0.0, 0.5, 1.0)
        ]
        assert all(s is not None for s in scores)
        assert scores[0] < scores[1] < scores[2], (kind, clip.id, scores)


def test_expert_geometry_sees_the_inconsistency_too(features, expert, clips, others) -> None:
    scorer = ConsistencyScorer(expert, features, progress=False)
    for kind in ("region", "splice"):
        scores = [
            scorer.score_clip(corrupt(clips[1], kind, s, other=others[1])).score
            for s in (0.0, 0.5, 1.0)
        ]
        assert scores[0] < scores[1] < scores[2], (kind, scores)


def test_frames_that_share_no_view_are_flagged_not_scored(features, clips) -> None:
    clip = _still(clips[1], frames=3)
    turn = make_rigid(
        axis_angle_to_rotation(torch.tensor([0.0, np.pi, 0.0], dtype=torch.float64)),
        torch.zeros(3, dtype=torch.float64),
    ).numpy()
    clip.cam_to_world = clip.cam_to_world.copy()
    clip.cam_to_world[1] = clip.cam_to_world[1] @ turn  # frame 1 looks the other way
    result = ConsistencyScorer(GroundTruthGeometry(), features, progress=False).score_clip(clip)
    assert [p.flag for p in result.pairs] == ["no shared view", "no shared view"]
    assert result.score is None and result.flagged == 2
    record = result.to_dict()
    assert record["score"] is None and record["pairs"][0]["score"] is None


def test_corruptions_leave_strength_zero_alone_and_keep_the_ground_truth(clips, others) -> None:
    clip = clips[0]
    for kind in ("region", "warp", "splice"):
        same = corrupt(clip, kind, 0.0, other=others[0])
        assert np.array_equal(same.frames, clip.frames)
        full = corrupt(clip, kind, 1.0, other=others[0])
        assert not np.array_equal(full.frames, clip.frames)
        assert full.depth is clip.depth and full.meta["corruption"]["kind"] == kind
    spliced = corrupt(clip, "splice", 1.0, other=others[0])
    changed = [i for i in range(9) if not np.array_equal(spliced.frames[i], clip.frames[i])]
    assert changed == [1, 3, 5, 7]
    with pytest.raises(ValueError, match="other"):
        corrupt(clip, "splice", 0.5)
    with pytest.raises(ValueError, match="corruption"):
        corrupt(clip, "blur", 0.5)
    with pytest.raises(ValueError, match="strength"):
        corrupt(clip, "warp", 1.5)


def test_a_single_frame_is_a_clear_error(features, clips) -> None:
    scorer = ConsistencyScorer(GroundTruthGeometry(), features, progress=False)
    with pytest.raises(ValueError, match="at least 2"):
        scorer.score_clip(clips[0].subset([0]))
