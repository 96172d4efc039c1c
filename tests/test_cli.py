"""`python -m adastate generate`: bad input gets one clear line and a nonzero exit; good input an
H.264 MP4 and per-chunk JSON; Ctrl-C keeps what was written valid."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from adastate.cli import main
from adastate.scene import read_scene, save_scene, snapshot
from adastate.stream import ChunkStream, StreamSettings
from adastate.video import read_video
from conftest import SHIPPED_CHUNK_FRAMES

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "adastate", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300, **kwargs)


def bad_checkpoints(tmp_path):
    pickled = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, pickled)
    renamed = tmp_path / "pickle.safetensors"
    renamed.write_bytes(pickle.dumps({"w": [0.0, 1.0]}))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(os.urandom(300))
    truncated = tmp_path / "truncated.safetensors"
    save_file({"w": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:-100])
    wrong = tmp_path / "wrong.safetensors"
    save_file({"patch_embedding.weight": torch.zeros(3)}, wrong)
    return [
        (str(tmp_path / "missing.safetensors"), "checkpoint not found"),
        (str(pickled), "not a safetensors file (it is a zip archive"),
        (str(renamed), "not a safetensors file (it is a Python pickle"),
        (str(corrupt), "not a safetensors file"),
        (str(truncated), "safetensors"),
        (str(wrong), "does not match the model's configuration"),
    ]


@pytest.mark.parametrize("extra,message", [
    (["--chunks", "0"], "chunks must be a whole number from 1"),
    (["--chunks", "-3"], "chunks must be a whole number from 1"),
    (["--chunks", "1000000000"], "chunks must be a whole number from 1"),
    (["--prompt", "   "], "the prompt is empty"),
    (["--prompt", "x" * 5000], "the prompt is 5000 characters long"),
    (["--steps", "250", "500"], "must decrease"),
    (["--window", "0"], "window_chunks must be"),
])
def test_bad_numbers_and_prompts(tmp_path, capsys, extra, message):
    args = ["generate", "--prompt", "hills", "--out", str(tmp_path / "v.mp4"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ")
    assert not (tmp_path / "v.mp4").exists()


def test_bad_checkpoints(tmp_path, capsys):
    for checkpoint, message in bad_checkpoints(tmp_path):
        code = main(["generate", "--prompt", "hills", "--chunks", "1", "--out", str(tmp_path / "v.mp4"),
                     "--checkpoint", checkpoint])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (checkpoint, err)


def test_bad_anchor_mode_and_out_path(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--prompt", "hills", "--anchor", "frozen", "--out", str(tmp_path / "v.mp4")])
    assert exit_info.value.code == 2 and "invalid choice: 'frozen'" in capsys.readouterr().err
    assert main(["generate", "--prompt", "hills", "--out", str(tmp_path / "v.avi")]) == 2
    assert "--out must name an .mp4 file" in capsys.readouterr().err


def test_errors_in_a_real_process_are_one_line_without_traceback(tmp_path):
    renamed = tmp_path / "pickle.safetensors"
    renamed.write_bytes(pickle.dumps({"w": 1}))
    result = run_cli("generate", "--prompt", "hills", "--out", str(tmp_path / "v.mp4"), "--checkpoint", str(renamed))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "it is a Python pickle" in result.stderr


def test_generate_writes_h264_and_stats(tmp_path):
    out, stats = tmp_path / "v.mp4", tmp_path / "v.json"
    result = run_cli("generate", "--prompt", "a slow pan over snowy hills", "--anchor", "static", "--chunks", "3",
                     "--seed", "5", "--out", str(out), "--stats-out", str(stats))
    assert result.returncode == 0, result.stderr
    assert "randomly initialised" not in result.stderr  # the shipped static model runs by default
    frames, fps, codec = read_video(out)
    data = json.loads(stats.read_text())
    assert codec == "h264" and fps == data["config"]["fps"]
    assert frames.shape == (3 * data["config"]["frames_per_chunk"], 64, 64, 3)
    assert [c["index"] for c in data["chunks"]] == [0, 1, 2]
    assert {"anchor_attention_share", "state_delta", "seconds"} <= set(data["chunks"][0])
    assert data["config"]["anchor"] == "static" and data["interrupted"] is False


def test_ctrl_c_keeps_the_video_and_stats_valid(tmp_path):
    out, stats = tmp_path / "v.mp4", tmp_path / "v.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "adastate", "generate", "--prompt", "hills", "--chunks", "5000",
         "--out", str(out), "--stats-out", str(stats)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or out.stat().st_size < 20_000):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "interrupted after" in err
    data = json.loads(stats.read_text())
    frames, _, codec = read_video(out)
    assert data["interrupted"] is True and len(data["chunks"]) >= 1
    assert codec == "h264" and frames.shape[0] == len(data["chunks"]) * data["config"]["frames_per_chunk"]


def test_prompt_at_save_scene_and_resume(tmp_path, capsys):
    """--prompt-at records the prompt per chunk; 5 chunks == 3 chunks + --save-scene, then
    --resume for 2 more; --state-only starts a new video from the saved state."""
    whole, stats = tmp_path / "whole.mp4", tmp_path / "whole.json"
    switch = ["--prompt-at", "2:desert dunes at dusk", "--prompt-at", "4:snowy hills"]
    assert main(["generate", "--prompt", "hills", "--chunks", "5", "--seed", "3", *switch,
                 "--out", str(whole), "--stats-out", str(stats)]) == 0
    records = json.loads(stats.read_text())["chunks"]
    assert [r["prompt"] for r in records] == ["hills"] * 2 + ["desert dunes at dusk"] * 2 + ["snowy hills"]

    head, scene = tmp_path / "head.mp4", tmp_path / "scene.safetensors"
    assert main(["generate", "--prompt", "hills", "--chunks", "3", "--seed", "3", *switch, "--out", str(head),
                 "--save-scene", str(scene)]) == 0
    tail, tail_stats = tmp_path / "tail.mp4", tmp_path / "tail.json"
    assert main(["generate", "--resume", str(scene), "--chunks", "2", *switch, "--out", str(tail),
                 "--stats-out", str(tail_stats)]) == 0
    assert "--prompt-at 2 is outside this run (chunks 3 to 4): ignored" in capsys.readouterr().err
    resumed = json.loads(tail_stats.read_text())["chunks"]
    assert [r["index"] for r in resumed] == [3, 4]
    for got, want in zip(resumed, records[3:]):  # frame equality itself: tests/test_scenes.py
        assert (got["prompt"], got["switched"]) == (want["prompt"], want["switched"])
        assert got["state_delta"] == pytest.approx(want["state_delta"], abs=1e-6)
        assert got["anchor_attention_share"] == pytest.approx(want["anchor_attention_share"], abs=1e-6)
    frames_per_chunk = json.loads(stats.read_text())["config"]["frames_per_chunk"]
    assert read_video(head)[0].shape[0] + read_video(tail)[0].shape[0] == 5 * frames_per_chunk

    moved = tmp_path / "moved.mp4"
    assert main(["generate", "--resume", str(scene), "--state-only", "--prompt", "snowy hills", "--chunks", "2",
                 "--seed", "8", "--out", str(moved)]) == 0
    assert read_video(moved)[0].shape[0] == 2 * frames_per_chunk


@pytest.mark.parametrize("args,message", [
    (["--prompt-at", "x:desert"], "--prompt-at wants CHUNK:TEXT"),
    (["--prompt-at", "3"], "--prompt-at wants CHUNK:TEXT"),
    (["--prompt-at", "3:   "], "the prompt is empty"),
    (["--save-scene", "scene.pt"], "--save-scene must name a .safetensors file"),
    (["--state-only"], "--state-only needs --resume"),
])
def test_bad_switch_and_scene_flags(tmp_path, capsys, args, message):
    assert main(["generate", "--prompt", "hills", "--out", str(tmp_path / "v.mp4"), *args]) == 2
    assert message in capsys.readouterr().err


def test_bad_scene_files_on_the_command_line(tmp_path, capsys):
    renamed = tmp_path / "scene.safetensors"
    renamed.write_bytes(pickle.dumps({"anchor": [0.0]}))
    assert main(["generate", "--resume", str(renamed), "--out", str(tmp_path / "v.mp4")]) == 2
    assert "it is a Python pickle" in capsys.readouterr().err
    assert main(["generate", "--out", str(tmp_path / "v.mp4")]) == 2
    assert "--prompt is required" in capsys.readouterr().err


@pytest.mark.parametrize("anchor", ["adaptive", "static"])
@pytest.mark.parametrize("chunks, window", [("1", "1"), ("2", "1")])  # the window not yet full / full
def test_save_scene_after_a_short_run_and_resume_it(tmp_path, capsys, anchor, chunks, window):
    """Regression: `generate --anchor static --chunks 1 --save-scene F` crashed in safetensors
    ("Some tensors share memory")."""
    scene = tmp_path / "scene.safetensors"
    assert main(["generate", "--prompt", "hills", "--anchor", anchor, "--chunks", chunks, "--window", window,
                 "--out", str(tmp_path / "v.mp4"), "--save-scene", str(scene)]) == 0, capsys.readouterr().err
    assert read_scene(scene).index == int(chunks)
    assert main(["generate", "--resume", str(scene), "--chunks", "1", "--out", str(tmp_path / "more.mp4")]) == 0
    assert read_video(tmp_path / "more.mp4")[0].shape[0] == SHIPPED_CHUNK_FRAMES


@pytest.fixture
def scene_file(test_backend, tmp_path):
    stream = ChunkStream(test_backend, "hills", StreamSettings(chunks=1, window_chunks=2))
    list(stream)
    return save_scene(snapshot(stream), tmp_path / "scene.safetensors")


@pytest.mark.parametrize("args, message", [
    (["--window", "1"], "a resumed stream keeps the scene's window (2) and denoising steps (1000 750 500 250); "
                        "drop --window and --steps"),
    (["--steps", "1000"], "drop --window and --steps"),
    (["--anchor", "static"], "the scene was made in adaptive mode; drop --anchor or use adaptive"),
    (["--chunks", "0"], "chunks must be a whole number from 1"),
])
def test_a_resumed_stream_keeps_what_the_scene_fixes(scene_file, tmp_path, capsys, args, message):
    assert main(["generate", "--resume", str(scene_file), "--out", str(tmp_path / "v.mp4"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_an_edited_scene_file_is_refused_in_one_line(scene_file, tmp_path, capsys):
    edited = tmp_path / "edited.safetensors"
    tensors = load_file(scene_file)
    tensors["anchor_latent"] = torch.full_like(tensors["anchor_latent"], float("nan"))
    with safe_open(str(scene_file), "pt") as f:
        save_file(tensors, edited, metadata=f.metadata())
    assert main(["generate", "--resume", str(edited), "--out", str(tmp_path / "v.mp4")]) == 2
    assert capsys.readouterr().err == ("error: edited.safetensors: tensor 'anchor_latent' holds values that are not "
                                       "finite (NaN or infinity)\n")


def test_eval_with_the_shipped_models_prints_every_target(tmp_path, capsys):
    assert main(["eval", "--out", str(tmp_path), "--count", "2", "--seeds", "0", "--chunks", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(lines) == len(summary["targets"]) and all("(goal " in line for line in lines)
    assert (tmp_path / "contact_sheet.png").is_file() and (tmp_path / "runs" / "static-p1-s0.json").is_file()
    assert main(["eval", "--out", str(tmp_path), "--chunks", "0"]) == 2
    assert "--chunks must be from 1" in capsys.readouterr().err
    assert main(["eval", "--out", str(tmp_path), "--count", "0"]) == 2
    assert "--count must be at least 1" in capsys.readouterr().err
