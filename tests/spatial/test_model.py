"""VG-LLM model on tiny random configs: inputs in Qwen's layout, geometry fusion, 3-axis M-RoPE,
greedy generation, save / load (vfm3d's layout and VG-LLM's released one)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from vfm3d.models.vggt import VGGT, VGGTConfig
from vfm3d.spatial.model import (
    SPECIAL_TOKENS,
    VGLLMConfig,
    VGLLMForConditionalGeneration,
    VGLLMProcessor,
    generate_answers,
    load_vgllm,
    question_prompt,
    save_vgllm,
    train_tokenizer,
)

P = 8  # patch size of the vision tower and of the geometry encoder
CORPUS = [
    "These are frames of a video.\nHow many chair(s) are in this room?\n"
    "Please answer the question using a single word or phrase.",
    "What is the size of this room (in square meters)? 12.5 3 4 0.7",
    "Answer with the option's letter from the given choices directly. A. sofa B. table",
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CORPUS * 3, vocab_size=320, min_frequency=1)


@pytest.fixture(scope="module")
def geometry() -> VGGTConfig:
    # LayerScale 1.0: random blocks visibly change the tokens
    return VGGTConfig.tiny(patch_size=P, img_size=32, init_values=1.0)


def _model(tokenizer, geometry, use_geometry=True, seed=0) -> VGLLMForConditionalGeneration:
    config = VGLLMConfig.tiny(tokenizer, geometry if use_geometry else None, patch_size=P)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VGLLMForConditionalGeneration(config).eval()


@pytest.fixture(scope="module")
def model(tokenizer, geometry) -> VGLLMForConditionalGeneration:
    return _model(tokenizer, geometry)


@pytest.fixture(scope="module")
def processor(tokenizer, model) -> VGLLMProcessor:
    return VGLLMProcessor.for_model(tokenizer, model.config, (32, 48))


def _videos(seed: int = 0, frames: int = 3, hw=(32, 48)) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(frames, 3, *hw, generator=gen) for _ in range(2)]


PROMPTS = [question_prompt("How many chair(s) are in this room?"), "What is the size?"]


# ---------------------------------------------------------------------- tokenizer and inputs
def test_tokenizer_has_qwen_special_tokens_and_round_trips(tokenizer) -> None:
    ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert ids == list(range(len(SPECIAL_TOKENS)))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    text = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>How many? 12.5<|im_end|>"
    encoded = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(encoded) == text
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") in encoded
    # digits are single tokens (Qwen2's split), unseen text still encodes (byte level)
    assert len(tokenizer.encode("1234", add_special_tokens=False)) == 4
    assert tokenizer.decode(tokenizer.encode("Zürich ✓", add_special_tokens=False)) == "Zürich ✓"


def test_pixel_values_follow_qwen_patch_order(processor, model) -> None:
    frames = torch.rand(2, 3, 40, 48)  # 5 x 6 patches: the vision input crops to 4 x 6
    values, grid = processor.image_inputs(frames)
    assert grid.tolist() == [[1, 4, 6]] * 2
    assert values.shape == (2 * 4 * 6, 3 * 2 * P * P)
    mean = torch.tensor(processor.image_mean).view(3, 1, 1)
    std = torch.tensor(processor.image_std).view(3, 1, 1)
    k = 0
    for s in range(2):  # merged blocks raster over (h/2, w/2), 4 patches row-major inside
        for bi in range(2):
            for bj in range(3):
                for di in range(2):
                    for dj in range(2):
                        r, c = 2 * bi + di, 2 * bj + dj
                        patch = (
                            frames[s, :, r * P : (r + 1) * P, c * P : (c + 1) * P] - mean
                        ) / std
                        got = values[k].view(3, 2, P, P)  # what the patch embedding reads
                        assert torch.allclose(got[:, 0], patch) and torch.allclose(got[:, 1], patch)
                        k += 1
    embeds = model.model.get_image_features(values, grid, geometry_pixel_values=[frames])
    embeds = embeds.pooler_output
    assert [tuple(e.shape) for e in embeds] == [(6, model.config.text_config.hidden_size)] * 2


def test_sequence_layout_and_labels(processor, tokenizer) -> None:
    batch = processor(_videos(), PROMPTS, ["3", "12.5"])
    image = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    ids, types, mask, labels = (
        batch["input_ids"],
        batch["mm_token_type_ids"],
        batch["attention_mask"],
        batch["labels"],
    )
    assert torch.equal(types == 1, ids == image)  # image tokens and only them
    assert int((ids[0] == image).sum()) == 3 * 6  # 3 frames of 2 x 3 merged tokens
    assert mask[0, 0] == 0 or mask[1, 0] == 0  # left padded
    for b, answer in enumerate(["3", "12.5"]):
        kept = ids[b][labels[b] != -100].tolist()
        assert tokenizer.decode(kept) == answer + "<|im_end|>"
        assert tokenizer.decode(ids[b][mask[b] == 1].tolist()).startswith(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            "<|vision_start|><|image_pad|>"
        )
    assert batch["geometry_pixel_values"].shape == (2, 3, 3, 32, 48)


# ---------------------------------------------------------------------- geometry fusion
def test_geometry_tokens_pair_with_visual_patches(model, processor) -> None:
    frames = torch.rand(2, 3, 40, 48)  # geometry grid 5 x 6, vision grid cropped to 4 x 6
    _, grid = processor.image_inputs(frames)
    layer = model.config.geometry_layer_index()
    assert layer == model.config.geometry_config().depth - 2  # second to last, as VG-LLM
    captured = {}
    hook = model.merger.register_forward_pre_hook(lambda m, a: captured.setdefault("x", a[0]))
    try:
        model.model.geometry_tokens(frames, (int(grid[0, 1]), int(grid[0, 2])))
    finally:
        hook.remove()
    with torch.no_grad():
        layers, start = model.vggt.aggregator(frames[None], keep_layers=(layer,))
    tokens = layers[layer][0]  # [S, 1 + R + 5 * 6, 2C]
    assert start == 1 + model.config.geometry_config().num_register_tokens
    x = captured["x"]
    assert x.shape == (2 * 2 * 3, 4, tokens.shape[-1])
    n = 0
    for s in range(2):
        for bi in range(2):
            for bj in range(3):
                for q in range(4):
                    r, c = 2 * bi + q // 2, 2 * bj + q % 2
                    assert torch.equal(x[n, q], tokens[s, start + r * 6 + c])
                n += 1


def test_geometry_tokens_change_the_output(model, processor) -> None:
    batch = processor(_videos(0), PROMPTS)
    other = dict(batch, geometry_pixel_values=torch.rand_like(batch["geometry_pixel_values"]))
    with torch.no_grad():
        a = model(**batch).logits
        b = model(**other).logits
    assert (a - b).abs().max() > 1e-5
    # ... only after the first image token (causal): the prefix is unchanged
    first = int((batch["mm_token_type_ids"] == 1).int().argmax(dim=1).min())
    assert torch.allclose(a[:, :first], b[:, :first], atol=1e-6)


def test_gradient_reaches_the_merger_not_the_encoder(tokenizer, geometry, processor) -> None:
    net = _model(tokenizer, geometry).train()
    assert not net.vggt.training  # frozen encoder stays in eval mode
    loss = net(**processor(_videos(), PROMPTS, ["3", "12.5"])).loss
    loss.backward()
    for p in net.merger.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in net.vggt.parameters())
    assert net.model.visual.patch_embed.proj.weight.grad.abs().sum() > 0  # vision tower trains


def test_zero_geometry_branch_equals_the_twin(tokenizer, geometry, processor) -> None:
    fused = _model(tokenizer, geometry, seed=3)
    twin = _model(tokenizer, geometry, use_geometry=False, seed=3)
    assert twin.vggt is None and twin.merger is None
    mine = fused.state_dict()
    assert set(twin.state_dict()) < set(mine)  # the twin is the model minus vggt / merger
    twin.load_state_dict({k: mine[k] for k in twin.state_dict()}, strict=True)
    with torch.no_grad():
        fused.merger.mlp[2].weight.zero_()
        fused.merger.mlp[2].bias.zero_()
    batch = processor(_videos(1), PROMPTS)
    plain = {k: v for k, v in batch.items() if k != "geometry_pixel_values"}
    with torch.no_grad():
        a = fused(**batch).logits
        b = twin(**plain).logits
    assert torch.allclose(a, b, atol=1e-6)


# ---------------------------------------------------------------------- M-RoPE
def _captured_positions(model, run) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    rotary = model.model.language_model.rotary_emb
    hook = rotary.register_forward_pre_hook(lambda m, a: seen.append(a[1].detach().clone()))
    try:
        run()
    finally:
        hook.remove()
    return seen


def test_mrope_positions_are_three_axis(model, processor) -> None:
    batch = processor(_videos(), PROMPTS)
    with torch.no_grad():
        seen = _captured_positions(model, lambda: model(**batch))
    positions = seen[0]
    assert positions.shape == (3, *batch["input_ids"].shape)  # not a 1-D fallback
    assert torch.equal(positions, model.rope_positions(batch))
    image = batch["mm_token_type_ids"] == 1
    t, h, w = (positions[i][image] for i in range(3))
    assert not torch.equal(h, w) and not torch.equal(t, h)
    # one image (2 x 3 merged tokens): temporal constant, height rows, width columns
    first = torch.nonzero(image[0])[:6, 0]
    block = positions[:, 0, first]
    base = int(block[0, 0])
    assert block[0].tolist() == [base] * 6
    assert block[1].tolist() == [base, base, base, base + 1, base + 1, base + 1]
    assert block[2].tolist() == [base, base + 1, base + 2] * 2
    # text after an image continues after the image's largest position, all axes equal
    after = int(torch.nonzero(image[0])[5, 0]) + 1  # <|vision_end|>
    assert positions[:, 0, after].tolist() == [base + 3] * 3
    # without mm_token_type_ids transformers silently falls back to 1-D positions
    plain = {k: v for k, v in batch.items() if k != "mm_token_type_ids"}
    model.model.rope_deltas = None
    with torch.no_grad():
        fallback = _captured_positions(model, lambda: model(**plain))[0]
    assert torch.equal(fallback[0], fallback[1]) and torch.equal(fallback[1], fallback[2])


def test_generation_is_greedy_deterministic_and_uses_3d_positions(model, processor) -> None:
    videos = _videos(2)
    seen = _captured_positions(model, lambda: generate_answers(model, processor, videos, PROMPTS))
    first = generate_answers(model, processor, videos, PROMPTS)
    assert generate_answers(model, processor, videos, PROMPTS) == first
    prefill = processor(videos, PROMPTS)
    assert torch.equal(seen[0], model.rope_positions(prefill))
    # the cached generate equals an argmax loop re-running the full sequence each step
    batch = processor(videos, PROMPTS)
    eos = processor.tokenizer.eos_token_id
    out = model.generate(**batch, do_sample=False, num_beams=1, max_new_tokens=16)
    new = out[:, batch["input_ids"].shape[1] :]
    assert new.shape[1] <= 16
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["mm_token_type_ids"]
    done = torch.zeros(len(ids), dtype=torch.bool)
    for step in range(new.shape[1]):
        model.model.rope_deltas = None
        feed = dict(batch, input_ids=ids, attention_mask=mask, mm_token_type_ids=types)
        with torch.no_grad():
            nxt = model(**feed).logits[:, -1].argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, processor.tokenizer.pad_token_id), nxt)
        assert torch.equal(nxt, new[:, step])
        done |= nxt == eos
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        types = torch.cat([types, torch.zeros_like(types[:, :1])], dim=1)
    decoded = [processor.tokenizer.decode(r, skip_special_tokens=True) for r in new.tolist()]
    assert decoded == first


# ---------------------------------------------------------------------- save / load
def test_save_load_round_trip(tmp_path: Path, model, processor) -> None:
    folder = save_vgllm(model, processor, tmp_path / "vgllm")
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"} <= (
        names
    )
    loaded, proc = load_vgllm(folder)
    a, b = model.state_dict(), loaded.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert proc.size == (32, 48) and proc.patch_size == P
    videos = _videos(4)
    assert generate_answers(loaded, proc, videos, PROMPTS) == generate_answers(
        model, processor, videos, PROMPTS
    )
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl" and config["use_vggt_feature"] is True
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        tops = {".".join(k.split(".")[:2]) for k in handle.keys()}
    assert tops == {
        "lm_head.weight",
        "model.visual",
        "model.language_model",
        "model.vggt",
        "model.merger",
    }


def test_vgllm_release_layout_loads(tmp_path: Path, model, processor) -> None:
    """VG-LLM's folders: transformers-4.5x names (``visual.*``, ``model.*``), a flat config
    with ``rope_scaling`` type mrope, VGGT's depth / point heads in the file."""
    from safetensors.torch import load_file, save_file

    ours = save_vgllm(model, processor, tmp_path / "ours")
    legacy = tmp_path / "release"
    legacy.mkdir()
    renamed = {}
    for key, value in load_file(str(ours / "model.safetensors")).items():
        if key.startswith(("model.visual.", "model.merger.", "model.vggt.")):
            key = key.removeprefix("model.")
        elif key.startswith("model.language_model."):
            key = "model." + key.removeprefix("model.language_model.")
        renamed[key] = value
    assert "merger.mlp.0.weight" in renamed and "vggt.aggregator.camera_token" in renamed
    renamed["vggt.depth_head.projects.0.weight"] = torch.zeros(2, 2)
    save_file(renamed, str(legacy / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((ours / "config.json").read_text())
    text = config.pop("text_config")
    rope = text.pop("rope_parameters")
    text.pop("model_type", None)
    flat = {
        **config,
        **text,
        "architectures": ["Qwen2_5_VLForConditionalGenerationWithVGGT"],
        "rope_scaling": {"type": "mrope", "mrope_section": rope["mrope_section"]},
        "rope_theta": rope["rope_theta"],
    }
    (legacy / "config.json").write_text(json.dumps(flat))
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copy(ours / name, legacy / name)
    loaded, _ = load_vgllm(legacy)
    a, b = model.state_dict(), loaded.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.config.text_config.rope_parameters["mrope_section"] == rope["mrope_section"]


def test_geometry_encoder_loads_from_a_vggt_folder(tmp_path: Path, tokenizer, geometry) -> None:
    vggt = VGGT.random(geometry, seed=5)  # with heads, as zoo/vggt-mini
    folder = tmp_path / "vggt"
    vggt.save_pretrained(folder)
    net = _model(tokenizer, geometry)
    net.load_geometry_encoder(folder)
    a, b = vggt.aggregator.state_dict(), net.vggt.aggregator.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(not p.requires_grad for p in net.vggt.parameters())
    with pytest.raises(ValueError, match="VGGT config differs"):
        other = tmp_path / "other"
        VGGT.random(geometry.replace(embed_dim=64), seed=0).save_pretrained(other)
        net.load_geometry_encoder(other)


def test_batched_answers_equal_single_ones(model, processor) -> None:
    videos = _videos(5)
    both = generate_answers(model, processor, videos, PROMPTS)
    alone = [generate_answers(model, processor, [v], [p])[0] for v, p in zip(videos, PROMPTS)]
    assert both == alone  # left padding changes nothing


def test_reference_frame_last_flips_the_frames(tokenizer, geometry, model) -> None:
    config = VGLLMConfig.tiny(tokenizer, geometry, patch_size=P, reference_frame="last")
    last = VGLLMForConditionalGeneration(config).eval()
    last.load_state_dict(model.state_dict())
    frames = torch.rand(3, 3, 32, 48)
    a = last.model.geometry_tokens(frames, (4, 6)).reshape(3, 6, -1)
    b = model.model.geometry_tokens(frames.flip(0), (4, 6)).reshape(3, 6, -1)
    assert torch.allclose(a, b.flip(0), atol=1e-6)
    assert not torch.allclose(a, model.model.geometry_tokens(frames, (4, 6)).reshape(3, 6, -1))


def test_cached_geometry_tokens_equal_encoding_the_frames(model, processor) -> None:
    videos = _videos(6)
    batch = processor(videos, PROMPTS)
    cached = dict(batch)
    del cached["geometry_pixel_values"]
    cached["geometry_patch_tokens"] = [model.model.encode_geometry(v) for v in videos]
    assert cached["geometry_patch_tokens"][0].shape == (3, 4, 6, model.vggt.config.head_dim_in)
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, model(**cached).logits, atol=1e-6)


def test_frame_size_follows_vgllm_without_a_size(tokenizer) -> None:
    free = VGLLMProcessor(tokenizer=tokenizer, patch_size=14)
    assert free.frame_size((480, 640)) == (392, 518)  # width 518, height 27.75 -> 28 patches
    assert free.frame_size((640, 480)) == (518, 518)  # taller than 518: centre crop
    assert free.vision_grid((392, 518)) == (28, 36)  # 37 patch columns cropped to 36
    fixed = VGLLMProcessor(tokenizer=tokenizer, patch_size=8, size=(32, 48))
    frames = fixed.prepare_frames(torch.randint(0, 255, (2, 60, 80, 3), dtype=torch.uint8).numpy())
    assert frames.shape == (2, 3, 32, 48) and 0.0 <= float(frames.min()) <= float(frames.max()) <= 1


def test_missing_weights_are_refused_unless_the_encoder_is_given(
    tmp_path: Path, model, processor, geometry
) -> None:
    from safetensors.torch import load_file, save_file

    folder = save_vgllm(model, processor, tmp_path / "m")
    state = load_file(str(folder / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("model.vggt.")},
              str(folder / "model.safetensors"), metadata={"format": "pt"})  # fmt: skip
    with pytest.raises(ValueError, match="missing"):
        load_vgllm(folder)
    vggt = VGGT(model.config.geometry_config())
    vggt.aggregator.load_state_dict(model.vggt.aggregator.state_dict())
    vggt.save_pretrained(tmp_path / "vggt")
    loaded, _ = load_vgllm(folder, geometry_encoder=tmp_path / "vggt")
    a, b = model.state_dict(), loaded.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_text_only_samples_run(model, processor) -> None:
    """The blind baseline's input: no frames (1-D positions are then the right ones)."""
    empty = [torch.zeros(0, 3, 32, 48)] * 2
    batch = processor(empty, PROMPTS, ["3", "12.5"])
    assert "pixel_values" not in batch and not bool(batch["mm_token_type_ids"].any())
    assert torch.isfinite(model(**batch).loss)
    assert len(generate_answers(model, processor, empty, PROMPTS)) == 2
    with pytest.raises(ValueError, match="every sample has frames or none"):
        processor([empty[0], _videos()[0]], PROMPTS)


def test_shared_frames_are_encoded_once_with_the_same_answers(model, processor) -> None:
    video = _videos(1)[0]
    calls = []
    original = model.model.encode_geometry

    def counting(frames):
        calls.append(1)
        return original(frames)

    model.model.encode_geometry = counting
    try:
        shared = generate_answers(model, processor, [video, video], PROMPTS[:2])
        assert len(calls) == 1
        copies = generate_answers(model, processor, [video, video.clone()], PROMPTS[:2])
        assert len(calls) == 3
    finally:
        del model.model.encode_geometry
    assert shared == copies
