"""vfm3d: turn video foundation models into 3D.

Conventions used everywhere (see DESIGN.md):
- cameras are OpenCV (x right, y down, z forward), pixel centres at integer coordinates, K in pixels;
- poses always name their direction (`cam_to_world` / `world_to_cam`);
- depth is z-depth; invalid pixels are marked by a `valid` mask;
- images for models are `[B, T, 3, H, W]` float in [0, 1]; features `[B, T', h, w, C]`.
"""

__version__ = "0.1.0"
