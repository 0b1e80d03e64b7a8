"""Backbone adapters behind one interface, and their registry."""

from vfm3d.backbones.base import Backbone, InputRules, Prepared, TokenGrid, UnsupportedInputError
from vfm3d.backbones.registry import available, load

__all__ = [
    "Backbone",
    "InputRules",
    "Prepared",
    "TokenGrid",
    "UnsupportedInputError",
    "available",
    "load",
]
