"""The streaming cache and the chunk recurrence, checked against a dense reference."""

import copy

import numpy as np
import pytest
import torch

from adastate.model import AnchorWindowCache, CacheLayout
from adastate.model.kv_cache import share_from_indicator, share_from_log_sums
from adastate.sampling import write_cache
from adastate.stream import ChunkStream, StreamSettings
from adastate.train.rollout import self_forcing_rollout
from reference_attention import RoleAttention, rollout_roles

H, W = 2, 3  # token grid per frame (latents 4 x 6, patch 2)


def text_kv(model):
    return model.encode_text(torch.randn(1, 5, model.config.text_dim, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("adaptive", [True, False])
def test_cached_rollout_equals_masked_full_forward(test_model, adaptive):
    """Chunk by chunk through the cache == one forward of all frames under the block-causal roles,
    with the window evicting (5 chunks, W = 2) and the anchor slot replaced or frozen."""
    layout = CacheLayout(chunk_frames=2, anchor_frames=1, window_chunks=2)
    chunks, state = 5, (1 if adaptive else 0)
    per_chunk = state + layout.chunk_frames
    torch.manual_seed(0)
    latents = torch.randn(1, 4, chunks * per_chunk, 2 * H, 2 * W)
    kv = text_kv(test_model)

    cache = AnchorWindowCache(len(test_model.blocks), test_model.rope, layout, H, W)
    cached, noisy_last = [], None
    with torch.no_grad():
        for i in range(chunks):
            block = latents[:, :, i * per_chunk:(i + 1) * per_chunk]
            cache.begin_block(state)
            if i == chunks - 1:  # a denoising pass too, not only cache writes
                noisy_last = test_model.forward_frames(block, torch.tensor([600.0]), kv, cache)
            cache.capture()
            cached.append(test_model.forward_frames(block, torch.zeros(1), kv, cache))
            cache.commit()
        cached = torch.cat(cached, dim=2)

        roles = rollout_roles(chunks, layout.chunk_frames, layout.anchor_frames, layout.window_chunks, adaptive)
        reference = RoleAttention(test_model.rope, roles, H, W)
        full = test_model.forward_frames(latents, torch.zeros(1), kv, reference)
        # last chunk at t=600, everything before clean: no earlier frame sees the last chunk
        timestep = torch.zeros(1, latents.shape[2] * H * W)
        timestep[:, -per_chunk * H * W:] = 600.0
        full_noisy = test_model.forward_frames(latents, timestep, kv, reference)

    assert (cached - full).norm() / full.norm() < 1e-5
    last = full_noisy[:, :, -per_chunk:]
    assert (noisy_last - last).norm() / last.norm() < 1e-5
    # the reference is sensitive to the anchor's role: dropping it changes the answer
    no_anchor = RoleAttention(test_model.rope, roles[:1], H, W)
    with torch.no_grad():
        without = test_model.forward_frames(latents, torch.zeros(1), kv, no_anchor)
    assert (without - full).norm() / full.norm() > 1e-3


def run_chunks(model, cache, blocks, kv, state):
    for block in blocks:
        cache.begin_block(state)
        write_cache(model, kv, cache, block)


def test_relative_time_chunk_3_equals_chunk_300(test_model):
    """Same cache contents, same block → same output, whether it is chunk 3 or chunk 300."""
    layout = CacheLayout(chunk_frames=2, anchor_frames=1, window_chunks=2)
    kv = text_kv(test_model)
    torch.manual_seed(1)
    blocks = [torch.randn(1, 4, 3, 2 * H, 2 * W) for _ in range(3)]
    early = AnchorWindowCache(len(test_model.blocks), test_model.rope, layout, H, W)
    late = AnchorWindowCache(len(test_model.blocks), test_model.rope, layout, H, W)
    with torch.no_grad():
        run_chunks(test_model, early, blocks, kv, 1)
        run_chunks(test_model, late, [torch.randn(1, 4, 3, 2 * H, 2 * W) for _ in range(297)], kv, 1)
        run_chunks(test_model, late, blocks[1:], kv, 1)  # same last W chunks ...
        late.anchor = copy.copy(early.anchor)             # ... and the same anchor slot
        late.window = copy.deepcopy(early.window)
        probe = torch.randn(1, 4, 3, 2 * H, 2 * W)
        outputs = []
        for cache in (early, late):
            cache.begin_block(1)
            outputs.append(test_model.forward_frames(probe, torch.tensor([500.0]), kv, cache))
    assert torch.equal(outputs[0], outputs[1])


def test_anchor_slot_and_cache_size(test_backend):
    for mode in ("adaptive", "static"):
        chunks = ChunkStream(test_backend, "a forest", StreamSettings(anchor=mode, chunks=6, window_chunks=2))
        anchors, sizes = [], []
        for result in chunks:
            anchors.append(chunks.cache.anchor_kv(layer=1)[0].clone())
            sizes.append(chunks.cache.cached_frames())
        changed = [not torch.equal(a, b) for a, b in zip(anchors, anchors[1:])]
        assert all(changed) if mode == "adaptive" else not any(changed), mode
        # anchor slot (1 frame) + up to W=2 chunks of 3 frames, then flat
        assert sizes == [4, 7, 7, 7, 7, 7], (mode, sizes)


def test_state_is_never_decoded(test_backend):
    results = list(ChunkStream(test_backend, "a desert", StreamSettings(anchor="adaptive", chunks=3)))
    vae = test_backend.vae
    for r in results:
        assert r.latents.shape[1] == 3  # F content frames, no state frame
        assert r.frames.shape[0] == 3 * vae.config.temporal_factor
        np.testing.assert_array_equal(r.frames, vae.decode_to_uint8(r.latents[None]))
        assert not any(torch.allclose(r.anchor_latent[:, 0], r.latents[:, j]) for j in range(3))


def test_seeded_streams_are_deterministic_and_seeds_differ(test_backend):
    def frames(seed, mode):
        settings = StreamSettings(anchor=mode, chunks=3, seed=seed)
        return np.concatenate([r.frames for r in ChunkStream(test_backend, "a coast", settings)])

    for mode in ("adaptive", "static"):
        np.testing.assert_array_equal(frames(7, mode), frames(7, mode))
        assert not np.array_equal(frames(7, mode), frames(8, mode))


def test_chunk_results_carry_the_observables(test_backend):
    results = list(ChunkStream(test_backend, "hills", StreamSettings(anchor="adaptive", chunks=3)))
    assert [r.index for r in results] == [0, 1, 2]
    assert results[0].anchor_attention_share == 0.0 and results[0].state_delta is None
    for r in results[1:]:
        assert 0.0 < r.anchor_attention_share < 1.0
        assert r.state_delta > 0.0
        assert set(r.seconds) == {"switch", "step", "decode", "total"}
        assert r.record()["prompt"] == "hills" and r.record()["switched"] is False
        assert r.record()["index"] == r.index
    static = list(ChunkStream(test_backend, "hills", StreamSettings(anchor="static", chunks=3)))
    assert [r.state_delta for r in static[1:]] == [0.0, 0.0]


@pytest.mark.parametrize("anchor", ["adaptive", "static"])
def test_training_rollout_is_exactly_the_stream(test_backend, anchor):
    """What is trained is what streams: the Self-Forcing rollout without gradients, running every
    step, makes exactly `ChunkStream`'s chunks for the same seed (past the window, W = 1).

    Measuring the anchor share (which the training rollout does not) leaves the chunks as they are."""
    def streamed(measure):
        settings = StreamSettings(anchor=anchor, chunks=4, seed=5, measure_anchor_share=measure)
        chunks = ChunkStream(test_backend, "a forest", settings)
        return chunks, torch.cat([r.latents for r in chunks], dim=1)

    chunks, exact = streamed(False)
    settings = chunks.settings
    with torch.no_grad():
        rolled = self_forcing_rollout(test_backend.transformer, chunks.text_kv, settings.layout, chunks.block_shape,
                                      settings.chunks, chunks.sigmas, settings.seed)[0]
    assert torch.equal(rolled, exact)
    assert torch.equal(rolled, streamed(True)[1])


@pytest.mark.parametrize("measure", [share_from_log_sums, share_from_indicator])
def test_the_anchor_share_is_the_softmax_mass_on_the_anchor_keys(measure):
    generator = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 4, n, 48, generator=generator) for n in (40, 70, 70))
    out, share = measure(q, k, v, n_anchor=16, n_queries_skipped=8)
    weights = torch.softmax(q @ k.transpose(-1, -2) / 48**0.5, dim=-1)
    torch.testing.assert_close(out, weights @ v, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(share, weights[:, :, 8:, :16].sum(-1).mean(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("field,value,message", [
    ("anchor", "frozen", "unknown anchor mode"),
    ("chunks", 0, "chunks must be"),
    ("chunks", 10**9, "chunks must be"),
    ("window_chunks", 0, "window_chunks"),
    ("denoising_steps", (250, 500), "decrease"),
    ("denoising_steps", (2000,), "(0, 1000]"),
])
def test_bad_settings_are_rejected_clearly(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("]", r"\]")):
        StreamSettings(**{field: value}).check()
