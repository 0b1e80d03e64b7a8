"""Feature extraction (many layers and timesteps in one pass, early exit) and the feature cache."""

from vfm3d.features.extract import Features, bare_forward, extract, validate_frames

__all__ = ["Features", "bare_forward", "extract", "validate_frames"]
