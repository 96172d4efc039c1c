"""The student's two ways through a video during training.

teacher_forced_chunks: ground-truth context (causal initialisation).
self_forcing_rollout:  the student's own context, exactly as at inference (Self-Forcing / AdaState).
"""

import torch

from ..model import AnchorWindowCache
from ..sampling import denoise_block, write_cache
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


def self_forcing_rollout(model, text_kv, layout, adaptive: bool, chunks: int, block_shape, sigmas,
                         seed: int, generator: torch.Generator):
    """Roll the student out chunk by chunk on its own outputs; content latents [B, C, chunks*F, h, w].

    Per chunk one denoising step, drawn at random, carries gradients and its clean prediction is
    the chunk. The cache write keeps gradients, so a loss on chunk i reaches the states of chunks
    before it: backpropagation through the recurrence.
    """
    state = layout.anchor_frames if adaptive else 0
    cache = AnchorWindowCache.for_model(model, layout, block_shape[-2], block_shape[-1])
    outputs = []
    for i in range(chunks):
        cache.begin_block(state)
        exit_step = int(torch.randint(len(sigmas), (1,), generator=generator))
        clean = denoise_block(model, text_kv, cache, block_shape, sigmas, seed, i, last_step=exit_step)
        write_cache(model, text_kv, cache, clean)
        outputs.append(clean[:, :, state:])
    return torch.cat(outputs, dim=2)
