"""What every model config of vfm3d's own architectures shares: (de)serialisation, `replace`.

A config is a frozen dataclass with an ``extra: dict`` field (unknown keys read from a file are
kept there, with a warning); this mixin gives ``to_dict``, ``from_dict`` (flat layout),
``from_json(path)`` (errors name the file) and ``replace(**changes)``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C", bound="JsonConfig")


class JsonConfig:
    """Mixin for dataclass configs with an ``extra`` field (see the module docstring)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field (tuples as lists); ``extra`` keys are kept as they were."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        out.update(getattr(self, "extra", {}))
        return out

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build from a flat dict; unknown keys are kept in ``extra`` with a warning."""
        name = cls.__name__
        if not isinstance(data, dict):
            raise ValueError(f"{name}: expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}  # type: ignore[arg-type]
        known = {k: v for k, v in data.items() if k in names}
        unknown = {k: v for k, v in data.items() if k not in names}
        if unknown:
            warnings.warn(f"{name}: ignoring unknown config keys {sorted(unknown)}", stacklevel=3)
        try:
            return cls(**known, extra=unknown)  # type: ignore[call-arg]
        except TypeError as error:
            raise ValueError(f"{name}: bad config ({error})") from error

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
