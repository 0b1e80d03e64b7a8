"""3D-consistent video generation (JOG3R) and its measure.

- `vfm3d.jointgen.consistency`: the MEt3R-style 3D-consistency score of a video
  (`ConsistencyScorer`; the ``vfm3d consistency`` command in `vfm3d.jointgen.consistency_cli`),
  assembled from a 3D expert (`vfm3d.recon4d.expert`), an image backbone (`vfm3d.backbones`) and
  the pure score of `vfm3d.metrics.consistency`.
- `vfm3d.jointgen.evaluate`: issue 14's comparison, one row a run (consistency, the Frechet
  distance of videomae-mini features, V2C camera accuracy) and the table of the rows
  (``vfm3d jointgen eval | compare`` in `vfm3d.jointgen.cli`).

Submodules are imported on use (this package imports nothing heavy).
"""
