"""What every model config of vfm3d's own architectures shares: JSON loading and `replace`.

A config is a frozen dataclass with ``from_dict(data)``; this mixin adds ``from_json(path)``
(errors name the file) and ``replace(**changes)``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C", bound="JsonConfig")


class JsonConfig:
    """Mixin for dataclass configs that define ``from_dict``."""

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:  # pragma: no cover - overridden
        raise NotImplementedError

    @classmethod
    def from_json(cls: type[C], path: str | os.PathLike[str]) -> C:
        """Read ``config.json``; a malformed file or value raises ValueError naming the file."""
        source = Path(path)
        try:
            data = json.loads(source.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{source}: not valid JSON ({error})") from error
        try:
            return cls.from_dict(data)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from error

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]
