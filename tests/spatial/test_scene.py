"""Scene facts of world meta: closest-point box distances, angles, room extent, visibility."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vfm3d.spatial.scene import (
    ObjectBox,
    SceneFacts,
    box_distance,
    room_extent,
    signed_angle_deg,
)

scipy_optimize = pytest.importorskip("scipy.optimize")


def _box(center, size, yaw=0.0, category="box", pixels=(100,), index=0) -> ObjectBox:
    return ObjectBox(
        index, category, np.asarray(center, float), np.asarray(size, float), float(yaw),
        np.asarray(pixels, dtype=np.int64),
    )  # fmt: skip


def _rotz(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _qp_distance(a: ObjectBox, b: ObjectBox) -> float:
    """Closest points of two boxes by bound-constrained minimisation over both boxes' local
    coordinates (a convex problem: L-BFGS-B finds the global minimum)."""
    ra, rb = _rotz(a.yaw), _rotz(b.yaw)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        d = a.center + ra @ x[:3] - b.center - rb @ x[3:]
        return float(d @ d), np.concatenate([2 * ra.T @ d, -2 * rb.T @ d])

    bounds = [(-h, h) for h in np.concatenate([a.size / 2, b.size / 2])]
    best = math.inf
    for start in (np.zeros(6), np.array([h for h, _ in bounds[:3]] + [h for h, _ in bounds[3:]])):
        res = scipy_optimize.minimize(
            objective, start, jac=True, method="L-BFGS-B", bounds=bounds,
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 500},
        )  # fmt: skip
        best = min(best, float(res.fun))
    return math.sqrt(max(best, 0.0))


def test_box_distance_simple_cases() -> None:
    a = _box([0, 0, 0.5], [1, 1, 1])
    assert box_distance(a, _box([3, 0, 0.5], [1, 1, 1])) == pytest.approx(2.0)
    assert box_distance(a, _box([0.5, 0.5, 0.5], [1, 1, 1])) == 0.0  # overlapping
    # diagonal corner to corner: gaps 1 in x and 1 in y, touching heights
    assert box_distance(a, _box([2, 2, 0.5], [1, 1, 1])) == pytest.approx(math.sqrt(2))
    # stacked above with a gap of 0.5
    assert box_distance(a, _box([0, 0, 2.0], [1, 1, 1])) == pytest.approx(0.5)
    # a 45-degree turned box whose corner points at the first one
    turned = _box([2, 0, 0.5], [1, 1, 1], yaw=math.pi / 4)
    assert box_distance(a, turned) == pytest.approx(2 - 0.5 - math.sqrt(0.5))


def test_box_distance_equals_a_constrained_minimisation() -> None:
    rng = np.random.default_rng(3)
    for _ in range(60):
        a = _box(rng.uniform(-2, 2, 3), rng.uniform(0.2, 2, 3), rng.uniform(0, 2 * np.pi))
        b = _box(rng.uniform(-2, 2, 3), rng.uniform(0.2, 2, 3), rng.uniform(0, 2 * np.pi))
        assert box_distance(a, b) == pytest.approx(_qp_distance(a, b), abs=2e-5)
        assert box_distance(a, b) == pytest.approx(box_distance(b, a), abs=1e-12)


def test_signed_angle_left_is_positive() -> None:
    origin, ahead = np.zeros(3), np.array([1.0, 0.0, 0.0])
    assert signed_angle_deg(origin, ahead, [0.0, 1.0, 5.0]) == pytest.approx(90.0)  # +y is left
    assert signed_angle_deg(origin, ahead, [0.0, -1.0, 0.0]) == pytest.approx(-90.0)
    assert abs(signed_angle_deg(origin, ahead, [-1.0, 0.0, 0.0])) == pytest.approx(180.0)
    assert signed_angle_deg(origin, ahead, [1.0, 1.0, 0.0]) == pytest.approx(45.0)


def test_room_extent_from_walls() -> None:
    lx, ly, t = 8.0, 6.0, 0.2
    walls = [
        _box([0, sy * (ly / 2 + t / 2), 1.5], [lx + 2 * t, t, 3.0], category="wall")
        for sy in (-1, 1)
    ] + [_box([sx * (lx / 2 + t / 2), 0, 1.5], [t, ly, 3.0], category="wall") for sx in (-1, 1)]
    assert room_extent(walls) == pytest.approx((-4.0, 4.0, -3.0, 3.0))
    assert room_extent(walls[:3]) is None
    assert (
        room_extent([*walls[:3], _box([4.1, 0, 1.5], [t, ly, 3], yaw=0.3, category="wall")]) is None
    )


def _meta(objects: list[dict], layout: str = "room") -> dict:
    return {"id": "s", "layout": layout, "frame_indices": list(range(4)), "objects": objects}


def _obj(cls: str, pixels, center=(0, 0, 0.5), size=(1, 1, 1), dynamic=False) -> dict:
    return {"class": cls, "center": list(center), "size": list(size), "yaw": 0.0,
            "pixels": list(pixels), "dynamic": dynamic}  # fmt: skip


def test_usable_and_unique_categories() -> None:
    meta = _meta(
        [
            _obj("wall", [500] * 4),
            _obj("chair", [0, 40, 40, 0]),
            _obj("chair", [0, 0, 30, 0]),  # seen (>= 16 px of a 40 x 80 frame at 0.5%)
            _obj("table", [20, 20, 0, 0]),
            _obj("stool", [0, 0, 0, 0]),
            _obj("stool", [50, 0, 0, 0]),  # one stool never seen: stools are not usable
            _obj("lamp", [0, 5, 10, 0]),  # barely seen: not usable
            _obj("sphere", [99, 99, 99, 99], dynamic=True),  # moving: not usable
        ]
    )
    facts = SceneFacts.from_meta(meta, (40, 80))
    assert facts.min_pixels == 16
    assert sorted(facts.usable) == ["chair", "table"]
    assert sorted(facts.unique) == ["table"]
    assert facts.category_first_seen("chair") == 1
    assert facts.category_first_seen("table") == 0
    assert facts.room_extent is None  # no four walls
    assert all(o.category != "wall" for o in facts.objects)
    with pytest.raises(ValueError, match="objects"):
        SceneFacts.from_meta({"id": "x"}, (40, 80))
