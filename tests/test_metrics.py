"""The evaluation's measures of pan, realism and revert, checked on the procedural worlds' ground truth."""

import cv2
import numpy as np
import pytest

from adastate.data import World, sample_world_spec
from adastate.metrics import pan_fidelity, pan_per_frame, realism_accuracy, revert_correlation

CLIPS, FRAMES = 16, 8


def world_clips(seeds, start: int) -> np.ndarray:
    """FRAMES frames from `start` of each world, stacked: [len(seeds) * FRAMES, H, W, 3]."""
    return np.concatenate([World(sample_world_spec(seed)).render(start, FRAMES) for seed in seeds])


def blurred(frames, sigma: float = 1.0) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(frame, (0, 0), sigma) for frame in frames])


def noisy(frames, sigma: float) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0, sigma, frames.shape)
    return np.clip(frames + noise, 0, 255).round().astype(np.uint8)


def darkened(frames, factor: float = 0.3) -> np.ndarray:
    return (frames * factor).astype(np.uint8)


@pytest.fixture(scope="module")
def clips():
    """Real clips: worlds 0-15 at frame 0 and again 240 frames on, and worlds 1000-1015 at frame 0."""
    return {"worlds": world_clips(range(CLIPS), 0), "worlds later": world_clips(range(CLIPS), 240),
            "other worlds": world_clips(range(1000, 1000 + CLIPS), 0)}


CLIP_IDS = np.repeat(np.arange(CLIPS), FRAMES)


def test_pan_per_frame_matches_the_worlds_camera_motion():
    specs = [sample_world_spec(seed) for seed in range(8)]
    assert {s.speed for s in specs} == {"slow", "steady", "fast"} and {s.direction for s in specs} == {-1, 1}
    for spec in specs:
        world = World(spec)
        measured, truth = pan_per_frame(world.render(100, 13)), world.camera_motion(101, 12)
        np.testing.assert_allclose(measured, truth, atol=0.05)
        assert pan_fidelity(measured, truth) == 1.0


def test_pan_per_frame_is_sub_pixel():
    # rendered at 4× and area-downsampled: the view moves 1.25, 2.5 or 3.75 px a frame at 80 px wide
    for seed in (2, 4):
        world = World(sample_world_spec(seed, height=256, width=320))
        frames = np.stack([cv2.resize(f, (80, 64), interpolation=cv2.INTER_AREA) for f in world.render(0, 6)])
        np.testing.assert_allclose(pan_per_frame(frames), world.camera_motion(1, 5) / 4, atol=0.15)


def test_a_decoder_that_jumps_every_few_frames_has_the_right_mean_pan_but_no_fidelity():
    world = World(sample_world_spec(2))
    video = world.render(0, 10)
    held = video[[0, 0, 0, 3, 3, 3, 6, 6, 6, 9]]       # still for three frames, then three frames' motion at once
    measured, truth = pan_per_frame(held), world.camera_motion(1, 9)
    np.testing.assert_allclose(measured[:, 0].mean(), truth[:, 0].mean(), atol=0.05)
    assert pan_fidelity(measured, truth) == 0.0


def test_pan_fidelity_counts_pairs_within_the_tolerance():
    measured = np.array([[-1.9, 0.0], [-1.5, 0.0], [2.0, 0.0], [-2.3, 0.4]])
    assert pan_fidelity(measured, np.array([-2.0, 0.0])) == 0.5     # one (dx, dy) for every pair
    assert pan_fidelity(measured, np.tile([-2.0, 0.0], (4, 1)), tolerance=0.3) == 0.75


def test_realism_cannot_tell_real_clips_of_other_worlds_from_real(clips):
    accuracy = realism_accuracy(clips["other worlds"], clips["worlds"], CLIP_IDS + 100, CLIP_IDS)
    assert accuracy <= 0.65


def test_realism_cannot_tell_the_same_worlds_later_from_real(clips):
    # a clip id shared by both sides keeps a world's two clips in the same fold
    assert realism_accuracy(clips["worlds later"], clips["worlds"], CLIP_IDS, CLIP_IDS) <= 0.65


def test_realism_tells_blurred_frames_from_real(clips):
    # blur keeps the palette's colours: a colour histogram would pass these frames
    assert realism_accuracy(blurred(clips["other worlds"]), clips["worlds"], CLIP_IDS + 100, CLIP_IDS) >= 0.9
    assert realism_accuracy(blurred(clips["worlds later"]), clips["worlds"], CLIP_IDS, CLIP_IDS) >= 0.9


def test_realism_tells_noisy_frames_from_real(clips):
    assert realism_accuracy(noisy(clips["other worlds"], 4), clips["worlds"], CLIP_IDS + 100, CLIP_IDS) >= 0.9


def test_realism_tells_darkened_frames_from_real(clips):
    # the features are normalised for contrast, but a picture at 30 % loses its weak gradients to
    # rounding; on these clips milder darkening (to 50-70 %) was caught only 66-86 % of the time
    assert realism_accuracy(darkened(clips["other worlds"]), clips["worlds"], CLIP_IDS + 100, CLIP_IDS) >= 0.85
    assert realism_accuracy(darkened(clips["worlds later"]), clips["worlds"], CLIP_IDS, CLIP_IDS) >= 0.85


def test_realism_needs_one_clip_id_per_frame(clips):
    with pytest.raises(ValueError, match="one group id per frame"):
        realism_accuracy(clips["other worlds"], clips["worlds"], CLIP_IDS[:-1], CLIP_IDS)


def test_revert_correlation_falls_as_a_world_pans_on_and_stays_for_a_locked_scene():
    panned = []
    for seed in range(4):
        world = World(sample_world_spec(seed))
        first = world.render(0, 1)[0]
        panned.append(revert_correlation(world.render(200, 4), first))
        assert revert_correlation(np.stack([first] * 4), first) == pytest.approx(1.0)
        assert revert_correlation(noisy(np.stack([first] * 4), 4), first) > 0.9
    assert max(panned) < 0.5
