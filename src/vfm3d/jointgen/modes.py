"""JOG3R's three modes on a `JointGenerator`, and the camera-trajectory smoother.

- **T2V** (`text_to_video`): Euler integration of the learnt flow from noise (sigma 1) to data
  (sigma 0) on wan-mini's shifted sigma schedule (`vfm3d.models.wan_flow.shifted_sigmas`, shift 3),
  conditioned on the prompt (None / "" = unconditional). Sample ``i`` draws its noise from its own
  generator seeded ``seeds[i]``, so a sample depends on its seed only (not on the batch); with
  one unconditional sample the latents equal `vfm3d.models.wan_flow.sample_latents`'. Optional
  classifier-free guidance ``v = v_u + g (v_c - v_u)`` (``guidance`` 1 = none, the default).
- **T2V+C** (``text_to_video(..., cameras=True)``): the same sampling; at the last Euler step
  (the lowest non-zero noise level, sigma ~0.09 at 30 steps) the head reads the hooked block
  features of that very forward: the video and its cameras and point maps come out together,
  no extra DiT pass.
- **V2C** (`video_to_cameras`): encode the video (posterior mode, normalised), noise it to a
  low timestep (default ``V2C_TIMESTEP`` = 100, sigma 0.1: ``z = (1 - s) z0 + s eps``, ``eps``
  from ``seed``), run the DiT once up to the deepest head block (early exit), read cameras and
  point maps from the head.

Cameras come out of the head as ``absT_quaR_FoV`` (world_to_cam in frame 0's camera, scale of
the probe's targets); `decode_pose` gives ``world_to_cam`` and ``K`` (principal point at the
image centre; FoV clamped to ``>= MIN_FOV``), and ``cam_to_world`` is its inverse.

**Temporal smoothness regulariser** (`smooth_trajectory`; JOG3R regularises the trajectory at
inference; its exact form is unpublished, this is vfm3d's): camera centres ``x_t`` and
orientations ``R_t`` (cam_to_world) are refit to the raw ones ``y_t``, ``Y_t`` by minimising

    sum_t ||x_t - y_t||^2 + w sum_t ||x_{t+1} - 2 x_t + x_{t-1}||^2                 (centres)
    sum_t ||log(Y_t^T R_t)||^2 + w sum_t ||log(R_t^T R_{t+1}) - log(R_{t-1}^T R_t)||^2  (rotations)

(second differences: accelerations, of positions and of body-frame angular velocities). The
centres have the closed form ``x = (I + w D2^T D2)^{-1} y`` (a Whittaker / Hodrick-Prescott
filter: frame-to-frame jitter at the Nyquist rate is damped by ``1 / (1 + 16 w)``); rotations
take ``iterations`` Gauss-Newton steps on right perturbations ``R_t exp(d_t)`` with the same
matrix. Only second differences are penalised: a first-difference (velocity) term would pull
every pose toward its neighbours and shrink a steady path, while a straight constant-velocity
path with a constant angular velocity is exactly a minimiser here (zero residuals), so it is
returned unchanged. ``w`` defaults to ``SMOOTH_WEIGHT`` = 1; ``w = 0`` disables it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from vfm3d.jointgen.model import JointGenerator

#: V2C: model timestep of the noise added before reading the head (sigma = 0.1).
V2C_TIMESTEP = 100.0
#: Weight ``w`` of the smoothness terms of `smooth_trajectory`.
SMOOTH_WEIGHT = 1.0
#: Gauss-Newton iterations on the rotations.
SMOOTH_ITERATIONS = 5
#: Smallest field of view decoded (radians): an untrained head can output FoV 0 (its ReLU).
MIN_FOV = 1e-3


# ---------------------------------------------------------------------- smoother
def _second_difference(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``D2 [n - 2, n]`` with rows ``(1, -2, 1)``."""
    d2 = torch.zeros(n - 2, n, dtype=dtype, device=device)
    idx = torch.arange(n - 2, device=device)
    d2[idx, idx] = 1.0
    d2[idx, idx + 1] = -2.0
    d2[idx, idx + 2] = 1.0
    return d2


def rotation_log(rotation: torch.Tensor) -> torch.Tensor:
    """SO(3) logarithm: rotations ``[..., 3, 3]`` -> rotation vectors ``[..., 3]`` (radians)."""
    from vfm3d.geometry.rotation import rotation_to_quaternion_xyzw

    q = rotation_to_quaternion_xyzw(rotation)  # w >= 0
    v, w = q[..., :3], q[..., 3:]
    n = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    small = n < 1e-12
    factor = torch.where(
        small, 2.0 / w.clamp_min(1e-12), 2.0 * torch.atan2(n, w) / torch.where(small, 1.0, n)
    )
    return v * factor


def smooth_trajectory(
    cam_to_world: torch.Tensor,
    weight: float = SMOOTH_WEIGHT,
    iterations: int = SMOOTH_ITERATIONS,
) -> torch.Tensor:
    """Smooth camera poses ``cam_to_world [..., T, 4, 4]`` in time (module docstring); float64.

    Fewer than 3 frames, or ``weight = 0``, return the input (as float64).
    """
    from vfm3d.geometry import axis_angle_to_rotation

    poses = cam_to_world.detach().double()
    if poses.shape[-2:] != (4, 4) or poses.ndim < 3:
        raise ValueError(f"cam_to_world must be [..., T, 4, 4], got {list(poses.shape)}")
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    n = poses.shape[-3]
    if n < 3 or weight == 0:
        return poses.clone()
    d2 = _second_difference(n, poses.dtype, poses.device)
    system = torch.eye(n, dtype=poses.dtype, device=poses.device) + weight * d2.T @ d2
    out = poses.clone()
    out[..., :3, 3] = torch.linalg.solve(system, poses[..., :3, 3])
    target = poses[..., :3, :3]
    rot = target.clone()
    for _ in range(int(iterations)):
        err = rotation_log(target.transpose(-1, -2) @ rot)  # [..., T, 3]
        vel = rotation_log(rot[..., :-1, :, :].transpose(-1, -2) @ rot[..., 1:, :, :])
        acc = vel[..., 1:, :] - vel[..., :-1, :]  # [..., T - 2, 3]
        rhs = -(err + weight * d2.T @ acc)
        delta = torch.linalg.solve(system, rhs)
        rot = rot @ axis_angle_to_rotation(delta)
    out[..., :3, :3] = rot
    return out


def trajectory_jitter(cam_to_world: torch.Tensor) -> dict[str, float]:
    """Mean norm of the second differences of camera centres (``translation``, world units) and
    of the body-frame angular velocities (``rotation_deg``) of ``[T, 4, 4]`` poses; 0 for a
    steady path."""
    poses = cam_to_world.detach().double()
    if poses.shape[-3] < 3:
        return {"translation": 0.0, "rotation_deg": 0.0}
    centres = poses[..., :3, 3]
    acc = centres[..., 2:, :] - 2 * centres[..., 1:-1, :] + centres[..., :-2, :]
    rot = poses[..., :3, :3]
    vel = rotation_log(rot[..., :-1, :, :].transpose(-1, -2) @ rot[..., 1:, :, :])
    ang = torch.rad2deg(vel[..., 1:, :] - vel[..., :-1, :])
    return {
        "translation": float(torch.linalg.vector_norm(acc, dim=-1).mean()),
        "rotation_deg": float(torch.linalg.vector_norm(ang, dim=-1).mean()),
    }


# ---------------------------------------------------------------------- head outputs
@dataclass
class CameraPrediction:
    """Cameras and geometry read from the head, for ``B`` videos and ``S`` predicted frames.

    - ``frames [S]``: input frame of each prediction (`vfm3d.jointgen.model.frame_mapping`);
    - ``pose_enc [B, S, 9]``: the head's ``absT_quaR_FoV`` (world_to_cam, XYZW, fov_h, fov_w);
    - ``cam_to_world [B, S, 4, 4]`` float64: smoothed when asked (else = ``cam_to_world_raw``);
    - ``intrinsics [B, S, 3, 3]`` float64 (pixels of the ``image_hw`` maps);
    - ``points [B, S, H, W, 3]`` (frame 0's camera), ``points_conf``, ``depth``, ``depth_conf``
      ``[B, S, H, W]`` float32;
    - ``timestep``: the model timestep the features were read at.
    World frame: the head's frame 0 camera, scale of the probe's targets (frame 0's mean point
    distance 1).
    """

    frames: torch.Tensor
    pose_enc: torch.Tensor
    cam_to_world: torch.Tensor
    cam_to_world_raw: torch.Tensor
    intrinsics: torch.Tensor
    points: torch.Tensor
    points_conf: torch.Tensor
    depth: torch.Tensor
    depth_conf: torch.Tensor
    timestep: float
    meta: dict[str, Any] = field(default_factory=dict)


def cameras_from_head(
    out: dict[str, Any],
    image_hw: tuple[int, int],
    timestep: float,
    smooth: bool = True,
    smooth_weight: float = SMOOTH_WEIGHT,
) -> CameraPrediction:
    """`CameraPrediction` from `JointGenerator.forward`'s head outputs (all moved to the CPU)."""
    from vfm3d.geometry import decode_pose, invert_rigid

    enc = out["pose_enc"].detach().cpu().double().clone()
    enc[..., 7:9] = enc[..., 7:9].clamp_min(MIN_FOV)
    world_to_cam, intrinsics = decode_pose(enc, image_hw)
    raw = invert_rigid(world_to_cam)
    poses = smooth_trajectory(raw, smooth_weight) if smooth else raw.clone()
    return CameraPrediction(
        frames=out["frames"].detach().cpu(),
        pose_enc=out["pose_enc"].detach().cpu().float(),
        cam_to_world=poses,
        cam_to_world_raw=raw,
        intrinsics=intrinsics,
        points=out["points"].detach().cpu().float(),
        points_conf=out["points_conf"].detach().cpu().float(),
        depth=out["depth"].detach().cpu().float(),
        depth_conf=out["depth_conf"].detach().cpu().float(),
        timestep=float(timestep),
        meta={"smooth": bool(smooth), "smooth_weight": float(smooth_weight) if smooth else 0.0},
    )


# ---------------------------------------------------------------------- V2C
@torch.no_grad()
def video_to_cameras(
    generator: JointGenerator,
    frames: torch.Tensor,
    timestep: float = V2C_TIMESTEP,
    seed: int = 0,
    prompts: Sequence[str | None] | None = None,
    smooth: bool = True,
    smooth_weight: float = SMOOTH_WEIGHT,
) -> CameraPrediction:
    """V2C: cameras and point maps of ``frames [B, T, 3, H, W]`` in [0, 1] (``T = 4k + 1``).

    ``timestep`` in [0, 1000) (model timestep, ``1000 sigma``); ``prompts`` condition the DiT
    (default: the empty prompt). The noise is drawn from a CPU generator seeded ``seed``.
    """
    if not 0.0 <= float(timestep) < 1000.0:
        raise ValueError(f"timestep must lie in [0, 1000), got {timestep}")
    z0 = generator.encode_video(frames)
    gen = torch.Generator().manual_seed(int(seed))
    eps = torch.randn(z0.shape, generator=gen).to(z0)
    sigma = float(timestep) / 1000.0
    noisy = (1.0 - sigma) * z0 + sigma * eps
    batch = z0.shape[0]
    context = generator.encode_prompts(list(prompts) if prompts else [None] * batch)
    t = torch.full((batch,), float(timestep), device=z0.device)
    out = generator(noisy, t, context, early_exit=True, out_size=tuple(frames.shape[-2:]))
    pred = cameras_from_head(out, tuple(frames.shape[-2:]), timestep, smooth, smooth_weight)
    pred.meta.update({"mode": "V2C", "seed": int(seed)})
    return pred


# ---------------------------------------------------------------------- T2V, T2V+C
@dataclass
class Generation:
    """Output of `text_to_video`: ``videos [N, T, 3, H, W]`` in [0, 1], ``latents [N, C, T',
    h', w']`` (normalised), ``cameras`` (T2V+C, else None), the prompts and seeds used."""

    videos: torch.Tensor
    latents: torch.Tensor
    cameras: CameraPrediction | None
    prompts: list[str | None]
    seeds: list[int]
    meta: dict[str, Any] = field(default_factory=dict)


def initial_noise(shape: Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
    """``[N, *shape]`` standard normal, sample ``i`` from a CPU generator seeded ``seeds[i]``."""
    return torch.stack(
        [torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    )


@torch.no_grad()
def sample_latents(
    generator: JointGenerator,
    prompts: Sequence[str | None],
    seeds: Sequence[int],
    frames: int = 9,
    height: int = 32,
    width: int = 32,
    steps: int = 30,
    shift: float = 3.0,
    guidance: float = 1.0,
    cameras: bool = False,
    progress: bool = False,
) -> tuple[torch.Tensor, dict[str, Any] | None, float]:
    """Euler flow sampling (module docstring) -> ``(latents, head outputs at the last step or
    None, model timestep of that step)``."""
    from tqdm import tqdm

    from vfm3d.models.wan_flow import shifted_sigmas

    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if cameras and generator.head is None:
        raise ValueError("this model has no reconstruction head: no cameras (T2V+C)")
    device = generator.device
    shape = generator.latent_shape(frames, height, width)
    x = initial_noise(shape, seeds).to(device)
    sigmas = shifted_sigmas(steps, shift).to(device)
    n = x.shape[0]
    cond = generator.encode_prompts(list(prompts))
    guided = guidance != 1.0 and any(p for p in prompts)
    uncond = generator.encode_prompts([None] * n) if guided else None
    head_out: dict[str, Any] | None = None
    for i in tqdm(range(steps), desc="sampling", unit="step", disable=not progress):
        t = (sigmas[i] * 1000.0).expand(n)
        read = cameras and i == steps - 1
        out = generator(x, t, cond, run_head=read)
        v = out["velocity"]
        if read:
            head_out = out
        if uncond is not None:
            v_u = generator(x, t, uncond, run_head=False)["velocity"]
            v = v_u + guidance * (v - v_u)
        x = x + (sigmas[i + 1] - sigmas[i]) * v
    return x, head_out, float(sigmas[steps - 1] * 1000.0)


@torch.no_grad()
def text_to_video(
    generator: JointGenerator,
    prompts: Sequence[str | None] | str | None,
    seeds: Sequence[int] = (0,),
    frames: int = 9,
    height: int = 32,
    width: int = 32,
    steps: int = 30,
    guidance: float = 1.0,
    cameras: bool = False,
    smooth: bool = True,
    smooth_weight: float = SMOOTH_WEIGHT,
    progress: bool = False,
) -> Generation:
    """T2V (and T2V+C with ``cameras``): one video per seed; ``prompts`` one per seed, or a
    single prompt (or None: unconditional) for all."""
    seeds = [int(s) for s in seeds]
    if prompts is None or isinstance(prompts, str):
        prompt_list: list[str | None] = [prompts] * len(seeds)
    else:
        prompt_list = list(prompts)
    latents, head_out, t_last = sample_latents(
        generator,
        prompt_list,
        seeds,
        frames,
        height,
        width,
        steps,
        guidance=guidance,
        cameras=cameras,
        progress=progress,
    )
    videos = generator.decode_latents(latents)
    preds = None
    if head_out is not None:
        preds = cameras_from_head(head_out, (height, width), t_last, smooth, smooth_weight)
        preds.meta.update({"mode": "T2V+C", "step": steps - 1})
    meta = {"steps": steps, "guidance": guidance, "sampler": "Euler, flow shift 3"}
    return Generation(videos.cpu(), latents.cpu(), preds, prompt_list, seeds, meta)
