"""Procedural worlds: deterministic, endless, progressing smoothly, captioned, with motion the metric recovers."""

import dataclasses

import numpy as np
import pytest

from adastate.data import SPEEDS, STYLES, World, caption, sample_world_spec
from adastate.metrics import colour_distance, motion_magnitude

CHUNK = 12


def first_world(**wanted):
    """The first sampled world whose spec has the wanted attributes."""
    return next(spec for spec in map(sample_world_spec, range(1000))
                if all(getattr(spec, key) == value for key, value in wanted.items()))


def transition_world():
    return next(spec for spec in map(sample_world_spec, range(1000)) if spec.next_style)


def test_worlds_are_deterministic_and_any_window_renders_the_same_frames():
    spec = sample_world_spec(7)
    assert spec == sample_world_spec(7) and spec != sample_world_spec(8)
    long = World(spec).render(1000, 10)
    assert np.array_equal(World(sample_world_spec(7)).render(1000, 10), long)
    assert np.array_equal(World(spec).render(1004, 3), long[4:7])
    assert long.dtype == np.uint8 and long.shape == (10, 64, 64, 3)
    assert World(spec).render(0, 2).shape == (2, 64, 64, 3)
    # also across a biome transition, and one frame at a time
    turning = transition_world()
    middle = int(turning.transition_frame)
    clip = World(turning).render(middle - 20, 40)
    assert np.array_equal(World(turning).render(middle + 3, 1)[0], clip[23])
    assert np.array_equal(World(turning).render(middle - 5, 12), clip[15:27])


@pytest.mark.parametrize("seed", range(6))
def test_motion_metric_recovers_the_ground_truth_camera_motion(seed):
    world = World(sample_world_spec(seed))
    frames = world.render(300 + 97 * seed, 12)
    truth = np.linalg.norm(world.camera_motion(300, 12), axis=1).mean()
    assert truth in SPEEDS.values()
    assert motion_magnitude(frames) == pytest.approx(truth, rel=0.10)


def test_scenes_progress_over_a_journey_of_40_chunks_without_cuts():
    firsts, adjacent = [], []
    for seed in range(100, 106):
        chunks = np.split(World(sample_world_spec(seed)).render(0, 40 * CHUNK), 40)
        firsts.append(colour_distance(np.concatenate(chunks[:4]), np.concatenate(chunks[-4:])))
        adjacent.append([colour_distance(a, b) for a, b in zip(chunks, chunks[1:])])
    adjacent = np.array(adjacent)
    assert np.mean(firsts) >= 0.25                 # the worlds before they progressed: 0.09
    assert adjacent.mean(axis=1).max() <= 0.08
    # no cuts: the worst step is of the size that panning over the scene alone gives (the worlds
    # before they progressed reached 0.17), far from the distance between two biomes
    assert adjacent.max() < 0.2


def test_worlds_stay_the_biome_their_caption_names():
    """Late in the journey (after nights, weather and terrain have come and gone), a world's
    colours are still closest to worlds of its own biome seen in the same light."""
    others = {}
    for spec in map(sample_world_spec, range(1000, 1100)):
        if not spec.next_style and len(others.setdefault(spec.style, [])) < 2:
            others[spec.style].append(spec)
    for seed in (3, 5, 11):
        spec = dataclasses.replace(sample_world_spec(seed), next_style=None)
        late = World(spec).render(5000, CHUNK)
        same_light = dict(start_hour=spec.start_hour, day_period=spec.day_period)
        distance = {style: min(colour_distance(late, World(dataclasses.replace(o, **same_light)).render(5000, CHUNK))
                               for o in specs) for style, specs in others.items()}
        assert min(distance, key=distance.get) == spec.style


def test_attributes_report_what_changes_frame_by_frame():
    spec = sample_world_spec(4)
    world = World(spec)
    frames = np.arange(0, 2000, 25)
    attributes = [world.attributes_at(int(f)) for f in frames]
    hours = np.array([a["time_of_day"] for a in attributes])
    assert np.allclose(hours, (spec.start_hour + 24 * frames / spec.day_period) % 24)
    assert {a["period_of_day"] for a in attributes} == {"dawn", "day", "dusk", "night"}
    for front in ("cloud_cover", "roughness", "object_density", "object_size", "path_width"):
        values = np.array([a[front] for a in attributes])
        assert values.min() >= 0 and values.max() <= 1 and np.ptp(values) > 0.3, front
        assert np.abs(np.diff(values)).max() < 0.4, front    # fronts take chunks to come and go
    if not spec.next_style:
        assert all(a["biome"] == spec.style and a["biome_mix"] == 0 for a in attributes)
    assert attributes[3]["motion"] == tuple(world.camera_motion(75, 1)[0])

    # the light follows the day: the same world at noon is brighter than at midnight
    noon, midnight = (World(dataclasses.replace(spec, start_hour=h)).render(0, 1).mean() for h in (12.0, 0.0))
    assert noon > 1.5 * midnight

    # a biome transition moves the view from one biome into the other
    turning = World(transition_world())
    t, span = turning.spec.transition_frame, turning.spec.transition_frames
    before, during, after = (turning.attributes_at(int(f)) for f in (t - span / 2 - 1, t, t + span / 2 + 1))
    assert (before["biome"], after["biome"]) == (turning.spec.style, turning.spec.next_style)
    assert before["biome_mix"] == 0 and 0.4 < during["biome_mix"] < 0.6 and after["biome_mix"] == 1


def test_captions_name_the_attributes_in_varied_wording():
    spec = first_world(next_style=None)
    wordings = {caption(spec, s) for s in range(20)}
    assert len(wordings) >= 4
    for text in wordings:
        assert spec.style in text and STYLES[spec.style].objects in text
        assert ("right" if spec.direction > 0 else "left") in text
    assert spec.attributes()["camera_speed"] == SPEEDS[spec.speed]
    assert {sample_world_spec(s).style for s in range(60)} == set(STYLES)
    mirrored = dataclasses.replace(spec, direction=-spec.direction)   # what the data builder does
    assert ("left" if spec.direction > 0 else "right") in caption(mirrored, 0)


def test_captions_of_clips_tell_the_state_at_their_start():
    spec = transition_world()
    assert spec.style in caption(spec, 0) and spec.next_style in caption(spec, 0)   # the journey from frame 0
    t, span = spec.transition_frame, spec.transition_frames
    early, late = caption(spec, 0, start=0, frames=48), caption(spec, 0, start=int(t + span), frames=48)
    assert spec.style in early and spec.next_style not in early
    assert spec.next_style in late and STYLES[spec.next_style].objects in late and spec.style not in late
    across = caption(spec, 0, start=int(t) - 24, frames=48)
    assert spec.style in across and spec.next_style in across
    world = World(spec)
    words = {"dawn": ("dawn", "sunrise"), "day": ("daylight", "by day"), "dusk": ("dusk", "sunset"),
             "night": ("night",)}
    for start in range(0, 2000, 97):
        text, period = caption(spec, start, start=start), world.attributes_at(start)["period_of_day"]
        for other, phrases in words.items():
            if other != period:
                assert not any(p in text for p in phrases), (text, period)
