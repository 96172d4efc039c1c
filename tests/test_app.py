"""The app over HTTP, as gradio_client (and so any script) uses it: named endpoints that stream."""

import os
import re
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from adastate.scene import read_scene
from adastate.video import read_video
from conftest import SHIPPED_CHUNK_FRAMES

PROMPT = "a slow pan to the right across snowy hills with pine trees"


@pytest.fixture
def url(app_url):
    return app_url


def final_video(outputs) -> np.ndarray:
    frames, _, codec = read_video(outputs[-1])
    assert codec == "h264"
    return frames


def test_generate_streams_updates_as_chunks_arrive(url):
    job = Client(url, verbose=False).submit(PROMPT, 0, 3, "adaptive", 4, 1, api_name="/generate")
    updates = list(job)
    assert len(updates) >= 3  # one per chunk, then the finished video
    assert updates[0][-1] is None and any(u[0] for u in updates[:3])
    # until the video can play to the end without stopping, it is held back, and the status says so
    assert all(u[0] or "buffering" in u[4] for u in updates[:3])
    assert "chunk 1 / 3" in updates[0][4] and "done" in updates[-1][4]
    assert final_video(updates[-1]).shape == (3 * SHIPPED_CHUNK_FRAMES, 64, 64, 3)


def test_compare_returns_both_videos(url):
    outputs = Client(url, verbose=False).predict(PROMPT, 1, 2, 4, 1, api_name="/compare")
    assert len(outputs) == 16  # the 11 outputs /compare always had, then filmstrips, curves and verdict
    adaptive, static = read_video(outputs[9])[0], read_video(outputs[10])[0]
    assert adaptive.shape == static.shape == (2 * SHIPPED_CHUNK_FRAMES, 64, 64, 3)
    assert not np.array_equal(adaptive, static)
    assert [row[0] for row in outputs[7]["data"]] == ["adaptive", "static"]
    filmstrips, revert, verdict = outputs[11:13], outputs[13], outputs[15]
    assert [np.asarray(Image.open(strip)).shape for strip in filmstrips] == [(64, 130, 3)] * 2
    assert [row[:2] for row in revert["data"]] == [[chunk, mode] for mode in ("adaptive state", "static anchor")
                                                   for chunk in (0, 1)]
    assert verdict.startswith("**Over chunk 1:**")


@pytest.mark.parametrize("args, message", [
    (("", 0, 2, "adaptive", 4, 1), "the prompt is empty"),
    ((PROMPT, 0, 0, "adaptive", 4, 1), "chunks must be a whole number from 1 to 120, got 0"),
    ((PROMPT, 0, 10**7, "adaptive", 4, 1), "chunks must be a whole number from 1 to 120, got 10000000"),
    ((PROMPT, 0, 2.5, "adaptive", 4, 1), "chunks must be a whole number from 1 to 120, got 2.5"),
    ((PROMPT, 0, "abc", "adaptive", 4, 1), "chunks must be a number, got 'abc'"),
    ((PROMPT, 0, "NaN", "adaptive", 4, 1), "chunks must be a whole number from 1 to 120, got 'NaN'"),
    ((PROMPT, 0, 2, "upside-down", 4, 1), "unknown anchor mode 'upside-down'"),
    ((PROMPT, 0, 2, "adaptive", 50, 1), "denoising steps must be a whole number from 1 to 8, got 50"),
    ((PROMPT, -3, 2, "adaptive", 4, 1), "seed must be a whole number from 0"),
    ((PROMPT, None, 2, "adaptive", 4, 1), "seed must be a number, got None"),
    ((PROMPT, 0, 2, "adaptive", 4, 1, "yes"), "endless must be true or false, got 'yes'"),
    (("x" * 5000, 0, 2, "adaptive", 4, 1), "the limit is 2000"),
])
def test_bad_input_gets_a_clear_error_and_the_app_keeps_serving(url, args, message):
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match=re.escape(message)):
        client.predict(*args, api_name="/generate")
    assert final_video(client.predict(PROMPT, 0, 1, "static", 4, 1, api_name="/generate")).shape[0] == SHIPPED_CHUNK_FRAMES


def raw_call(url, api_name, data, session=None) -> str:
    """What a client that skips gradio_client gets back: the event's last SSE message."""
    body = {"data": data, **({"session_hash": session} if session else {})}
    event = httpx.post(f"{url}gradio_api/call/{api_name}", json=body, timeout=30).json()["event_id"]
    return httpx.get(f"{url}gradio_api/call/{api_name}/{event}", timeout=120).text.strip().splitlines()[-1]


@pytest.mark.parametrize("api_name, data, message", [
    ("generate", [PROMPT, 0, 2], "didn't receive enough input values (needed: 7, got: 3)"),
    ("generate", [PROMPT, 0, 2, "adaptive", 4, 1, "1"], "endless must be true or false, got '1'"),
    ("compare", [PROMPT, 0, {"x": 1}, 4, 1], "chunks must be a number, got {'x': 1}"),
    ("resume", ["scene.safetensors", "", 0, 1, False], "1 validation error for FileData"),
    ("resume", [None, "", 0, 1, False], "upload a scene file (.safetensors)"),
    ("resume", [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, "", 0, 1, False],
     "Cannot move /etc/passwd to the gradio cache dir because it was not uploaded by a user"),
    ("switch_prompt", [7, True], "the prompt must be text, got 7"),
    ("switch_prompt", ["dunes", "no"], "re-cache must be true or false, got 'no'"),
])
def test_malformed_requests_get_a_specific_message(url, api_name, data, message):
    assert message in raw_call(url, api_name, data)


def test_sessions_are_isolated(url):
    """The same seed gives the same frames alone and while another visitor generates."""
    alone = final_video(Client(url, verbose=False).predict(PROMPT, 5, 2, "adaptive", 4, 1, api_name="/generate"))
    results = {}

    def visit(name, seed):
        results[name] = final_video(Client(url, verbose=False).predict(PROMPT, seed, 2, "adaptive", 4, 1,
                                                                       api_name="/generate"))

    threads = [threading.Thread(target=visit, args=("same", 5)), threading.Thread(target=visit, args=("other", 6))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(results["same"], alone)
    assert not np.array_equal(results["other"], alone)


def test_switch_save_and_resume_through_named_endpoints(url):
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="nothing is streaming in this session"):
        client.predict("dunes", False, api_name="/switch_prompt")
    with pytest.raises(Exception, match="nothing to save in this session: generate first"):
        client.predict(api_name="/save_scene")
    job = client.submit(PROMPT, 2, 5, "adaptive", 4, 1, False, api_name="/generate")
    updates = iter(job)
    next(updates)  # the first chunk has arrived: the stream is running
    message = client.predict("desert dunes at dusk", False, api_name="/switch_prompt")
    assert "switching to “desert dunes at dusk”" in message
    last = list(updates)[-1]
    assert "prompt: “desert dunes at dusk”" in last[4] and "done" in last[4]

    with pytest.raises(Exception, match="nothing is streaming in this session"):  # the stream has ended
        client.predict("snowy hills", False, api_name="/switch_prompt")
    scene = client.predict(api_name="/save_scene")  # where it ended is kept
    assert scene.endswith(".safetensors")
    other = Client(url, verbose=False)  # another visitor cannot reach this stream
    with pytest.raises(Exception, match="generate first"):
        other.predict(api_name="/save_scene")
    resumed = other.predict(handle_file(scene), "", 0, 2, False, api_name="/resume")
    assert final_video(resumed).shape == (2 * SHIPPED_CHUNK_FRAMES, 64, 64, 3) and "chunk 2 / 2" in resumed[4]
    moved = other.predict(handle_file(scene), "snowy hills at noon", 3, 1, True, api_name="/resume")
    assert final_video(moved).shape == (SHIPPED_CHUNK_FRAMES, 64, 64, 3)


def test_endless_generation_runs_past_its_chunk_count_until_cancelled(url):
    job = Client(url, verbose=False).submit(PROMPT, 0, 1, "static", 4, 1, True, api_name="/generate")
    statuses = []
    for update in job:
        statuses.append(update[4])
        if len(statuses) == 4:
            break
    job.cancel()
    assert statuses[-1].startswith("chunk 4 / endless")


@pytest.mark.parametrize("anchor", ["adaptive", "static"])
@pytest.mark.parametrize("chunks, window", [(1, 1), (2, 1)])  # the window not yet full / full
def test_save_after_a_short_run(url, anchor, chunks, window):
    """Regression: /save_scene after a static run of chunks <= window raised safetensors'
    "Some tensors share memory" and the client saw Gradio's generic error."""
    client = Client(url, verbose=False)
    client.predict(PROMPT, 5, chunks, anchor, 4, window, api_name="/generate")
    scene = client.predict(api_name="/save_scene")
    assert read_scene(scene).index == chunks
    assert final_video(client.predict(handle_file(scene), "", 0, 1, False, api_name="/resume")).shape[0] == SHIPPED_CHUNK_FRAMES


def session_files(client):
    import app

    return app.VISITORS.visits[client.session_hash].folder


def files_under(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_session_keeps_one_video_and_one_scene_and_its_files_go_with_it(url):
    client = Client(url, verbose=False)
    client.predict(PROMPT, 0, 1, "static", 4, 1, api_name="/generate")
    first = client.predict(api_name="/save_scene")
    client.predict(PROMPT, 0, 2, "adaptive", 4, 1, api_name="/generate")
    client.predict(api_name="/save_scene")
    folder = session_files(client)
    pictures = [f"run-2/adaptive-{i:05d}-{kind}.webp" for i in range(2) for kind in ("peek", "state")]
    assert files_under(folder) == pictures + ["run-2/adaptive.mp4", "scene-adaptive-chunk00002.safetensors"]
    assert not (folder / Path(first).name).exists()
    client.close()  # the heartbeat stops: Gradio ends the session
    deadline = time.monotonic() + 30
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not folder.exists()


def cache_files():
    import app

    return {p for p in Path(app.demo.GRADIO_CACHE).rglob("*") if p.is_file()}


def test_uploads_are_limited_and_a_rejected_one_leaves_nothing(url, tmp_path):
    import app

    before = cache_files()
    too_big = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.safetensors", b"\0" * (17 * 2**20))})
    assert too_big.status_code == 413 and "maximum allowed size" in too_big.text
    assert cache_files() - before == set()

    name = f"rejected-{uuid.uuid4().hex[:8]}.safetensors"
    (tmp_path / name).write_bytes(os.urandom(1000))
    with pytest.raises(Exception) as refused:
        Client(url, verbose=False).predict(handle_file(str(tmp_path / name)), "", 0, 1, False, api_name="/resume")
    assert f"{name} is not a safetensors file" in str(refused.value)
    assert app.demo.GRADIO_CACHE not in str(refused.value)
    assert not [p for p in cache_files() if p.name == name]


def test_the_largest_scene_the_demo_saves_fits_the_upload_limit(url):
    from adastate.demo import MAX_WINDOW, upload_limit_bytes

    client = Client(url, verbose=False)
    client.predict(PROMPT, 0, MAX_WINDOW + 1, "adaptive", 1, MAX_WINDOW, api_name="/generate")
    size = Path(client.predict(api_name="/save_scene")).stat().st_size
    assert size < upload_limit_bytes("tiny") <= 4 * size  # room to spare, not an open door


def test_gradio_cleans_its_own_cache():
    import app
    from adastate.demo import SESSION_IDLE_SECONDS

    frequency, age = app.demo.delete_cache
    assert age == SESSION_IDLE_SECONDS and 0 < frequency <= age
