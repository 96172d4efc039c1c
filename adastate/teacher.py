"""Sampling the bidirectional teacher: one clip of the length it was trained on, and a long video
made of such clips, for comparing it with the students it was distilled into.

The teacher sees a whole clip at once (2 chunks). A long video is drawn chunk after chunk as the
continuation of the chunk before it: at every denoising step the clip's first chunk is that clean
chunk noised to the step's level (with noise fixed for the clip), so the model draws the second
chunk to fit it ("replacement" conditioning). Its only memory is that one chunk: like the static
students' window, but with no anchor at all.
"""

import time

import numpy as np
import torch

from .sampling import shifted_sigmas, timesteps

TEACHER_STEPS = 16      # Euler steps of the flow ODE per clip
TEACHER_GUIDANCE = 3.0  # classifier-free guidance, as DMD's real score uses it
TEACHER_SHIFT = 2.0     # the schedule shift the teacher was trained with


def guided_x0(model, x_t, sigma, text, null_text, guidance: float):
    """Clean-latent prediction of a bidirectional model, with classifier-free guidance."""
    t = 1000 * sigma
    velocity = model(x_t, t, text).sample
    if guidance != 1.0:
        unconditional = model(x_t, t, null_text).sample
        velocity = unconditional + guidance * (velocity - unconditional)
    s = sigma.view(-1, 1, 1, 1, 1)
    return x_t - s * velocity


@torch.no_grad()
def sample_clip(teacher, text, shape, sigmas, guidance: float, generator: torch.Generator,
                context: torch.Tensor | None = None) -> torch.Tensor:
    """A clean clip [B, C, frames, h, w]: Euler steps from noise down `sigmas`. `context` (clean
    latent frames) fixes the clip's first frames, replaced at every step by themselves noised to
    the step's level, so that the rest is drawn as their continuation."""
    parameter = next(teacher.parameters())
    x = torch.randn(shape, generator=generator).to(parameter)
    null = torch.zeros_like(text)
    if context is not None:
        context_noise = torch.randn(context.shape, generator=generator).to(parameter)
    for sigma, next_sigma in zip(sigmas, list(sigmas[1:]) + [0.0]):
        if context is not None:
            x[:, :, :context.shape[2]] = (1 - sigma) * context + sigma * context_noise
        clean = guided_x0(teacher, x, torch.tensor([sigma], device=x.device), text, null, guidance)
        noise = (x - (1 - sigma) * clean) / sigma
        x = (1 - next_sigma) * clean + next_sigma * noise
    return x


class TeacherVideo:
    """`backend` with the teacher as its transformer → `(prompt, settings, schedule)` → per-chunk
    records and frames [chunks, F, H, W, 3], as `evaluate.stream_video` gives them for a student.
    `schedule`: {chunk: prompt} switches, as a stream's prompt schedule."""

    def __init__(self, backend, steps: int = TEACHER_STEPS, guidance: float = TEACHER_GUIDANCE,
                 shift: float = TEACHER_SHIFT):
        self.backend, self.guidance = backend, guidance
        self.sigmas = shifted_sigmas(timesteps(steps), shift)

    def __call__(self, prompt: str, settings, schedule: dict | None = None):
        """`settings`: a StreamSettings; its chunks, chunk size and seed apply."""
        b, f = self.backend, settings.chunk_frames
        generator = torch.Generator().manual_seed(settings.seed)
        shape = (1, b.latent_channels, 2 * f, b.latent_height, b.latent_width)
        records, latents, videos, text_prompt = [], [], [], None
        for index in range(settings.chunks):
            started = time.perf_counter()
            switched = schedule is not None and index in schedule
            if index == 0 or switched:
                text_prompt = prompt if index == 0 else schedule[index]
                text = b.encode_prompt(text_prompt).to(b.device, b.dtype)
            if index == 0:  # the first clip is two chunks drawn together
                clip = sample_clip(b.transformer, text, shape, self.sigmas, self.guidance, generator)
                latents += [clip[:, :, :f], clip[:, :, f:]]
            elif index > 1:
                clip = sample_clip(b.transformer, text, shape, self.sigmas, self.guidance, generator,
                                   context=latents[-1])
                latents.append(clip[:, :, f:])
            videos.append(b.vae.decode_to_uint8(latents[index]))
            records.append({"index": index, "anchor_attention_share": None, "state_delta": None,
                            "seconds": time.perf_counter() - started, "frames": int(videos[-1].shape[0]),
                            "prompt": text_prompt, "switched": switched})
        return records, np.stack(videos)
