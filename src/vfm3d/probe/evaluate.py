"""Probe evaluation: `evaluate` (-> ``metrics.json``) and `predict` (one sample, for figures).

Metrics (definitions in DESIGN.md "Metrics"; functions from `vfm3d.metrics`):

- ``point_err``: VidFM3D ``pmap_mse_aligned`` (Sim(3) fit, mean distance), per sample, averaged;
- ``depth_err``: VidFM3D ``loss_depth`` (mean ``conf * |d - d_gt|``, normalised scale);
- ``auc@{3,5,10,30}`` in mode ``vggt`` (all pairs pooled) and ``auc_vidfm3d@k`` (``histc``
  AUC per evaluation batch of ``config.batch_size`` samples, averaged over batches);
- ``rra@{5,15,30}``, ``rta@{5,15,30}`` over all frame pairs of all samples;
- ``abs_rel``, ``delta1``: per-sample median-scaled depth metrics, averaged.

Predicted cameras are decoded from ``pose_enc`` with the output size; pairwise errors use the
VGGT relative pose convention (``inverse(world_to_cam_i) @ world_to_cam_j``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vfm3d.clip import ClipFolder
from vfm3d.geometry import decode_pose, invert_rigid
from vfm3d.metrics import (
    auc_from_errors,
    depth_error,
    depth_metrics,
    point_error,
    relative_pose_errors,
    rra_rta,
)
from vfm3d.probe.checkpoint import load_checkpoint, load_weights
from vfm3d.probe.config import ProbeConfig
from vfm3d.probe.data import (
    FeatureSource,
    ProbeDataset,
    SampleSpec,
    check_pairing,
    collate,
    make_eval_samples,
    read_samples,
    write_samples,
)
from vfm3d.probe.model import ProbeModel
from vfm3d.probe.train import CHECKPOINT, EVAL_SAMPLES, RUN_INFO, WEIGHTS, open_features
from vfm3d.utils.atomic import atomic_write_json

AUC_THRESHOLDS = (3, 5, 10, 30)
RA_THRESHOLDS = (5, 15, 30)


def load_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``run.json`` of a training run."""
    path = Path(run_dir) / RUN_INFO
    if not path.is_file():
        raise FileNotFoundError(f"not a probe run folder (no {RUN_INFO}): {run_dir}")
    return json.loads(path.read_text())


def load_probe(
    run_dir: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[ProbeModel, dict[str, Any]]:
    """The trained probe of a run (final weights, else the latest checkpoint) and its settings."""
    run = Path(run_dir)
    info = load_run(run)
    config = ProbeConfig.from_dict(info["config"])
    model = ProbeModel(config, int(info["in_channels"]))
    if (run / WEIGHTS).is_file():
        load_weights(run / WEIGHTS, model)
        info["evaluated_step"] = int(info["steps"])
    elif (run / CHECKPOINT).is_file():
        meta = load_checkpoint(run / CHECKPOINT, model, restore_rng=False)
        info["evaluated_step"] = int(meta["step"])
    else:
        raise FileNotFoundError(f"{run}: no {WEIGHTS} or {CHECKPOINT} (train first)")
    return model.to(device).eval(), info


def _dataset(
    run_dir: Path,
    info: dict[str, Any],
    config: ProbeConfig,
    features: FeatureSource | str | os.PathLike[str] | None,
    data_dir: str | os.PathLike[str] | None,
    samples: str | os.PathLike[str] | list[SampleSpec] | None,
) -> tuple[ProbeDataset, str]:
    clips = ClipFolder(data_dir if data_dir is not None else info["data_dir"])
    if features is None:
        if info.get("features") is None:
            raise ValueError(
                f"{run_dir}: trained on in-memory features; pass `features` to evaluate"
            )
        features = info["features"]
    source = open_features(
        features, clips, info.get("backbone"), info.get("layer"), info.get("timestep")
    )
    check_pairing(clips, source, config, full_scan=False)
    if isinstance(samples, list):
        specs, sample_file = samples, "<given>"
    elif samples is not None:
        specs, sample_file = read_samples(samples), str(samples)
    elif data_dir is None or Path(data_dir).resolve() == Path(info["data_dir"]):
        specs, sample_file = read_samples(run_dir / EVAL_SAMPLES), str(run_dir / EVAL_SAMPLES)
    else:
        path = run_dir / f"eval_samples_{Path(data_dir).resolve().name}.json"
        if not path.is_file():
            write_samples(path, make_eval_samples(clips, source, config, int(info["seed"])))
        specs, sample_file = read_samples(path), str(path)
    return ProbeDataset(clips, source, config, samples=specs), sample_file


class MetricAccumulator:
    """Scores batches of predictions against their targets; `result` gives the metrics dict.

    `add` takes a prediction dict (``points [B,S,H,W,3]``, ``depth [B,S,H,W]``, ``pose_enc
    [B,S,9]``) and the batch it predicts (``points``, ``depth``, ``valid``, ``cam_to_world``);
    each call is one evaluation batch for the per-batch ``auc_vidfm3d@k``. This is the whole
    evaluation path of `evaluate`: a ground-truth "prediction" (the batch's own ``points``,
    ``depth`` and ``pose_enc``) scores AUC = 1 and Point Err ~ 0.
    """

    def __init__(self) -> None:
        self.point_errs: list[float] = []
        self.depth_errs: list[float] = []
        self.abs_rels: list[float] = []
        self.delta1s: list[float] = []
        self.rot: list[torch.Tensor] = []
        self.trans: list[torch.Tensor] = []
        self.batch_aucs: dict[int, list[float]] = {k: [] for k in AUC_THRESHOLDS}
        self.clip_ids: list[str | None] = []
        self.sample_rot: list[torch.Tensor] = []
        self.sample_trans: list[torch.Tensor] = []

    def add(
        self, pred: dict[str, Any], batch: dict[str, Any], clip_ids: list[str] | None = None
    ) -> None:
        """Score one batch (``pred`` tensors may live on any device); ``clip_ids`` name its
        samples' clips (for `per_sample` and the bootstrap over clips)."""
        if clip_ids is not None and len(clip_ids) != batch["depth"].shape[0]:
            raise ValueError(f"clip_ids: {len(clip_ids)} ids for {batch['depth'].shape[0]} samples")
        self.clip_ids += (
            list(clip_ids) if clip_ids is not None else [None] * batch["depth"].shape[0]
        )
        out_hw = tuple(batch["depth"].shape[-2:])
        rot_batch, trans_batch = [], []
        for j in range(batch["depth"].shape[0]):
            valid = batch["valid"][j]
            points = pred["points"][j].detach().cpu().float()
            depth = pred["depth"][j].detach().cpu().float()
            self.point_errs.append(float(point_error(points, batch["points"][j], valid)))
            self.depth_errs.append(float(depth_error(depth, batch["depth"][j], valid)))
            dm = depth_metrics(depth, batch["depth"][j], valid, align="median")
            self.abs_rels.append(dm.abs_rel)
            self.delta1s.append(dm.delta1)
            pred_w2c, _ = decode_pose(pred["pose_enc"][j].detach().cpu().double(), out_hw)
            r, t = relative_pose_errors(invert_rigid(pred_w2c), batch["cam_to_world"][j])
            rot_batch.append(r)
            trans_batch.append(t)
            self.sample_rot.append(r)
            self.sample_trans.append(t)
        rb, tb = torch.cat(rot_batch), torch.cat(trans_batch)
        aucs = auc_from_errors(rb, tb, AUC_THRESHOLDS, mode="vidfm3d")
        for k in AUC_THRESHOLDS:
            self.batch_aucs[k].append(aucs[f"AUC@{k}"])
        self.rot.append(rb)
        self.trans.append(tb)

    def per_sample(self) -> list[dict[str, Any]]:
        """One record per sample: ``clip_id``, ``point_err``, ``depth_err``, ``abs_rel``,
        ``delta1``, ``auc@30`` of its own pairs and the pairs' ``rot_err`` / ``trans_err``
        (degrees). Every sample has the same S(S-1)/2 pairs and the ``"vggt"`` AUC is a mean of
        per-pair scores, so the mean of per-sample ``auc@30`` over any set of samples is that
        set's pooled AUC@30 (what the bootstrap over clips resamples)."""
        return [
            {
                "clip_id": clip_id,
                "point_err": self.point_errs[i],
                "depth_err": self.depth_errs[i],
                "abs_rel": self.abs_rels[i],
                "delta1": self.delta1s[i],
                "auc@30": auc_from_errors(
                    self.sample_rot[i], self.sample_trans[i], (30,), mode="vggt"
                )["AUC@30"],
                "rot_err": [round(float(v), 4) for v in self.sample_rot[i]],
                "trans_err": [round(float(v), 4) for v in self.sample_trans[i]],
            }
            for i, clip_id in enumerate(self.clip_ids)
        ]

    @property
    def num_pairs(self) -> int:
        return int(sum(r.numel() for r in self.rot))

    def result(self) -> dict[str, float]:
        """The metrics (see the module docstring) over everything added so far."""
        rot, trans = torch.cat(self.rot), torch.cat(self.trans)
        metrics: dict[str, float] = {
            "point_err": float(np.mean(self.point_errs)),
            "depth_err": float(np.mean(self.depth_errs)),
        }
        aucs = auc_from_errors(rot, trans, AUC_THRESHOLDS, mode="vggt")
        for k in AUC_THRESHOLDS:
            metrics[f"auc@{k}"] = aucs[f"AUC@{k}"]
        for k in AUC_THRESHOLDS:
            metrics[f"auc_vidfm3d@{k}"] = float(np.mean(self.batch_aucs[k]))
        metrics.update({k.lower(): float(v) for k, v in rra_rta(rot, trans, RA_THRESHOLDS).items()})
        metrics["abs_rel"] = float(np.mean(self.abs_rels))
        metrics["delta1"] = float(np.mean(self.delta1s))
        return metrics


@torch.no_grad()
def evaluate(
    run_dir: str | os.PathLike[str],
    features: FeatureSource | str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    samples: str | os.PathLike[str] | list[SampleSpec] | None = None,
    split: str | None = None,
    device: str | torch.device = "cpu",
    write: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Score a trained probe on fixed samples; write ``metrics.json`` (or ``metrics_<split>.json``).

    Args:
        run_dir: a folder written by `vfm3d.probe.train`.
        features: override the run's feature source (required if it trained on in-memory ones).
        data_dir: clips to evaluate on (default: the run's); other folders get their own fixed
            sample file in the run folder.
        samples: an explicit sample file / list (default: the run's ``eval_samples.json``).
        split: label stored in the result and used in the file name.

    Returns ``{"metrics": {...}, "settings": {...}}`` (what the file holds).
    """
    run = Path(run_dir)
    model, info = load_probe(run, device)
    config = model.config
    dataset, sample_file = _dataset(run, info, config, features, data_dir, samples)
    scores = MetricAccumulator()
    indices = list(range(len(dataset)))
    batches = [
        indices[i : i + config.batch_size] for i in range(0, len(indices), config.batch_size)
    ]
    iterator: Any = batches
    if progress:
        from tqdm import tqdm

        iterator = tqdm(batches, desc="probe eval", unit="batch")
    for chunk in iterator:
        batch = collate(dataset[i] for i in chunk)
        out_hw = tuple(batch["depth"].shape[-2:])
        pred = model(batch["features"].to(device), out_hw)
        scores.add(pred, batch, [dataset.spec(i).clip_id for i in chunk])
    metrics = scores.result()
    result = {
        "metrics": metrics,
        "settings": {
            "backbone": info.get("backbone"),
            "layer": info.get("layer"),
            "timestep": info.get("timestep"),
            "steps": info.get("evaluated_step"),
            "seed": info.get("seed"),
            "split": split,
            "data_dir": str(Path(data_dir).resolve()) if data_dir else info["data_dir"],
            "eval_samples": sample_file,
            "num_samples": len(dataset),
            "num_pairs": scores.num_pairs,
            "config": config.to_dict(),
        },
        "samples": scores.per_sample(),
    }
    if write:
        name = "metrics.json" if split is None else f"metrics_{split}.json"
        atomic_write_json(run / name, result)
    return result


@torch.no_grad()
def predict(
    run_dir: str | os.PathLike[str],
    index: int = 0,
    features: FeatureSource | str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    sample: SampleSpec | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Predictions and ground truth for one sample (evaluation sample ``index`` by default).

    Returns numpy arrays (S frames, H x W output size): ``pred_points [S,H,W,3]``,
    ``pred_points_conf [S,H,W]``, ``pred_depth [S,H,W]``, ``pred_depth_conf``, ``pred_pose_enc
    [S,9]``, ``pred_world_to_cam [S,4,4]``; ``points``, ``depth``, ``valid``, ``world_to_cam``,
    ``intrinsics``, ``images`` (uint8 ``[S,H,W,3]``) of the target; ``clip_id``, ``frames``.
    """
    run = Path(run_dir)
    model, info = load_probe(run, device)
    samples = [sample] if sample is not None else None
    dataset, _ = _dataset(run, info, model.config, features, data_dir, samples)
    item = dataset[0 if sample is not None else index]
    out_hw = tuple(item["depth"].shape[-2:])
    pred = model(item["features"][None].to(device), out_hw)
    pred_w2c, _ = decode_pose(pred["pose_enc"][0].cpu().double(), out_hw)
    result: dict[str, Any] = {
        "pred_points": pred["points"][0].cpu().numpy(),
        "pred_points_conf": pred["points_conf"][0].cpu().numpy(),
        "pred_depth": pred["depth"][0].cpu().numpy(),
        "pred_depth_conf": pred["depth_conf"][0].cpu().numpy(),
        "pred_pose_enc": pred["pose_enc"][0].cpu().numpy(),
        "pred_world_to_cam": pred_w2c.numpy(),
    }
    keys = ("points", "depth", "valid", "world_to_cam", "cam_to_world", "intrinsics", "images")
    for key in (*keys, "frames"):
        result[key] = item[key].numpy()
    result["clip_id"] = item["clip_id"]
    return result
