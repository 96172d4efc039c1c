"""Backends: everything a stream needs to turn a prompt into frames on one kind of hardware."""

from dataclasses import dataclass, field
from typing import Callable

import torch

BACKENDS = ("tiny",)


@dataclass
class Backend:
    name: str
    transformer: torch.nn.Module          # CausalWanTransformer
    vae: torch.nn.Module                  # has decode_to_uint8(latents) and config.temporal_factor
    encode_prompt: Callable[[str], torch.Tensor]
    latent_height: int
    latent_width: int
    fps: float
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    notice: str | None = None             # shown to users, e.g. "randomly initialised weights"

    @property
    def latent_channels(self) -> int:
        return self.transformer.config.in_channels

    @property
    def frames_per_latent(self) -> int:
        return self.vae.config.temporal_factor


def load_backend(name: str = "tiny", checkpoint=None, device=None, anchor: str = "adaptive") -> Backend:
    """`anchor` picks the default weights where a backend has one model per anchor mode."""
    if name == "tiny":
        from .tiny import load_tiny
        return load_tiny(checkpoint, device, anchor)
    raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
