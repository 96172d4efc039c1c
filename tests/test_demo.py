"""The demo's library side: input checking, the generators behind /generate and /compare, pictures."""

import numpy as np
import pytest
import torch

from adastate.demo import Backends, compare_updates, generate_updates, settings_from_inputs, timesteps
from adastate.video import read_video
from adastate.viz import chunk_plots, projection, state_colors, state_peek, summary_rows


class FixedBackends(Backends):
    def __init__(self, backend):
        super().__init__()
        self.loaded = {"adaptive": backend, "static": backend}


def test_settings_from_widget_values():
    s = settings_from_inputs(3.0, "5", "static", 2, 2)
    assert (s.seed, s.chunks, s.anchor, s.window_chunks, s.denoising_steps) == (3, 5, "static", 2, (1000.0, 500.0))
    assert timesteps(4) == (1000.0, 750.0, 500.0, 250.0)
    for args, message in [((0, 0, "adaptive"), "chunks"), ((0, 10**6, "adaptive"), "chunks"),
                          ((0, 2.5, "adaptive"), "chunks"), ((-1, 2, "adaptive"), "seed"),
                          ((0, 2, "sideways"), "anchor"), ((0, 2, "adaptive", 0), "steps"),
                          ((0, 2, "adaptive", 4, 99), "window"), (("x", 2, "adaptive"), "seed")]:
        with pytest.raises(ValueError, match=message):
            settings_from_inputs(*args)


def test_generate_streams_chunks_then_the_finished_video(test_backend):
    updates = list(generate_updates(FixedBackends(test_backend), "hills", 0, 3, "adaptive"))
    assert len(updates) == 4
    assert [len(u.records) for u, _ in updates] == [1, 2, 3, 3]
    assert all(u.video is None for u, _ in updates[:-1]) and updates[-1][0].segment is None
    assert "chunk 3 / 3" in updates[-1][1] and "done" in updates[-1][1]
    # the files were removed when the generator finished (the app copies them as they are yielded)
    assert not any(__import__("os").path.exists(p) for p in [updates[0][0].segment, updates[-1][0].video])


def test_cancelled_generation_closes_and_cleans_up(test_backend, tmp_path):
    updates = generate_updates(FixedBackends(test_backend), "hills", 0, 50, "static")
    first, _ = next(updates)
    segment_frames, _, codec = read_video(first.segment)
    assert codec == "h264" and segment_frames.shape[0] == 3 * test_backend.frames_per_latent
    folder = __import__("pathlib").Path(first.segment).parent
    updates.close()  # what Gradio does when the visitor presses stop
    assert not folder.exists()


def test_compare_steps_both_modes_in_lockstep(test_backend):
    steps = list(compare_updates(FixedBackends(test_backend), "hills", 1, 2))
    assert len(steps) == 3
    for updates, _ in steps[:-1]:
        assert set(updates) == {"adaptive", "static"}
        assert len(updates["adaptive"].records) == len(updates["static"].records)
    last = steps[-1][0]
    assert last["adaptive"].records[-1]["anchor_attention_share"] != last["static"].records[-1]["anchor_attention_share"]
    assert [row[0] for row in summary_rows({m: u.records for m, u in last.items()})] == ["adaptive", "static"]


def test_state_pictures_are_stable_and_deterministic(test_backend):
    latent = torch.randn(4, 1, 4, 6, generator=torch.Generator().manual_seed(0))
    image = state_colors(latent)
    assert image.dtype == np.uint8 and image.shape[2] == 3 and image.shape[0] >= 4 * 16
    assert np.array_equal(image, state_colors(latent.clone()))  # same state, same colours
    assert not np.array_equal(image, state_colors(latent + 0.5))
    p = projection(8)
    assert np.allclose(p @ p.T, np.eye(3), atol=1e-6) and np.array_equal(p, projection(8))
    peek = state_peek(test_backend.vae, latent)
    assert peek.dtype == np.uint8 and peek.ndim == 3


def test_chunk_plots_overlay_modes():
    rows = [{"index": i, "motion": 0.1 * i, "anchor_attention_share": 0.2, "state_delta": None if i == 0 else 0.3}
            for i in range(4)]
    figure = chunk_plots({"adaptive": rows, "static": rows})
    assert len(figure.axes) == 3 and all(len(ax.lines) == 2 for ax in figure.axes)


def test_switch_and_save_reach_the_sessions_own_stream(test_backend, tmp_path):
    from adastate.demo import LiveStreams, resume_updates
    from adastate.scene import read_scene

    live = LiveStreams()
    with pytest.raises(ValueError, match="generate first"):
        live.switch("visitor", "dunes")
    updates = generate_updates(FixedBackends(test_backend), "hills", 0, 4, "adaptive", live=live, key="visitor")
    next(updates)
    assert "from chunk 2 on" in live.switch("visitor", "desert dunes at dusk")
    with pytest.raises(ValueError, match="generate first"):
        live.save("someone else")
    rest = list(updates)
    records = rest[-1][0].records
    assert [r["prompt"] for r in records] == ["hills"] + ["desert dunes at dusk"] * 3
    assert "prompt: “desert dunes at dusk”" in rest[-1][1]

    scene = read_scene(live.save("visitor", tmp_path))  # after the run ended: the stream stays saveable
    assert (scene.index, scene.meta["prompt"]) == (4, "desert dunes at dusk")
    more = list(resume_updates(FixedBackends(test_backend), live.save("visitor", tmp_path), "", 0, 2))
    assert [r["index"] for r in more[-1][0].records] == [4, 5] and "chunk 2 / 2" in more[-1][1]
    live.end("visitor")
    with pytest.raises(ValueError, match="generate first"):
        live.save("visitor")


def test_endless_mode_streams_until_cancelled(test_backend):
    from adastate import demo

    updates = generate_updates(FixedBackends(test_backend), "hills", 0, 1, "static", endless=True)
    for _ in range(5):  # more than the `chunks` it was given
        update, status = next(updates)
    assert len(update.records) == 5 and "chunk 5 / endless" in status
    folder = __import__("pathlib").Path(update.segment).parent
    assert len(list(folder.glob("static-*.mp4"))) <= 3  # old segments are removed as it goes
    updates.close()
    assert demo.ENDLESS_CHUNKS >= 100


def test_resume_rejects_bad_uploads(test_backend, tmp_path):
    from adastate.demo import resume_updates

    renamed = tmp_path / "scene.safetensors"
    renamed.write_bytes(b"\x80\x04pickle")
    for scene, message in [(None, "upload a scene file"), (str(renamed), "it is a Python pickle")]:
        with pytest.raises(ValueError, match=message):
            next(resume_updates(FixedBackends(test_backend), scene, "", 0, 2))


def test_chunk_plots_mark_prompt_switches():
    rows = [{"index": i, "motion": 0.1, "anchor_attention_share": 0.2, "state_delta": 0.1, "switched": i == 2}
            for i in range(4)]
    figure = chunk_plots({"adaptive": rows})
    assert all(sum(line.get_linestyle() == ":" for line in ax.lines) == 1 for ax in figure.axes)


def test_plots_are_redrawn_at_most_once_per_interval_and_at_the_end(test_backend, monkeypatch):
    from adastate import demo

    monkeypatch.setattr(demo, "PLOT_INTERVAL", 3600.0)
    updates = [u for u, _ in generate_updates(FixedBackends(test_backend), "hills", 0, 4, "adaptive")]
    assert [u.replot for u in updates] == [True, False, False, False, True]
    monkeypatch.setattr(demo, "PLOT_INTERVAL", 0.0)
    updates = [u for u, _ in compare_updates(FixedBackends(test_backend), "hills", 0, 2)]
    assert all(u.replot for step in updates for u in step.values())


def test_only_the_most_recent_sessions_keep_their_streams(test_backend):
    from adastate.demo import LiveStreams

    live = LiveStreams(capacity=2)
    for key in ("a", "b", "a", "c"):  # "a" started again: "b" is now the oldest
        list(generate_updates(FixedBackends(test_backend), "hills", 0, 1, "static", live=live, key=key))
    assert list(live.sessions) == ["a", "c"]
    with pytest.raises(ValueError, match="generate first"):
        live.save("b")
