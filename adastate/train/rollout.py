"""The student's two ways through a video during training.

teacher_forced_chunks: ground-truth context (causal initialisation).
self_forcing_rollout:  the student's own context, exactly as at inference (Self-Forcing / AdaState).
"""

import torch

from ..model import AnchorWindowCache
from ..sampling import chunk_step, write_cache
from .losses import flow_matching_loss, noised


def teacher_forced_loss(model, text_kv, video, layout, adaptive: bool, sigma_sampler):
    """Mean flow-matching loss of each noisy block given the clean ground truth before it.

    In adaptive mode the block is [S_i | X_i] and the state's target is the chunk's last frame: a
    scene reference that moves with the content. It is only a starting point: DMD later puts no
    loss on the state itself, only on the frames that read it.
    """
    if video.shape[2] % layout.chunk_frames:
        raise ValueError(f"{video.shape[2]} latent frames do not split into chunks of {layout.chunk_frames}")
    cache = AnchorWindowCache.for_model(model, layout, video.shape[3], video.shape[4], video.device)
    state = layout.anchor_frames if adaptive else 0
    losses = []
    for chunk in video.split(layout.chunk_frames, dim=2):
        block = torch.cat([chunk[:, :, -state:], chunk], dim=2) if state else chunk
        cache.begin_block(state)
        sigma = sigma_sampler(block.shape[0])
        noise = torch.randn_like(block)
        velocity = model.forward_frames(noised(block, noise, sigma), 1000 * sigma, text_kv, cache)
        losses.append(flow_matching_loss(velocity, block, noise))
        with torch.no_grad():
            write_cache(model, text_kv, cache, block)
    return torch.stack(losses).mean()


def self_forcing_rollout(model, text_kv, layout, block_shape, chunks: int, sigmas, seed: int,
                         generator: torch.Generator | None = None, grad_chunks: int | None = None):
    """Roll the student out on its own outputs, exactly as `ChunkStream` streams (the same
    `chunk_step`, the same noise for the same seed); content latents [B, C, chunks*F, h, w].

    `block_shape` [B, C, state + F, h, w] holds the state frames (none: the static baseline).
    Per chunk one denoising step, drawn at random from `generator`, is the last and carries
    gradients; its clean prediction is the chunk (no generator: every step, as when streaming).
    Only the last `grad_chunks` chunks (default: all) carry gradients; those before them are
    context, rolled out without. The cache write keeps gradients, so a loss on chunk i reaches
    the states of the gradient-carrying chunks before it: backpropagation through the recurrence.
    """
    grad_chunks = chunks if grad_chunks is None else grad_chunks
    if not 1 <= grad_chunks <= chunks:
        raise ValueError(f"grad_chunks must be from 1 to {chunks}, got {grad_chunks}")
    parameter = next(model.parameters())
    cache = AnchorWindowCache.for_model(model, layout, block_shape[-2], block_shape[-1], parameter.device)
    state = block_shape[2] - layout.chunk_frames
    outputs = []
    for i in range(chunks):
        exit_step = None if generator is None else int(torch.randint(len(sigmas), (1,), generator=generator))
        with torch.set_grad_enabled(torch.is_grad_enabled() and i >= chunks - grad_chunks):
            clean = chunk_step(model, text_kv, cache, block_shape, sigmas, seed, i, parameter.device,
                               parameter.dtype, exit_step)
        outputs.append(clean[:, :, state:])
    return torch.cat(outputs, dim=2)
