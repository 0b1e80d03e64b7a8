"""Sora3R's point-map VAE: a copy of the video VAE (``AutoencoderKLWan``) that codes point maps.

Point maps ``[B, T, H, W, 3]`` hold X, Y, Z of every pixel in **frame 0's OpenCV camera
coordinates**, scaled so that the mean distance of frame 0's valid points to the origin is 1: the
one normalisation of `vfm3d.geometry.probe_targets` (`pointmap_targets` calls it; nothing here
re-implements it). ``valid`` ``[B, T, H, W]`` bool marks pixels with geometry (False on sky).

The fixed transform to the VAE's 3-channel input (``u`` in the unit ball, channels X, Y, Z):

- valid pixel, ``r = |p|``: ``u = p / r * c * log1p(min(r, max_distance))`` with
  ``c = VALID_EXTENT / log1p(max_distance)``: a radial signed-log (direction kept, distance
  log-compressed, as DUSt3R/VGGT's ``inv_log`` activation inverts), so ``|u| <= VALID_EXTENT``
  (0.8); points farther than ``max_distance`` (default 32 normalised units) are clamped radially
  to it. Inverse: ``p = u / |u| * expm1(|u| / c)``.
- invalid pixel: the sentinel ``u = SENTINEL = (0, 0, 1)``, "far, straight ahead", outside the
  valid ball. The Wan decoder clamps its output to [-1, 1], so the sentinel is reachable and every
  valid value sits strictly inside the range.
- decoding: a pixel is predicted valid iff ``|u| <= INVALID_THRESHOLD`` (0.9, half-way between
  the valid ball and the sentinel); predicted-invalid pixels hold 0 in ``points`` (as
  `probe_targets` writes them) and only ``valid`` says which entries mean anything.

Loss (`pointmap_vae_loss`, Sora3R: Huber + KL): Huber (smooth-L1 form: ``huber(delta) / delta``,
quadratic below ``delta``, L1 above) between the decoded ``u`` and the target ``u``, averaged over
the valid pixels' channels; plus ``invalid_weight`` (default 0.1; 0 = invalid pixels fully masked)
times the same Huber on the invalid pixels towards the sentinel, so that decoded maps carry their
own validity (the DiT's samples have no other sky mask); plus ``kl_weight`` times the KL of the
diagonal Gaussian posterior to N(0, I) per element (wan-mini's formula and weight).

Latent normalisation: as the published Wan VAE, ``(z - latents_mean) / latents_std`` per channel
with the statistics stored in the VAE config. `from_video_vae` resets them to 0 / 1 (the video
latents' statistics do not describe point-map latents); after fine-tuning compute them with
`latent_statistics` over the posterior modes of the training point maps and store them with
`PointmapVAE.set_latent_statistics` (exactly what wan-mini does for its video latents).

Folder (`save_pretrained`): the ``AutoencoderKLWan`` files (``config.json``,
``diffusion_pytorch_model.safetensors``; diffusers loads them as a plain VAE) plus
``pointmap_vae.json`` (the transform's constants; written last, required by `from_pretrained`).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vfm3d.models.wan_flow import KL_WEIGHT

#: Radius of the valid ball in the VAE's input space (``|u|`` of a point at ``max_distance``).
VALID_EXTENT = 0.8
#: Decoded ``|u|`` above which a pixel is predicted invalid.
INVALID_THRESHOLD = 0.9
#: VAE input of an invalid pixel (X, Y, Z channels): far, straight ahead, outside the valid ball.
SENTINEL = (0.0, 0.0, 1.0)
#: Default clamp radius of valid points, in normalised units (frame-0 mean distance = 1).
DEFAULT_MAX_DISTANCE = 32.0
#: Default Huber threshold, in the VAE's input units (``u``).
HUBER_DELTA = 0.01
#: Default weight of the invalid pixels' term (towards the sentinel).
INVALID_WEIGHT = 0.1
CONFIG_FILE = "pointmap_vae.json"
FORMAT = "vfm3d.recon4d.PointmapVAE"


def pointmap_targets(
    depth: torch.Tensor,
    valid: torch.Tensor,
    intrinsics: torch.Tensor,
    cam_to_world: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Point maps to train and evaluate on: `vfm3d.geometry.probe_targets`' points, float32.

    depth ``[..., T, H, W]`` (z-depth), valid same shape, intrinsics ``[..., T, 3, 3]``,
    cam_to_world ``[..., T, 4, 4]`` -> ``(points [..., T, H, W, 3], valid [..., T, H, W])`` in
    frame 0's camera coordinates, mean distance of frame 0's valid points = 1.
    """
    from vfm3d.geometry.normalize import probe_targets

    targets = probe_targets(depth, valid, intrinsics, cam_to_world)
    return targets.points.float(), targets.valid


def _scale(max_distance: float) -> float:
    return VALID_EXTENT / float(torch.log1p(torch.tensor(float(max_distance))))


def points_to_vae(
    points: torch.Tensor, valid: torch.Tensor, max_distance: float = DEFAULT_MAX_DISTANCE
) -> torch.Tensor:
    """Point maps ``[B, T, H, W, 3]`` + valid ``[B, T, H, W]`` -> VAE input ``[B, 3, T, H, W]``.

    The fixed transform of the module docstring (radial signed-log, sentinel on invalid pixels).
    Raises ValueError on shape mismatch or non-finite valid points.
    """
    if points.ndim != 5 or points.shape[-1] != 3:
        raise ValueError(f"points must be [B, T, H, W, 3], got {list(points.shape)}")
    if tuple(valid.shape) != tuple(points.shape[:-1]) or valid.dtype != torch.bool:
        raise ValueError(
            f"valid must be bool {list(points.shape[:-1])}, got {valid.dtype} {list(valid.shape)}"
        )
    if not bool(torch.isfinite(points[valid]).all()):
        raise ValueError("points: non-finite values at valid pixels")
    c = _scale(max_distance)
    points = torch.where(valid[..., None], points, torch.zeros((), dtype=points.dtype))
    r = torch.linalg.vector_norm(points, dim=-1, keepdim=True)
    safe = r.clamp_min(1e-12)
    # log1p(r) / r -> 1 as r -> 0: the map is smooth at the camera centre.
    gain = torch.where(r > 1e-6, torch.log1p(r.clamp(max=max_distance)) / safe, 1.0 - r / 2)
    u = points * (c * gain)
    sentinel = torch.tensor(SENTINEL, dtype=u.dtype, device=u.device)
    u = torch.where(valid[..., None], u, sentinel)
    return u.permute(0, 4, 1, 2, 3).contiguous()


def vae_to_points(
    x: torch.Tensor, max_distance: float = DEFAULT_MAX_DISTANCE
) -> tuple[torch.Tensor, torch.Tensor]:
    """VAE output ``[B, 3, T, H, W]`` -> ``(points [B, T, H, W, 3], valid [B, T, H, W])``.

    Inverse of `points_to_vae` on the valid ball; ``|u| > INVALID_THRESHOLD`` -> invalid (points
    0). Decoded ``|u|`` between ``VALID_EXTENT`` and the threshold is read as ``max_distance``.
    """
    if x.ndim != 5 or x.shape[1] != 3:
        raise ValueError(f"VAE output must be [B, 3, T, H, W], got {list(x.shape)}")
    c = _scale(max_distance)
    u = x.permute(0, 2, 3, 4, 1)
    n = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
    valid = n[..., 0] <= INVALID_THRESHOLD
    n_in = n.clamp(max=VALID_EXTENT)
    gain = torch.where(n > 1e-6, torch.expm1(n_in / c) / n.clamp_min(1e-12), 1.0 / c)
    points = torch.where(valid[..., None], u * gain, torch.zeros((), dtype=u.dtype))
    return points, valid


def latent_statistics(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(mean [C], std [C])`` of raw latents ``[N, C, T', h', w']`` (std >= 1e-4),
    as wan-mini computes its video latents' statistics."""
    if latents.ndim != 5:
        raise ValueError(f"latents must be [N, C, T', h', w'], got {list(latents.shape)}")
    mean = latents.mean(dim=(0, 2, 3, 4))
    std = latents.std(dim=(0, 2, 3, 4)).clamp_min(1e-4)
    return mean, std


class PointmapVAE(nn.Module):
    """An ``AutoencoderKLWan`` (``self.vae``) coding point maps through the fixed transform.

    ``max_distance``: the clamp radius of valid points (normalised units), part of the saved
    configuration. Every tensor method takes / returns the layouts of the module docstring.
    """

    def __init__(self, vae: nn.Module, max_distance: float = DEFAULT_MAX_DISTANCE) -> None:
        super().__init__()
        cfg = vae.config
        if int(cfg.in_channels) != 3 or int(cfg.out_channels) != 3:
            raise ValueError(
                f"the point-map VAE needs 3 input/output channels, got {cfg.in_channels}/"
                f"{cfg.out_channels}"
            )
        if max_distance <= 0:
            raise ValueError(f"max_distance must be > 0, got {max_distance}")
        self.vae = vae
        self.max_distance = float(max_distance)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_video_vae(
        cls, vae: nn.Module, max_distance: float = DEFAULT_MAX_DISTANCE
    ) -> PointmapVAE:
        """A deep copy of the video VAE (same class, same weights; the original is untouched),
        trainable (``requires_grad`` on, whatever the source's flags: a loaded backbone's VAE is
        frozen), with identity latent statistics (mean 0, std 1) until `set_latent_statistics`."""
        pm = copy.deepcopy(vae).requires_grad_(True)
        z = int(pm.config.z_dim)
        pm.register_to_config(latents_mean=[0.0] * z, latents_std=[1.0] * z)
        return cls(pm, max_distance=max_distance)

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write the VAE (diffusers layout, safetensors) and ``pointmap_vae.json`` into ``folder``."""
        from vfm3d.utils.atomic import atomic_write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.vae.save_pretrained(folder, safe_serialization=True)
        atomic_write_json(folder / CONFIG_FILE, self.describe())
        return folder

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> PointmapVAE:
        """Load a folder written by `save_pretrained` (raises if ``pointmap_vae.json`` is absent)."""
        from diffusers import AutoencoderKLWan

        folder = Path(folder)
        cfg_path = folder / CONFIG_FILE
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{folder}: not a point-map VAE folder (no {CONFIG_FILE})")
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("format") != FORMAT:
            raise ValueError(f"{cfg_path}: format {cfg.get('format')!r}, expected {FORMAT!r}")
        vae = AutoencoderKLWan.from_pretrained(folder, torch_dtype=dtype)
        return cls(vae, max_distance=float(cfg["max_distance"])).to(device)

    def describe(self) -> dict[str, Any]:
        """The transform's constants (what ``pointmap_vae.json`` holds)."""
        return {
            "format": FORMAT,
            "max_distance": self.max_distance,
            "valid_extent": VALID_EXTENT,
            "invalid_threshold": INVALID_THRESHOLD,
            "sentinel": list(SENTINEL),
            "transform": "u = p/|p| * c*log1p(min(|p|, max_distance)), c = valid_extent/"
            "log1p(max_distance); invalid -> sentinel",
            "points": "frame 0 OpenCV camera coordinates, mean distance of frame 0's valid points 1",
        }

    # ---------------------------------------------------------------- latents
    @property
    def factors(self) -> tuple[int, int]:
        """(temporal, spatial) compression of the VAE."""
        from vfm3d.backbones.wan import _vae_factors

        return _vae_factors(self.vae)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.vae.config
        mean = torch.tensor(cfg.latents_mean, device=like.device, dtype=like.dtype)
        std = torch.tensor(cfg.latents_std, device=like.device, dtype=like.dtype)
        return mean.view(1, -1, 1, 1, 1), std.view(1, -1, 1, 1, 1)

    def set_latent_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-channel statistics ``[C]`` in the VAE config (``latents_mean/std``)."""
        z = int(self.vae.config.z_dim)
        if mean.shape != (z,) or std.shape != (z,):
            raise ValueError(f"statistics must be [{z}], got {list(mean.shape)}, {list(std.shape)}")
        if not bool((std > 0).all()):
            raise ValueError("latents_std must be > 0")
        self.vae.register_to_config(latents_mean=mean.tolist(), latents_std=std.tolist())

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents ``[B, C, T', h', w']`` -> ``(z - mean) / std``."""
        mean, std = self._stats(z)
        return (z - mean) / std

    def denormalise(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> raw latents ``latents * std + mean``."""
        mean, std = self._stats(latents)
        return latents * std + mean

    def _check_size(self, t: int, h: int, w: int) -> None:
        ft, fs = self.factors
        if (t - 1) % ft or h % fs or w % fs:
            raise ValueError(
                f"point maps of {t} frames at {h}x{w}: need T = {ft}k+1 and H, W multiples of {fs}"
            )

    def posterior(self, points: torch.Tensor, valid: torch.Tensor) -> Any:
        """The VAE posterior (``DiagonalGaussianDistribution`` over raw latents) of point maps."""
        self._check_size(*points.shape[1:4])
        dtype = next(self.vae.parameters()).dtype
        x = points_to_vae(points, valid, self.max_distance).to(dtype)
        return self.vae.encode(x).latent_dist

    def encode(self, points: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Point maps ``[B, T, H, W, 3]`` + valid -> normalised latents ``[B, C, T', h', w']``
        (posterior mode, as the Wan adapter encodes videos)."""
        return self.normalise(self.posterior(points, valid).mode())

    def decode(self, latents: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised latents ``[B, C, T', h', w']`` -> ``{"points": [B, T, H, W, 3] float32,
        "valid": [B, T, H, W] bool}`` (normalised units, frame 0's camera coordinates)."""
        dtype = next(self.vae.parameters()).dtype
        x = self.vae.decode(self.denormalise(latents).to(dtype)).sample.float()
        points, valid = vae_to_points(x, self.max_distance)
        return {"points": points, "valid": valid}


def pointmap_vae_loss(
    pm_vae: PointmapVAE,
    points: torch.Tensor,
    valid: torch.Tensor,
    generator: torch.Generator | None = None,
    kl_weight: float = KL_WEIGHT,
    delta: float = HUBER_DELTA,
    invalid_weight: float = INVALID_WEIGHT,
) -> dict[str, torch.Tensor]:
    """Sora3R's VAE loss on point maps ``[B, T, H, W, 3]`` (normalised) + valid ``[B, T, H, W]``.

    Encodes, samples the posterior (``mean + std * eps``, ``eps`` from ``generator``, on the CPU),
    decodes; returns ``{"loss", "huber", "invalid", "kl"}`` (scalars; see the module docstring):
    ``loss = huber + invalid_weight * invalid + kl_weight * kl``. Raises ValueError if no pixel
    of the batch is valid.
    """
    if not bool(valid.any()):
        raise ValueError("pointmap_vae_loss: no valid pixel in the batch")
    vae = pm_vae.vae
    dtype = next(vae.parameters()).dtype
    pm_vae._check_size(*points.shape[1:4])
    target = points_to_vae(points, valid, pm_vae.max_distance).to(dtype)
    posterior = vae.encode(target).latent_dist
    eps = torch.randn(posterior.mean.shape, generator=generator).to(posterior.mean)
    z = posterior.mean + posterior.std * eps
    recon = vae.decode(z).sample
    per = F.huber_loss(recon.float(), target.float(), reduction="none", delta=delta) / delta
    mask = valid[:, None].expand_as(per).to(per.dtype)
    huber = (per * mask).sum() / mask.sum()
    inv = 1.0 - mask
    invalid = (per * inv).sum() / inv.sum().clamp_min(1.0)
    kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).float().mean()
    loss = huber + invalid_weight * invalid + kl_weight * kl
    return {"loss": loss, "huber": huber, "invalid": invalid, "kl": kl}
