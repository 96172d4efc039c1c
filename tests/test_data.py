"""Procedural worlds: deterministic, endless, captioned, with motion the metric recovers."""

import numpy as np
import pytest

from adastate.data import SPEEDS, STYLES, World, caption, sample_world_spec
from adastate.metrics import color_histogram, histogram_distance, identity_drift, motion_magnitude


def test_worlds_are_deterministic_and_any_window_renders_the_same_frames():
    spec = sample_world_spec(7)
    assert spec == sample_world_spec(7) and spec != sample_world_spec(8)
    long = World(spec).render(1000, 10)
    assert np.array_equal(World(sample_world_spec(7)).render(1000, 10), long)
    assert np.array_equal(World(spec).render(1004, 3), long[4:7])
    assert long.dtype == np.uint8 and long.shape == (10, 64, 64, 3)
    assert World(spec).render(0, 2).shape == (2, 64, 64, 3)


@pytest.mark.parametrize("seed", range(6))
def test_motion_metric_recovers_the_ground_truth_camera_motion(seed):
    world = World(sample_world_spec(seed))
    frames = world.render(300 + 97 * seed, 12)
    truth = np.linalg.norm(world.camera_motion(300, 12), axis=1).mean()
    assert truth in SPEEDS.values()
    assert motion_magnitude(frames) == pytest.approx(truth, rel=0.10)


def test_scenes_progress_but_keep_their_identity():
    world = World(sample_world_spec(3))
    first, later = world.render(0, 12), world.render(2000, 12)
    assert np.abs(first.astype(int) - later.astype(int)).mean() > 10  # the view has moved on
    own = identity_drift([first, later])[1]
    other = max(histogram_distance(color_histogram(first), color_histogram(World(sample_world_spec(s)).render(0, 12)))
                for s in range(20) if sample_world_spec(s).style != sample_world_spec(3).style)
    assert own < 0.25 < other


def test_captions_name_the_attributes_in_varied_wording():
    spec = sample_world_spec(11)
    wordings = {caption(spec, s) for s in range(20)}
    assert len(wordings) >= 4
    for text in wordings:
        assert spec.style in text and STYLES[spec.style][6] in text
        assert ("right" if spec.direction > 0 else "left") in text
    assert spec.attributes()["camera_speed"] == SPEEDS[spec.speed]
    assert {sample_world_spec(s).style for s in range(60)} == set(STYLES)
