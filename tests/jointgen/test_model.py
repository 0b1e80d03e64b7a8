"""`JointGenerator`: head hooks on the chosen DiT blocks, time mapping, save / load."""

from __future__ import annotations

import pytest
import torch

from vfm3d.jointgen.model import JointGenerator, default_head_blocks, frame_mapping

CORPUS = ["a red sofa in a room, the camera walks left", "a blue car on the ground"]


@pytest.fixture(scope="module")
def gen() -> JointGenerator:
    return JointGenerator.tiny(seed=0, corpus=CORPUS).eval()


def _inputs(g: JointGenerator, batch: int = 2, frames: int = 9):
    torch.manual_seed(0)
    z = torch.randn(batch, *g.latent_shape(frames, 32, 32))
    t = torch.tensor([700.0, 100.0])[:batch]
    prompts = ["a red sofa", None] if g.text is not None else [None, None]
    return z, t, g.encode_prompts(prompts[:batch])


def test_frame_mapping() -> None:
    frames, latent, offset = frame_mapping(3, 4, "expand")
    assert frames.tolist() == list(range(9))
    assert latent.tolist() == [0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert offset.tolist() == [0, 0, 1, 2, 3, 0, 1, 2, 3]
    frames, latent, _ = frame_mapping(3, 4, "latent")
    assert frames.tolist() == [0, 4, 8] and latent.tolist() == [0, 1, 2]
    assert default_head_blocks(4) == (1, 3) and default_head_blocks(30) == (14, 29)
    with pytest.raises(ValueError, match="time_mapping"):
        frame_mapping(3, 4, "upsample")


@torch.no_grad()
def test_outputs_and_shapes(gen: JointGenerator) -> None:
    z, t, ctx = _inputs(gen)
    out = gen(z, t, ctx)
    assert out["velocity"].shape == z.shape
    assert out["pose_enc"].shape == (2, 9, 9)
    assert out["points"].shape == (2, 9, 32, 32, 3)
    assert out["points_conf"].shape == out["depth"].shape == (2, 9, 32, 32)
    assert bool((out["points_conf"] > 1).all()) and bool((out["depth"] > 0).all())
    assert out["frames"].tolist() == list(range(9))
    # the hooks observe only: the velocity is the plain DiT's
    plain = gen.transformer(
        hidden_states=z, timestep=t, encoder_hidden_states=ctx, return_dict=False
    )[0]
    assert torch.equal(out["velocity"], plain)
    latent_head = JointGenerator.tiny(seed=0, time_mapping="latent")
    o = latent_head(z, t, latent_head.encode_prompts([None, None]))
    assert o["frames"].tolist() == [0, 4, 8] and o["points"].shape == (2, 3, 32, 32, 3)


@torch.no_grad()
def test_head_reads_the_chosen_blocks() -> None:
    g = JointGenerator.tiny(seed=0, head_blocks=(0,)).eval()
    z, t, ctx = _inputs(g)
    seen = {}
    handle = g.transformer.blocks[0].register_forward_hook(
        lambda _m, _i, o: seen.setdefault("block0", o)
    )
    ref = g(z, t, ctx)
    handle.remove()
    # the head's input is block 0's output, reshaped to [B, T', h, w, C]
    grids = g.block_grids({0: seen["block0"]}, z.shape)
    assert torch.equal(g.head([grids[0]], (32, 32))["points"], ref["points"])

    # perturbing block 0's output changes the head; perturbing block 1's does not (the
    # perturbation varies over channels: the head's LayerNorm would remove a constant)
    def bump(_m, _i, o):
        return o + 0.1 * torch.arange(o.shape[-1], dtype=o.dtype)

    handle = g.transformer.blocks[1].register_forward_hook(bump)
    later = g(z, t, ctx)
    handle.remove()
    assert torch.equal(later["points"], ref["points"])
    assert not torch.equal(later["velocity"], ref["velocity"])
    handle = g.transformer.blocks[0].register_forward_hook(bump)
    earlier = g(z, t, ctx)
    handle.remove()
    assert not torch.allclose(earlier["points"], ref["points"])

    # early exit: block 1 never runs
    def forbid(_m, _i):
        raise AssertionError("block 1 ran despite early exit")

    handle = g.transformer.blocks[1].register_forward_pre_hook(forbid)
    try:
        early = g(z, t, ctx, early_exit=True)
    finally:
        handle.remove()
    assert "velocity" not in early and torch.equal(early["points"], ref["points"])


def test_size_rules(gen: JointGenerator) -> None:
    with pytest.raises(ValueError, match="4k\\+1"):
        gen.latent_shape(8, 32, 32)
    with pytest.raises(ValueError, match="multiples of 16"):
        gen.latent_shape(9, 24, 32)
    no_text = JointGenerator.tiny(seed=0)
    with pytest.raises(ValueError, match="no text encoder"):
        no_text.encode_prompts(["a sofa"])


@torch.no_grad()
def test_save_and_load_round_trip(gen: JointGenerator, tmp_path) -> None:
    z, t, _ = _inputs(gen)
    folder = gen.save_pretrained(tmp_path / "m")
    names = {p.name for p in folder.iterdir()}
    assert {"transformer", "vae", "scheduler", "text_encoder", "tokenizer", "head"} <= names
    assert {"jog3r.json", "empty_prompt_embedding.safetensors"} <= names
    loaded = JointGenerator.from_pretrained(folder)
    ctx_a = gen.encode_prompts(["a red sofa", None])
    ctx_b = loaded.encode_prompts(["a red sofa", None])
    assert torch.allclose(ctx_a, ctx_b)
    a, b = gen(z, t, ctx_a), loaded(z, t, ctx_b)
    for key in ("velocity", "points", "pose_enc", "depth"):
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    assert torch.allclose(loaded.empty_prompt, gen.empty_embedding())
    with pytest.raises(FileNotFoundError, match=r"jog3r\.json"):
        JointGenerator.from_pretrained(folder / "transformer")
