"""The demo's library side: input checking, the generators behind /generate and /compare, pictures."""

import gc
import re
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adastate import demo
from adastate.demo import (Backends, FairSlots, Scheduler, Visitors, compare_updates, computed_ahead, generate_updates,
                           resume_updates, settings_from_inputs, timesteps)
from adastate.scene import read_scene
from adastate.video import read_video
from adastate.viz import chunk_plots, projection, state_colors, state_peek, summary_rows, verdict


class FixedBackends(Backends):
    def __init__(self, backend):
        super().__init__()
        self.loaded = {"adaptive": backend, "static": backend}


def test_warm_up_loads_every_mode_in_the_background(monkeypatch, test_backend):
    loading = []

    def load(anchor):
        loading.append(anchor)
        time.sleep(0.2)
        return test_backend

    backends = Backends()
    monkeypatch.setattr(backends, "_load", load)
    thread = backends.warm_up()
    assert thread.is_alive()  # the caller (the server's start) does not wait
    thread.join(timeout=60)
    assert loading == list(demo.ANCHOR_MODES) and set(backends.loaded) == set(demo.ANCHOR_MODES)
    assert backends.get("static") is test_backend and loading == list(demo.ANCHOR_MODES)  # not loaded again
    assert Backends("wan").warm_up() is None  # loads on first use, where the request has its GPU


def test_settings_from_widget_values():
    s = settings_from_inputs(3.0, "5", "static", 2, 2)
    assert (s.seed, s.chunks, s.anchor, s.window_chunks, s.denoising_steps) == (3, 5, "static", 2, (1000.0, 500.0))
    assert timesteps(4) == (1000.0, 750.0, 500.0, 250.0)
    for args, message in [((0, 0, "adaptive"), "chunks must be a whole number from 1 to"),
                          ((0, 10**6, "adaptive"), "chunks must be a whole number"),
                          ((0, 2.5, "adaptive"), "chunks must be a whole number"),
                          ((0, "abc", "adaptive"), "chunks must be a number, got 'abc'"),
                          ((0, "NaN", "adaptive"), "chunks must be a whole number from 1 to 120, got 'NaN'"),
                          ((0, float("inf"), "adaptive"), "chunks must be a whole number"),
                          ((0, True, "adaptive"), "chunks must be a number, got True"),
                          ((0, None, "adaptive"), "chunks must be a number, got None"),
                          ((0, [2], "adaptive"), "chunks must be a number, got [2]"),
                          ((-1, 2, "adaptive"), "seed must be a whole number"),
                          (("x", 2, "adaptive"), "seed must be a number, got 'x'"),
                          ((0, 2, "sideways"), "unknown anchor mode 'sideways'"),
                          ((0, 2, ["adaptive"]), "unknown anchor mode ['adaptive']"),
                          ((0, 2, "adaptive", 0), "denoising steps must be a whole number from 1 to 8"),
                          ((0, 2, "adaptive", 4, 99), "window must be a whole number from 1 to 4")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            settings_from_inputs(*args)


@pytest.mark.parametrize("call, message", [
    (lambda b: generate_updates(b, 5, 0, 2, "adaptive"), "the prompt must be text, got 5"),
    (lambda b: generate_updates(b, "hills", 0, 2, "adaptive", 4, 1, "yes"), "endless must be true or false, got 'yes'"),
    (lambda b: generate_updates(b, "x" * 3000, 0, 2, "adaptive"), "the prompt is 3000 characters long"),
    (lambda b: compare_updates(b, "hills", 0, "many"), "chunks must be a number, got 'many'"),
    (lambda b: resume_updates(b, None, "", 0, 2), "upload a scene file"),
    (lambda b: resume_updates(b, {"name": "x"}, "", 0, 2), "the scene file must be an uploaded file, got {'name': 'x'}"),
    (lambda b: resume_updates(b, 7, "", 0, 2), "the scene file must be an uploaded file, got 7"),
])
def test_every_malformed_argument_is_named(test_backend, call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        next(call(FixedBackends(test_backend)))


def test_generate_streams_chunks_then_the_finished_video(test_backend):
    updates = list(generate_updates(FixedBackends(test_backend), "hills", 0, 3, "adaptive"))
    assert len(updates) == 4
    assert [len(u.records) for u, _ in updates] == [1, 2, 3, 3]
    assert all(u.video is None for u, _ in updates[:-1]) and updates[-1][0].segment is None
    assert "chunk 3 / 3" in updates[-1][1] and "done" in updates[-1][1]
    # the video starts once the pace is known (the second chunk: this backend is fast)
    assert [u.segment is not None for u, _ in updates] == [False, True, True, False]
    # a run of no session: its files were removed when the generator finished
    assert not any(Path(p).exists() for p in [updates[1][0].segment, updates[-1][0].video])


def test_segments_hold_at_least_segment_seconds(test_backend, monkeypatch):
    """Gradio's cost is per segment: short chunks are streamed two or more at a time, from the
    moment the pace is known (two chunks); every chunk still updates the pictures, and the
    segments add up to the finished video."""
    monkeypatch.setattr(demo, "SEGMENT_SECONDS", 2 * 3 * test_backend.frames_per_latent / test_backend.fps)
    streamed, states = [], set()
    for update, _ in generate_updates(FixedBackends(test_backend), "hills", 0, 6, "adaptive"):
        states.add(Path(update.state).read_bytes() if update.video is None else None)
        if update.segment:
            streamed.append(read_video(update.segment)[0])
        elif update.video:
            finished = read_video(update.video)[0]
    chunk = 3 * test_backend.frames_per_latent
    assert [len(frames) for frames in streamed] == [2 * chunk, 2 * chunk, 2 * chunk]  # 0 1 | 2 3 | 4 5
    assert len(states - {None}) == 6
    assert np.abs(np.concatenate(streamed).astype(int) - finished.astype(int)).mean() < 3  # same frames, re-encoded


def test_a_continued_scene_starts_its_video_as_a_new_run_does(test_backend, visitors, monkeypatch):
    """A run that continues a scene (its chunk index does not start at 0) starts its video once
    its own pace is known, at its own second chunk."""
    monkeypatch.setattr(demo, "SEGMENT_SECONDS", 2 * 3 * test_backend.frames_per_latent / test_backend.fps)
    backends = FixedBackends(test_backend)
    list(generate_updates(backends, "hills", 0, 2, "adaptive", visitors=visitors, key="v"))
    continued = resume_updates(backends, visitors.save("v"), "", 0, 3, False, visitors, "v")
    first, _ = next(continued)
    assert first.records[-1]["index"] == 2 and first.segment is None and first.held_seconds > 0
    second, _ = next(continued)
    assert second.records[-1]["index"] == 3 and second.segment is not None
    list(continued)


def test_cancelled_generation_closes_and_cleans_up(test_backend, tmp_path):
    updates = generate_updates(FixedBackends(test_backend), "hills", 0, 50, "static")
    first = next(u for u, _ in updates if u.segment)
    segment_frames, _, codec = read_video(first.segment)
    assert codec == "h264" and segment_frames.shape[0] == 2 * 3 * test_backend.frames_per_latent
    folder = Path(first.segment).parent
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


def test_computed_ahead_runs_one_item_ahead_of_the_consumer_never_more():
    log = []

    def items():
        for k in range(5):
            log.append(f"start {k}")
            time.sleep(0.01)
            yield k

    out = []
    for k in computed_ahead(items()):
        time.sleep(0.1)  # the consumer is slow: the producer would run far ahead if it could
        log.append(f"done {k}")
        out.append(k)
    assert out == [0, 1, 2, 3, 4]
    for k in range(2, 5):  # item k starts only after the consumer is done with item k - 2
        assert log.index(f"start {k}") > log.index(f"done {k - 2}")
    assert log.index("start 1") < log.index("done 0")  # and item 1 overlaps the consumer's work on item 0


def test_computed_ahead_hands_errors_over_and_stops_with_its_consumer():
    def failing():
        yield 1
        raise ValueError("bad chunk")

    with pytest.raises(ValueError, match="bad chunk"):
        list(computed_ahead(failing()))
    started = []

    def endless():
        for k in range(1000):
            started.append(k)
            yield k

    ahead = computed_ahead(endless())
    assert next(ahead) == 0
    ahead.close()  # returns once the item in progress is done, and no further item starts
    count = len(started)
    time.sleep(0.05)
    assert count <= 2 and len(started) == count


def test_a_cancelled_comparison_cleans_up(test_backend):
    updates = compare_updates(FixedBackends(test_backend), "hills", 0, 50)
    first = next(u for u, _ in updates if u["adaptive"].segment)
    folder = Path(first["adaptive"].segment).parent
    assert Path(first["static"].segment).exists()
    updates.close()
    assert not folder.exists()


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def first_start(chunks: int, pace: float, chunk_seconds: float, **kwargs) -> int | None:
    """After how many chunks a PlaybackStart starts when chunks take `pace` seconds each."""
    clock = Clock()
    start = demo.PlaybackStart(chunks, clock=clock, **kwargs)
    for done in range(1, chunks + 1):
        clock.now = done * pace
        if start.ready(done, chunk_seconds) and start.ready(done, chunk_seconds):  # both runs ask
            return done


@pytest.mark.parametrize("pace", [0.2, 0.5, 0.67, 1.0])
def test_playback_starts_when_the_rest_of_the_run_arrives_in_time(pace):
    """Chunks made at a steady pace: the players start at the first moment from which every later
    chunk is on screen (its segment filled and delivered) before the player reaches it — not later."""
    chunks, chunk_seconds = 16, 0.375

    def stalls_if_started_after(done, pace):
        return any((j - done + 2) * pace + demo.DELIVERY_SECONDS > j * chunk_seconds for j in range(done, chunks))

    done = first_start(chunks, pace, chunk_seconds)
    assert done >= 2  # the pace needs two chunks
    assert not stalls_if_started_after(done, pace)
    assert done == 2 or stalls_if_started_after(done - 1, pace * demo.PACE_MARGIN)  # the pace with its margin
    if pace > chunk_seconds:  # slower than playback: it holds a share of the run that grows with the pace
        assert done > 2 and first_start(chunks, pace + 0.2, chunk_seconds) > done


def test_playback_starts_after_at_most_the_longest_buffer_and_on_the_last_chunk():
    assert first_start(2000, 1.0, 0.375, most_seconds=6.0) == 16  # endless and slow: 6 s of video held, then start
    assert first_start(1, 10.0, 0.375) == 1
    assert first_start(3, 10.0, 0.375) == 3


def test_a_comparison_buffers_before_it_plays_and_streams_the_whole_video(test_backend, monkeypatch):
    """Slower than playback, a comparison holds its video back (the status says so) and then
    streams all of it, both players from the same chunk."""
    monkeypatch.setattr(demo, "DELIVERY_SECONDS", 60.0)  # a slow machine: start only on the last chunk
    steps, streamed, finished = [], {}, {}
    for updates, status in compare_updates(FixedBackends(test_backend), "hills", 0, 4):
        steps.append((updates, status))
        for mode, update in updates.items():
            if update.segment:
                streamed.setdefault(mode, []).append(read_video(update.segment)[0])
            if update.video:
                finished[mode] = read_video(update.video)[0]
    assert "buffering" in steps[0][1] and steps[0][0]["adaptive"].held_seconds > 0
    assert [updates["adaptive"].segment is None for updates, _ in steps[:3]] == [True] * 3
    for mode in ("adaptive", "static"):
        assert [len(frames) for frames in streamed[mode]] == [4 * 3 * test_backend.frames_per_latent]
        assert np.abs(streamed[mode][0].astype(int) - finished[mode].astype(int)).mean() < 3
    assert "buffering" not in steps[-1][1]


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


@pytest.fixture
def visitors(tmp_path):
    return Visitors(tmp_path / "cache" / "adastate", uploads=tmp_path / "cache")


def test_switch_and_save_reach_the_sessions_own_stream(test_backend, visitors):
    with pytest.raises(ValueError, match="nothing is streaming in this session"):
        visitors.switch("visitor", "dunes", True)
    with pytest.raises(ValueError, match="nothing to save in this session: generate first"):
        visitors.save("visitor")
    updates = generate_updates(FixedBackends(test_backend), "hills", 0, 4, "adaptive", visitors=visitors, key="visitor")
    next(updates)
    # chunk 2 is computed while chunk 1 is shown: the switch applies from chunk 2 or, if chunk 2 has
    # started, from chunk 3 — and says which
    said = visitors.switch("visitor", "desert dunes at dusk", True)
    first = int(re.search(r"from chunk (\d) on", said).group(1))
    assert first in (2, 3)
    with pytest.raises(ValueError, match="generate first"):
        visitors.save("someone else")
    rest = list(updates)
    records = rest[-1][0].records
    assert [r["prompt"] for r in records] == ["hills"] * (first - 1) + ["desert dunes at dusk"] * (5 - first)
    assert "prompt: “desert dunes at dusk”" in rest[-1][1]

    with pytest.raises(ValueError, match="nothing is streaming in this session"):  # the stream has ended
        visitors.switch("visitor", "snowy hills", True)
    scene = read_scene(visitors.save("visitor"))  # where it ended is kept, on the CPU
    assert (scene.index, scene.meta["prompt"]) == (4, "desert dunes at dusk")
    more = list(resume_updates(FixedBackends(test_backend), visitors.save("visitor"), "", 0, 2, False, visitors,
                               "visitor"))
    assert [r["index"] for r in more[-1][0].records] == [4, 5] and "chunk 2 / 2" in more[-1][1]
    visitors.end("visitor")
    with pytest.raises(ValueError, match="generate first"):
        visitors.save("visitor")


@pytest.mark.parametrize("anchor", ["adaptive", "static"])
@pytest.mark.parametrize("chunks, window", [(1, 1), (2, 1)])  # the window not yet full / full
def test_save_after_a_short_run(test_backend, visitors, anchor, chunks, window):
    """Regression: static runs of chunks <= window crashed /save_scene (tensors sharing memory)."""
    list(generate_updates(FixedBackends(test_backend), "hills", 5, chunks, anchor, 4, window, False, visitors, "v"))
    assert read_scene(visitors.save("v")).index == chunks


def files_of(visitors):
    return sorted(str(p.relative_to(visitors.root)).split("/", 1)[1] for p in visitors.root.rglob("*") if p.is_file())


def test_a_session_keeps_one_video_and_one_scene_file_until_it_ends(test_backend, visitors):
    backends = FixedBackends(test_backend)
    list(generate_updates(backends, "hills", 0, 2, "static", visitors=visitors, key="v"))
    first = Path(visitors.save("v"))
    list(generate_updates(backends, "hills", 0, 3, "adaptive", visitors=visitors, key="v"))
    second = Path(visitors.save("v"))
    assert not first.exists() and second.exists()
    pictures = [f"run-2/adaptive-{i:05d}-{kind}.webp" for i in range(3) for kind in ("peek", "state")]
    assert files_of(visitors) == pictures + ["run-2/adaptive.mp4", "scene-adaptive-chunk00003.safetensors"]
    visitors.end("v")  # the browser tab closed
    assert list(visitors.root.iterdir()) == []


def test_idle_sessions_go_and_kept_scenes_fit_the_memory_budget(test_backend, tmp_path):
    now = [0.0]
    scene_bytes = None
    visitors = Visitors(tmp_path / "sessions", idle_seconds=600, clock=lambda: now[0])
    backends = FixedBackends(test_backend)
    for key in ("a", "b", "c"):
        list(generate_updates(backends, "hills", 0, 1, "static", visitors=visitors, key=key))
        scene_bytes = visitors.kept_scene_bytes()
        now[0] += 10
    visitors.memory_budget = 2.5 * scene_bytes / 3  # room for two of the three scenes
    visitors.sweep()
    with pytest.raises(ValueError, match="dropped from memory to make room for others"):
        visitors.save("a")  # the least recently used
    assert visitors.save("b") and visitors.save("c")
    now[0] += 605  # "b" and "c" were seen at 10 and 20 (their saves at 30): all idle for > 600 s now
    visitors.sweep()
    assert visitors.visits == {} and list(visitors.root.iterdir()) == []


def test_an_ended_stream_leaves_a_cpu_scene_and_nothing_else(test_backend, visitors):
    """Idle sessions hold no model state on the device: the stream (its KV cache) goes when the run
    ends; what stays for /save_scene is a CPU copy."""
    updates = generate_updates(FixedBackends(test_backend), "hills", 0, 2, "static", visitors=visitors, key="v")
    next(updates)
    stream = weakref.ref(visitors.visits["v"].running.run.stream)
    list(updates)
    gc.collect()
    visit = visitors.visits["v"]
    assert stream() is None and visit.running is None
    assert all(t.device.type == "cpu" for t in visit.scene.tensors.values()) and visit.scene.index == 2


def test_a_visitor_runs_one_stream_at_a_time(test_backend, visitors):
    backends = FixedBackends(test_backend)
    older = generate_updates(backends, "hills", 0, 50, "adaptive", visitors=visitors, key="v")
    next(older)
    newer = generate_updates(backends, "dunes", 0, 3, "adaptive", visitors=visitors, key="v")
    next(newer)
    last, status = list(older)[-1]
    # it stops after the chunk in progress: the one shown, or the one computed ahead of it
    assert "stopped: a newer run started in this session" in status and len(last.records) in (1, 2)
    assert last.video is not None  # what it made before it stopped plays
    assert [u.records[-1]["prompt"] for u, _ in newer][-1] == "dunes"
    assert visitors.scheduler.places.free == demo.MAX_STREAMS


def test_fair_slots_serve_in_order():
    slots = FairSlots(1)
    first = slots.request()
    second = slots.request()
    assert slots.wait(first, 0) and not slots.wait(second, 0) and slots.waiting() == 1
    slots.release(first)
    again = slots.request()  # who asks again queues behind who was waiting
    assert slots.wait(second, 0) and not slots.wait(again, 0)
    slots.release(again)  # giving up a place in line
    slots.release(second)
    assert slots.waiting() == 0 and slots.free == 1


def test_an_endless_run_makes_room_for_a_waiting_visitor(test_backend, tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "WAIT_POLL", 0.01)
    visitors = Visitors(tmp_path, Scheduler(places=2, slots=1, max_waiting=1))
    backends = FixedBackends(test_backend)
    endless = [generate_updates(backends, "hills", 0, 1, "static", 4, 1, True, visitors, key) for key in "ab"]
    for run in endless:
        next(run)
    newcomer = generate_updates(backends, "dunes", 0, 1, "adaptive", visitors=visitors, key="c")
    update, status = next(newcomer)
    assert update is None and status == "waiting for a free place: you are next"
    with pytest.raises(ValueError, match="the demo is full: 1 visitor is waiting for a free place"):
        next(generate_updates(backends, "dunes", 0, 1, "adaptive", visitors=visitors, key="d"))
    last, status = list(endless[0])[-1]  # one endless run gives way, with its video
    assert "ended to make room for a visitor who was waiting" in status and last.video
    assert "chunk 2 / endless" in next(endless[1])[1]  # one place was needed: the other runs on
    assert "done" in list(newcomer)[-1][1]
    endless[1].close()


def test_a_comparison_that_waited_for_its_place_still_computes_ahead(test_backend, tmp_path, monkeypatch):
    """Regression: the waiting loop's count of visitors ahead overwrote the `ahead` flag."""
    monkeypatch.setattr(demo, "WAIT_POLL", 0.01)
    spied = []
    monkeypatch.setattr(demo, "computed_ahead", lambda items: spied.append(1) or computed_ahead(items))
    visitors = Visitors(tmp_path, Scheduler(places=1, slots=1, max_waiting=1))
    backends = FixedBackends(test_backend)
    holder = generate_updates(backends, "hills", 0, 1, "static", 4, 1, True, visitors, "a")
    next(holder)
    comparison = compare_updates(backends, "dunes", 0, 2, visitors=visitors, key="b")
    assert next(comparison)[1] == "waiting for a free place: you are next"
    holder.close()
    before = len(spied)
    assert "done" in list(comparison)[-1][1] and len(spied) == before + 1


def test_endless_mode_streams_until_cancelled(test_backend):

    updates = generate_updates(FixedBackends(test_backend), "hills", 0, 1, "static", endless=True)
    for _ in range(5):  # more than the `chunks` it was given
        update, status = next(updates)
    assert len(update.records) == 5 and "chunk 5 / endless" in status
    folder = __import__("pathlib").Path(update.segment).parent
    assert len(list(folder.glob("static-*.mp4"))) <= 3  # old segments are removed as it goes
    updates.close()
    assert demo.ENDLESS_CHUNKS >= 100


def test_resume_rejects_bad_uploads(test_backend, tmp_path):
    renamed = tmp_path / "scene.safetensors"
    renamed.write_bytes(b"\x80\x04pickle")
    for scene, message in [(None, "upload a scene file"), (str(renamed), "it is a Python pickle")]:
        with pytest.raises(ValueError, match=message):
            next(resume_updates(FixedBackends(test_backend), scene, "", 0, 2))
    assert renamed.exists()  # not an upload: not the demo's to remove


def test_uploads_belong_to_the_visitor_and_a_rejected_one_leaves_nothing(test_backend, visitors, tmp_path):
    backends = FixedBackends(test_backend)

    def upload(name, data):  # where Gradio puts an upload: a folder of its own in its cache
        path = visitors.uploads / name.replace(".", "-") / name
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        return {"path": str(path), "orig_name": name, "meta": {"_type": "gradio.FileData"}}

    bad = upload("bad.safetensors", b"\x80\x04pickle")
    with pytest.raises(ValueError, match="^bad.safetensors is not a safetensors file") as refused:
        next(resume_updates(backends, bad, "", 0, 1, False, visitors, "v"))
    assert str(tmp_path) not in str(refused.value)
    assert not Path(bad["path"]).parent.exists()

    list(generate_updates(backends, "hills", 0, 1, "static", visitors=visitors, key="v"))
    saved = Path(visitors.save("v"))
    good = [upload(f"good{i}.safetensors", saved.read_bytes()) for i in range(2)]
    for scene in good:
        list(resume_updates(backends, scene, "", 0, 1, False, visitors, "v"))
    assert not Path(good[0]["path"]).exists() and Path(good[1]["path"]).exists()  # one upload per session
    others = visitors.root / "another-visitor" / "scene.safetensors"  # the demo's own files are never removed
    others.parent.mkdir()
    others.write_bytes(b"\x80\x04pickle")
    with pytest.raises(ValueError, match="is not a safetensors file"):
        next(resume_updates(backends, {"path": str(others)}, "", 0, 1, False, visitors, "v"))
    assert others.exists()
    visitors.end("v")
    assert not Path(good[1]["path"]).exists()


def test_a_switch_after_the_last_chunk_is_computed_says_so(test_backend, visitors):
    updates = generate_updates(FixedBackends(test_backend), "hills", 0, 1, "adaptive", visitors=visitors, key="v")
    next(updates)  # the only chunk is computed (and shown)
    with pytest.raises(ValueError, match="all 1 chunks of this run are computed"):
        visitors.switch("v", "dunes", False)
    assert "done" in list(updates)[-1][1]


def test_prompts_show_literally_in_the_status(test_backend, visitors):
    """A prompt (typed, or from a stranger's scene file) must not become HTML or links in the status."""
    prompt = "<img src=x onerror=alert(1)> [a](http://x) *b*"
    shown = r"&lt;img src=x onerror=alert\(1\)&gt; \[a\]\(http://x\) \*b\*"
    updates = generate_updates(FixedBackends(test_backend), "hills", 0, 4, "adaptive", visitors=visitors, key="v")
    next(updates)
    assert shown in visitors.switch("v", prompt, False)  # from chunk 2 or 3 (computed ahead), of 4
    assert f"prompt: “{shown}”" in list(updates)[-1][1]


def test_chunk_plots_mark_prompt_switches():
    rows = [{"index": i, "motion": 0.1, "anchor_attention_share": 0.2, "state_delta": 0.1, "switched": i == 2}
            for i in range(4)]
    figure = chunk_plots({"adaptive": rows})
    assert all(sum(line.get_linestyle() == ":" for line in ax.lines) == 1 for ax in figure.axes)


def test_plots_are_redrawn_at_most_once_per_interval_and_at_the_end(test_backend, monkeypatch):

    monkeypatch.setattr(demo, "PLOT_INTERVAL", 3600.0)
    updates = [u for u, _ in generate_updates(FixedBackends(test_backend), "hills", 0, 4, "adaptive")]
    assert [u.replot for u in updates] == [True, False, False, False, True]
    monkeypatch.setattr(demo, "PLOT_INTERVAL", 0.0)
    updates = [u for u, _ in compare_updates(FixedBackends(test_backend), "hills", 0, 2)]
    assert all(u.replot for step in updates for u in step.values())


def test_a_comparison_grows_a_filmstrip_and_measures_revert_and_pan(test_backend, monkeypatch):
    monkeypatch.setattr(demo, "FILMSTRIP_FRAMES", 2)  # 5 chunks: a frame of chunks 0 and 3
    steps, widths = [], {"adaptive": [], "static": []}
    for updates, _ in compare_updates(FixedBackends(test_backend), "hills", 1, 5):
        steps.append(updates)
        for mode, update in updates.items():  # read as it streams: a run of no session leaves no files
            widths[mode].append(Image.open(update.filmstrip).size[0])
    frame_width = 12  # the test backend's frames: 8 x 12 pixels
    for mode in ("adaptive", "static"):
        assert widths[mode] == [frame_width] * 3 + [2 * frame_width + 2] * 3  # the last update shows the same strip
        records = steps[-1][mode].records
        assert all(-1 <= r["revert"] <= 1 and r["pan_speed"] >= 0 for r in records)
    curves = demo.curves_of(steps[-1])
    assert list(curves.columns) == ["chunk", "mode", "revert", "pan speed"] and len(curves) == 10


def test_generate_keeps_no_filmstrip(test_backend):
    assert all(u.filmstrip is None for u, _ in generate_updates(FixedBackends(test_backend), "hills", 0, 2, "static"))


def chunks_measuring(revert, pan_speed, count=5):
    return [{"index": i, "revert": 1.0 if i == 0 else revert, "pan_speed": pan_speed} for i in range(count)]


def test_the_verdict_follows_the_measurements():
    locked = verdict({"adaptive": chunks_measuring(0.40, 0.30), "static": chunks_measuring(0.85, 0.05)})
    assert locked == ("**Over chunk 4:** the static anchor still looks like its first frame (revert 0.85), the "
                      "adaptive state has moved on (0.40); pan speed 0.30 px/frame adaptive, 0.05 static.")
    reversed_roles = verdict({"adaptive": chunks_measuring(0.9, 0.1, 9), "static": chunks_measuring(0.5, 0.2, 9)})
    assert reversed_roles.startswith("**Over chunks 7–8:** the adaptive state still looks like its first frame (revert 0.90)")
    alike = verdict({"adaptive": chunks_measuring(0.61, 0.1), "static": chunks_measuring(0.63, 0.1)})
    assert "both modes look alike to their first frame (revert 0.61 adaptive, 0.63 static)" in alike
    assert verdict({"adaptive": chunks_measuring(0.5, 0.1, 1), "static": chunks_measuring(0.5, 0.1, 1)}) == \
        "the verdict needs at least two chunks of both modes"


def test_examples_come_from_the_evaluation_when_it_chose_them(tmp_path):
    fallback = [["hills", 0, 16, "adaptive"]]
    assert demo.showcase_examples(tmp_path / "missing.json", fallback) == fallback
    chosen = tmp_path / "examples.json"
    chosen.write_text('[{"prompt": "dunes at night", "seed": 3, "chunks": 40, "difference": 0.4}]')
    assert demo.showcase_examples(chosen, fallback) == [["dunes at night", 3, 40, "adaptive"]]
    chosen.write_text("{not json")
    assert demo.showcase_examples(chosen, fallback) == fallback
