"""CO3Dv2: per-category gzipped JSON annotations, PyTorch3D NDC cameras.

Layout (paths inside the annotations are relative to ROOT)::

    ROOT/<category>/frame_annotations.jgz       gzipped JSON list, one entry per frame
    ROOT/<category>/sequence_annotations.jgz    (optional) one entry per sequence
    ROOT/<category>/set_lists/set_lists_<subset>.json   {"train": [[seq, frame, path], ...], ...}
    ROOT/<category>/<sequence>/{images,depths,depth_masks,masks}/...

Frame entry: ``sequence_name, frame_number, image{path, size=[H, W]}, depth{path,
scale_adjustment, mask_path}, mask{path}, viewpoint{R, T, focal_length, principal_point,
intrinsics_format}``. Cameras are PyTorch3D's (row vectors ``X_cam = X_world @ R + T``, camera
x left, y up) with NDC intrinsics, converted by `vfm3d.data.cameras.pytorch3d_to_opencv`
(``intrinsics_format`` missing means ``ndc_norm_image_bounds``, implicitron's default).
Depth: a 16-bit PNG whose bits are float16, times ``scale_adjustment``; 0 / non-finite are
invalid, and so are pixels outside the depth mask (``use_depth_mask=True``). Depth maps of
another size than the image are resized to it (nearest). Scale is per sequence (COLMAP).
Ids are ``<category>_<sequence_name>``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vfm3d.clip import Clip
from vfm3d.data._parse import PathLike, check_rotation, read_json, read_mask, read_png_uint16
from vfm3d.data.base import DatasetReader, FrameRecord, SequenceRecord
from vfm3d.data.cameras import pytorch3d_to_opencv, rigid_inverse
from vfm3d.data.errors import DatasetFormatError, SequenceRejected
from vfm3d.data.transforms import PixelTransform, apply_to_clip, crop, resize


def _floats(value: Any, count: int, where: str, name: str) -> list[float]:
    try:
        out = [float(v) for v in np.asarray(value, dtype=np.float64).reshape(-1)]
    except (TypeError, ValueError) as error:
        raise DatasetFormatError(f"{where}: '{name}' is not numeric") from error
    if len(out) != count:
        raise DatasetFormatError(f"{where}: '{name}' needs {count} numbers, got {len(out)}")
    if not all(math.isfinite(v) for v in out):
        raise DatasetFormatError(f"{where}: non-finite '{name}'")
    return out


def parse_frame_annotation(entry: Any, where: str) -> dict[str, Any]:
    """One ``frame_annotations.jgz`` entry -> paths, ``K`` [3,3] and ``world_to_cam`` [4,4]."""
    if not isinstance(entry, dict):
        raise DatasetFormatError(f"{where}: expected an object")
    try:
        sequence = str(entry["sequence_name"])
        number = entry["frame_number"]
        image = entry["image"]
        viewpoint = entry["viewpoint"]
        image_path = str(image["path"])
    except (KeyError, TypeError) as error:
        raise DatasetFormatError(f"{where}: missing field {error}") from error
    if isinstance(number, bool) or not isinstance(number, int):
        raise DatasetFormatError(f"{where}: 'frame_number' must be an integer")
    height, width = _floats(image.get("size"), 2, where, "image.size")
    if height < 1 or width < 1:
        raise DatasetFormatError(f"{where}: image.size must be positive")
    if not isinstance(viewpoint, dict):
        raise DatasetFormatError(f"{where}: 'viewpoint' must be an object")
    rotation = np.asarray(_floats(viewpoint.get("R"), 9, where, "viewpoint.R")).reshape(3, 3)
    translation = np.asarray(_floats(viewpoint.get("T"), 3, where, "viewpoint.T"))
    focal = _floats(viewpoint.get("focal_length"), 2, where, "viewpoint.focal_length")
    principal = _floats(viewpoint.get("principal_point"), 2, where, "viewpoint.principal_point")
    fmt = viewpoint.get("intrinsics_format", "ndc_norm_image_bounds")
    check_rotation(rotation, where)
    try:
        k, world_to_cam = pytorch3d_to_opencv(
            rotation, translation, (focal[0], focal[1]), (principal[0], principal[1]),
            (int(height), int(width)), str(fmt),
        )  # fmt: skip
    except ValueError as error:
        raise DatasetFormatError(f"{where}: {error}") from error
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise DatasetFormatError(f"{where}: focal lengths must be positive")
    depth = entry.get("depth") if isinstance(entry.get("depth"), dict) else None
    mask = entry.get("mask") if isinstance(entry.get("mask"), dict) else None
    scale = 1.0
    if depth is not None and depth.get("scale_adjustment") is not None:
        scale = _floats(depth["scale_adjustment"], 1, where, "depth.scale_adjustment")[0]
    return {
        "sequence": sequence,
        "frame_number": int(number),
        "image_path": image_path,
        "image_hw": (float(height), float(width)),
        "depth_path": None if depth is None or not depth.get("path") else str(depth["path"]),
        "depth_mask_path": None
        if depth is None or not depth.get("mask_path")
        else str(depth["mask_path"]),
        "depth_scale": scale,
        "mask_path": None if mask is None or not mask.get("path") else str(mask["path"]),
        "intrinsics": k,
        "world_to_cam": world_to_cam,
    }


def decode_float16_png(raw: np.ndarray) -> np.ndarray:
    """Reinterpret uint16 PNG values as float16 bits -> float32 (CO3D depth)."""
    return raw.astype(np.uint16).view(np.float16).astype(np.float32)


def aspect_crop_around_centre(
    image_hw: tuple[int, int], box: tuple[int, int, int, int], aspect: float
) -> tuple[int, int, int, int]:
    """Inclusive ``(x0, y0, x1, y1)`` crop of width/height ``aspect`` centred on the image centre
    ``((W-1)/2, (H-1)/2)``, just large enough to contain ``box`` (inclusive corners) and shrunk
    uniformly to fit inside the image when it would overflow (VidFM3D's CO3D crop rule)."""
    height, width = image_hw
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    bx0, by0, bx1, by1 = box
    need_w = 2 * max(cx - bx0, bx1 - cx) + 1
    need_h = 2 * max(cy - by0, by1 - cy) + 1
    crop_w, crop_h = need_w, need_w / aspect
    if crop_h < need_h:
        crop_h, crop_w = need_h, need_h * aspect
    crop_w, crop_h = math.ceil(crop_w), math.ceil(crop_h)
    if crop_w / crop_h > aspect:
        crop_w = round(crop_h * aspect)
    else:
        crop_h = round(crop_w / aspect)
    if crop_w > width or crop_h > height:
        shrink = min(width / crop_w, height / crop_h)
        crop_w = math.floor(crop_w * shrink)
        crop_h = round(crop_w / aspect)
        crop_w = min(crop_w, width)
    x0 = max(0, round(cx - crop_w / 2))
    y0 = max(0, round(cy - crop_h / 2))
    return x0, y0, min(width - 1, x0 + crop_w - 1), min(height - 1, y0 + crop_h - 1)


def truncation(
    boxes: list[tuple[int, int, int, int]], crop_box: tuple[int, int, int, int]
) -> float:
    """Fraction of the boxes' total area that falls outside ``crop_box`` (inclusive corners)."""
    x0, y0, x1, y1 = crop_box
    lost = total = 0
    for bx0, by0, bx1, by1 in boxes:
        area = (bx1 - bx0 + 1) * (by1 - by0 + 1)
        keep = max(min(bx1, x1) - max(bx0, x0) + 1, 0) * max(min(by1, y1) - max(by0, y0) + 1, 0)
        total += area
        lost += area - keep
    return lost / total if total else 0.0


class Co3dReader(DatasetReader):
    """CO3Dv2 reader. Extra options: ``categories`` (list), ``subset_name`` + ``split`` (use
    ``set_lists/set_lists_<subset_name>.json[split]``), ``use_depth_mask`` (default True)."""

    kind = "co3d"
    has_depth = True

    def __init__(
        self,
        root: PathLike,
        *,
        categories: list[str] | tuple[str, ...] | None = None,
        subset_name: str | None = None,
        split: str = "train",
        use_depth_mask: bool = True,
        **options: Any,
    ) -> None:
        self.categories = list(categories) if categories else None
        self.subset_name = subset_name
        self.split = split
        self.use_depth_mask = use_depth_mask
        self._annotations: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._set_lists: dict[str, set[tuple[str, int]] | None] = {}
        self._category_of: dict[str, tuple[str, str]] = {}
        self._crops: dict[str, tuple[int, int, int, int]] = {}
        super().__init__(root, **options)

    # ------------------------------------------------------------ discovery
    def _discover(self) -> list[str]:
        categories = sorted(
            p.name for p in self.root.iterdir() if (p / "frame_annotations.jgz").is_file()
        )
        if self.categories:
            unknown = sorted(set(self.categories) - set(categories))
            if unknown:
                raise DatasetFormatError(f"{self.root}: categories not found: {unknown}")
            categories = [c for c in categories if c in self.categories]
        if not categories:
            raise DatasetFormatError(
                f"{self.root}: no <category>/frame_annotations.jgz found (is this the CO3D root?)"
            )
        for category in categories:
            allowed = self._allowed(category)
            seq_path = self.root / category / "sequence_annotations.jgz"
            if allowed is not None:
                names = sorted({s for s, _ in allowed})
            elif seq_path.is_file():
                entries = read_json(seq_path, "sequence annotations")
                if not isinstance(entries, list):
                    raise DatasetFormatError(f"{seq_path}: expected a JSON list")
                try:
                    names = sorted({str(e["sequence_name"]) for e in entries})
                except (KeyError, TypeError) as error:
                    raise DatasetFormatError(f"{seq_path}: entry without sequence_name") from error
            else:
                names = sorted(self._frames_by_sequence(category))
            for name in names:
                self._category_of[f"{category}_{name}"] = (category, name)
        return sorted(self._category_of)

    def _allowed(self, category: str) -> set[tuple[str, int]] | None:
        if self.subset_name is None:
            return None
        if category not in self._set_lists:
            path = self.root / category / "set_lists" / f"set_lists_{self.subset_name}.json"
            obj = read_json(path, "set list")
            if not isinstance(obj, dict) or not isinstance(obj.get(self.split), list):
                raise DatasetFormatError(f"{path}: no list for split {self.split!r}")
            try:
                self._set_lists[category] = {(str(e[0]), int(e[1])) for e in obj[self.split]}
            except (IndexError, TypeError, ValueError) as error:
                raise DatasetFormatError(f"{path}: malformed entry ({error})") from error
        return self._set_lists[category]

    def _frames_by_sequence(self, category: str) -> dict[str, list[dict[str, Any]]]:
        if category not in self._annotations:
            path = self.root / category / "frame_annotations.jgz"
            entries = read_json(path, "frame annotations")
            if not isinstance(entries, list):
                raise DatasetFormatError(f"{path}: expected a JSON list")
            grouped: dict[str, list[dict[str, Any]]] = {}
            for i, entry in enumerate(entries):
                parsed = parse_frame_annotation(entry, f"{path}: entry {i}")
                grouped.setdefault(parsed["sequence"], []).append(parsed)
            self._annotations[category] = grouped
        return self._annotations[category]

    def _sequence(self, clip_id: str) -> SequenceRecord:
        category, name = self._category_of[clip_id]
        entries = self._frames_by_sequence(category).get(name)
        if not entries:
            raise DatasetFormatError(
                f"{self.root / category / 'frame_annotations.jgz'}: no frames of sequence {name!r}"
            )
        allowed = self._allowed(category)
        if allowed is not None:
            entries = [e for e in entries if (name, e["frame_number"]) in allowed]
        entries = sorted(entries, key=lambda e: e["frame_number"])
        has_depth = all(e["depth_path"] for e in entries)
        frames = [
            FrameRecord(
                image=self.root / e["image_path"],
                intrinsics=e["intrinsics"],
                cam_to_world=rigid_inverse(e["world_to_cam"]),
                depth=self.root / e["depth_path"] if e["depth_path"] else None,
                index=e["frame_number"],
                intrinsics_hw=e["image_hw"],
                extra=e,
            )
            for e in entries
        ]
        return SequenceRecord(
            id=clip_id,
            frames=frames,
            has_depth=has_depth,
            meta={"sequence": name, "category": category},
        )

    # ------------------------------------------------------------ pixels
    def _read_depth(
        self, seq: SequenceRecord, frame: FrameRecord, hw: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        assert frame.depth is not None
        depth = decode_float16_png(read_png_uint16(frame.depth)) * frame.extra["depth_scale"]
        valid = np.isfinite(depth) & (depth > 0)
        mask_rel = frame.extra["depth_mask_path"]
        if self.use_depth_mask and mask_rel:
            mask = read_mask(self.root / mask_rel)
            if mask.shape != depth.shape:
                raise DatasetFormatError(
                    f"{self.root / mask_rel}: depth mask size {mask.shape} != depth {depth.shape}"
                )
            valid &= mask
        if depth.shape != hw:
            to_image = resize(depth.shape, hw)
            depth, valid = to_image.warp_nearest(depth, 0.0), to_image.warp_nearest(valid, False)
        return np.where(valid, depth, 0.0).astype(np.float32), valid

    # ------------------------------------------------------------ VidFM3D protocol
    def _select(self, seq: SequenceRecord) -> list[int]:
        rule = self.protocol.get("select") or {}
        if rule.get("window") != "mask_search":
            return super()._select(seq)
        count, stride = int(rule["count"]), int(rule.get("stride", 1))
        step = int(rule.get("search_step", 4))
        settings = self.protocol["crop"]
        aspect = settings["aspect"][0] / settings["aspect"][1]
        boxes = [self._object_box(f) for f in seq.frames]
        hw = (int(seq.frames[0].extra["image_hw"][0]), int(seq.frames[0].extra["image_hw"][1]))
        best: tuple[float, int, tuple[int, int, int, int]] | None = None
        for start in range(0, len(seq.frames) - stride * (count - 1), step):
            window = [boxes[i] for i in range(start, start + stride * count, stride)]
            if any(b is None for b in window):
                continue
            kept = [b for b in window if b is not None]
            union = (min(b[0] for b in kept), min(b[1] for b in kept),
                     max(b[2] for b in kept), max(b[3] for b in kept))  # fmt: skip
            grow_x = round(settings["bbox_border"] * (union[2] - union[0] + 1) / 2)
            grow_y = round(settings["bbox_border"] * (union[3] - union[1] + 1) / 2)
            grown = (max(0, union[0] - grow_x), max(0, union[1] - grow_y),
                     min(hw[1] - 1, union[2] + grow_x), min(hw[0] - 1, union[3] + grow_y))  # fmt: skip
            crop_box = aspect_crop_around_centre(hw, grown, aspect)
            lost = truncation(kept, crop_box)
            if best is None or lost < best[0]:
                best = (lost, start, crop_box)
        if best is None:
            raise SequenceRejected(f"sequence {seq.id!r}: no window of {count} frames with masks")
        out_h, out_w = self.protocol.get("resize_hw", [0, 0])
        crop_w, crop_h = best[2][2] - best[2][0] + 1, best[2][3] - best[2][1] + 1
        upsample = max(out_w / crop_w, out_h / crop_h)
        if best[0] > settings["trunc_thresh"] or upsample > settings["max_upsample"]:
            raise SequenceRejected(
                f"sequence {seq.id!r} rejected by the vidfm3d rule: truncation {best[0]:.3f} "
                f"(max {settings['trunc_thresh']}), upsampling {upsample:.2f} "
                f"(max {settings['max_upsample']})"
            )
        self._crops[seq.id] = best[2]
        return list(range(best[1], best[1] + stride * count, stride))

    def _object_box(self, frame: FrameRecord) -> tuple[int, int, int, int] | None:
        mask_rel = frame.extra["mask_path"]
        if not mask_rel:
            raise DatasetFormatError(f"{frame.image}: the vidfm3d protocol needs object masks")
        ys, xs = np.nonzero(read_mask(self.root / mask_rel))
        if xs.size == 0:
            return None
        return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())

    def _postprocess(self, clip: Clip, seq: SequenceRecord) -> Clip:
        box = self._crops.get(seq.id)
        if box is None:
            return clip
        x0, y0, x1, y1 = box
        transform: PixelTransform = crop(
            (clip.height, clip.width), y0, x0, y1 - y0 + 1, x1 - x0 + 1
        )
        out_hw = self.protocol.get("resize_hw")
        if out_hw:
            transform = transform.then(resize(transform.out_hw, (int(out_hw[0]), int(out_hw[1]))))
        return apply_to_clip(clip, transform)
