"""The chunk recurrence: a generator that yields one result per generated chunk.

adaptive: every block is [S_i | X_i]; the clean state S_i replaces the anchor slot, X_i enters
          the window. S_i is never decoded.
static:   every block is X_i; the first frame(s) of X_0 fill the anchor slot once, for good.
"""

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .model import AnchorWindowCache, CacheLayout
from .sampling import DEFAULT_SHIFT, DEFAULT_STEPS, denoise_block, shifted_sigmas, write_cache
from .text import check_prompt

ANCHOR_MODES = ("adaptive", "static")
MAX_CHUNKS = 100_000


@dataclass
class StreamSettings:
    anchor: str = "adaptive"
    chunks: int = 8
    seed: int = 0
    chunk_frames: int = 3      # F latent frames per chunk
    state_frames: int = 1      # F_s: the state's (and anchor slot's) size
    window_chunks: int = 1     # W previous chunks kept (paper: 3 previous + 3 current frames)
    denoising_steps: tuple = DEFAULT_STEPS
    shift: float = DEFAULT_SHIFT
    measure_anchor_share: bool = True

    def check(self) -> "StreamSettings":
        if self.anchor not in ANCHOR_MODES:
            raise ValueError(f"unknown anchor mode {self.anchor!r}; choose one of: {', '.join(ANCHOR_MODES)}")
        if not isinstance(self.chunks, int) or not 1 <= self.chunks <= MAX_CHUNKS:
            raise ValueError(f"chunks must be a whole number from 1 to {MAX_CHUNKS}, got {self.chunks!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be a non-negative whole number, got {self.seed!r}")
        if not 1 <= self.chunk_frames <= 16:
            raise ValueError(f"chunk_frames must be from 1 to 16, got {self.chunk_frames}")
        if not 1 <= self.state_frames <= 8:
            raise ValueError(f"state_frames must be from 1 to 8, got {self.state_frames}")
        if not 1 <= self.window_chunks <= 16:
            raise ValueError(f"window_chunks must be from 1 to 16, got {self.window_chunks}")
        if not 1 <= len(self.denoising_steps) <= 50:
            raise ValueError(f"use 1 to 50 denoising steps, got {len(self.denoising_steps)}")
        shifted_sigmas(self.denoising_steps, self.shift)
        return self

    @property
    def layout(self) -> CacheLayout:
        return CacheLayout(self.chunk_frames, self.state_frames, self.window_chunks)


@dataclass
class ChunkResult:
    index: int
    latents: torch.Tensor          # content latents [C, F, h, w]
    frames: np.ndarray             # decoded RGB uint8 [F * frames_per_latent, H, W, 3]
    anchor_latent: torch.Tensor    # what the anchor slot holds now [C, A, h, w]: the state, or the frozen frame
    anchor_attention_share: float  # mean attention content queries gave the anchor slot (0 while it is empty)
    state_delta: float | None      # relative L2 change of the anchor latent since the last chunk
    seconds: dict = field(default_factory=dict)  # denoise, cache_write, decode, total

    def record(self) -> dict:
        """The JSON-ready per-chunk statistics."""
        return {"index": self.index, "anchor_attention_share": self.anchor_attention_share,
                "state_delta": self.state_delta, "seconds": self.seconds["total"],
                "timings": self.seconds, "frames": int(self.frames.shape[0])}


def relative_change(new: torch.Tensor, old: torch.Tensor) -> float:
    return float((new - old).norm() / old.norm().clamp_min(1e-12))


@torch.no_grad()
def stream(backend, prompt: str, settings: StreamSettings):
    """Yield a ChunkResult per chunk; stop early by simply not asking for more."""
    settings.check()
    model, device, dtype = backend.transformer, backend.device, backend.dtype
    text_kv = model.encode_text(backend.encode_prompt(check_prompt(prompt)).to(device, dtype))
    sigmas = shifted_sigmas(settings.denoising_steps, settings.shift)
    _, h, w = model.token_grid((1, 1, 1, backend.latent_height, backend.latent_width))
    cache = AnchorWindowCache(len(model.blocks), model.rope, settings.layout, h, w, device)
    state_frames = settings.state_frames if settings.anchor == "adaptive" else 0
    shape = (1, backend.latent_channels, state_frames + settings.chunk_frames,
             backend.latent_height, backend.latent_width)
    previous_anchor = None
    for index in range(settings.chunks):
        started = time.perf_counter()
        cache.begin_block(state_frames)
        cache.measure_anchor_share = settings.measure_anchor_share
        block = denoise_block(model, text_kv, cache, shape, sigmas, settings.seed, index, device, dtype)
        share = cache.anchor_share()
        cache.measure_anchor_share = False
        denoised = time.perf_counter()
        write_cache(model, text_kv, cache, block)
        written = time.perf_counter()
        content = block[:, :, state_frames:]
        frames = backend.vae.decode_to_uint8(content)
        decoded = time.perf_counter()

        anchor_latent = (block[0, :, :state_frames] if state_frames else
                         previous_anchor if previous_anchor is not None else content[0, :, :settings.state_frames])
        delta = None if previous_anchor is None else relative_change(anchor_latent, previous_anchor)
        previous_anchor = anchor_latent
        yield ChunkResult(
            index=index, latents=content[0].cpu(), frames=frames, anchor_latent=anchor_latent.cpu(),
            anchor_attention_share=share, state_delta=delta,
            seconds={"denoise": denoised - started, "cache_write": written - denoised,
                     "decode": decoded - written, "total": decoded - started})
