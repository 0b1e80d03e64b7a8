"""Evaluation protocols as data: one JSON file per protocol, one entry per dataset.

Each dataset entry may hold ``sequences`` (the evaluated sequence names), ``select`` (a frame
rule, see `select_indices`), and dataset-specific keys documented in the JSON's ``note``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

PROTOCOLS = ("monst3r", "vidfm3d")


@cache
def _load(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def load_protocol(name: str, kind: str) -> dict[str, Any]:
    """The entry of protocol ``name`` for dataset ``kind`` (a fresh copy)."""
    if name not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {name!r}")
    datasets = _load(name)["datasets"]
    if kind not in datasets:
        raise ValueError(
            f"protocol {name!r} defines no rule for dataset {kind!r} (it covers {sorted(datasets)})"
        )
    return json.loads(json.dumps(datasets[kind]))


def select_indices(
    num_frames: int, rule: dict[str, Any], seed: int = 0, scores: Any = None
) -> list[int]:
    """Frame positions chosen by ``rule`` from ``num_frames`` frames.

    Keys: ``start`` (default 0), ``stop`` (exclusive, default end), ``stride`` (default 1),
    ``count`` (at most this many, default all), ``window``: ``"first"`` (default) takes
    ``range(start, stop, stride)[:count]``; ``"random"`` takes ``count`` frames at ``stride``
    from a start drawn with ``numpy.random.default_rng(seed)``. A window that needs more
    frames than exist raises ``ValueError``. (``"mask_search"`` is resolved by the CO3D reader.)
    """
    start = int(rule.get("start", 0))
    stop = rule.get("stop")
    stop = num_frames if stop is None else min(int(stop), num_frames)
    stride = int(rule.get("stride", 1))
    count = rule.get("count")
    if stride < 1 or start < 0:
        raise ValueError(f"frame rule needs stride >= 1 and start >= 0, got {rule}")
    window = rule.get("window", "first")
    if window == "random":
        if count is None:
            raise ValueError("a 'random' window needs 'count'")
        span = (int(count) - 1) * stride + 1
        if stop - start < span:
            raise ValueError(f"need {span} frames for {rule}, the sequence has {num_frames}")
        first = start + int(np.random.default_rng(seed).integers(0, stop - start - span + 1))
        return list(range(first, first + span, stride))
    if window not in ("first", "mask_search"):
        raise ValueError(f"unknown window {window!r} in frame rule {rule}")
    picked = list(range(start, stop, stride))
    if count is not None:
        picked = picked[: int(count)]
    return picked
