"""Procedural training and evaluation data."""
from .worlds import SPEEDS, STYLES, World, WorldSpec, caption, sample_world_spec

__all__ = ["World", "WorldSpec", "sample_world_spec", "caption", "STYLES", "SPEEDS"]
