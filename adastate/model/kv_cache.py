"""Streaming self-attention: [ anchor slot | rolling window | current block ], relative time.

Keys are stored *before* the rotary embedding and rotated afresh at every chunk from one fixed
layout (frame indices):

    anchor slot        0 .. A-1               (A = anchor_frames; the state, or the frozen first frame)
    window, age a      A + (W-a)*F .. +F-1    (a = 1 is the previous chunk; older chunks further left)
    block: state       0 .. A-1               (the new state shares the anchor slot's positions)
    block: content     A + W*F .. +F-1

so chunk 1000 sees exactly the positions chunk 10 saw. Window slots not yet filled are simply
absent (the others keep their positions). Because RoPE scores depend on position differences
only, the window part reproduces absolute-time attention exactly; the anchor alone is pinned at
a fixed distance instead of drifting ever further into the past.
"""

from collections import deque
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .transformer import apply_rotary


@dataclass(frozen=True)
class CacheLayout:
    chunk_frames: int = 3   # F: latent frames generated per chunk
    anchor_frames: int = 1  # A: frames in the anchor slot (F_s, the state's size)
    window_chunks: int = 1  # W: previous chunks kept as clean context

    def __post_init__(self):
        for name in ("chunk_frames", "anchor_frames", "window_chunks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def anchor_positions(self) -> torch.Tensor:
        return torch.arange(self.anchor_frames)

    def window_positions(self, age: int) -> torch.Tensor:
        start = self.anchor_frames + (self.window_chunks - age) * self.chunk_frames
        return torch.arange(start, start + self.chunk_frames)

    def block_positions(self, state_frames: int) -> torch.Tensor:
        content_start = self.anchor_frames + self.window_chunks * self.chunk_frames
        return torch.cat([torch.arange(state_frames), torch.arange(content_start, content_start + self.chunk_frames)])


class AnchorWindowCache:
    """Per-layer KV cache and the self-attention of one streamed block against it.

    Protocol for each chunk: `begin_block(state_frames)`; any number of denoising passes of the
    model with this object as its `self_attention`; `capture()` and one more pass on the clean
    block (t = 0), whose keys and values `commit()` then writes into the cache.
    """

    def __init__(self, num_layers: int, rope, layout: CacheLayout, height: int, width: int, device=None):
        self.layout, self.rope, self.height, self.width = layout, rope, height, width
        self.tokens_per_frame = height * width
        self.device = device
        self.anchor = [None] * num_layers  # (k, v) pre-RoPE
        self.window = [deque(maxlen=layout.window_chunks) for _ in range(num_layers)]
        self._anchor_rot = self._angles(layout.anchor_positions())
        self._window_rot = {a: self._angles(layout.window_positions(a)) for a in range(1, layout.window_chunks + 1)}
        self._context = [None] * num_layers
        self._context_has_grad = [False] * num_layers
        self._captured = None
        self.state_frames = 0
        self.measure_anchor_share = False
        self._share_sum, self._share_count = 0.0, 0

    @classmethod
    def for_model(cls, model, layout: CacheLayout, latent_height: int, latent_width: int, device=None):
        """A cache for `model`'s layers and token grid at this latent size."""
        _, h, w = model.token_grid((1, 1, 1, latent_height, latent_width))
        return cls(len(model.blocks), model.rope, layout, h, w, device)

    def _angles(self, frame_positions):
        return self.rope(frame_positions.to(self.device), self.height, self.width)

    # -- per chunk ---------------------------------------------------------------------------

    def begin_block(self, state_frames: int):
        """Next passes see a block of `state_frames` state frames followed by F content frames."""
        self.state_frames = state_frames
        self._block_rot = self._angles(self.layout.block_positions(state_frames))
        self._context = [None] * len(self._context)
        self._captured = None

    def capture(self):
        """Record the next pass's block keys/values, to be written by `commit`."""
        self._captured = [None] * len(self._context)

    def commit(self):
        """Write the captured block: the state replaces the anchor slot (adaptive) or, with no
        state, the first content frames fill an empty slot once (static); content enters the window."""
        if self._captured is None or any(kv is None for kv in self._captured):
            raise RuntimeError("commit() needs one full pass after capture()")
        n_state = self.state_frames * self.tokens_per_frame
        n_anchor = self.layout.anchor_frames * self.tokens_per_frame
        for layer, (k, v) in enumerate(self._captured):
            if n_state:
                self.anchor[layer] = (k[:, :n_state], v[:, :n_state])
            elif self.anchor[layer] is None:
                self.anchor[layer] = (k[:, :n_anchor], v[:, :n_anchor])
            self.window[layer].append((k[:, n_state:], v[:, n_state:]))
        self._captured = None
        self._context = [None] * len(self._context)

    def anchor_share(self) -> float:
        """Mean share of attention that content queries gave the anchor slot since the last call."""
        share = float(self._share_sum) / self._share_count if self._share_count else 0.0
        self._share_sum, self._share_count = 0.0, 0
        return share

    def cached_frames(self) -> int:
        """Frames held by layer 0's cache (anchor slot + window)."""
        frames = sum(k.shape[1] for k, _ in self.window[0]) // self.tokens_per_frame
        return frames + (self.anchor[0][0].shape[1] // self.tokens_per_frame if self.anchor[0] else 0)

    def anchor_kv(self, layer: int = 0):
        return self.anchor[layer]

    def clear_window(self):
        for window in self.window:
            window.clear()

    # -- as tensors, for scene files ---------------------------------------------------------

    def tensors(self) -> dict:
        """The cached keys/values by name (pre-RoPE, on the CPU); window slots oldest first."""
        out = {}
        for layer, anchor in enumerate(self.anchor):
            if anchor is not None:
                out[f"anchor.{layer}.key"], out[f"anchor.{layer}.value"] = anchor
            for slot, (k, v) in enumerate(self.window[layer]):
                out[f"window.{layer}.{slot}.key"], out[f"window.{layer}.{slot}.value"] = k, v
        return {name: t.detach().cpu().contiguous() for name, t in out.items()}

    def load_tensors(self, tensors: dict, window: bool = True):
        """Fill the cache from `tensors()`'s output (the window only if `window`)."""
        for layer in range(len(self.anchor)):
            if f"anchor.{layer}.key" in tensors:
                self.anchor[layer] = (tensors[f"anchor.{layer}.key"].to(self.device),
                                      tensors[f"anchor.{layer}.value"].to(self.device))
            self.window[layer].clear()
            for slot in range(self.layout.window_chunks if window else 0):
                if f"window.{layer}.{slot}.key" in tensors:
                    self.window[layer].append((tensors[f"window.{layer}.{slot}.key"].to(self.device),
                                               tensors[f"window.{layer}.{slot}.value"].to(self.device)))

    # -- the attention itself --------------------------------------------------------------

    def _build_context(self, layer: int):
        """Rotate this layer's cached keys at this chunk's positions (once per chunk)."""
        keys, values = [], []
        if self.anchor[layer] is not None:
            k, v = self.anchor[layer]
            keys.append(apply_rotary(k, *self._anchor_rot))
            values.append(v)
        slots = list(self.window[layer])
        for age, (k, v) in zip(range(len(slots), 0, -1), slots):
            keys.append(apply_rotary(k, *self._window_rot[age]))
            values.append(v)
        if not keys:
            return None
        return torch.cat(keys, dim=1), torch.cat(values, dim=1)

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self._captured is not None:
            self._captured[layer] = (k, v)
        if self._context[layer] is None or (torch.is_grad_enabled() and not self._context_has_grad[layer]):
            # built once per chunk; rebuilt if a gradient-carrying pass follows no-grad ones, so
            # that training gradients reach the states and chunks stored in the cache
            self._context[layer] = self._build_context(layer) or False
            self._context_has_grad[layer] = torch.is_grad_enabled()
        q = apply_rotary(q, *self._block_rot)
        k = apply_rotary(k, *self._block_rot)
        if self._context[layer]:
            ctx_k, ctx_v = self._context[layer]
            k, v = torch.cat([ctx_k, k], dim=1), torch.cat([ctx_v, v], dim=1)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

        n_anchor = self.anchor[layer][0].shape[1] if self.anchor[layer] is not None else 0
        # the share is the denoising passes', not the cache-writing pass's (on the clean block)
        if not (self.measure_anchor_share and n_anchor and self._captured is None):
            return F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        n_state = self.state_frames * self.tokens_per_frame
        out, share = attention_with_anchor_share(q, k, v, n_anchor, n_state)
        self._share_sum = self._share_sum + share.detach()  # no device sync
        self._share_count += 1
        return out.transpose(1, 2)


def attention_with_anchor_share(q, k, v, n_anchor: int, n_queries_skipped: int = 0):
    """Attention of q over k/v [B, H, N, D], and the mean attention mass that queries after the
    first `n_queries_skipped` give the first `n_anchor` keys."""
    if q.device.type == "cpu":
        return share_from_log_sums(q, k, v, n_anchor, n_queries_skipped)
    return share_from_indicator(q, k, v, n_anchor, n_queries_skipped)


def share_from_log_sums(q, k, v, n_anchor: int, n_queries_skipped: int = 0):
    """CPU: the mass on the anchor keys is exp(log-sum-exp of the scores over the anchor keys −
    log-sum-exp over all keys). The flash kernel returns the second anyway; the first is one small
    call over the anchor keys. (`share_from_indicator` makes the head size odd, which sends the CPU
    to its unfused attention at several times the cost: benchmarks/RESULTS.md, "Where a chunk's CPU goes".)"""
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    out, log_sum = flash(q, k, v)[:2]
    measured = q[:, :, n_queries_skipped:]
    log_sum_anchor = flash(measured, k[:, :, :n_anchor], v[:, :, :n_anchor])[1]
    return out, torch.exp(log_sum_anchor - log_sum[:, :, n_queries_skipped:]).mean()


def share_from_indicator(q, k, v, n_anchor: int, n_queries_skipped: int = 0):
    """Any device: one extra value channel that is 1 on anchor keys; its output is each query's
    attention mass on the anchor slot, measured by the same kernel that attends."""
    indicator = torch.zeros(*v.shape[:-1], 1, dtype=v.dtype, device=v.device)
    indicator[:, :, :n_anchor] = 1
    out = F.scaled_dot_product_attention(q, k, torch.cat([v, indicator], dim=-1))
    return out[..., :-1], out[:, :, n_queries_skipped:, -1].mean()
