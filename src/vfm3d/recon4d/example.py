"""One held-out dynamic world clip reconstructed by a Sora3R model, with its report: the demo's
4D-reconstruction step (`vfm3d demo` calls `reconstruct_example` when ``zoo/sora3r-mini`` is
shipped)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

#: Dataset seed of the comparison's held-out dynamic folder (``vfm3d world --kind dynamic --clips
#: 24 --frames 9 --height 32 --width 32 --seed 7000000``), which no training set of the zoo draws
#: from; the demo reconstructs its clip 0.
EXAMPLE_SEED = 7_000_000


def shipped_sora3r(name: str = "sora3r-mini") -> bool:
    """True when ``zoo/<name>`` is installed (its ``sora3r.json`` is present)."""
    from vfm3d.recon4d.sora3r import CONFIG_FILE, _zoo_path

    return (_zoo_path(name) / CONFIG_FILE).is_file()


def reconstruct_example(
    out_dir: str | os.PathLike[str],
    model: str = "zoo/sora3r-mini",
    seed: int = EXAMPLE_SEED,
    index: int = 0,
    steps: int | None = None,
    samples: int = 4,
    device: str = "cpu",
) -> dict[str, Any]:
    """Render clip ``index`` of the dynamic world dataset of ``seed`` (the same clip as
    ``vfm3d world --kind dynamic --seed SEED`` writes, same id) at the model's frames and size,
    reconstruct it,
    write the standard files, ``metrics.json`` and ``report.html`` into ``out_dir``.

    ``samples``: K point-map samples (default 4, the comparison's setting; see docs/recon4d.md).
    Returns ``{"clip", "frames", "seconds", "report", "metrics"}`` (``metrics`` from
    `vfm3d.recon4d.evaluate.score`: ATE, RPE, AbsRel, delta1, ...).
    """
    from vfm3d.recon4d.evaluate import score
    from vfm3d.recon4d.report import write_reconstruction_report
    from vfm3d.recon4d.sora3r import Sora3RReconstructor, load_sora3r
    from vfm3d.utils.atomic import atomic_write_json
    from vfm3d.world import clip_seed, dataset_clip_id, render_clip

    out = Path(out_dir)
    start = time.perf_counter()
    loaded = load_sora3r(model, device=device)
    height, width = loaded.size
    clip = render_clip(
        "dynamic",
        clip_seed(seed, index),
        loaded.frames,
        height,
        width,
        clip_id=dataset_clip_id("dynamic", seed, index),
    )
    runner = Sora3RReconstructor(
        loaded, steps=steps, samples=samples, seed=0, device=device, progress=False
    )
    recon = runner.reconstruct(clip)
    recon.save(out)
    metrics = score(recon, clip)
    atomic_write_json(out / "metrics.json", metrics)
    report = write_reconstruction_report(out / "report.html", recon, clip, metrics)
    return {
        "clip": clip.id,
        "frames": clip.num_frames,
        "seconds": round(time.perf_counter() - start, 2),
        "report": report,
        "metrics": metrics,
    }


__all__ = ["EXAMPLE_SEED", "reconstruct_example", "shipped_sora3r"]
