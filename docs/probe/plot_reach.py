"""Plot oracle-world layer-1 learning curves of several calibration runs (docs/probe.md).

    python docs/probe/plot_reach.py OUT.png LABEL=RUN_DIR [LABEL=RUN_DIR ...]

Each RUN_DIR is a ``python -m vfm3d.probe.calibrate --out RUN_DIR`` folder; its
``calibration.json`` curve of ``oracle-world-l1`` is drawn, AUC@30 for object and scene clips.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(out: str, runs: list[str]) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for item in runs:
        label, folder = item.split("=", 1)
        probes = json.loads((Path(folder) / "calibration.json").read_text())["probes"]
        curve = next(p["curve"] for p in probes if p["label"] == "oracle-world-l1")
        steps = [r["step"] for r in curve]
        for ax, kind in zip(axes, ("object", "scene"), strict=True):
            ax.plot(steps, [r[kind]["auc@30"] for r in curve], marker="o", ms=3, label=label)
    for ax, kind in zip(axes, ("object", "scene"), strict=True):
        ax.axhline(0.8, color="k", lw=0.8, ls="--")
        ax.set_title(f"oracle-world l1, held-out {kind} clips")
        ax.set_xlabel("steps")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("AUC@30")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
