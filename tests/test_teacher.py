"""Sampling the bidirectional teacher: continuation by replacement, and its long videos."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import torch

from adastate.stream import StreamSettings
from adastate.teacher import TeacherVideo, sample_clip


class StillModel(torch.nn.Module):
    """Predicts zero velocity and remembers what it was given."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.inputs = []

    def forward(self, x, t, text):
        self.inputs.append((x.clone(), float(t[0]) / 1000, bool(text.any())))
        return SimpleNamespace(sample=torch.zeros_like(x))


def test_the_context_enters_every_step_noised_to_its_level_with_one_noise():
    model, context = StillModel(), torch.randn(1, 2, 3, 4, 4)
    sigmas = [1.0, 0.75, 0.5, 0.25]
    sample_clip(model, torch.ones(1, 5, 8), (1, 2, 6, 4, 4), sigmas, 3.0, torch.Generator().manual_seed(0), context)
    assert [(s, cond) for _, s, cond in model.inputs] == [(s, c) for s in sigmas for c in (True, False)]
    noises = [(x[:, :, :3] - (1 - s) * context) / s for x, s, _ in model.inputs]
    assert all(torch.allclose(n, noises[0], atol=1e-5) for n in noises)
    assert not torch.allclose(noises[0], context)


def test_long_teacher_videos_are_chunked_deterministic_and_follow_a_switch(test_backend):
    video_of = TeacherVideo(test_backend, steps=2)  # its causal model, used bidirectionally as the teacher is
    settings = StreamSettings(chunks=4, seed=5)
    records, frames = video_of("hills", settings)
    chunk_frames = 3 * test_backend.frames_per_latent
    assert frames.shape[:2] == (4, chunk_frames) and frames.dtype == np.uint8
    assert [r["index"] for r in records] == [0, 1, 2, 3] and all(r["frames"] == chunk_frames for r in records)
    assert np.array_equal(frames, video_of("hills", settings)[1])
    assert not np.array_equal(frames, video_of("hills", replace(settings, seed=6))[1])
    switched, _ = video_of("hills", settings, {2: "dunes"})
    assert [r["prompt"] for r in switched] == ["hills", "hills", "dunes", "dunes"]
    assert [r["switched"] for r in switched] == [False, False, True, False]
