"""Captions of world clips and the small text encoder that conditions the joint generator.

**Captions** (`caption`, `clip_caption`): one deterministic English sentence per clip, built
from the clip's ``meta`` (objects: class, colour, visible pixels, dynamic flag; layout) and its
cameras (``cam_to_world`` gives the direction of motion, which the meta does not hold)::

    "a red bed on the ground, the camera orbits left around it"
    "a purple cabinet in a room, the camera walks left"
    "a moving box and a blue tv in a room, the camera walks left, turning right"
    "two people and a teal building on a street, the camera walks forward"

Rules (`caption` docstring): the ``MAX_OBJECTS`` most visible classes (total visible pixels,
ties by name) among objects seen on at least ``MIN_VISIBLE`` of the image area summed over the
clip; one instance -> "a <colour> <class>" (colour named from the texture's mean colour by hue,
saturation, value: `colour_name`), several -> "<count> <class>s"; movers -> "a moving <class>";
the setting from the layout ("in a room", "on a street", "on the ground" for an object clip);
the camera phrase from frame 0 -> last frame in frame 0's camera (x right, y down, z forward):
object clips orbit left/right (sign of the lateral displacement), scenes walk
forward/backward/left/right (the dominant horizontal axis), ", turning left/right" when the
view turned at least ``TURN_DEG``, "pans left/right" when the camera hardly moved but turned,
"is still" when neither.

**Text encoder** (`PromptEncoder`): a tokenizer plus a ``transformers`` ``UMT5EncoderModel``
(the family of Wan2.1's text encoder), encoding prompts exactly as ``WanPipeline.encode_prompt``
does: pad/truncate to ``max_tokens`` tokens with an end token, run the encoder with the
attention mask, zero every position past the real tokens. Output
``encoder_hidden_states [B, max_tokens, d_model]`` for ``WanTransformer3DModel`` (``d_model``
must equal the DiT's ``text_dim``). `PromptEncoder.build` makes the miniature one: a BPE
tokenizer trained here with the ``tokenizers`` library on the caption corpus (plus every word
`caption` can emit, and the lowercase alphabet, so any prompt tokenizes without ``<unk>``
letters) and a random-initialised tiny UMT5 (trained jointly with the DiT).
`PromptEncoder.from_pretrained` loads ``text_encoder/`` + ``tokenizer/`` of a folder (the
miniature's, or a local Wan2.1's UMT5-XXL, kept frozen there).

Unconditional generation is the empty prompt "" through the same encoder (as Wan does); the
joint model stores it as ``empty_prompt_embedding.safetensors``.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

#: Most object classes named in a caption.
MAX_OBJECTS = 2
#: Fraction of the image area an object must cover, summed over the clip's frames, to be named.
MIN_VISIBLE = 0.05
#: Classes never named (they are the setting, not its content).
STRUCTURAL_CLASSES = frozenset({"wall", "pillar"})
#: Degrees of view turn from the first to the last frame that count as turning.
TURN_DEG = 10.0
#: Mean metres per frame below which the camera counts as standing (then it pans or is still).
STILL_M_PER_FRAME = 0.01
#: Tokens of the miniature text encoder's output (Wan2.1's is 512).
DEFAULT_MAX_TOKENS = 32
#: Vocabulary size of the miniature BPE tokenizer.
DEFAULT_VOCAB_SIZE = 512
#: Special tokens of the miniature tokenizer, UMT5's ids: pad 0, end 1, unknown 2.
PAD, EOS, UNK = "<pad>", "</s>", "<unk>"

_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_SETTINGS = {"room": "in a room", "street": "on a street"}
_COLOURS = (
    "red",
    "orange",
    "brown",
    "yellow",
    "green",
    "teal",
    "blue",
    "purple",
    "pink",
    "grey",
    "white",
    "black",
)


# ---------------------------------------------------------------------- captions
def colour_name(rgb: Sequence[float]) -> str:
    """Name of an RGB colour in [0, 1]: grey/white/black when unsaturated (saturation < 0.2),
    else by hue (red < 15 deg, orange < 45 (brown when value < 0.5), yellow < 70, green < 160,
    teal < 200, blue < 260, purple < 290, pink < 335, red)."""
    r, g, b = (float(np.clip(c, 0.0, 1.0)) for c in rgb[:3])
    hue, sat, val = colorsys.rgb_to_hsv(r, g, b)
    if val < 0.15:
        return "black"
    if sat < 0.2:
        return "white" if val > 0.8 else "grey"
    deg = hue * 360.0
    if deg < 15 or deg >= 335:
        return "red"
    if deg < 45:
        return "brown" if val < 0.5 else "orange"
    for limit, name in ((70, "yellow"), (160, "green"), (200, "teal"), (260, "blue")):
        if deg < limit:
            return name
    return "purple" if deg < 290 else "pink"


_IRREGULAR = {"person": "people", "bookshelf": "bookshelves"}


def _plural(cls: str) -> str:
    if cls in _IRREGULAR:
        return _IRREGULAR[cls]
    return cls + ("es" if cls.endswith(("s", "x", "sh", "ch")) else "s")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _objects_phrase(objects: Sequence[Mapping[str, Any]], min_pixels: float) -> str:
    """ "a red sofa and two chairs" (see `caption`); "" when nothing is visible enough."""
    seen: dict[str, list[Mapping[str, Any]]] = {}
    for obj in objects:
        cls = str(obj.get("class", "object"))
        if cls in STRUCTURAL_CLASSES or float(sum(obj.get("pixels", []))) < min_pixels:
            continue
        seen.setdefault(cls, []).append(obj)
    ranked = sorted(seen.items(), key=lambda kv: (-sum(sum(o["pixels"]) for o in kv[1]), kv[0]))
    parts = []
    for cls, instances in ranked[:MAX_OBJECTS]:
        if len(instances) > 1:
            count = _NUMBERS[len(instances)] if len(instances) < len(_NUMBERS) else "many"
            parts.append(f"{count} {_plural(cls)}")
        elif instances[0].get("dynamic"):
            parts.append(f"a moving {cls}")
        else:
            colour = colour_name(instances[0].get("color", (0.5, 0.5, 0.5)))
            parts.append(f"{_article(colour)} {colour} {cls}")
    return " and ".join(parts)


def camera_phrase(cam_to_world: np.ndarray, path: str) -> str:
    """The camera's motion in words, from ``cam_to_world [T, 4, 4]`` (OpenCV, any world frame).

    ``path``: ``"orbit"`` (an object clip: "orbits left/right around it") or ``"walk"``.
    Directions are frame 0's: x right, z forward; the turn is the yaw of the last frame's
    viewing direction in frame 0's camera (positive = right).
    """
    poses = np.asarray(cam_to_world, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"cam_to_world must be [T, 4, 4], got {list(poses.shape)}")
    if poses.shape[0] < 2:
        return "the camera is still"
    rel = np.linalg.inv(poses[0]) @ poses[-1]
    move = rel[:3, 3]
    forward = rel[:3, 2]
    yaw = float(np.degrees(np.arctan2(forward[0], forward[2])))
    turn = "right" if yaw > 0 else "left"
    if path == "orbit":
        return f"the camera orbits {'right' if move[0] > 0 else 'left'} around it"
    per_frame = float(np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1).mean())
    if per_frame < STILL_M_PER_FRAME:
        return f"the camera pans {turn}" if abs(yaw) >= TURN_DEG else "the camera is still"
    if abs(move[2]) >= abs(move[0]):
        where = "forward" if move[2] > 0 else "backward"
    else:
        where = "right" if move[0] > 0 else "left"
    phrase = f"the camera walks {where}"
    return phrase + (f", turning {turn}" if abs(yaw) >= TURN_DEG else "")


def caption(meta: Mapping[str, Any], cam_to_world: np.ndarray, image_area: int) -> str:
    """The caption of a world clip (module docstring): objects, setting, camera motion.

    ``meta``: the clip's meta (``objects`` with ``class``, ``color``, ``pixels`` per frame,
    ``dynamic``; ``layout``; ``base_kind`` or ``motion.path``); ``cam_to_world [T, 4, 4]``;
    ``image_area`` = H * W (pixels). Deterministic: the same clip always gives the same string.
    """
    frames = int(np.asarray(cam_to_world).shape[0])
    objects = list(meta.get("objects", []))
    things = _objects_phrase(objects, MIN_VISIBLE * image_area * frames)
    layout = str(meta.get("layout", ""))
    path = str((meta.get("motion") or {}).get("path", ""))
    if not path:
        path = "orbit" if meta.get("base_kind") == "object" else "walk"
    setting = _SETTINGS.get(layout, "on the ground")
    if not things:
        things = "an empty room" if layout == "room" else "an empty scene"
        if layout == "room":
            setting = ""
    head = f"{things} {setting}".strip()
    return f"{head}, {camera_phrase(cam_to_world, path)}"


def clip_caption(clip: Any) -> str:
    """`caption` of a `vfm3d.clip.Clip` (its meta, cameras and frame size)."""
    return caption(clip.meta, np.asarray(clip.cam_to_world), int(clip.height) * int(clip.width))


def vocabulary_sentences() -> list[str]:
    """Sentences holding every word `caption` can emit (classes of the world, colours, counts,
    settings, motions), so a tokenizer trained on a small corpus still covers them."""
    from vfm3d.world.layouts import (
        MOVER_CLASSES_OBJECT,
        MOVER_CLASSES_SCENE,
        OBJECT_CLASSES,
        REPEAT_CLASSES,
        ROOM_CLASSES,
        SINGLE_CLASSES,
    )

    classes = sorted(
        set(OBJECT_CLASSES)
        | set(ROOM_CLASSES)
        | set(REPEAT_CLASSES)
        | set(SINGLE_CLASSES)
        | set(MOVER_CLASSES_OBJECT)
        | set(MOVER_CLASSES_SCENE)
        | {"building", "car", "tree", "streetlight", "person"}
    )
    out = [f"a {c} and two {_plural(c)}, a moving {c}" for c in classes]
    out += [f"{_article(c)} {c} thing" for c in _COLOURS]
    out += [" ".join(_NUMBERS) + " many an empty scene room"]
    out += [f"in a room on a street on the ground, {p}" for p in _motion_phrases()]
    return out


def _motion_phrases() -> list[str]:
    out = ["the camera is still"]
    for side in ("left", "right"):
        out += [f"the camera orbits {side} around it", f"the camera pans {side}"]
        for where in ("forward", "backward", "left", "right"):
            out.append(f"the camera walks {where}, turning {side}")
    return out


# ---------------------------------------------------------------------- tokenizer
def train_tokenizer(
    corpus: Iterable[str],
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> Any:
    """A ``PreTrainedTokenizerFast`` (BPE, lowercase, whitespace and punctuation split, an end
    token appended) trained with ``tokenizers`` on ``corpus`` + `vocabulary_sentences`.

    Special tokens as UMT5's: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2. The initial alphabet is
    a-z, 0-9 and common punctuation, so any lowercase ASCII prompt tokenizes. Deterministic for
    a given corpus (sorted and de-duplicated first).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    lines = sorted(set(corpus) | set(vocabulary_sentences()))
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    alphabet = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"-()")
    trainer = BpeTrainer(
        vocab_size=int(vocab_size),
        special_tokens=[PAD, EOS, UNK],
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", special_tokens=[(EOS, tok.token_to_id(EOS))]
    )
    tok.decoder = decoders.BPEDecoder()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        model_max_length=int(max_tokens),
    )


def tiny_umt5_config(vocab_size: int, d_model: int, layers: int = 2, heads: int = 4) -> Any:
    """A ``UMT5Config`` of the miniature text encoder: ``d_model`` wide (the DiT's ``text_dim``),
    ``layers`` blocks, ``heads`` heads, feed-forward ``4 d_model`` (gated GELU as UMT5), no
    dropout, 8 relative-position buckets over 32 tokens."""
    from transformers import UMT5Config

    if d_model % heads:
        raise ValueError(f"d_model {d_model} must be divisible by heads {heads}")
    return UMT5Config(
        vocab_size=int(vocab_size),
        d_model=int(d_model),
        d_kv=int(d_model) // heads,
        d_ff=4 * int(d_model),
        num_layers=int(layers),
        num_heads=int(heads),
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        tie_word_embeddings=False,
    )


class PromptEncoder(nn.Module):
    """Tokenizer + ``UMT5EncoderModel``: prompts -> ``[B, max_tokens, d_model]`` (module docstring).

    ``trainable``: whether the encoder's weights train with the generator (the miniature's do;
    a loaded Wan2.1 UMT5-XXL is frozen).
    """

    def __init__(
        self, tokenizer: Any, encoder: nn.Module, max_tokens: int, trainable: bool = True
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.max_tokens = int(max_tokens)
        self.trainable = bool(trainable)
        self.encoder.requires_grad_(self.trainable)

    @property
    def dim(self) -> int:
        return int(self.encoder.config.d_model)

    @classmethod
    def build(
        cls,
        corpus: Iterable[str],
        d_model: int,
        seed: int = 0,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        vocab_size: int = DEFAULT_VOCAB_SIZE,
        layers: int = 2,
        heads: int = 4,
    ) -> PromptEncoder:
        """The miniature encoder: tokenizer trained on ``corpus``, random tiny UMT5 from ``seed``."""
        from transformers import UMT5EncoderModel

        from vfm3d.utils.training import seeded_init

        tokenizer = train_tokenizer(corpus, vocab_size, max_tokens)
        config = tiny_umt5_config(len(tokenizer), d_model, layers, heads)
        encoder = seeded_init(seed, lambda: UMT5EncoderModel(config))
        return cls(tokenizer, encoder, max_tokens, trainable=True)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike[str],
        max_tokens: int,
        trainable: bool = False,
        dtype: torch.dtype | None = None,
    ) -> PromptEncoder:
        """Load ``folder/text_encoder`` (``UMT5EncoderModel``) and ``folder/tokenizer``."""
        from transformers import AutoTokenizer, UMT5EncoderModel

        root = Path(folder)
        for sub in ("text_encoder", "tokenizer"):
            if not (root / sub).is_dir():
                raise FileNotFoundError(f"{root}: no {sub}/ folder (a text encoder needs both)")
        tokenizer = AutoTokenizer.from_pretrained(str(root / "tokenizer"))
        kwargs = {"torch_dtype": dtype} if dtype is not None else {}
        encoder = UMT5EncoderModel.from_pretrained(str(root / "text_encoder"), **kwargs)
        return cls(tokenizer, encoder, max_tokens, trainable=trainable)

    def save_pretrained(self, folder: str | os.PathLike[str]) -> None:
        """Write ``folder/text_encoder`` (safetensors) and ``folder/tokenizer``."""
        root = Path(folder)
        self.encoder.save_pretrained(str(root / "text_encoder"), safe_serialization=True)
        self.tokenizer.save_pretrained(str(root / "tokenizer"))

    def tokenize(self, prompts: Sequence[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` ``[B, max_tokens]`` int64 (None = "")."""
        texts = [p or "" for p in prompts]
        out = self.tokenizer(
            texts,
            padding="max_length",
            max_length=self.max_tokens,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        return out["input_ids"].long(), out["attention_mask"].long()

    def encode_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids ``[B, L]`` -> ``[B, L, d_model]``, zero past each prompt's real tokens."""
        device = next(self.encoder.parameters()).device
        ids, mask = input_ids.to(device), attention_mask.to(device)
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return hidden * mask[..., None].to(hidden.dtype)

    def forward(self, prompts: Sequence[str | None]) -> torch.Tensor:
        """Prompts -> ``encoder_hidden_states [B, max_tokens, d_model]``."""
        return self.encode_ids(*self.tokenize(prompts))
