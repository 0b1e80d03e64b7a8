"""Point-cloud export (kept for existing imports): see `vfm3d.report.export.ply`."""

from __future__ import annotations

from vfm3d.report.export.ply import PointCloud, read_ply, read_point_cloud, write_ply

__all__ = ["PointCloud", "read_ply", "read_point_cloud", "write_ply"]
