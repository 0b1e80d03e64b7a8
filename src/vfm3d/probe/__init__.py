"""The VGGT-like 3D probe (VidFM3D): model, data, losses, training and evaluation.

Public API: `ProbeConfig`, `ProbeModel`, `ProbeDataset`, `FeatureSource`,
`InMemoryFeatureSource`, `train`, `evaluate`, `predict`, `load_probe`.
"""

from vfm3d.probe.config import ProbeConfig
from vfm3d.probe.data import (
    FeatureSource,
    InMemoryFeatureSource,
    ProbeDataError,
    ProbeDataset,
    SampleSpec,
    StoreFeatureSource,
)
from vfm3d.probe.evaluate import evaluate, load_probe, predict
from vfm3d.probe.model import ProbeModel
from vfm3d.probe.train import train

__all__ = [
    "FeatureSource",
    "InMemoryFeatureSource",
    "ProbeConfig",
    "ProbeDataError",
    "ProbeDataset",
    "ProbeModel",
    "SampleSpec",
    "StoreFeatureSource",
    "evaluate",
    "load_probe",
    "predict",
    "train",
]
