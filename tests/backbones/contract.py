"""The contract every `Backbone` adapter must pass, as one pytest mixin.

Usage in an adapter's test file::

    from tests.backbones.contract import BackboneContract

    class TestWan(BackboneContract):
        name = "wan2.1"
        valid_input_shape = (1, 5, 32, 32)          # (B, T, H, W)
        invalid_inputs = ((1, 4, 32, 32),)          # tuples; each violates a rule
        timesteps = (250, 749)                      # diffusion only; None otherwise

        def make_backbone(self):
            return vfm3d.backbones.load("wan2.1", tiny=True)

Optional attributes: ``layers`` (layers to compare; default first/middle/last), ``atol`` /
``rtol`` (tolerance of "one pass == separate forwards"), ``make_aux(shape)`` (ground truth for
``needs_geometry`` backbones; a default synthetic one is provided).

Checked: shapes and ``frame_index``; multi-layer single pass equals separate full forwards;
early exit runs no block after the deepest requested one; hooks are removed; deterministic for a
fixed seed; timestep batching does not change features (diffusion); rule-violating frames are
refused with a message stating the rule; out-of-range layers and bad timesteps are refused.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from vfm3d.backbones.base import Backbone, UnsupportedInputError
from vfm3d.features.extract import extract


class BackboneContract:
    """Mixin: subclass as ``TestXxx(BackboneContract)`` and set the attributes below."""

    name: ClassVar[str] = "?"
    valid_input_shape: ClassVar[tuple[int, int, int, int]] = (1, 1, 16, 16)
    invalid_inputs: ClassVar[tuple[tuple[int, int, int, int], ...]] = ()
    timesteps: ClassVar[tuple[int, ...] | None] = None
    layers: ClassVar[tuple[int, ...] | None] = None
    atol: ClassVar[float] = 1e-5
    rtol: ClassVar[float] = 1e-4

    def make_backbone(self) -> Backbone:
        raise NotImplementedError("set make_backbone() in the adapter's test class")

    # ------------------------------------------------------------------ helpers
    def make_frames(self, shape: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """Deterministic smooth-ish frames ``[B, T, 3, H, W]`` in [0, 1]."""
        b, t, h, w = shape or self.valid_input_shape
        gen = torch.Generator().manual_seed(1234)
        return torch.rand((b, t, 3, h, w), generator=gen)

    def make_aux(self, shape: tuple[int, int, int, int]) -> dict[str, torch.Tensor]:
        """Synthetic ground truth: depth in [1, 3] m, 90% valid, a centred pinhole, identity pose."""
        b, t, h, w = shape
        gen = torch.Generator().manual_seed(99)
        depth = 1.0 + 2.0 * torch.rand((b, t, h, w), generator=gen)
        valid = torch.rand((b, t, h, w), generator=gen) > 0.1
        k = torch.tensor([[w * 1.0, 0.0, (w - 1) / 2], [0.0, w * 1.0, (h - 1) / 2], [0, 0, 1.0]])
        intrinsics = k.expand(b, t, 3, 3).clone()
        cam_to_world = torch.eye(4, dtype=torch.float64).expand(b, t, 4, 4).clone()
        return {
            "depth": depth,
            "valid": valid,
            "intrinsics": intrinsics,
            "cam_to_world": cam_to_world,
        }

    def _aux(self, backbone: Backbone, shape: tuple[int, int, int, int]) -> Any:
        return self.make_aux(shape) if backbone.needs_geometry else None

    def _layers(self, backbone: Backbone) -> list[int]:
        if self.layers is not None:
            return list(self.layers)
        n = backbone.num_layers
        return sorted({0, n // 2, n - 1})

    def _extract(self, backbone: Backbone, layers: list[int], **kwargs: Any) -> dict:
        kwargs.setdefault("timesteps", None if self.timesteps is None else list(self.timesteps))
        frames = kwargs.pop("frames", None)
        if frames is None:
            frames = self.make_frames()
        shape = self.valid_input_shape
        if frames.ndim == 5:
            shape = (frames.shape[0], frames.shape[1], frames.shape[3], frames.shape[4])
        aux = self._aux(backbone, shape)
        return extract(backbone, frames, layers, aux=aux, **kwargs)

    def _keys(self, layers: list[int]) -> list[tuple[int, int | None]]:
        ts = self.timesteps if self.timesteps is not None else [None]
        return [(layer, t) for layer in layers for t in ts]

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture(scope="class")
    def backbone(self) -> Backbone:
        torch.manual_seed(0)
        return self.make_backbone().eval()

    @pytest.fixture(scope="class")
    def one_pass(self, backbone: Backbone) -> dict:
        return self._extract(backbone, self._layers(backbone), seed=0)

    # ------------------------------------------------------------------ the contract
    def test_declares_itself(self, backbone: Backbone) -> None:
        assert backbone.num_layers >= 1
        assert len(backbone.layer_modules()) == backbone.num_layers
        assert backbone.is_diffusion == (self.timesteps is not None), (
            "set timesteps for diffusion backbones (and only for them)"
        )
        info = backbone.describe()
        assert info["layers"] == backbone.num_layers
        assert isinstance(backbone.fingerprint, str) and backbone.name in backbone.fingerprint

    def test_shapes_and_frame_index(self, backbone: Backbone, one_pass: dict) -> None:
        b, t, h, w = self.valid_input_shape
        layers = self._layers(backbone)
        assert sorted(one_pass) == sorted(self._keys(layers))
        t_feat = backbone.grid.num_feature_frames(t)
        gh, gw = backbone.grid.spatial_shape(h, w)
        expected_index = backbone.grid.frame_index(t)
        for (layer, timestep), feats in one_pass.items():
            assert feats.layer == layer and feats.timestep == timestep
            c = backbone.layer_width(layer)
            assert tuple(feats.tokens.shape) == (b, t_feat, gh, gw, c), (layer, timestep)
            assert not feats.tokens.requires_grad
            assert torch.isfinite(feats.tokens).all()
            assert feats.frame_index.dtype == torch.int64
            assert torch.equal(feats.frame_index.cpu(), expected_index)
            assert feats.frame_index.shape == (t,)
            assert int(feats.frame_index[0]) == 0 and int(feats.frame_index[-1]) == t_feat - 1
            assert bool((feats.frame_index.diff() >= 0).all())

    def test_single_pass_equals_separate_forwards(self, backbone: Backbone, one_pass: dict) -> None:
        for layer in self._layers(backbone):
            alone = self._extract(backbone, [layer], seed=0, early_exit=False)
            for key, feats in alone.items():
                torch.testing.assert_close(
                    one_pass[key].tokens, feats.tokens, atol=self.atol, rtol=self.rtol
                )

    def test_early_exit_runs_no_later_block(self, backbone: Backbone) -> None:
        n = backbone.num_layers
        target = max(0, (n - 1) // 2)
        calls = [0] * n
        handles = []
        for i, module in enumerate(backbone.layer_modules()):

            def count(_m: Any, _i: Any, _o: Any, i: int = i) -> None:
                calls[i] += 1

            handles.append(module.register_forward_hook(count))
        try:
            self._extract(backbone, [target], seed=0)
        finally:
            for handle in handles:
                handle.remove()
        assert all(c >= 1 for c in calls[: target + 1]), calls
        assert all(c == 0 for c in calls[target + 1 :]), f"blocks ran after layer {target}: {calls}"

    def test_hooks_removed(self, backbone: Backbone) -> None:
        self._extract(backbone, [0], seed=0)
        for module in backbone.layer_modules():
            assert len(module._forward_hooks) == 0

    def test_deterministic_for_fixed_seed(self, backbone: Backbone, one_pass: dict) -> None:
        again = self._extract(backbone, self._layers(backbone), seed=0)
        for key, feats in one_pass.items():
            assert torch.equal(feats.tokens, again[key].tokens), key

    def test_timestep_batching_invariant(self, backbone: Backbone, one_pass: dict) -> None:
        if self.timesteps is None:  # nothing to batch: every key carries timestep None
            assert all(t is None for _, t in one_pass)
            return
        last = self.timesteps[-1]
        layer = self._layers(backbone)[-1]
        alone = self._extract(backbone, [layer], timesteps=[last], seed=0)
        torch.testing.assert_close(
            alone[(layer, last)].tokens,
            one_pass[(layer, last)].tokens,
            atol=self.atol,
            rtol=self.rtol,
        )

    def test_rule_violations_refused(self, backbone: Backbone) -> None:
        rule = backbone.rules.describe()
        for shape in self.invalid_inputs:
            frames = self.make_frames(shape)
            with pytest.raises(UnsupportedInputError) as info:
                self._extract(backbone, [0], frames=frames)
            assert rule in str(info.value), f"message must state the rule {rule!r}: {info.value}"

    def test_layer_out_of_range(self, backbone: Backbone) -> None:
        n = backbone.num_layers
        for bad in (n, -1):
            with pytest.raises(ValueError, match=rf"0\.\.{n - 1}"):
                self._extract(backbone, [bad])

    def test_timesteps_required_or_refused(self, backbone: Backbone) -> None:
        if backbone.is_diffusion:
            with pytest.raises(ValueError, match="timesteps"):
                self._extract(backbone, [0], timesteps=None)
        else:
            with pytest.raises(ValueError, match="timesteps"):
                self._extract(backbone, [0], timesteps=[500])

    def test_bad_frames_refused(self, backbone: Backbone) -> None:
        frames = self.make_frames()
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            self._extract(backbone, [0], frames=frames * 2.0 + 0.5)
        nan = frames.clone()
        nan[0, 0, 0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match="NaN"):
            self._extract(backbone, [0], frames=nan)
        with pytest.raises(ValueError, match="shape"):
            self._extract(backbone, [0], frames=frames[0])
