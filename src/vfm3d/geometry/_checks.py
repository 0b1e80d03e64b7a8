"""Input checks shared by `vfm3d.geometry` and `vfm3d.metrics`: one clear message per rule."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_tail(name: str, tensor: torch.Tensor, tail: Sequence[int | None]) -> None:
    """Raise ValueError unless `tensor` ends with dimensions `tail` (None = any size)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    shape = tuple(tensor.shape)
    ok = len(shape) >= len(tail) and all(
        want is None or got == want
        for got, want in zip(shape[len(shape) - len(tail) :], tail, strict=True)
    )
    if not ok:
        pattern = ", ".join("*" if t is None else str(t) for t in tail)
        raise ValueError(f"{name} must have shape [..., {pattern}], got {list(shape)}")


def check_finite(name: str, tensor: torch.Tensor, where: torch.Tensor | None = None) -> None:
    """Raise ValueError if `tensor` holds NaN or inf (only where `where` is True, if given)."""
    bad = ~torch.isfinite(tensor)
    if where is not None:
        bad = bad & where
    if bool(bad.any()):
        raise ValueError(f"{name} contains NaN or inf ({int(bad.sum())} entries)")


def check_same_shape(names: Sequence[str], tensors: Sequence[torch.Tensor]) -> None:
    """Raise ValueError unless all tensors have the same shape."""
    shapes = [tuple(t.shape) for t in tensors]
    if any(s != shapes[0] for s in shapes[1:]):
        described = ", ".join(f"{n} {list(s)}" for n, s in zip(names, shapes, strict=True))
        raise ValueError(f"shape mismatch: {described}")


def check_mask(name: str, mask: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Return `mask` as bool after checking its shape equals `shape`."""
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor, got {mask.dtype}")
    return mask


def float_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The floating dtype to compute in: float64 if any input is float64, else float32."""
    if any(t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32
