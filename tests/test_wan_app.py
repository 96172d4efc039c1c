"""The app's Wan path on the CPU, over HTTP as any client sees it: `python app.py` started with
ADASTATE_BACKEND=wan ADASTATE_WAN_CHECKPOINT=<tiny pipeline folder> ADASTATE_DEVICE=cpu streams
from the Wan backend (16-channel latents, Wan's causal VAE), with no fallback to the embedded model."""

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adastate.backends import DEVICE_ENV, BackendUnavailable
from adastate.backends import wan
from adastate.checkpoints import CheckpointError
from adastate.demo import Backends
from adastate.video import read_video
from adastate.viz import PANEL_SIZE
from tiny_wan import HEIGHT, WIDTH, tiny_pipeline

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a slow pan to the right across snowy hills"
LATENT_CHANNELS = 16  # Wan 2.1's VAE
PANEL = (PANEL_SIZE, PANEL_SIZE * WIDTH // HEIGHT, 3)  # a state picture: one latent frame, upscaled
STARTUP_SECONDS = 180


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wan-app") / "pipeline"
    tiny_pipeline(LATENT_CHANNELS).save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def wan_app(pipeline_folder, tmp_path_factory):
    """`python app.py` in its own process, configured only through the environment."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADASTATE_")}
    env.update({"ADASTATE_BACKEND": "wan", wan.CHECKPOINT_ENV: str(pipeline_folder), DEVICE_ENV: "cpu",
                wan.SIZE_ENV: f"{HEIGHT}x{WIDTH}", "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1",
                "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"})
    log = tmp_path_factory.mktemp("wan-app-log") / "app.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"app.py exited with code {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"app.py did not serve {url} within {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def client(url):
    """Files stay on the server until asked for: the client would otherwise download each update's
    live HLS playlist while the server appends to it (a truncated-body error, now and then)."""
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


def fetch(file: dict) -> bytes:
    with urllib.request.urlopen(file["url"], timeout=30) as response:
        return response.read()


def picture(file: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(fetch(file))).convert("RGB"))


def frames_of(file: dict, folder: Path) -> np.ndarray:
    path = folder / Path(file["path"]).name
    path.write_bytes(fetch(file))
    frames, fps, codec = read_video(path)
    assert codec == "h264" and fps == wan.FPS
    return frames


@pytest.mark.parametrize("anchor", ["adaptive", "static"])
def test_generate_streams_from_the_wan_backend_with_its_state_panel(wan_app, anchor, tmp_path):
    updates = list(client(wan_app).submit(PROMPT, 0, 3, anchor, 2, 1, api_name="/generate"))
    assert len(updates) == 4  # one per chunk, then the finished video
    for update in updates:
        assert f"note: wan backend: {anchor}" in update[4] and "embedded" not in update[4]
    states = [picture(u[1]) for u in updates[:3]]
    peeks = [picture(u[2]) for u in updates[:3]]
    assert all(p.shape == PANEL for p in states + peeks)
    assert all(p.std() > 0 for p in states + peeks)
    changed = [not np.array_equal(a, b) for a, b in zip(states, states[1:])]
    assert changed == ([True, True] if anchor == "adaptive" else [False, False])  # a state evolves, an anchor stays
    assert any(u[0] for u in updates[:3]) and updates[0][5] is None
    assert all(u[0] or "buffering" in u[4] for u in updates[:3])  # video held back until it can play through
    # Wan's causal VAE: 1 + 4 * 2 frames from the first chunk, 4 * 3 from every later one
    assert "done" in updates[-1][4] and frames_of(updates[-1][5], tmp_path).shape == (9 + 12 + 12, HEIGHT, WIDTH, 3)


def test_compare_streams_both_modes(wan_app, tmp_path):
    updates = list(client(wan_app).submit(PROMPT, 1, 2, 2, 1, api_name="/compare"))
    assert "note: wan backend: adaptive" in updates[0][8]
    outputs = updates[-1]
    adaptive, static = frames_of(outputs[9], tmp_path), frames_of(outputs[10], tmp_path)  # the finished MP4s
    assert adaptive.shape == static.shape == (9 + 12, HEIGHT, WIDTH, 3)
    assert not np.array_equal(adaptive, static)
    assert all(picture(outputs[i]).shape == PANEL for i in (1, 2, 4, 5))
    assert [row[0] for row in outputs[7]["data"]] == ["adaptive", "static"]
    assert "done" in outputs[8]


def test_switch_save_and_resume(wan_app, tmp_path):
    from gradio_client import handle_file

    visitor = client(wan_app)
    updates = iter(visitor.submit(PROMPT, 2, 8, "adaptive", 2, 1, False, api_name="/generate"))
    next(updates)  # the first chunk is out: the stream is live (and computes ahead of what is shown)
    assert "switching to “a red car in the city at night”" in visitor.predict(
        "a red car in the city at night", True, api_name="/switch_prompt")
    last = list(updates)[-1]
    assert "prompt: “a red car in the city at night”" in last[4] and "done" in last[4]

    scene = visitor.predict(api_name="/save_scene")
    assert Path(scene["path"]).name == "scene-adaptive-chunk00008.safetensors"
    saved = tmp_path / "scene.safetensors"  # downloaded, and uploaded again as a visitor would
    saved.write_bytes(fetch(scene))
    resumed = visitor.predict(handle_file(str(saved)), "", 0, 2, False, api_name="/resume")
    # the decoder's causal cache came with the scene: the continuation has no 9-frame first chunk
    assert frames_of(resumed[5], tmp_path).shape == (12 + 12, HEIGHT, WIDTH, 3) and "chunk 2 / 2" in resumed[4]
    assert picture(resumed[1]).shape == picture(resumed[2]).shape == PANEL
    moved = visitor.predict(handle_file(str(saved)), "snowy hills at night", 3, 1, True, api_name="/resume")
    assert frames_of(moved[5], tmp_path).shape == (9, HEIGHT, WIDTH, 3)  # state only: a new video


# -- which backend the app gets, without HTTP ---------------------------------------------------------

@pytest.fixture
def clean_environment(monkeypatch):
    for name in ("ADASTATE_BACKEND", "ADASTATE_CHECKPOINT", wan.CHECKPOINT_ENV, wan.BASE_ENV, DEVICE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(wan.SIZE_ENV, f"{HEIGHT}x{WIDTH}")


def test_a_named_device_gets_the_requested_backend_or_its_error(pipeline_folder, clean_environment, monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    backends = Backends("wan", str(pipeline_folder))
    static, adaptive = backends.get("static"), backends.get("adaptive")
    assert static.name == "wan" and static.latent_channels == LATENT_CHANNELS
    # one set of weights serves both modes: loaded once, only the notice differs
    assert adaptive.transformer is static.transformer and adaptive.vae is static.vae
    assert adaptive.notice == "wan backend: " + adaptive.anchor_labels["adaptive"] != static.notice
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        Backends("wan", str(pipeline_folder / "missing")).get("static")
    monkeypatch.setenv(DEVICE_ENV, "gpu")
    with pytest.raises(ValueError, match="ADASTATE_DEVICE must be one of cpu, cuda"):
        Backends("wan", str(pipeline_folder))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_named_device_a_space_without_gpu_falls_back_with_a_notice(pipeline_folder, clean_environment,
                                                                              monkeypatch):
    backend = Backends("wan", str(pipeline_folder)).get("adaptive")
    assert backend.name == "tiny"
    assert backend.notice.startswith("the wan backend is unavailable (the wan backend needs a CUDA GPU")
    with pytest.raises(ValueError, match="the tiny backend has no weights shared by every anchor mode"):
        backend.for_anchor("static")  # the embedded model ships one model per mode
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    with pytest.raises(BackendUnavailable, match="no CUDA GPU is visible"):
        Backends("wan", str(pipeline_folder))
