"""The chunk recurrence: a generator that yields one result per generated chunk.

adaptive: every block is [S_i | X_i]; the clean state S_i replaces the anchor slot, X_i enters
          the window. S_i is never decoded.
static:   every block is X_i; the first frame(s) of X_0 fill the anchor slot once, for good.

The prompt can change between chunks (`switch_prompt`): cross-attention keys/values are
computed once for the new prompt, and the anchor slot and window carry the scene across. With
`recache`, the window's keys/values are also rewritten under the new prompt (LongLive's
re-cache), so the context stops speaking for the old prompt at once.
"""

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from .model import AnchorWindowCache, CacheLayout
from .sampling import DEFAULT_SHIFT, DEFAULT_STEPS, chunk_step, shifted_sigmas, write_cache
from .text import check_prompt

ANCHOR_MODES = ("adaptive", "static")
MAX_CHUNKS = 100_000
# Re-cache the window at a prompt switch: the new prompt shows sooner and the cut across the switch
# is smaller, for a fraction of a chunk's time (benchmarks/RESULTS.md, "Prompt switch").
RECACHE_ON_SWITCH = True


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
    seconds: dict = field(default_factory=dict)  # switch, step (denoise and cache write), decode, total
    prompt: str = ""               # the prompt in force for this chunk
    switched: bool = False         # the prompt changed right before this chunk

    def record(self) -> dict:
        """The JSON-ready per-chunk statistics."""
        return {"index": self.index, "anchor_attention_share": self.anchor_attention_share,
                "state_delta": self.state_delta, "seconds": self.seconds["total"],
                "timings": self.seconds, "frames": int(self.frames.shape[0]), "prompt": self.prompt,
                "switched": self.switched}


def relative_change(new: torch.Tensor, old: torch.Tensor) -> float:
    return float((new - old).norm() / old.norm().clamp_min(1e-12))


class ChunkStream:
    """Iterates the recurrence chunk by chunk; holds the prompt's cross-attention K/V and the cache."""

    def __init__(self, backend, prompt: str, settings: StreamSettings, prompt_schedule: dict | None = None,
                 recache_on_switch: bool = RECACHE_ON_SWITCH):
        """`prompt_schedule` {chunk index: prompt} switches prompts at those chunks; the default
        of `switch_prompt`'s `recache` is `recache_on_switch`."""
        self.backend, self.settings = backend, settings.check()
        self.prompt = check_prompt(prompt)
        self.text_kv = self._encode(self.prompt)
        self.prompt_schedule = {int(k): check_prompt(v) for k, v in (prompt_schedule or {}).items()}
        self.recache_on_switch = recache_on_switch
        self._pending_switch = None
        self.sigmas = shifted_sigmas(settings.denoising_steps, settings.shift)
        self.cache = AnchorWindowCache.for_model(backend.transformer, settings.layout, backend.latent_height, backend.latent_width,
                                                 backend.device)
        self.cache.measure_anchor_share = settings.measure_anchor_share
        self.state_frames = settings.state_frames if settings.anchor == "adaptive" else 0
        self.block_shape = (1, backend.latent_channels, self.state_frames + settings.chunk_frames,
                            backend.latent_height, backend.latent_width)
        # a decoder of this stream's own: a causal VAE (Wan's) carries a cache from chunk to chunk
        self.decoder = backend.vae.open_stream()
        self.index = 0
        self.anchor_latent = None
        self.window_latents = deque(maxlen=settings.window_chunks)  # clean content of the window, for re-caching

    def __iter__(self):
        while self.index < self.settings.chunks:
            yield self.next_chunk()

    @torch.no_grad()
    def _encode(self, prompt: str):
        """The prompt's cross-attention keys/values for every layer, computed once."""
        backend = self.backend
        return backend.transformer.encode_text(backend.encode_prompt(prompt).to(backend.device, backend.dtype))

    def switch_prompt(self, prompt: str, recache: bool | None = None):
        """Use `prompt` from the next chunk on (safe to call from another thread while streaming)."""
        self._pending_switch = (check_prompt(prompt), self.recache_on_switch if recache is None else recache)

    @torch.no_grad()
    def _apply_switch(self, prompt: str, recache: bool):
        self.prompt, self.text_kv = prompt, self._encode(prompt)
        if recache and self.window_latents:
            # rewrite the window oldest first, each chunk attending to the anchor slot and the
            # chunks already rewritten, as it did when it was generated; the anchor slot stays
            self.cache.clear_window()
            for latents in self.window_latents:
                self.cache.begin_block(0)
                write_cache(self.backend.transformer, self.text_kv, self.cache, latents)

    @torch.no_grad()
    def next_chunk(self) -> ChunkResult:
        backend, cache, settings = self.backend, self.cache, self.settings
        started = time.perf_counter()
        if self.index in self.prompt_schedule and self.prompt_schedule[self.index] != self.prompt:
            self.switch_prompt(self.prompt_schedule[self.index])
        switch, self._pending_switch = self._pending_switch, None
        switching = switch is not None and switch[0] != self.prompt
        if switching:
            self._apply_switch(*switch)
        switched = time.perf_counter()
        block = chunk_step(backend.transformer, self.text_kv, cache, self.block_shape, self.sigmas, settings.seed,
                           self.index, backend.device, backend.dtype)
        stepped = time.perf_counter()
        content = block[:, :, self.state_frames:]
        self.window_latents.append(content)
        frames = self.decoder.decode_to_uint8(content)  # the state is never decoded
        decoded = time.perf_counter()

        previous = self.anchor_latent
        if self.state_frames:
            self.anchor_latent = block[0, :, :self.state_frames].cpu()
        elif previous is None:
            self.anchor_latent = content[0, :, :settings.state_frames].cpu()
        result = ChunkResult(
            index=self.index, latents=content[0].cpu(), frames=frames, anchor_latent=self.anchor_latent,
            anchor_attention_share=cache.anchor_share(),
            state_delta=None if previous is None else relative_change(self.anchor_latent, previous),
            seconds={"switch": switched - started, "step": stepped - switched, "decode": decoded - stepped,
                     "total": decoded - started},
            prompt=self.prompt, switched=switching)
        self.index += 1
        return result


def stream(backend, prompt: str, settings: StreamSettings):
    """Yield a ChunkResult per chunk; stop early by simply not asking for more."""
    return iter(ChunkStream(backend, prompt, settings))
