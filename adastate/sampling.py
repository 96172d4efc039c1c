"""Few-step flow-matching sampling of one block (Self-Forcing's schedule), and the step of the
chunk recurrence built on it (`chunk_step`), which streaming and training share.

Flow matching: x_sigma = (1 - sigma) * x0 + sigma * noise, and the model predicts the velocity
noise - x0, so x0 = x_sigma - sigma * velocity. A block is denoised at a few noise levels: predict
the clean block, re-noise it with fresh noise to the next level, repeat; the last prediction is
the result. The model sees timestep = 1000 * sigma.
"""

import hashlib

import torch

DEFAULT_STEPS = (1000, 750, 500, 250)
DEFAULT_SHIFT = 5.0


def timesteps(steps: int) -> tuple:
    """`steps` evenly spaced timesteps from 1000 down (4 → 1000, 750, 500, 250)."""
    return tuple(1000 * (steps - i) / steps for i in range(steps))


def shifted_sigmas(steps=DEFAULT_STEPS, shift: float = DEFAULT_SHIFT) -> list[float]:
    """Noise levels for timesteps in (0, 1000], warped by the usual flow-matching shift.

    The shift spends the few steps at high noise, where a distilled few-step model decides
    the layout (1000, 750, 500, 250 become 1000, 937.5, 833.3, 625 at shift 5).
    """
    if not steps:
        raise ValueError("need at least one denoising step")
    sigmas = []
    for t in steps:
        if not 0 < t <= 1000:
            raise ValueError(f"denoising timesteps must lie in (0, 1000], got {t}")
        s = t / 1000.0
        sigmas.append(shift * s / (1 + (shift - 1) * s))
    if any(a <= b for a, b in zip(sigmas, sigmas[1:])):
        raise ValueError(f"denoising timesteps must decrease strictly, got {list(steps)}")
    return sigmas


def block_noise(shape, seed: int, chunk: int, step: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Gaussian noise that depends only on (seed, chunk, step).

    Noise is not drawn from a running generator, so chunk k's noise is the same whether the
    stream started at chunk 0 or was resumed at chunk k.
    """
    digest = hashlib.blake2b(f"{seed}/{chunk}/{step}".encode(), digest_size=8).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
    return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)


def denoise_block(model, text_kv, cache, shape, sigmas, seed: int, chunk: int, device=None, dtype=torch.float32,
                  exit_step: int | None = None):
    """Denoise one block [B, C, f, h, w] from pure noise, attending to `cache` (read only).

    `exit_step` stops early (Self-Forcing training exits at a random step); only that last step
    runs under the caller's grad mode, the ones before it never carry gradients.
    """
    exit_step = len(sigmas) - 1 if exit_step is None else exit_step
    x = block_noise(shape, seed, chunk, 0, device, dtype)
    for step in range(exit_step + 1):
        sigma = sigmas[step]
        with torch.set_grad_enabled(torch.is_grad_enabled() and step == exit_step):
            timestep = torch.full((shape[0],), 1000.0 * sigma, device=device)
            clean = x - sigma * model.forward_frames(x, timestep, text_kv, cache)
        if step < exit_step:
            next_sigma = sigmas[step + 1]
            x = (1 - next_sigma) * clean + next_sigma * block_noise(shape, seed, chunk, step + 1, device, dtype)
    return clean


def write_cache(model, text_kv, cache, clean_block):
    """Run the clean block once at t = 0 and write its keys/values into the cache."""
    cache.capture()
    model.forward_frames(clean_block, torch.zeros(clean_block.shape[0], device=clean_block.device), text_kv, cache)
    cache.commit()


def chunk_step(model, text_kv, cache, block_shape, sigmas, seed: int, chunk: int, device=None, dtype=torch.float32,
               exit_step: int | None = None) -> torch.Tensor:
    """One step of the chunk recurrence, the same when streaming and in training: denoise the block
    [state | chunk] against the cache, then write it. Returns the clean block.

    The block's state frames are those of `block_shape` beyond the layout's F content frames: the
    clean state replaces the anchor slot (adaptive); with none, the first chunk's first frames fill
    the slot once (static). The clean chunk enters the window. `exit_step` as in `denoise_block`;
    the cache write runs under the caller's grad mode, so that in training a loss on a later chunk
    reaches this one through the cache.
    """
    cache.begin_block(block_shape[2] - cache.layout.chunk_frames)
    clean = denoise_block(model, text_kv, cache, block_shape, sigmas, seed, chunk, device, dtype, exit_step)
    write_cache(model, text_kv, cache, clean)
    return clean
