"""The app over HTTP, as gradio_client (and so any script) uses it: named endpoints that stream."""

import threading

import numpy as np
import pytest
from gradio_client import Client

from adastate.video import read_video

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
    assert updates[0][-1] is None and all(u[0] for u in updates[:3])  # a video segment per chunk
    assert "chunk 1 / 3" in updates[0][4] and "done" in updates[-1][4]
    assert final_video(updates[-1]).shape == (36, 64, 64, 3)


def test_compare_returns_both_videos(url):
    outputs = Client(url, verbose=False).predict(PROMPT, 1, 2, 4, 1, api_name="/compare")
    adaptive, static = read_video(outputs[-2])[0], read_video(outputs[-1])[0]
    assert adaptive.shape == static.shape == (24, 64, 64, 3)
    assert not np.array_equal(adaptive, static)
    assert [row[0] for row in outputs[7]["data"]] == ["adaptive", "static"]


@pytest.mark.parametrize("args, message", [
    (("", 0, 2, "adaptive", 4, 1), "prompt is empty"),
    # sliders' bounds are checked by Gradio itself, with its own clear message
    ((PROMPT, 0, 0, "adaptive", 4, 1), "less than minimum value 1"),
    ((PROMPT, 0, 10**7, "adaptive", 4, 1), "greater than maximum"),
    ((PROMPT, 0, 2.5, "adaptive", 4, 1), "chunks must be a whole number"),
    ((PROMPT, 0, 2, "upside-down", 4, 1), "not in the list of choices"),
    ((PROMPT, 0, 2, "adaptive", 50, 1), "greater than maximum"),
    ((PROMPT, -3, 2, "adaptive", 4, 1), "seed|less than minimum"),
    (("x" * 5000, 0, 2, "adaptive", 4, 1), "limit is"),
])
def test_bad_input_gets_a_clear_error_and_the_app_keeps_serving(url, args, message):
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match=message):
        client.predict(*args, api_name="/generate")
    assert final_video(client.predict(PROMPT, 0, 1, "static", 4, 1, api_name="/generate")).shape[0] == 12


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
    from gradio_client import handle_file

    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="generate first"):
        client.predict("dunes", False, api_name="/switch_prompt")
    job = client.submit(PROMPT, 2, 5, "adaptive", 4, 1, False, api_name="/generate")
    updates = iter(job)
    next(updates)  # the first chunk has arrived: the stream is running
    message = client.predict("desert dunes at dusk", False, api_name="/switch_prompt")
    assert "switching to “desert dunes at dusk”" in message
    last = list(updates)[-1]
    assert "prompt: “desert dunes at dusk”" in last[4] and "done" in last[4]

    scene = client.predict(api_name="/save_scene")
    assert scene.endswith(".safetensors")
    other = Client(url, verbose=False)  # another visitor cannot reach this stream
    with pytest.raises(Exception, match="generate first"):
        other.predict(api_name="/save_scene")
    resumed = other.predict(handle_file(scene), "", 0, 2, False, api_name="/resume")
    assert final_video(resumed).shape == (24, 64, 64, 3) and "chunk 2 / 2" in resumed[4]
    moved = other.predict(handle_file(scene), "snowy hills at noon", 3, 1, True, api_name="/resume")
    assert final_video(moved).shape == (12, 64, 64, 3)


def test_endless_generation_runs_past_its_chunk_count_until_cancelled(url):
    job = Client(url, verbose=False).submit(PROMPT, 0, 1, "static", 4, 1, True, api_name="/generate")
    statuses = []
    for update in job:
        statuses.append(update[4])
        if len(statuses) == 4:
            break
    job.cancel()
    assert statuses[-1].startswith("chunk 4 / endless")
