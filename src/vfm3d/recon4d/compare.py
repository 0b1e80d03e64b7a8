"""``vfm3d recon4d compare``: one table of several ``vfm3d recon4d eval`` outputs on the same
clips, seeds pooled per row, bootstrap intervals over clips and paired differences against a
reference row (`vfm3d.report.comparison`).

Example (the Sora3R comparison: video prior vs random initialisation, two seeds each)::

    vfm3d recon4d compare --out eval/table --reference sora3r-random-init \\
        --row sora3r-mini=eval/s0,eval/s1 --row sora3r-random-init=eval/r0,eval/r1 \\
        --row vggt-mini=eval/vggt --row gt=eval/gt --row floor=eval/floor

Writes ``OUT/comparison.json`` and ``OUT/comparison.md`` and prints the markdown (the options,
row parsing and writing are `vfm3d.report.comparison`'s, shared with ``vfm3d jointgen compare``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Default columns: cameras, then video depth after the per-sequence median scale.
DEFAULT_METRICS = ("ate", "rpe_trans", "rpe_rot_deg", "abs_rel_median", "delta1_median")


def load_sequences(folder: Path) -> dict[str, dict[str, Any]]:
    """``{sequence id: metrics}`` of one ``recon4d eval`` output folder."""
    path = folder / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (run `vfm3d recon4d eval ... --out {folder}`)")
    record = json.loads(path.read_text())
    rows = record.get("sequences")
    if not isinstance(rows, list):
        raise ValueError(f"{path}: no 'sequences' list (not a recon4d eval output)")
    return {str(r["id"]): r for r in rows}


def compare(
    rows: Sequence[tuple[str, Sequence[Path]]],
    metrics: Sequence[str] = DEFAULT_METRICS,
    reference: str | None = None,
    samples: int | None = None,
) -> dict[str, Any]:
    """The comparison table (`vfm3d.report.comparison.comparison_table`, ``samples`` bootstrap
    resamples, default its own) of eval folders; every folder must have scored the same
    sequences."""
    from vfm3d.report.comparison import BOOTSTRAP_SAMPLES, comparison_table

    models: dict[str, list[dict[str, dict[str, Any]]]] = {}
    ids: set[str] | None = None
    for name, folders in rows:
        if name in models:
            raise ValueError(f"row {name!r} given twice")
        runs = [load_sequences(f) for f in folders]
        for folder, run in zip(folders, runs, strict=True):
            if ids is None:
                ids = set(run)
            elif set(run) != ids:
                raise ValueError(
                    f"{folder}: scored {len(run)} sequences, not the same ones as the first row "
                    f"({len(ids)}); compare evaluations of one --data folder"
                )
        models[name] = runs
    samples = BOOTSTRAP_SAMPLES if samples is None else samples
    table = comparison_table(models, list(metrics), reference=reference, samples=samples)
    table["folders"] = {name: [str(f) for f in folders] for name, folders in rows}
    return table


def compare_main(args: argparse.Namespace) -> int:
    """``vfm3d recon4d compare`` (`vfm3d.report.comparison.add_compare_arguments`): write
    ``OUT/comparison.json`` and ``OUT/comparison.md``, print the markdown."""
    from vfm3d.report.comparison import parse_row, write_table

    rows = [parse_row(text) for text in args.row]
    metrics = [m for m in str(args.metrics).split(",") if m]
    table = compare(rows, metrics, args.reference, samples=getattr(args, "samples", None))
    print(write_table(args.out, table), end="")
    return 0


__all__ = ["DEFAULT_METRICS", "compare", "compare_main"]
