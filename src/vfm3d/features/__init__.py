"""Feature extraction (many layers and timesteps in one pass, early exit) and the feature cache."""

from vfm3d.features.extract import Features, bare_forward, extract, validate_frames
from vfm3d.features.runner import ExtractSummary, extract_to_store
from vfm3d.features.store import CorruptShardError, FeatureKey, FeatureStore, StoreEntry

__all__ = [
    "CorruptShardError",
    "ExtractSummary",
    "FeatureKey",
    "FeatureStore",
    "Features",
    "StoreEntry",
    "bare_forward",
    "extract",
    "extract_to_store",
    "validate_frames",
]
