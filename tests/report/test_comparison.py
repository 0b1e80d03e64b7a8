"""The paper-claim comparison table: bootstrap intervals, seed averaging, paired differences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vfm3d.report.comparison import (
    add_columns,
    bootstrap_mean,
    comparison_table,
    paired_difference,
    parse_row,
    seed_averaged,
    set_statistic_cells,
    set_statistic_draws,
    to_markdown,
    write_table,
)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-100, 100), min_size=2, max_size=30))
def test_interval_contains_the_mean_and_lies_within_the_data(values: list[float]) -> None:
    est = bootstrap_mean(values, samples=300)
    assert est.lo - 1e-9 <= est.mean <= est.hi + 1e-9
    assert min(values) - 1e-9 <= est.lo and est.hi <= max(values) + 1e-9
    assert est.n == len(values)


def test_interval_shrinks_with_more_items_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    small = bootstrap_mean(rng.normal(size=10))
    large = bootstrap_mean(rng.normal(size=1000))
    assert (large.hi - large.lo) < 0.5 * (small.hi - small.lo)
    values = list(range(7))
    assert bootstrap_mean(values, seed=3) == bootstrap_mean(values, seed=3)
    with pytest.raises(ValueError, match="no finite"):
        bootstrap_mean([float("nan")])


def test_seed_average_uses_common_items_and_finite_values() -> None:
    a = {"c1": {"ate": 1.0}, "c2": {"ate": 2.0}, "c3": {"ate": 5.0}}
    b = {"c1": {"ate": 3.0}, "c2": {"ate": float("nan")}}
    assert seed_averaged([a, b], "ate") == {"c1": 2.0}


def test_paired_difference_cancels_item_difficulty() -> None:
    # hard and easy clips, model a always 0.1 better: the paired interval is exactly -0.1
    rng = np.random.default_rng(1)
    base = {f"c{i}": float(v) for i, v in enumerate(rng.uniform(0, 10, 24))}
    better = {k: v - 0.1 for k, v in base.items()}
    diff = paired_difference(better, base)
    assert diff.mean == pytest.approx(-0.1) and diff.lo == pytest.approx(-0.1)
    assert diff.hi == pytest.approx(-0.1)
    unpaired = bootstrap_mean(list(better.values()))
    assert unpaired.hi - unpaired.lo > 1.0  # the difficulty spread an unpaired reading would see


def test_table_and_markdown() -> None:
    runs = {
        "model": [
            {"c1": {"ate": 1.0}, "c2": {"ate": 3.0}},
            {"c1": {"ate": 2.0}, "c2": {"ate": 4.0}},
        ],
        "twin": [{"c1": {"ate": 4.0}, "c2": {"ate": 6.0}}],
    }
    table = comparison_table(runs, ["ate"], reference="twin", samples=200)
    cell = table["models"]["model"]["ate"]
    assert cell["seeds"] == [2.0, 3.0] and cell["mean"] == pytest.approx(2.5)
    assert cell["diff"]["mean"] == pytest.approx(-2.5)
    assert "diff" not in table["models"]["twin"]["ate"]
    text = to_markdown(table)
    assert "| model | 2 | 2.500" in text and "(2.000 / 3.000)" in text
    assert "-2.500" in text
    with pytest.raises(ValueError, match="reference"):
        comparison_table(runs, ["ate"], reference="nope")


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    """A set statistic: how far the first set's mean lies above the second's."""
    return float(a.mean() - b.mean())


def test_set_statistic_cells_are_paired_on_the_same_draws(tmp_path) -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(20, 1))
    near = real + 0.5 + rng.normal(scale=0.1, size=(20, 1))
    far = near + 1.0  # the same items one further: the paired difference is exactly 1
    value, draws = set_statistic_draws([(near, real)], _gap, samples=100)
    assert value == pytest.approx(_gap(near, real)) and draws.shape == (100,)
    again = set_statistic_draws([(near, real)], _gap, samples=100)[1]
    assert np.array_equal(draws, again)  # seeded
    models = {"far": [(far, real), (far, real)], "near": [(near, real)], "none": []}
    cells = set_statistic_cells(models, _gap, reference="near", samples=200)
    assert set(cells) == {"far", "near"}
    assert cells["far"]["seeds"] == [pytest.approx(_gap(far, real))] * 2
    assert cells["far"]["diff"]["mean"] == pytest.approx(1.0)
    assert cells["far"]["diff"]["ci95"] == [pytest.approx(1.0), pytest.approx(1.0)]
    lo, hi = cells["near"]["ci95"]
    assert lo <= cells["near"]["mean"] <= hi and "diff" not in cells["near"]
    unpaired = set_statistic_cells(
        models, _gap, "near", samples=50, pairing={"far": "a", "near": "b"}
    )
    assert "diff" not in unpaired["far"]
    with pytest.raises(ValueError, match="sizes"):
        set_statistic_draws([(near, real), (near[:5], real)], _gap)

    table = comparison_table({"far": [{"c": {"x": 1.0}}], "near": [{"c": {"x": 2.0}}]}, ["x"])
    add_columns(table, {"gap": cells})
    table["notes"] = ["lower is better: gap"]
    text = write_table(tmp_path / "t", table)
    assert "gap" in text.splitlines()[0] and text.rstrip().endswith("lower is better: gap")
    assert (tmp_path / "t" / "comparison.json").is_file()
    with pytest.raises(ValueError, match="not a row"):
        add_columns(table, {"gap": {"other": cells["far"]}})
    assert parse_row("a=x,y") == ("a", [Path("x"), Path("y")])
    with pytest.raises(ValueError, match="NAME=DIR"):
        parse_row("a")
