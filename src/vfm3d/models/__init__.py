"""Model architectures implemented in vfm3d (``vfm3d.models.vggt``: the VGGT 3D expert)."""
