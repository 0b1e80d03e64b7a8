"""4D reconstruction from video: point maps, depth and cameras of every frame.

`reconstruct` runs a feed-forward 3D model over a clip (in windows for long videos) and returns a
`Reconstruction`; `Reconstruction.save` writes the field's files (PLY, GLB, COLMAP, TUM,
depth, cameras.json, report.html). Models: a VGGT-architecture 3D expert (`zoo/vggt-mini`, or
VGGT-1B from a local folder). Sora3R (video-diffusion point maps) builds on the same result type.
"""

from vfm3d.recon4d.expert import ExpertReconstructor, load_expert
from vfm3d.recon4d.result import Reconstruction

__all__ = ["ExpertReconstructor", "Reconstruction", "load_expert"]
