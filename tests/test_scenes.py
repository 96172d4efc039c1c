"""Prompt switches mid-stream, scenes saved and resumed, state transplant."""

import json
import pickle

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from adastate.sampling import timesteps
from adastate.scene import METADATA_KEY, SceneError, SceneLimits, read_scene, resume_stream, save_scene, snapshot
from adastate.stream import ChunkStream, StreamSettings


def frames_of(stream):
    return [result.frames for result in stream]


@pytest.mark.parametrize("anchor", ["adaptive", "static"])
@pytest.mark.parametrize("window", [1, 2])
def test_save_at_k_and_resume_gives_the_same_frames(test_backend, tmp_path, anchor, window):
    settings = StreamSettings(anchor=anchor, chunks=6, seed=7, window_chunks=window)
    whole = frames_of(ChunkStream(test_backend, "hills", settings))

    first = ChunkStream(test_backend, "hills", StreamSettings(anchor=anchor, chunks=4, seed=7, window_chunks=window))
    head = frames_of(first)
    path = save_scene(snapshot(first), tmp_path / "scene.safetensors")
    scene = read_scene(path)
    assert (scene.anchor, scene.index, scene.meta["prompt"], scene.meta["seed"]) == (anchor, 4, "hills", 7)
    resumed = resume_stream(test_backend, scene, chunks=2)
    tail = frames_of(resumed)
    assert len(head) + len(tail) == len(whole) == 6
    for got, want in zip(head + tail, whole):
        np.testing.assert_array_equal(got, want)
    assert resumed.index == 6


@pytest.mark.parametrize("anchor", ["adaptive", "static"])
@pytest.mark.parametrize("chunks, window", [(1, 1), (3, 4), (2, 1), (5, 4)])  # window not yet full / full
def test_a_scene_saves_whether_or_not_the_window_is_full(test_backend, tmp_path, anchor, chunks, window):
    """Regression: a static stream's anchor slot is a view of its first window chunk until that
    chunk leaves the window, and safetensors refused to save tensors that share memory."""
    settings = StreamSettings(anchor=anchor, chunks=chunks + 1, seed=5, window_chunks=window)
    whole = frames_of(ChunkStream(test_backend, "hills", settings))
    head = ChunkStream(test_backend, "hills", StreamSettings(anchor=anchor, chunks=chunks, seed=5, window_chunks=window))
    list(head)
    path = save_scene(snapshot(head), tmp_path / "scene.safetensors")
    tail = frames_of(resume_stream(test_backend, read_scene(path), chunks=1))
    np.testing.assert_array_equal(tail[0], whole[-1])


def test_resume_restores_statistics_across_the_cut(test_backend, tmp_path):
    settings = StreamSettings(chunks=5, seed=2)
    whole = [r.record() for r in ChunkStream(test_backend, "dunes", settings)]
    first = ChunkStream(test_backend, "dunes", StreamSettings(chunks=3, seed=2))
    list(first)
    tail = [r.record() for r in resume_stream(test_backend, read_scene(save_scene(snapshot(first), tmp_path / "s.safetensors")), 2)]
    for got, want in zip(tail, whole[3:]):
        assert got["index"] == want["index"]
        assert got["state_delta"] == pytest.approx(want["state_delta"])  # the anchor latent came along
        assert got["anchor_attention_share"] == pytest.approx(want["anchor_attention_share"])


def test_a_switch_mid_stream_is_the_same_before_and_after_a_resume(test_backend, tmp_path):
    schedule = {3: "a desert at dusk"}
    whole = frames_of(ChunkStream(test_backend, "hills", StreamSettings(chunks=5, seed=1), prompt_schedule=schedule))
    first = ChunkStream(test_backend, "hills", StreamSettings(chunks=2, seed=1))
    head = frames_of(first)
    tail = frames_of(resume_stream(test_backend, read_scene(save_scene(snapshot(first), tmp_path / "s.safetensors")),
                                   3, prompt_schedule=schedule))
    for got, want in zip(head + tail, whole):
        np.testing.assert_array_equal(got, want)


def count_text_encodings(monkeypatch, model):
    calls = []
    original = model.encode_text
    monkeypatch.setattr(model, "encode_text", lambda states: calls.append(1) or original(states))
    return calls


@pytest.mark.parametrize("recache", [False, True])
def test_prompt_at_records_the_prompt_and_encodes_it_once_per_switch(test_backend, monkeypatch, recache):
    calls = count_text_encodings(monkeypatch, test_backend.transformer)
    schedule = {2: "a desert at dusk", 4: "snowy hills at noon", 5: "snowy hills at noon"}
    stream = ChunkStream(test_backend, "hills", StreamSettings(chunks=7, seed=0), prompt_schedule=schedule,
                         recache_on_switch=recache)
    records = [r.record() for r in stream]
    assert [r["prompt"] for r in records] == ["hills"] * 2 + ["a desert at dusk"] * 2 + ["snowy hills at noon"] * 3
    assert [r["switched"] for r in records] == [False, False, True, False, True, False, False]
    assert len(calls) == 3  # the first prompt and two switches (switching to the prompt in force is no switch)
    assert all(r["timings"]["switch"] >= 0 for r in records)


def test_a_switch_changes_what_follows_and_recache_rewrites_the_window(test_backend):
    def run(schedule, recache):
        stream = ChunkStream(test_backend, "hills", StreamSettings(chunks=4, seed=0, window_chunks=2),
                             prompt_schedule=schedule, recache_on_switch=recache)
        frames = frames_of(stream)
        return frames, stream

    plain, _ = run({}, False)
    switched, _ = run({2: "a desert at dusk"}, False)
    recached, _ = run({2: "a desert at dusk"}, True)
    for i in range(2):  # nothing changes before the switch
        np.testing.assert_array_equal(switched[i], plain[i])
        np.testing.assert_array_equal(recached[i], plain[i])
    assert not np.array_equal(switched[2], plain[2])
    assert not np.array_equal(recached[2], switched[2])  # the rewritten window speaks for the new prompt


def test_recache_keeps_the_anchor_slot_and_rewrites_each_window_chunk_under_the_new_prompt(test_backend):
    stream = ChunkStream(test_backend, "hills", StreamSettings(chunks=3, seed=0, window_chunks=2))
    list(stream)
    before = stream.cache.tensors()
    stream._apply_switch("a desert at dusk", recache=True)
    after = stream.cache.tensors()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("anchor."))
    # layer 0's keys come from the latents alone (its self-attention precedes any cross-attention),
    # so re-caching reproduces them exactly; deeper layers have seen the new prompt
    window = [k for k in before if k.startswith("window.")]
    assert all(torch.equal(before[k], after[k]) for k in window if k.startswith("window.0."))
    assert all(not torch.equal(before[k], after[k]) for k in window if not k.startswith("window.0."))


def test_state_transplant_starts_a_new_video_from_the_saved_state(test_backend, tmp_path):
    donor = ChunkStream(test_backend, "snowy hills", StreamSettings(chunks=3, seed=4))
    list(donor)
    scene = read_scene(save_scene(snapshot(donor), tmp_path / "s.safetensors"))
    transplant = resume_stream(test_backend, scene, 2, prompt="a desert at dusk", state_only=True, seed=9)
    assert transplant.index == 0 and transplant.prompt == "a desert at dusk" and transplant.settings.seed == 9
    assert transplant.cache.cached_frames() == 1  # the anchor slot only, window empty
    assert torch.equal(transplant.cache.anchor_kv()[0].cpu(), donor.cache.anchor_kv()[0].cpu())
    fresh = frames_of(ChunkStream(test_backend, "a desert at dusk", StreamSettings(chunks=2, seed=9)))
    carried = frames_of(transplant)
    assert len(carried) == 2
    assert not np.array_equal(carried[0], fresh[0])  # chunk 0 already sees the donor's state


def test_nothing_to_save_before_the_first_chunk(test_backend):
    with pytest.raises(SceneError, match="nothing to save yet"):
        snapshot(ChunkStream(test_backend, "hills", StreamSettings(chunks=2)))


@pytest.fixture
def saved(test_backend, tmp_path):
    stream = ChunkStream(test_backend, "hills", StreamSettings(chunks=2, seed=3))
    list(stream)
    return save_scene(snapshot(stream), tmp_path / "scene.safetensors")


def test_bad_scene_files_are_refused_clearly(saved, tmp_path):
    renamed = tmp_path / "pickle.safetensors"
    renamed.write_bytes(pickle.dumps({"anchor": [0.0]}))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(saved.read_bytes()[:-64])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 100)
    weights = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(3)}, weights)
    cases = [(tmp_path / "missing.safetensors", "scene file not found"),
             (renamed, "not a safetensors file (it is a Python pickle"),
             (corrupt, "corrupt"), (garbage, "not a safetensors file"),
             (weights, "not an AdaState scene file")]
    for path, message in cases:
        with pytest.raises(SceneError, match=message.replace("(", r"\(")):
            read_scene(path)


def test_a_scene_from_another_model_is_refused(saved, test_backend, tmp_path):
    from adastate.backends import Backend
    from adastate.model import CausalWanTransformer
    from conftest import TEST_CONFIG

    scene = read_scene(saved)
    other_config = CausalWanTransformer(**{**TEST_CONFIG, "num_layers": 3}).eval()
    other = Backend(**{**test_backend.__dict__, "transformer": other_config})
    with pytest.raises(SceneError, match="different configuration"):
        resume_stream(other, scene, 2)
    torch.manual_seed(99)
    other_weights = Backend(**{**test_backend.__dict__, "transformer": CausalWanTransformer(**TEST_CONFIG).eval()})
    with pytest.raises(SceneError, match="different weights"):
        resume_stream(other_weights, scene, 2)


def rewritten(path, tmp_path, meta=None, tensors=None, raw=None):
    """A copy of the scene at `path` whose header is `meta` (or the raw string `raw`) and whose
    tensors are `tensors` (default: the original's)."""
    with safe_open(str(path), "pt") as f:
        original = json.loads(f.metadata()[METADATA_KEY])
    out = tmp_path / "edited.safetensors"
    header = raw if raw is not None else json.dumps(original if meta is None else meta(original))
    save_file(load_file(path) if tensors is None else tensors(load_file(path)), out, metadata={METADATA_KEY: header})
    return out


def edit(change):
    """A header edit: `change(header)` changes a copy in place."""
    def edited(header):
        header = json.loads(json.dumps(header))
        change(header)
        return header
    return edited


def set_setting(key, value):
    return edit(lambda h: h["settings"].__setitem__(key, value))


def set_field(key, value):
    return edit(lambda h: h.__setitem__(key, value))


DEMO_LIMITS = SceneLimits(max_steps=8, max_window=4)


@pytest.mark.parametrize("meta, raw, message", [
    (set_setting("denoising_steps", list(timesteps(50))), None, "asks for 50 denoising steps per chunk; at most 8 here"),
    (set_setting("window_chunks", 16), None, "keeps a window of 16 chunks; at most 4 here"),
    (set_setting("chunk_frames", 16), None, "the scene's chunks are 16 latent frames with a 1-frame state; this model "
                                            "makes 3"),
    (set_setting("denoising_steps", [250, 500]), None, "must decrease strictly"),
    (set_setting("shift", float("nan")), None, "the shift must be a positive number, got nan"),
    (set_field("index", 100000), None, "the chunk index must be a whole number from 1 to 99999, got 100000"),
    (set_field("index", "5"), None, "'index' in the header must be a whole number, got '5'"),
    (set_field("seed", -1), None, "the seed must be a whole number from 0"),
    (set_field("prompt", "x" * 5000), None, "the scene's prompt: the prompt is 5000 characters long; the limit is 2000"),
    (set_field("anchor", "sideways"), None, "unknown anchor mode 'sideways'"),
    (set_field("decoder", "x"), None, "'decoder' in the header must be an object, got 'x'"),
    (edit(lambda h: h.pop("settings")), None, "the header has no 'settings'"),
    (None, "[1, 2, 3]", "the scene header must be a JSON object, got list"),
    (None, "{not json", "its scene description is not JSON"),
])
def test_an_edited_header_is_refused_with_a_specific_line(saved, tmp_path, meta, raw, message):
    with pytest.raises(SceneError) as refused:
        read_scene(rewritten(saved, tmp_path, meta=meta, raw=raw), DEMO_LIMITS)
    text = str(refused.value)
    assert message in text, text
    assert text.startswith("edited.safetensors: ") and "\n" not in text and str(tmp_path) not in text


def test_the_limits_are_the_readers(saved, tmp_path):
    """The CLI continues its own files: more steps and a wider window than the demo allows."""
    wide = rewritten(saved, tmp_path, meta=set_setting("window_chunks", 8))
    assert read_scene(wide).meta["settings"]["window_chunks"] == 8
    with pytest.raises(SceneError, match="at most 4 here"):
        read_scene(wide, DEMO_LIMITS)


def with_tensor(name, value):
    return lambda tensors: {**tensors, name: value}


@pytest.mark.parametrize("tensors, message", [
    (with_tensor("anchor_latent", torch.zeros(2, 2)), "tensor 'anchor_latent' has shape [2, 2], this model writes "
                                                      "[4, 1, 4, 6]"),
    (with_tensor("cache.anchor.0.key", torch.zeros(1, 6, 2, 24, dtype=torch.int64)),
     "tensor 'cache.anchor.0.key' is torch.int64, this model writes torch.float32"),
    (with_tensor("extra", torch.zeros(1)), "unexpected tensor 'extra'"),
    (lambda tensors: {k: v for k, v in tensors.items() if k != "cache.window.1.0.value"},
     "tensor 'cache.window.1.0.value' is missing"),
])
def test_tensors_must_be_what_the_model_writes(saved, test_backend, tmp_path, tensors, message):
    scene = read_scene(rewritten(saved, tmp_path, tensors=tensors), DEMO_LIMITS)
    with pytest.raises(SceneError) as refused:
        resume_stream(test_backend, scene, 1)
    assert str(refused.value) == f"edited.safetensors: {message}"


def test_non_finite_values_are_refused(saved, tmp_path):
    nan_anchor = with_tensor("anchor_latent", torch.full((4, 1, 4, 6), float("nan")))
    with pytest.raises(SceneError, match="tensor 'anchor_latent' holds values that are not finite"):
        read_scene(rewritten(saved, tmp_path, tensors=nan_anchor))


def test_a_resume_past_the_chunk_limit_says_so(saved, test_backend, tmp_path):
    late = read_scene(rewritten(saved, tmp_path, meta=set_field("index", 99_999)))
    with pytest.raises(SceneError, match="it is at chunk 99999; 2 more would pass the limit of 100000"):
        resume_stream(test_backend, late, 2)
