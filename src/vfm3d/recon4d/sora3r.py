"""Sora3R reconstruction: video -> video latent -> K point-map samples -> cameras and depth.

`Sora3RModel` is the trained system (video VAE, point-map VAE, joint DiT) as one folder;
`Sora3RReconstructor` turns a clip or a video into a `Sora3RReconstruction` (the `Reconstruction`
every reconstructor returns, plus the sampler's per-pixel uncertainty).

Model folder (`Sora3RModel.save_pretrained`; the ``model/`` of ``vfm3d zoo train sora3r-mini``):

=====================  ======================================================================
``sora3r.json``        format, the frame count / size the model was trained at, default steps,
                       fallback field of view, where the video VAE is (+ sha256), how the DiT
                       was initialised. Written last: a folder without it is not a model.
``video_vae/``         the frozen video VAE (``AutoencoderKLWan`` with its latent statistics),
                       copied when its weights hold <= 64 MiB (wan-mini's: 2.6 MB). A larger
                       one (Wan2.1's, 500 MB) is referenced instead: ``video_vae.path`` is the
                       absolute path of the source's ``vae/``; its sha256 is checked on load.
``pointmap_vae/``      `vfm3d.recon4d.pointmap_vae.PointmapVAE`
``joint_dit/``         `vfm3d.recon4d.joint_dit.JointDiT`
``provenance.json``    how it was trained (zoo runs)
=====================  ======================================================================

Reconstruction, per window of the model's frame count ``F`` (consecutive windows share
``overlap`` frames; a short window, e.g. the last, is padded by repeating its last frame and the
padding's outputs are dropped):

1. the window's frames are resized to the model size (default: the model's width, the height
   keeping the aspect ratio, both multiples of the VAE factor x patch size);
2. video latent (`encode_video`) -> ``samples`` Euler samples of ``steps`` steps from noise
   seeded by ``seed`` (`sample_pointmaps`: every window uses the same seed) -> the mean point
   map in the window's first camera, its per-pixel spread and validity;
3. `vfm3d.geometry.cameras_from_pointmaps` (Weiszfeld focal, PnP-RANSAC, depth by re-projection;
   the confidence ``1 / (1 + spread / |p|)`` weights it when K > 1). When the focal cannot be
   fitted (frame 0's points unusable) the model's fallback field of view is used and
   ``meta["focal_fallback"]`` lists the window;
4. window ``k > 0`` is chained onto the frames before it by the Sim(3) that maps its point maps
   of the shared frames onto theirs (pixels valid in both; `vfm3d.recon4d.expert`'s chaining
   functions), so the result lives in frame 0's camera at window 0's scale (normalised units:
   frame 0's valid points have mean distance ~1);
5. everything is mapped back to the **input's resolution** (`to_input_resolution`): intrinsics
   ``K_in = A K_model`` with ``A`` the resize of pixel grids (`vfm3d.data.transforms.resize`),
   depth and spread bilinear (weighted by validity, so sky never bleeds into geometry), validity
   nearest; points re-projected from that depth, so depth, intrinsics, cameras and points agree.

Pixels predicted invalid (sky) hold the farthest valid depth of their frame, ``conf = 0`` and
``valid = False``: they are left out of the point clouds; only ``valid`` says what is geometry.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vfm3d.clip import Clip
from vfm3d.recon4d.joint_dit import JointDiT
from vfm3d.recon4d.pointmap_vae import PointmapVAE
from vfm3d.recon4d.result import Reconstruction

FORMAT = "vfm3d.recon4d.Sora3R"
CONFIG_FILE = "sora3r.json"
#: Video VAEs whose weights hold at most this many bytes are copied into the model folder.
COPY_VIDEO_VAE_BYTES = 64 * 2**20
#: Field of view (horizontal, degrees) used when the focal cannot be fitted from frame 0.
DEFAULT_FALLBACK_FOV_DEG = 60.0
#: Zoo names that are Sora3R models (``zoo/<name>``).
ZOO_MODELS = ("sora3r-mini",)
UNCERTAINTY_FILE = "uncertainty.safetensors"


# --------------------------------------------------------------------------- the model folder
def _safetensors_sha256(folder: Path) -> str:
    """sha256 over the bytes of every ``*.safetensors`` file of ``folder`` (sorted by name)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no .safetensors weights")
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _zoo_path(name: str) -> Path:
    from vfm3d.backbones.registry import zoo_root

    return zoo_root() / name


def resolve_model_folder(model: str | os.PathLike[str]) -> Path:
    """The Sora3R model folder of ``model``: ``zoo/sora3r-mini`` (shipped), a folder holding
    ``sora3r.json``, or a zoo run folder holding ``model/sora3r.json``."""
    text = str(model)
    if text.startswith("zoo/"):
        name = text.removeprefix("zoo/")
        path = _zoo_path(name)
        if not (path / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"{text}: not shipped (looked in {path}); train it with `vfm3d zoo train {name} "
                f"--out RUN --install` or pass a trained folder"
            )
        return path
    path = Path(text)
    if (path / CONFIG_FILE).is_file():
        return path
    if (path / "model" / CONFIG_FILE).is_file():
        return path / "model"
    if not path.exists():
        raise FileNotFoundError(f"model folder not found: {path}")
    raise FileNotFoundError(f"{path}: not a Sora3R model folder (no {CONFIG_FILE})")


def is_sora3r_model(model: str | os.PathLike[str]) -> bool:
    """True for ``zoo/sora3r-*`` names and folders (or run folders) holding ``sora3r.json``."""
    text = str(model)
    if text.startswith("zoo/"):
        return text.removeprefix("zoo/") in ZOO_MODELS
    path = Path(text)
    return (path / CONFIG_FILE).is_file() or (path / "model" / CONFIG_FILE).is_file()


class Sora3RModel(nn.Module):
    """The three networks of Sora3R and the facts needed to run them (``config``).

    ``video_vae``: the frozen ``AutoencoderKLWan`` of the video model (its config holds the
    video latents' statistics); ``pointmap_vae``: `PointmapVAE`; ``dit``: `JointDiT`.
    ``config`` keys: ``frames``, ``height``, ``width`` (what it was trained on), ``steps``
    (default Euler steps), ``fallback_fov_deg``, and what `save_pretrained` records.
    """

    def __init__(
        self,
        video_vae: nn.Module,
        pointmap_vae: PointmapVAE,
        dit: JointDiT,
        config: dict[str, Any],
    ) -> None:
        super().__init__()
        from vfm3d.backbones.wan import _vae_factors

        z_video, z_pm = int(video_vae.config.z_dim), int(pointmap_vae.vae.config.z_dim)
        if not z_video == z_pm == dit.latent_channels:
            raise ValueError(
                f"latent channels disagree: video VAE {z_video}, point-map VAE {z_pm}, "
                f"DiT {dit.latent_channels}"
            )
        if _vae_factors(video_vae) != pointmap_vae.factors:
            raise ValueError(
                f"VAE compression differs: video {_vae_factors(video_vae)}, point map "
                f"{pointmap_vae.factors}"
            )
        for key in ("frames", "height", "width"):
            if int(config.get(key, 0)) < 1:
                raise ValueError(f"Sora3R config needs a positive {key!r}, got {config.get(key)}")
        self.video_vae = video_vae.eval().requires_grad_(False)
        self.pointmap_vae = pointmap_vae
        self.dit = dit
        self.config = dict(config)
        self.name_or_path = str(config.get("name", "sora3r"))

    @property
    def frames(self) -> int:
        """Frames per window (the training clips' ``4k+1``)."""
        return int(self.config["frames"])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) the model was trained at."""
        return int(self.config["height"]), int(self.config["width"])

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this (VAE factor x patch size)."""
        patch = int(self.dit.transformer.config.patch_size[1])
        return int(self.pointmap_vae.factors[1]) * patch

    @property
    def temporal_factor(self) -> int:
        return int(self.pointmap_vae.factors[0])

    @property
    def default_steps(self) -> int:
        from vfm3d.recon4d.sampling import DEFAULT_STEPS

        return int(self.config.get("steps", DEFAULT_STEPS))

    @property
    def fallback_fov_deg(self) -> float:
        return float(self.config.get("fallback_fov_deg", DEFAULT_FALLBACK_FOV_DEG))

    def save_pretrained(
        self,
        folder: str | os.PathLike[str],
        video_vae_source: str | os.PathLike[str] | None = None,
        copy_video_vae: bool | None = None,
    ) -> Path:
        """Write the folder of the module docstring (``sora3r.json`` last).

        ``video_vae_source``: the folder the video VAE was loaded from (its ``vae/``), recorded
        and, when the VAE is referenced rather than copied, the path stored. ``copy_video_vae``:
        None = copy when the weights hold <= `COPY_VIDEO_VAE_BYTES`.
        """
        from vfm3d.utils.atomic import atomic_write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).unlink(missing_ok=True)  # an interrupted save is not a model
        nbytes = sum(p.numel() * p.element_size() for p in self.video_vae.parameters())
        copy = nbytes <= COPY_VIDEO_VAE_BYTES if copy_video_vae is None else bool(copy_video_vae)
        source = None if video_vae_source is None else str(video_vae_source)
        if copy:
            self.video_vae.save_pretrained(folder / "video_vae", safe_serialization=True)
            entry = {"path": "video_vae", "sha256": _safetensors_sha256(folder / "video_vae")}
        else:
            if source is None or source.startswith("zoo/"):
                raise ValueError(
                    "a referenced video VAE needs video_vae_source = its local folder (vae/)"
                )
            src = Path(source).resolve()
            entry = {"path": str(src), "sha256": _safetensors_sha256(src)}
        entry["source"] = source
        entry["copied"] = copy
        self.pointmap_vae.save_pretrained(folder / "pointmap_vae")
        self.dit.save_pretrained(folder / "joint_dit")
        config = {**self.config, "format": FORMAT, "video_vae": entry, "init": self.dit.init}
        atomic_write_json(folder / CONFIG_FILE, config)
        self.config = config
        return folder

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Sora3RModel:
        """Load ``zoo/sora3r-mini``, a model folder or a zoo run folder (`resolve_model_folder`).

        Raises FileNotFoundError (no such model, a missing part) or ValueError (format, a video
        VAE whose weights differ from the ones the model was trained with).
        """
        from diffusers import AutoencoderKLWan

        folder = resolve_model_folder(model)
        config = json.loads((folder / CONFIG_FILE).read_text())
        if config.get("format") != FORMAT:
            raise ValueError(
                f"{folder / CONFIG_FILE}: format {config.get('format')!r}, not {FORMAT}"
            )
        entry = config.get("video_vae") or {}
        vae_path = Path(str(entry.get("path", "video_vae")))
        if not vae_path.is_absolute():
            vae_path = folder / vae_path
        if not (vae_path / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: the video VAE is missing (looked in {vae_path})")
        expected = entry.get("sha256")
        if expected and _safetensors_sha256(vae_path) != expected:
            raise ValueError(
                f"{folder}: the video VAE in {vae_path} is not the one this model was trained "
                "with (sha256 differs)"
            )
        video_vae = AutoencoderKLWan.from_pretrained(str(vae_path), torch_dtype=dtype)
        pm_vae = PointmapVAE.from_pretrained(folder / "pointmap_vae", dtype=dtype)
        dit = JointDiT.from_pretrained(folder / "joint_dit", dtype=dtype)
        config.setdefault("name", str(model))
        net = cls(video_vae, pm_vae, dit, config).to(device)
        return net.eval().requires_grad_(False)


# --------------------------------------------------------------------------- the result record
@dataclass
class Sora3RReconstruction(Reconstruction):
    """A `Reconstruction` (input resolution) with what the sampler adds:

    - ``valid`` bool ``[T, H, W]``: pixels with predicted geometry (False on predicted sky);
    - ``uncertainty`` float32 ``[T, H, W]`` or None: the K samples' spread (RMS distance to
      their mean, in the reconstruction's units), None for K = 1;
    - ``valid_fraction`` float32 ``[T, H, W]`` or None: the fraction of samples that decode the
      pixel valid (None for K = 1).

    `confident` keeps only valid pixels; `save` also writes ``uncertainty.safetensors`` when
    ``uncertainty`` is present.
    """

    valid: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    valid_fraction: np.ndarray | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        shape = tuple(self.depth.shape)
        for name in ("valid", "uncertainty", "valid_fraction"):
            value = getattr(self, name)
            if value is not None and tuple(np.shape(value)) != shape:
                raise ValueError(
                    f"Sora3RReconstruction.{name}: expected shape {shape}, got {np.shape(value)}"
                )
        if self.uncertainty is not None and not np.all(np.isfinite(self.uncertainty)):
            raise ValueError("Sora3RReconstruction.uncertainty: contains NaN or Inf")

    def confident(self, quantile: float = 0.25) -> np.ndarray:
        """bool ``[T, H, W]``: valid pixels whose confidence is above the ``quantile`` of the
        valid pixels' confidences (none when no pixel is valid)."""
        valid = self.points_conf > 0 if self.valid is None else self.valid & (self.points_conf > 0)
        if not valid.any():
            return valid
        return valid & (self.points_conf >= float(np.quantile(self.points_conf[valid], quantile)))

    def save(
        self,
        out_dir: str | os.PathLike[str],
        max_points: int = 200_000,
        conf_quantile: float = 0.25,
    ) -> dict[str, Path]:
        """`Reconstruction.save` plus ``uncertainty.safetensors`` (``uncertainty``,
        ``valid_fraction`` ``[T, H, W]`` float32, ``valid`` bool) when K > 1."""
        from safetensors.numpy import save_file

        from vfm3d.utils.atomic import atomic_path

        files = super().save(out_dir, max_points=max_points, conf_quantile=conf_quantile)
        if self.uncertainty is not None:
            path = Path(out_dir) / UNCERTAINTY_FILE
            tensors = {"uncertainty": np.ascontiguousarray(self.uncertainty, dtype=np.float32)}
            if self.valid_fraction is not None:
                tensors["valid_fraction"] = np.ascontiguousarray(
                    self.valid_fraction, dtype=np.float32
                )
            if self.valid is not None:
                tensors["valid"] = np.ascontiguousarray(self.valid, dtype=bool)
            meta = {
                "uncertainty": "RMS distance of the K point-map samples to their mean, in the "
                "reconstruction's units (frame 0's camera, normalised scale)",
                "samples": str(self.meta.get("samples", "")),
            }
            with atomic_path(path) as tmp:
                save_file(tensors, str(tmp), metadata=meta)
            files[UNCERTAINTY_FILE] = path
        return files


# --------------------------------------------------------------------------- recovery helpers
def default_intrinsics(height: int, width: int, fov_deg: float) -> np.ndarray:
    """``[3, 3]`` K of a centred pinhole camera with horizontal field of view ``fov_deg``
    (principal point ``((W - 1) / 2, (H - 1) / 2)``, square pixels)."""
    focal = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return np.array(
        [[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]]
    )


def recover_cameras(
    points: torch.Tensor,
    valid: torch.Tensor,
    conf: torch.Tensor | None = None,
    fallback_fov_deg: float = DEFAULT_FALLBACK_FOV_DEG,
) -> dict[str, Any]:
    """`cameras_from_pointmaps` on ``points [T, H, W, 3]`` (frame 0's camera) with a fallback.

    Returns numpy arrays: ``points`` float32 (0 where not valid), ``valid`` (input valid and in
    front of the recovered camera), ``depth`` float32, ``intrinsics`` float64 ``[T, 3, 3]``,
    ``cam_to_world`` float64 ``[T, 4, 4]``, ``inlier_ratio`` ``[T]``, ``fallback`` ``[T]``
    (poses kept from the previous frame), and ``focal_fallback`` (bool: the focal could not be
    fitted and ``fallback_fov_deg`` was used).
    """
    from vfm3d.geometry import cameras_from_pointmaps

    points = torch.where(valid[..., None], points, torch.zeros((), dtype=points.dtype))
    focal_fallback = False
    try:
        rec = cameras_from_pointmaps(points, conf=conf, valid=valid)
    except ValueError:
        focal_fallback = True
        k = default_intrinsics(points.shape[1], points.shape[2], fallback_fov_deg)
        rec = cameras_from_pointmaps(
            points, conf=conf, valid=valid, intrinsics=torch.from_numpy(k).float()
        )
    ok = rec.valid.cpu().numpy()
    return {
        "points": np.where(ok[..., None], points.cpu().numpy(), 0.0).astype(np.float32),
        "valid": ok,
        "depth": rec.depth.cpu().numpy().astype(np.float32),
        "intrinsics": rec.intrinsics.cpu().double().numpy(),
        "cam_to_world": rec.cam_to_world.cpu().double().numpy(),
        "inlier_ratio": rec.inlier_ratio.cpu().numpy(),
        "fallback": rec.fallback.cpu().numpy(),
        "focal_fallback": focal_fallback,
    }


def _resize_weighted(
    values: np.ndarray, weights: np.ndarray, out_hw: tuple[int, int]
) -> np.ndarray:
    """Bilinear resize of ``[T, h, w]`` ``values`` weighted by ``weights`` (0 / 1), pixel edges
    to pixel edges (``align_corners=False``, the convention of `vfm3d.data.transforms.resize`);
    0 where no weight reaches."""
    import torch.nn.functional as F

    v = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))[:, None]
    w = torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float64))[:, None]
    num = F.interpolate(v * w, size=out_hw, mode="bilinear", align_corners=False)
    den = F.interpolate(w, size=out_hw, mode="bilinear", align_corners=False)
    out = torch.where(den > 1e-9, num / den.clamp_min(1e-9), torch.zeros((), dtype=num.dtype))
    return out[:, 0].numpy()


def to_input_resolution(
    frames: np.ndarray,
    result: dict[str, Any],
    timestamps: np.ndarray,
    meta: dict[str, Any],
    spread: np.ndarray | None = None,
    valid_fraction: np.ndarray | None = None,
) -> Sora3RReconstruction:
    """A model-resolution recovery (`recover_cameras`' keys ``valid``, ``depth``,
    ``intrinsics``, ``cam_to_world``; ``[T, h, w]``) -> `Sora3RReconstruction` at the input's
    resolution ``frames`` uint8 ``[T, H, W, 3]`` (module docstring, step 5).

    ``spread`` / ``valid_fraction`` ``[T, h, w]`` (K > 1) become ``uncertainty`` /
    ``valid_fraction``. Confidence: ``1 / (1 + spread / depth)`` on valid pixels (1 without
    ``spread``), 0 elsewhere.
    """
    from vfm3d.data.transforms import resize
    from vfm3d.geometry import transform_points, unproject_depth

    num, in_h, in_w = frames.shape[:3]
    valid_m = np.asarray(result["valid"], dtype=bool)
    depth_m = np.asarray(result["depth"], dtype=np.float64)
    if valid_m.shape[0] != num:
        raise ValueError(f"{num} frames but a recovery of {valid_m.shape[0]}")
    model_hw = tuple(int(v) for v in valid_m.shape[1:])
    transform = resize(model_hw, (in_h, in_w))  # model pixels -> input pixels
    intrinsics = transform.apply_intrinsics(np.asarray(result["intrinsics"], dtype=np.float64))
    if model_hw == (in_h, in_w):
        valid = valid_m.copy()
        depth = np.where(valid_m, depth_m, 0.0)
        spread_in = None if spread is None else np.asarray(spread, dtype=np.float64)
        frac_in = None if valid_fraction is None else np.asarray(valid_fraction, np.float64)
    else:
        valid = transform.warp_nearest(valid_m, False)
        weights = valid_m.astype(np.float64)
        depth = _resize_weighted(depth_m, weights, (in_h, in_w))
        valid &= depth > 0
        spread_in = None if spread is None else _resize_weighted(spread, weights, (in_h, in_w))
        frac_in = None
        if valid_fraction is not None:
            frac_in = _resize_weighted(valid_fraction, np.ones_like(weights), (in_h, in_w))
    # Predicted sky: the frame's farthest valid depth (1 if the frame has none).
    far = np.array([depth[t][valid[t]].max() if valid[t].any() else 1.0 for t in range(num)])
    depth = np.where(valid, depth, far[:, None, None])
    c2w = np.asarray(result["cam_to_world"], dtype=np.float64)
    cam_points = unproject_depth(torch.from_numpy(depth), torch.from_numpy(intrinsics))
    points = transform_points(torch.from_numpy(c2w), cam_points).numpy()
    conf = np.ones_like(depth)
    if spread_in is not None:
        conf = 1.0 / (1.0 + spread_in / np.maximum(depth, 1e-12))
    conf = np.where(valid, conf, 0.0).astype(np.float32)
    return Sora3RReconstruction(
        frames=np.ascontiguousarray(frames),
        depth=depth.astype(np.float32),
        depth_conf=conf,
        points=points.astype(np.float32),
        points_conf=conf.copy(),
        intrinsics=intrinsics,
        cam_to_world=c2w,
        timestamps=np.asarray(timestamps, dtype=np.float64),
        meta=meta,
        valid=valid,
        uncertainty=None
        if spread_in is None
        else np.where(valid, spread_in, 0.0).astype(np.float32),
        valid_fraction=None if frac_in is None else frac_in.astype(np.float32),
    )


# --------------------------------------------------------------------------- the reconstructor
class Sora3RReconstructor:
    """Reconstruct clips and videos with a `Sora3RModel` (module docstring).

    ``steps`` Euler steps (None = the model's default), ``samples`` K >= 1, ``seed``;
    ``overlap`` frames shared by consecutive windows of ``model.frames`` frames (None = half the
    window, rounded down: 4 of 9); ``size`` the model input (H, W) (None = `model_size`).
    """

    def __init__(
        self,
        model: Sora3RModel,
        steps: int | None = None,
        samples: int = 1,
        seed: int = 0,
        overlap: int | None = None,
        size: tuple[int, int] | None = None,
        device: str | torch.device = "cpu",
        progress: bool = True,
    ) -> None:
        self.model = model.to(device).eval()
        self.window = model.frames
        self.steps = model.default_steps if steps is None else int(steps)
        self.samples = int(samples)
        self.seed = int(seed)
        self.overlap = (self.window - 1) // 2 if overlap is None else int(overlap)
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if not 1 <= self.overlap < self.window:
            raise ValueError(
                f"overlap must satisfy 1 <= overlap < {self.window} (the model's frames), "
                f"got {self.overlap}"
            )
        if size is not None:
            self._check_size(size)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.device = device
        self.progress = progress

    def _check_size(self, size: tuple[int, int]) -> None:
        m = self.model.multiple
        if size[0] % m or size[1] % m or min(size) < m:
            raise ValueError(
                f"model size {size[0]}x{size[1]} not supported: H and W must be positive "
                f"multiples of {m} (VAE factor x patch size)"
            )

    def model_size(self, in_hw: tuple[int, int]) -> tuple[int, int]:
        """Model input (H, W) for an ``in_hw`` video: ``size`` if given, else the model's width
        and the height keeping the aspect ratio, rounded to `Sora3RModel.multiple`."""
        if self.size is not None:
            return self.size
        m, width = self.model.multiple, self.model.size[1]
        height = max(m, round(in_hw[0] * width / in_hw[1] / m) * m)
        return height, width

    def windows(self, num_frames: int) -> list[tuple[int, int]]:
        """``[start, stop)`` frame ranges of ``window`` frames, ``overlap`` shared."""
        if num_frames <= self.window:
            return [(0, num_frames)]
        step = self.window - self.overlap
        spans, start = [], 0
        while True:
            stop = min(start + self.window, num_frames)
            spans.append((start, stop))
            if stop == num_frames:
                return spans
            start += step

    @torch.no_grad()
    def run_window(self, frames: np.ndarray) -> dict[str, Any]:
        """One window ``frames`` uint8 ``[S, H, W, 3]`` (S <= the model's frames) -> the
        model-resolution recovery in the window's first camera (`recover_cameras`' keys) plus
        ``points_conf``, ``spread`` and ``valid_fraction`` ``[S, h, w]``."""
        from vfm3d.data.transforms import resize
        from vfm3d.recon4d.sampling import encode_video, sample_pointmaps

        count = int(frames.shape[0])
        if not 1 <= count <= self.window:
            raise ValueError(f"a window holds 1..{self.window} frames, got {count}")
        in_hw = (int(frames.shape[1]), int(frames.shape[2]))
        hw = self.model_size(in_hw)
        small = resize(in_hw, hw).warp_image(frames) if hw != in_hw else np.asarray(frames)
        if count < self.window:  # pad by holding the last frame; its outputs are dropped
            small = np.concatenate([small, np.repeat(small[-1:], self.window - count, 0)])
        video = torch.from_numpy(np.ascontiguousarray(small)).permute(0, 3, 1, 2)
        video = video.float().div(255.0)[None].to(self.device)
        latent = encode_video(self.model.video_vae, video)
        out = sample_pointmaps(
            self.model.dit,
            self.model.pointmap_vae,
            latent,
            steps=self.steps,
            samples=self.samples,
            seed=self.seed,
        )
        points = out["points"][0, :count].float().cpu()
        valid = out["valid"][0, :count].cpu()
        spread = out["spread"][0, :count].float().cpu()
        conf = None
        if self.samples > 1:
            conf = 1.0 / (1.0 + spread / points.norm(dim=-1).clamp_min(1e-6))
        part = recover_cameras(points, valid, conf, self.model.fallback_fov_deg)
        part["spread"] = np.where(part["valid"], spread.numpy(), 0.0).astype(np.float32)
        part["valid_fraction"] = out["valid_fraction"][0, :count].float().cpu().numpy()
        weight = np.ones_like(part["depth"]) if conf is None else conf.numpy()
        part["points_conf"] = np.where(part["valid"], weight, 0.0).astype(np.float32)
        return part

    def reconstruct(self, clip: Clip) -> Sora3RReconstruction:
        """Reconstruct every frame of ``clip`` at its own resolution, window by window."""
        spans = self.windows(clip.num_frames)
        parts = (clip.subset(range(start, stop)) for start, stop in spans)
        return self.reconstruct_windows(parts, clip_id=clip.id, total=len(spans))

    def reconstruct_windows(
        self,
        windows: Iterable[Clip],
        clip_id: str | None = None,
        total: int | None = None,
    ) -> Sora3RReconstruction:
        """Reconstruct a video given as consecutive windows of at most ``window`` frames that
        overlap by ``overlap`` frames (e.g. ``VideoReader.iter_windows(window, overlap)``) and
        chain them (module docstring)."""
        from tqdm import tqdm

        from vfm3d.recon4d.expert import _apply_similarity

        keys = ("points", "points_conf", "valid", "depth", "intrinsics", "cam_to_world")
        keys += ("spread", "valid_fraction")
        done: dict[str, list[np.ndarray]] = {k: [] for k in (*keys, "frames")}
        times: list[float] = []
        chained: list[dict[str, Any]] = []
        focal_fallback: list[int] = []
        pose_fallback: list[int] = []
        start_time = time.perf_counter()
        first_id, hw, count = None, None, 0
        bar = tqdm(windows, desc="sora3r", unit="window", total=total, disable=not self.progress)
        for k, window in enumerate(bar):
            first_id = first_id or window.meta.get("parent_id", window.id)
            if hw is not None and (window.height, window.width) != hw:
                raise ValueError(
                    f"window {window.id!r} is {window.height}x{window.width}, not {hw}"
                )
            hw = (window.height, window.width)
            if window.num_frames > self.window:
                raise ValueError(
                    f"window {window.id!r} has {window.num_frames} frames; the model takes "
                    f"{self.window}"
                )
            shared = min(self.overlap, count)
            if count and window.num_frames <= shared:
                continue  # nothing new in this window
            part = self.run_window(window.frames)
            if part["focal_fallback"]:
                focal_fallback.append(k)
            flagged = np.flatnonzero(part["fallback"][shared:])
            pose_fallback.extend(count + int(i) for i in flagged)
            scale, rot, trans, how = 1.0, np.eye(3), np.zeros(3), "first"
            if shared:
                scale, rot, trans, how = _chain(part, done, shared)
                _apply_similarity(part, scale, rot, trans)
                part["spread"] = (scale * part["spread"]).astype(np.float32)
            for name in keys:
                done[name].extend(part[name][shared:])
            done["frames"].extend(window.frames[shared:])
            stamps = window.meta.get("timestamps")
            new = range(shared, window.num_frames)
            times.extend(float(stamps[i]) if stamps else float(count + i - shared) for i in new)
            begin = count - shared
            count += window.num_frames - shared
            chained.append(
                {
                    "frames": [begin, count],
                    "scale": float(scale),
                    "rotation": np.asarray(rot).tolist(),
                    "translation": np.asarray(trans).tolist(),
                    "fit": how,
                }
            )
        if not count:
            raise ValueError("reconstruct: the input has no frames")
        stacked = {name: np.stack(values) for name, values in done.items()}
        seconds = time.perf_counter() - start_time
        meta = {
            "model": self.model.name_or_path,
            "method": "sora3r",
            "clip_id": clip_id or first_id,
            "input_hw": list(hw or ()),
            "model_hw": list(stacked["valid"].shape[1:]),
            "window": self.window,
            "overlap": self.overlap,
            "steps": self.steps,
            "samples": self.samples,
            "seed": self.seed,
            "windows": chained,
            "focal_fallback": focal_fallback,
            "pose_fallback_frames": pose_fallback,
            "seconds": seconds,
            "seconds_per_frame": seconds / count,
            "world_frame": "frame 0's OpenCV camera; normalised scale (frame 0's mean point "
            "distance ~1), up to similarity",
        }
        multi = self.samples > 1
        return to_input_resolution(
            stacked["frames"],
            stacked,
            np.asarray(times, dtype=np.float64),
            meta,
            spread=stacked["spread"] if multi else None,
            valid_fraction=stacked["valid_fraction"] if multi else None,
        )


def _chain(
    part: dict[str, Any], done: dict[str, list[np.ndarray]], shared: int
) -> tuple[float, np.ndarray, np.ndarray, str]:
    """Sim(3) of this window onto the chained frames from the shared frames' pixels valid in
    both (`vfm3d.recon4d.expert._fit_overlap` on those pixels); identity when fewer than 16
    such pixels or a degenerate configuration (``how`` says which)."""
    from vfm3d.geometry import DegenerateAlignmentError
    from vfm3d.recon4d.expert import _fit_overlap

    both = part["valid"][:shared] & np.stack(done["valid"][-shared:])
    if int(both.sum()) < 16:
        return 1.0, np.eye(3), np.zeros(3), "identity (too few shared valid pixels)"
    conf_new = part["points_conf"][:shared][both]
    conf_old = np.stack(done["points_conf"][-shared:])[both]
    local = {"points": part["points"][:shared][both][None], "points_conf": conf_new[None]}
    target = {
        "points": [np.stack(done["points"][-shared:])[both]],
        "points_conf": [conf_old],
    }
    try:
        scale, rot, trans = _fit_overlap(local, target, 1)
    except DegenerateAlignmentError:
        return 1.0, np.eye(3), np.zeros(3), "identity (degenerate overlap)"
    if not (np.isfinite(scale) and scale > 0):
        return 1.0, np.eye(3), np.zeros(3), "identity (non-positive scale)"
    return float(scale), rot, trans, "sim3"


def load_sora3r(model: str | os.PathLike[str], device: str | torch.device = "cpu") -> Sora3RModel:
    """`Sora3RModel.from_pretrained` (``zoo/sora3r-mini``, a model folder or a run folder)."""
    return Sora3RModel.from_pretrained(model, device=device)
