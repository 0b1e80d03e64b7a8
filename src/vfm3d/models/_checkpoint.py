"""Strict checkpoint helpers shared by vfm3d's own model implementations (safetensors only).

- `find_safetensors(path)`: the weights file of a folder (``model.safetensors``) or the file itself.
- `safetensors_shapes(file)`: names and shapes without reading any tensor data.
- `read_safetensors(file, keep)`: the tensors (optionally only the names ``keep`` accepts).
- `tied_names(module)`: state-dict names that are aliases of another name (the same tensor
  reachable through two module paths, e.g. a ``ModuleList`` that re-registers existing convs).
- `check_state_dict(expected, state, source, model)`: raise ``ValueError`` listing missing,
  unexpected and mis-shaped names.

Nothing here unpickles: a file that is not safetensors is refused. (``vfm3d.models.vggt`` keeps
its own equivalents, which also read ``weights_only`` torch files.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

WEIGHTS_NAME = "model.safetensors"


def find_safetensors(path: str | Path, names: tuple[str, ...] = (WEIGHTS_NAME,)) -> Path:
    """The weights file: ``path`` itself if it is a ``.safetensors`` file, else the first of
    ``names`` inside the folder ``path``. Raises ``FileNotFoundError`` / ``ValueError``."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise ValueError(f"{path}: only safetensors weights are read (got {path.suffix!r})")
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"weights not found: {path}")
    for name in names:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"{path}: no weight file (looked for {', '.join(names)})")


def safetensors_shapes(file: str | Path) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of a safetensors file, in file order, without reading the data."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(f"{file}: not a readable safetensors file ({error})") from error


def read_safetensors(
    file: str | Path, keep: Callable[[str], bool] | None = None
) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file whose names ``keep`` accepts (default: all)."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys() if keep is None or keep(k)}
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(f"{file}: not a readable safetensors file ({error})") from error


def tied_names(module: nn.Module) -> dict[str, str]:
    """``{alias: canonical}`` for state-dict entries that are the same tensor as an earlier entry
    (``canonical`` = the first name in ``state_dict()`` order). Works on the meta device."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        key = id(tensor)
        if key in first:
            aliases[name] = first[key]
        else:
            first[key] = name
    return aliases


def check_state_dict(
    expected: Mapping[str, torch.Tensor | tuple[int, ...]],
    state: Mapping[str, torch.Tensor | tuple[int, ...]],
    source: str = "weights",
    model: str = "model",
) -> None:
    """Raise ``ValueError`` naming missing, unexpected and mis-shaped entries.

    Values are tensors or shapes; ``model`` names the architecture in the message.
    """

    def shape(value: torch.Tensor | tuple[int, ...]) -> tuple[int, ...]:
        return tuple(value.shape) if isinstance(value, torch.Tensor) else tuple(value)

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k}: expected {shape(expected[k])}, got {shape(state[k])}"
        for k in expected
        if k in state and shape(expected[k]) != shape(state[k])
    ]
    if not (missing or unexpected or wrong):
        return

    def show(items: list[str]) -> str:
        more = f" ... (+{len(items) - 8} more)" if len(items) > 8 else ""
        return ", ".join(items[:8]) + more

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing: {show(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: {show(unexpected)}")
    if wrong:
        parts.append(f"{len(wrong)} with wrong shape: {show(wrong)}")
    raise ValueError(
        f"{source}: state dict does not match the {model} config ({'; '.join(parts)}); "
        "is config.json the one these weights were trained with?"
    )
