"""Backends: everything a stream needs to turn a prompt into frames on one kind of hardware."""

import os
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from ..vae import VideoVAE

BACKENDS = ("tiny", "wan")
DEFAULT_BACKEND_ENV = "ADASTATE_BACKEND"  # picks the backend when none is named
DEVICE_ENV = "ADASTATE_DEVICE"            # "cpu" or "cuda": the device when none is named
DEVICE_TYPES = ("cpu", "cuda")


class BackendUnavailable(ValueError):
    """This backend cannot run here (no GPU, Hub unreachable, ...): fall back to another one."""


@dataclass
class Backend:
    name: str
    transformer: torch.nn.Module          # CausalWanTransformer
    vae: VideoVAE
    encode_prompt: Callable[[str], torch.Tensor]
    latent_height: int
    latent_width: int
    fps: float
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    notice: str | None = None             # shown to users, e.g. "randomly initialised weights"
    # anchor mode -> what it means with these weights; set by a backend whose one set of weights
    # serves both modes (wan), empty for one that loads a model per mode (tiny)
    anchor_labels: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.vae, VideoVAE):
            raise TypeError(f"the {self.name} backend's VAE ({type(self.vae).__name__}) does not implement "
                            "adastate.vae.VideoVAE")

    def for_anchor(self, anchor: str) -> "Backend":
        """The same models (nothing copied), with the notice that says what `anchor` mode means
        with these weights."""
        if anchor not in self.anchor_labels:
            raise ValueError(f"the {self.name} backend has no weights shared by every anchor mode")
        return replace(self, notice=f"{self.name} backend: {self.anchor_labels[anchor]}")

    @property
    def latent_channels(self) -> int:
        return self.transformer.config.in_channels

    @property
    def frames_per_latent(self) -> int:
        return self.vae.config.temporal_factor


def requested_device(device=None) -> torch.device | None:
    """`device`, else $ADASTATE_DEVICE, else None (each backend's own default: the CPU for tiny,
    CUDA for wan). A named CUDA device without a visible GPU is BackendUnavailable."""
    text = str(device or os.environ.get(DEVICE_ENV) or "").strip()
    if not text:
        return None
    source = "the device" if device else f"${DEVICE_ENV}"
    try:
        chosen = torch.device(text)
    except RuntimeError:
        chosen = None
    if chosen is None or chosen.type not in DEVICE_TYPES:
        raise ValueError(f"{source} must be one of {', '.join(DEVICE_TYPES)} (or cuda:N), got {text!r}")
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable(f"{source} is {text!r} but no CUDA GPU is visible")
    return chosen


def load_backend(name: str | None = None, checkpoint=None, device=None, anchor: str = "adaptive") -> Backend:
    """`anchor` picks the default weights where a backend has one model per anchor mode.
    `name` None: $ADASTATE_BACKEND, else "tiny"; `device` None: $ADASTATE_DEVICE, else the
    backend's default."""
    name = name or os.environ.get(DEFAULT_BACKEND_ENV) or "tiny"
    if name == "tiny":
        from .tiny import load_tiny
        return load_tiny(checkpoint, device, anchor)
    if name == "wan":
        from .wan import load_wan
        return load_wan(checkpoint, device, anchor)
    raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")


def load_backend_or_fallback(name: str | None = None, checkpoint=None, device=None,
                             anchor: str = "adaptive") -> tuple[Backend, str | None]:
    """The requested backend, or the embedded one if the requested one cannot run here.

    Returns (backend, notice); the notice says why a fallback happened (or repeats the backend's
    own notice). A checkpoint that cannot be used (CheckpointError) also falls back, so a Space
    stays up; the CLI uses `load_backend` and reports such errors instead.
    """
    from ..checkpoints import CheckpointError

    name = name or os.environ.get(DEFAULT_BACKEND_ENV) or "tiny"
    try:
        backend = load_backend(name, checkpoint, device, anchor)
        return backend, backend.notice
    except (BackendUnavailable, CheckpointError) as e:
        if name == "tiny":
            raise
        backend = load_backend("tiny", None, "cpu", anchor)
        notice = f"the {name} backend is unavailable ({e}); running the embedded CPU model instead"
        return backend, notice + (f"; {backend.notice}" if backend.notice else "")
