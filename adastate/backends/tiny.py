"""The embedded CPU backend: a small Wan-architecture DiT, a small VAE, MiniLM prompts."""

from pathlib import Path

import torch

from ..checkpoints import CheckpointError, load_into, load_pretrained
from ..model import TINY_CONFIG, CausalWanTransformer
from ..text import MiniLMTextEncoder
from ..vae import TINY_VAE_CONFIG, TinyVideoVAE
from . import Backend, requested_device

ASSETS = Path(__file__).resolve().parents[2] / "assets"
VIDEO_SIZE = 64       # pixels, square
FPS = 16.0


def shipped_checkpoint(anchor: str = "adaptive") -> Path | None:
    """The embedded model trained for `anchor` mode, if this copy of the repository ships it."""
    path = ASSETS / f"tiny-{anchor}"
    return path if (path / "transformer").is_dir() else None


def load_tiny(checkpoint=None, device=None, anchor: str = "adaptive") -> Backend:
    """`checkpoint`: None (the shipped model trained for `anchor` mode; random weights if none
    ships), a diffusers-layout folder holding `transformer/` (and optionally `vae/`), or one
    `.safetensors` file of transformer weights."""
    device = requested_device(device) or torch.device("cpu")
    notice = None
    vae = None
    checkpoint = checkpoint or shipped_checkpoint(anchor)
    if checkpoint is None:
        torch.manual_seed(0)
        transformer = CausalWanTransformer(**TINY_CONFIG)
        notice = "no trained weights yet: using a randomly initialised tiny model (output is noise-like)"
    else:
        path = Path(checkpoint)
        if not path.exists():
            raise CheckpointError(f"checkpoint not found: {path}")
        if path.is_dir():
            transformer = load_pretrained(CausalWanTransformer, path / "transformer")
            if (path / "vae").is_dir():
                vae = load_pretrained(TinyVideoVAE, path / "vae")
        else:
            transformer = load_into(CausalWanTransformer(**TINY_CONFIG), path)
    if vae is None:
        torch.manual_seed(1)
        vae = TinyVideoVAE(latent_channels=transformer.config.in_channels, **TINY_VAE_CONFIG)
        notice = notice or "no trained VAE in the checkpoint: frames are decoded by a random decoder"
    latent = VIDEO_SIZE // vae.config.spatial_factor
    # the CPU's convolutions run 15-25 % faster on channels-last weights (benchmarks/RESULTS.md,
    # "Where a chunk's CPU goes"); the numbers agree to float rounding
    vae.decoder.to(memory_format=torch.channels_last)
    return Backend(
        name="tiny", transformer=transformer.eval().to(device), vae=vae.eval().to(device),
        encode_prompt=MiniLMTextEncoder(device), latent_height=latent, latent_width=latent, fps=FPS,
        device=device, notice=notice)
