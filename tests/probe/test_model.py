"""Probe model: shapes of every head, tokens and RoPE on non-square grids, activations."""

from __future__ import annotations

import pytest
import torch

from vfm3d.probe import ProbeConfig, ProbeModel
from vfm3d.probe.layers import RoPE2D


@pytest.fixture(scope="module")
def model() -> ProbeModel:
    torch.manual_seed(0)
    return ProbeModel(ProbeConfig.cpu_small(camera_iters=3), in_channels=12).eval()


@pytest.mark.parametrize(
    ("grid", "out"), [((5, 7), (20, 36)), ((6, 3), (24, 10)), ((4, 4), (8, 8))]
)
def test_forward_shapes_every_head(model: ProbeModel, grid, out) -> None:
    b, s = 2, 3
    feats = torch.randn(b, s, *grid, 12)
    with torch.no_grad():
        pred = model(feats, out)
    h, w = out
    assert pred["pose_enc"].shape == (b, s, 9)
    assert len(pred["pose_enc_list"]) == 3
    assert all(p.shape == (b, s, 9) for p in pred["pose_enc_list"])
    assert torch.equal(pred["pose_enc"], pred["pose_enc_list"][-1])
    assert pred["points"].shape == (b, s, h, w, 3)
    assert pred["points_conf"].shape == (b, s, h, w)
    assert pred["depth"].shape == (b, s, h, w)
    assert pred["depth_conf"].shape == (b, s, h, w)
    assert bool((pred["depth"] > 0).all())
    assert bool((pred["points_conf"] > 1).all()) and bool((pred["depth_conf"] > 1).all())
    assert bool((pred["pose_enc"][..., 7:] >= 0).all())  # FoV through ReLU


def test_intermediates_concatenate_frame_and_global(model: ProbeModel) -> None:
    feats = torch.randn(1, 2, 3, 5, 12)
    with torch.no_grad():
        inter = model.aggregate(feats)
    d = model.config.embed_dim
    p = model.patch_start + 3 * 5
    assert len(inter) == model.config.depth
    for x in inter:
        assert x is not None and x.shape == (1, 2, p, 2 * d)


def test_first_frame_has_its_own_tokens(model: ProbeModel) -> None:
    """Identical features in every frame: frame 0 differs (own camera/register tokens), the
    others are equal to each other."""
    with torch.no_grad():
        model.camera_token.copy_(torch.randn_like(model.camera_token))
        frame = torch.randn(1, 1, 3, 4, 12)
        inter = model.aggregate(frame.expand(1, 3, 3, 4, 12).contiguous())[-1]
    torch.testing.assert_close(inter[:, 1], inter[:, 2])
    assert not torch.allclose(inter[:, 0], inter[:, 1], atol=1e-4)


def test_frame_order_matters_only_through_the_reference_frame(model: ProbeModel) -> None:
    """Swapping frames 1 and 2 swaps their outputs (global attention is permutation-equivariant
    apart from frame 0's own tokens)."""
    torch.manual_seed(1)
    feats = torch.randn(1, 3, 4, 5, 12)
    swapped = feats[:, [0, 2, 1]]
    with torch.no_grad():
        a = model(feats, (8, 10))
        b = model(swapped, (8, 10))
    torch.testing.assert_close(a["depth"][:, [0, 2, 1]], b["depth"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a["pose_enc"][:, [0, 2, 1]], b["pose_enc"], atol=1e-5, rtol=1e-4)


def test_rope_tables_non_square_grid() -> None:
    rope = RoPE2D(head_dim=8, base=100.0)
    h, w, special = 3, 5, 5
    cos, sin = rope.tables(h, w, special, torch.device("cpu"), torch.float32)
    assert cos.shape == (special + h * w, 8)
    # special tokens: identity rotation
    assert torch.equal(cos[:special], torch.ones(special, 8))
    assert torch.equal(sin[:special], torch.zeros(special, 8))
    inv_freq = 1.0 / 100.0 ** (torch.arange(2) / 2)
    for y in range(h):
        for x in range(w):
            row = special + y * w + x  # row-major patches, positions (y + 1, x + 1)
            expect = torch.cat([(y + 1) * inv_freq] * 2 + [(x + 1) * inv_freq] * 2)
            torch.testing.assert_close(cos[row], expect.cos())
            torch.testing.assert_close(sin[row], expect.sin())
    # cached: same tensors for the same grid, different for the transposed grid
    again = rope.tables(h, w, special, torch.device("cpu"), torch.float32)
    assert again[0] is cos
    assert rope.tables(w, h, special, torch.device("cpu"), torch.float32)[0].shape == cos.shape
    assert not torch.equal(rope.tables(w, h, special, torch.device("cpu"), torch.float32)[0], cos)


def test_rope_is_relative_in_both_axes() -> None:
    """<R(p) q, R(p') k> depends on p - p' only, separately along y and x."""
    torch.manual_seed(0)
    rope = RoPE2D(head_dim=16, base=100.0)
    cos, sin = rope.tables(4, 6, 0, torch.device("cpu"), torch.float64)
    q, k = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)

    def score(a: tuple[int, int], b: tuple[int, int]) -> float:
        ia, ib = a[0] * 6 + a[1], b[0] * 6 + b[1]
        qa = RoPE2D.rotate(q[None], cos[ia : ia + 1], sin[ia : ia + 1])
        kb = RoPE2D.rotate(k[None], cos[ib : ib + 1], sin[ib : ib + 1])
        return float((qa * kb).sum())

    assert score((0, 1), (2, 4)) == pytest.approx(score((1, 2), (3, 5)), abs=1e-6)
    assert score((0, 1), (2, 4)) != pytest.approx(score((0, 1), (3, 3)), abs=1e-3)
    # rotation preserves norms
    rotated = RoPE2D.rotate(q[None].expand(24, 16), cos, sin)
    torch.testing.assert_close(rotated.norm(dim=-1), q.norm().expand(24))


def test_wrong_channels_and_rank_are_clear_errors(model: ProbeModel) -> None:
    with pytest.raises(ValueError, match="C=5 channels"):
        model(torch.randn(1, 2, 3, 3, 5), (8, 8))
    with pytest.raises(ValueError, match=r"\[B, S, h, w, C\]"):
        model(torch.randn(2, 3, 3, 12), (8, 8))


def test_config_rules_and_file_round_trip(tmp_path) -> None:
    with pytest.raises(ValueError, match="num_heads"):
        ProbeConfig(embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="first_n"):
        ProbeConfig(num_frames=8, min_gap=20, first_n=76)
    (tmp_path / "p.toml").write_text("[probe]\nembed_dim = 64\nnum_heads = 4\nlr = 0.01\n")
    cfg = ProbeConfig.load(tmp_path / "p.toml")
    assert (cfg.embed_dim, cfg.num_heads, cfg.lr, cfg.depth) == (64, 4, 0.01, 4)
    (tmp_path / "bad.json").write_text('{"embed_dimm": 3}')
    with pytest.raises(ValueError, match="embed_dimm"):
        ProbeConfig.load(tmp_path / "bad.json")
    assert ProbeConfig.from_dict(cfg.to_dict()) == cfg
    paper = ProbeConfig.paper()
    assert (paper.embed_dim, paper.num_heads, paper.depth, paper.rope_base) == (1024, 16, 4, 100.0)
    assert (paper.init_values, paper.camera_iters, paper.qk_norm) == (0.01, 4, True)


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    plain = ProbeModel(ProbeConfig.cpu_small(camera_iters=2), in_channels=6)
    ckpt_cfg = ProbeConfig.cpu_small(camera_iters=2, checkpoint_trunk=True, checkpoint_heads=True)
    ckpt = ProbeModel(ckpt_cfg, in_channels=6)
    ckpt.load_state_dict(plain.state_dict())
    feats = torch.randn(1, 3, 3, 4, 6)
    grads = []
    for m in (plain, ckpt):
        out = m(feats, (12, 16))
        poses = sum(p.sum() for p in out["pose_enc_list"])  # each iteration (earlier detached)
        (out["points"].sum() + out["depth"].sum() + poses).backward()
        grads.append({k: p.grad.clone() for k, p in m.named_parameters()})
    for key in grads[0]:
        torch.testing.assert_close(grads[0][key], grads[1][key], rtol=1e-4, atol=2e-5)


def test_fusion_conv_before_upsampling_equals_vggt_order() -> None:
    """The 1x1 conv commutes with bilinear upsampling (exact up to rounding)."""
    from vfm3d.probe.heads import _FusionBlock

    torch.manual_seed(0)
    block = _FusionBlock(8)
    x, skip = torch.randn(2, 8, 5, 7), torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        ours = block(x, skip, size=(11, 13))
        y = block.rcu2(x + block.rcu1(skip))
        vggt = block.out_conv(
            torch.nn.functional.interpolate(y, size=(11, 13), mode="bilinear", align_corners=True)
        )
    torch.testing.assert_close(ours, vggt, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------- same function as VGGT
def test_residual_unit_skip_adds_relu_of_input() -> None:
    """VGGT's residual conv units apply an in-place ReLU to their input: the skip adds relu(x)."""
    from vfm3d.probe.heads import _FusionBlock

    block = _FusionBlock(3)
    unit = block.rcu1
    with torch.no_grad():
        for conv in (unit.conv1, unit.conv2):
            conv.weight.zero_()
            conv.bias.zero_()
    x = -torch.rand(1, 3, 4, 5) - 0.1  # all negative
    torch.testing.assert_close(unit(x), torch.zeros_like(x))
    x = torch.randn(1, 3, 4, 5)
    torch.testing.assert_close(unit(x), torch.relu(x))


def test_uv_grid_spans_pixel_centres() -> None:
    """The DPT position grid of n cells reaches ±span·(n−1)/n (cell centres), not ±span."""
    from vfm3d.models.vggt.heads import create_uv_grid, uv_embedding

    grid = create_uv_grid(4, 4, dtype=torch.float64)  # square: span = 1/sqrt(2)
    span = 2**-0.5
    expected = torch.tensor([-0.75, -0.25, 0.25, 0.75], dtype=torch.float64) * span
    torch.testing.assert_close(grid[0, :, 0], expected)  # u along a row
    torch.testing.assert_close(grid[:, 0, 1], expected)  # v down a column
    wide = create_uv_grid(4, 2, aspect_ratio=2.0, dtype=torch.float64)
    torch.testing.assert_close(wide[0, :, 0], expected / span * 2 / 5**0.5)
    torch.testing.assert_close(wide[:, 0, 1], torch.tensor([-0.5, 0.5]).double() / 5**0.5)
    emb = uv_embedding(4, 4, 8, 1.0, torch.device("cpu"), torch.float64)
    # channel 0: sin(u * omega_0^0) * 0.1; channel 4 (y part): sin(v) * 0.1
    torch.testing.assert_close(emb[0, 0], 0.1 * torch.sin(expected))
    torch.testing.assert_close(emb[4, :, 0], 0.1 * torch.sin(expected))


def test_probe_dpt_head_is_vggts_with_other_names() -> None:
    """The probe's DPT head and `vfm3d.models.vggt`'s compute one function: the same weights
    (renamed one to one) give the same maps."""
    import re

    from vfm3d.models.vggt.heads import DPTHead as VggtDPT
    from vfm3d.probe.heads import DPTHead

    torch.manual_seed(0)
    ours = DPTHead(16, 4, "inv_log", features=8, out_channels=(4, 8, 16, 16))
    vggt = VggtDPT(16, patch_size=4, output_dim=4, features=8, out_channels=(4, 8, 16, 16),
                   intermediate_layer_idx=(0, 1, 2, 3))  # fmt: skip

    def to_probe(name: str) -> str:
        name = name.replace("resize_layers", "resize").replace("scratch.output_conv", "output_conv")
        name = re.sub(r"scratch\.layer(\d)_rn", lambda m: f"layer_rn.{int(m[1]) - 1}", name)
        name = re.sub(r"scratch\.refinenet(\d)", lambda m: f"fusion.{int(m[1]) - 1}", name)
        return name.replace("resConfUnit1", "rcu1").replace("resConfUnit2", "rcu2")

    state = {to_probe(k): v for k, v in vggt.state_dict().items()}
    assert set(state) == set(ours.state_dict())
    ours.load_state_dict(state, strict=True)
    layers = [torch.randn(2, 3, 1 + 12, 16) for _ in range(4)]  # 3 x 4 grid, 1 special token
    with torch.no_grad():
        pv, pc = ours(layers, (3, 4), 1, (12, 16))
        vv, vc = vggt(layers, torch.zeros(2, 3, 3, 12, 16), 1)
    torch.testing.assert_close(pv, vv)
    torch.testing.assert_close(pc, vc)


def _bf16_heads_model(**overrides) -> ProbeModel:
    torch.manual_seed(0)
    cfg = ProbeConfig.cpu_small(dpt_features=128, dpt_out_channels=(8, 16, 32, 32), **overrides)
    return ProbeModel(cfg, in_channels=12).eval()


def test_heads_follow_cpu_autocast_as_the_reference() -> None:
    """VidFM3D leaves only CUDA autocast around its heads: on CPU they run in the caller's
    bf16, unless ``heads_fp32``; the heads' layout switches to channels-last there ("auto")."""
    feats = torch.randn(1, 2, 4, 4, 12)
    seen: dict[str, torch.dtype] = {}
    model = _bf16_heads_model()
    hook = model.point_head.output_conv1.register_forward_hook(
        lambda m, i, o: seen.__setitem__("dtype", o.dtype)
    )
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(feats, (16, 16))
    assert seen["dtype"] == torch.bfloat16
    weight = model.point_head.output_conv1.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    with torch.no_grad():  # back in fp32: the default layout again
        model(feats, (16, 16))
    assert seen["dtype"] == torch.float32 and model.point_head.output_conv1.weight.is_contiguous()
    hook.remove()
    fp32 = _bf16_heads_model(heads_fp32=True)
    fp32.point_head.output_conv1.register_forward_hook(
        lambda m, i, o: seen.__setitem__("dtype", o.dtype)
    )
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fp32(feats, (16, 16))
    assert seen["dtype"] == torch.float32


def test_channels_last_heads_compute_the_same_function() -> None:
    feats = torch.randn(1, 2, 4, 4, 12)
    outs = {}
    for mode in ("on", "off"):
        model = _bf16_heads_model(channels_last_heads=mode)
        with torch.no_grad():
            outs[mode] = model(feats, (16, 16))
        state = model.state_dict()
        assert all(v.is_contiguous() or v.ndim == 4 for v in state.values())
    for key in ("points", "depth", "points_conf", "depth_conf"):
        torch.testing.assert_close(outs["on"][key], outs["off"][key], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="channels_last_heads"):
        ProbeConfig.cpu_small(channels_last_heads="yes")


def _vggt_camera_loop(head, camera_tokens: torch.Tensor) -> list[torch.Tensor]:
    """VGGT's camera-head loop written out independently: one iteration after the other, each
    conditioned on the previous (detached) estimate."""
    b, s, _ = camera_tokens.shape
    tokens = head.token_norm(camera_tokens)
    pred, outputs = None, []
    for _ in range(head.iters):
        start = head.empty_pose.expand(b, s, 9) if pred is None else pred.detach()
        shift, scale, gate = head.modulation(head.embed_pose(start)).chunk(3, dim=-1)
        x = gate * (head.adaln_norm(tokens) * (1 + scale) + shift) + tokens
        for block in head.trunk:
            x = block(x)
        delta = head.pose_branch(head.trunk_norm(x))
        pred = delta if pred is None else pred.detach() + delta
        outputs.append(torch.cat([pred[..., :7], torch.relu(pred[..., 7:])], dim=-1))
    return outputs


@pytest.mark.parametrize("iters", [1, 2, 4])
def test_batched_camera_iterations_equal_the_sequential_loop(iters: int) -> None:
    """With gradients on, the camera head runs its iterations as one batch; outputs and every
    gradient (parameters and input tokens) must be the sequential loop's."""
    from vfm3d.probe.heads import CameraHead

    torch.manual_seed(0)
    head = CameraHead(32, trunk_depth=2, num_heads=4, init_values=0.5, iters=iters)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 0.3)  # far from the near-zero init, so every iteration matters
    tokens = torch.randn(2, 5, 32, dtype=torch.float64, requires_grad=True)
    head = head.double()
    weights = torch.linspace(-1, 2, 9, dtype=torch.float64)
    results = []
    for run in (head, lambda t: _vggt_camera_loop(head, t)):
        head.zero_grad(set_to_none=True)
        tokens.grad = None
        outs = run(tokens)
        loss = sum((o * weights).square().sum() * (i + 1) for i, o in enumerate(outs))
        loss.backward()
        grads = {k: p.grad.clone() for k, p in head.named_parameters()}
        results.append(([o.detach() for o in outs], grads, tokens.grad.clone()))
    (outs_b, grads_b, tok_b), (outs_s, grads_s, tok_s) = results
    assert len(outs_b) == len(outs_s) == iters
    for a, b in zip(outs_b, outs_s, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for key in grads_s:
        torch.testing.assert_close(grads_b[key], grads_s[key], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(tok_b, tok_s, rtol=1e-9, atol=1e-12)
    # without gradients the head runs the loop itself: same values
    with torch.no_grad():
        for a, b in zip(head(tokens), outs_s, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
