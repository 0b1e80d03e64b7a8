"""Fixtures for probe tests: a small clip folder of analytic rooms and in-memory features."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synth import features_for, write_rooms

from vfm3d.clip import ClipFolder
from vfm3d.probe import InMemoryFeatureSource


@pytest.fixture(scope="session")
def rooms(tmp_path_factory: pytest.TempPathFactory) -> ClipFolder:
    """3 clips of 24 frames, 32 x 48 pixels."""
    return write_rooms(tmp_path_factory.mktemp("rooms") / "clips", 3, frames=24, size=(32, 48))


@pytest.fixture(scope="session")
def oracle_features(rooms: ClipFolder) -> InMemoryFeatureSource:
    return InMemoryFeatureSource(features_for(rooms, "oracle"))


@pytest.fixture(scope="session")
def constant_features(rooms: ClipFolder) -> InMemoryFeatureSource:
    return InMemoryFeatureSource(features_for(rooms, "constant"))
