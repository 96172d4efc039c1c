"""The evaluation's bookkeeping: what it reads, what it measures per run, how it decides the targets,
what it writes."""

import json

import numpy as np
import pytest
from PIL import Image

from adastate.data import World, sample_world_spec
from adastate.evaluate import (HELD_OUT_WORLDS, evaluate, held_out_prompts, pan_measures, read_prompts, showcase,
                               requested_direction, requested_speed, summarise, switch_reach, switch_target)


def test_requested_speed_and_direction_from_worlds_and_words(tmp_path):
    entry = held_out_prompts(1)[0]
    assert entry["world"] >= 10**9 and requested_speed(entry) in (1.0, 2.0, 3.0)
    assert requested_direction(entry) == -sample_world_spec(entry["world"]).direction
    assert requested_speed({"prompt": "a rapid pan left over dunes"}) == 3.0
    assert requested_direction({"prompt": "a rapid pan left over dunes"}) == 1  # the image moves right
    assert requested_direction({"prompt": "flying right, fast"}) == -1
    assert requested_speed({"prompt": "a gentle drift"}) == 1.0
    assert requested_speed({"prompt": "a sunset"}) is None and requested_direction({"prompt": "a sunset"}) is None
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(["a slow pan", {"prompt": "x", "world": 5}]))
    assert read_prompts(path) == [{"prompt": "a slow pan"}, {"prompt": "x", "world": 5}]
    path.write_text("{}")
    with pytest.raises(ValueError, match="non-empty JSON list"):
        read_prompts(path)


def chunked(frames: np.ndarray, per_chunk: int) -> np.ndarray:
    return frames.reshape(-1, per_chunk, *frames.shape[1:])


def test_pan_follows_the_worlds_motion_and_notices_the_wrong_direction():
    world = World(sample_world_spec(HELD_OUT_WORLDS))
    video = chunked(world.render(0, 6 * 8), 8)
    speed, direction = world.spec.camera_speed, requested_direction({"prompt": "", "world": HELD_OUT_WORLDS})
    per_chunk, run = pan_measures(video, speed, direction)
    assert per_chunk["pan_ratio"] == pytest.approx([1.0] * 6, abs=0.05)
    assert run["direction_agrees"] and run["speed_ratio_first"] == pytest.approx(1, abs=0.05)
    assert run["speed_ratio_last"] == pytest.approx(1, abs=0.05) and run["pan_fidelity"] > 0.9
    per_chunk, run = pan_measures(video[::-1, ::-1].copy(), speed, direction)  # played backwards
    assert not run["direction_agrees"] and per_chunk["pan_ratio"] == pytest.approx([-1.0] * 6, abs=0.05)
    assert run["speed_ratio_last"] == pytest.approx(1, abs=0.05) and run["pan_fidelity"] == 0


def test_prompt_switch_reach_on_synthetic_frames():
    old, new = HELD_OUT_WORLDS, switch_target(HELD_OUT_WORLDS)
    assert sample_world_spec(new).style != sample_world_spec(old).style
    old_video = chunked(World(sample_world_spec(old)).render(0, 8 * 6), 6)
    new_video = chunked(World(sample_world_spec(new)).render(0, 8 * 6), 6)
    new_look = new_video[:4].reshape(-1, *new_video.shape[2:])
    # four chunks of the old world, then one that is half the new one, then the new world
    half = old_video[4].copy()
    half[:, :, : half.shape[2] // 2] = new_video[4][:, :, : half.shape[2] // 2]
    arrived = np.concatenate([old_video[:4], half[None], new_video[5:]])
    reach = switch_reach(arrived, new_look, at=4)
    assert reach["at"] == 4 and len(reach["reach"]) == 4
    assert 0.2 < reach["reach"][0] < 0.8 and min(reach["reach"][1:]) > 0.8
    stayed = switch_reach(old_video, new_look, at=4)["reach"]
    assert max(abs(r) for r in stayed) < 0.2


CHUNKS, PHASE = 8, 4


def synthetic_run(speed_first, speed_last, revert_last, progression, agrees=True, share=0.2):
    """A run's record as `evaluate_run` writes it: pan speed / requested and correlation with the
    first frame per chunk, first PHASE chunks then last PHASE; its world's ground truth."""
    speeds = [speed_first] * PHASE + [speed_last] * PHASE
    reverts = [1.0] * PHASE + [revert_last] * PHASE
    chunks = [{"pan_ratio": s, "revert": r, "colour_to_first": 0.1 * i, "anchor_attention_share": share}
              for i, (s, r) in enumerate(zip(speeds, reverts))]
    return {"chunks": chunks, "direction_agrees": agrees, "speed_ratio_first": speed_first,
            "speed_ratio_last": speed_last, "pan_fidelity": 0.5, "progression": progression,
            "ground_truth": {"revert": [1.0] + [0.2] * (CHUNKS - 1), "colour_to_first": [0.1] * CHUNKS,
                             "progression": 0.4},
            "switch": {"reach": [0.1, 0.5, 0.9]}}


def mode(runs, realism):
    return {"runs": runs, "notice": None, "seconds": 1.0, "realism": {"all": realism, "first": realism, "last": realism}}


def test_targets_pass_when_adaptive_keeps_moving_and_static_reverts():
    summary = summarise({"adaptive": mode([synthetic_run(1.0, 0.9, 0.3, 0.3)] * 2, 0.7),
                         "static": mode([synthetic_run(1.0, 0.72, 0.8, 0.1)] * 2, 0.75)}, CHUNKS, horizon=2)
    a, targets = summary["modes"]["adaptive"], summary["targets"]
    assert a["per_chunk"]["pan_ratio"] == [1.0] * 4 + [0.9] * 4
    assert a["revert_last"] == pytest.approx(0.3) and a["ground_truth_revert_last"] == pytest.approx(0.2)
    assert a["progression_vs_ground_truth"] == pytest.approx(0.75) and a["switch_reach"] == pytest.approx(0.9)
    assert targets["adaptive pans faster at the end: adaptive / static speed, last chunks"]["measured"] \
        == pytest.approx(0.9 / 0.72)
    assert targets["adaptive: realism classifier accuracy"] == {"measured": 0.7, "goal": "<= 0.8", "met": True}
    assert all(t["met"] for t in targets.values()), {k: t for k, t in targets.items() if not t["met"]}


def test_targets_fail_when_the_modes_do_not_differ_and_motion_is_wrong():
    same = [synthetic_run(1.0, 0.6, 0.9, 0.1), synthetic_run(1.0, 0.6, 0.9, 0.1, agrees=False)]
    targets = summarise({"adaptive": mode(same, 0.95), "static": mode(same, 0.95)}, CHUNKS, horizon=2)["targets"]
    failed = {name for name, t in targets.items() if t["met"] is False}
    assert failed == set(targets) - {"adaptive: pan speed / requested, first 4 chunks (median)",
                                     "static: pan speed / requested, first 4 chunks (median)"}
    assert targets["adaptive: direction agrees with the prompt (share of runs)"]["measured"] == 0.5
    assert targets["adaptive keeps its speed: last / first chunks"]["measured"] == pytest.approx(0.6)


def test_showcase_picks_the_runs_where_the_modes_differ_most():
    def pair(prompt, seed, static_revert, adaptive_revert, static_progression, adaptive_progression):
        runs = [synthetic_run(1.0, 1.0, r, p) | {"prompt": prompt, "seed": seed}
                for r, p in ((adaptive_revert, adaptive_progression), (static_revert, static_progression))]
        return runs
    pairs = [pair("hills", 0, 0.9, 0.3, 0.1, 0.3),   # 0.6 + 0.2
             pair("hills", 1, 0.9, 0.8, 0.1, 0.1),   # 0.1: the same prompt again, lower
             pair("dunes", 0, 0.5, 0.5, 0.2, 0.2),   # 0
             pair("crystals", 0, 0.7, 0.4, 0.1, 0.15)]  # 0.3 + 0.05
    per_mode = {"adaptive": mode([a for a, _ in pairs], 0.7), "static": mode([s for _, s in pairs], 0.7)}
    examples = showcase(per_mode, CHUNKS, count=2)
    assert [(e["prompt"], e["seed"]) for e in examples] == [("hills", 0), ("crystals", 0)]
    assert examples[0]["difference"] == pytest.approx(0.8) and examples[0]["chunks"] == CHUNKS
    assert [e["prompt"] for e in showcase(per_mode, CHUNKS)] == ["hills", "crystals", "dunes"]


def test_evaluate_writes_summary_runs_plots_and_table(test_backend, tmp_path):
    prompts = held_out_prompts(2) + [{"prompt": "a slow pan to the left"}]
    summary = evaluate(lambda mode: test_backend, prompts, [0], chunks=4, horizon=1, out=tmp_path)
    for name in ("summary.json", "per_chunk.png", "contact_sheet.png", "RESULTS.md", "examples.json"):
        assert (tmp_path / name).is_file(), name
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        f"{mode}-p{p}-s0.json" for mode in ("adaptive", "static") for p in range(3)]
    run = json.loads((tmp_path / "runs" / "static-p0-s0.json").read_text())
    assert len(run["chunks"]) == 4 and len(run["ground_truth"]["revert"]) == 4
    assert run["switch"]["at"] == 2 and len(run["switch"]["reach"]) == 2
    plain = json.loads((tmp_path / "runs" / "static-p2-s0.json").read_text())
    assert plain["ground_truth"] is None and plain["switch"] is None and plain["direction_agrees"] is not None
    a = summary["modes"]["adaptive"]
    assert len(a["per_chunk"]["revert"]) == 4 and len(a["per_chunk"]["switch_reach"]) == 2
    assert a["realism_accuracy"]["all"] is not None and summary["switch"] == {"at": 2, "chunks_after": 2}
    assert 0 <= summary["vae_realism"]["all"] <= 1  # the ground truth through the VAE, by the same classifier
    assert all(t["measured"] is not None for t in summary["targets"].values())
    assert json.loads((tmp_path / "summary.json").read_text())["targets"] == summary["targets"]
    table = (tmp_path / "RESULTS.md").read_text()
    assert "| adaptive: realism classifier accuracy |" in table and "contact_sheet.png" in table
    assert "encoded and decoded by the students' VAE" in table
    runs = [summary["modes"][mode]["runs"] for mode in summary["modes"]]
    assert "| runs (prompts × seeds; the teacher draws the first seed only) | " + " | ".join(map(str, runs)) in table
    # three runs on the sheet: two worlds (ground truth, adaptive, static) and the plain prompt
    # (adaptive, static); frames 8 px high upscaled to 192, chunks 0 and 3
    width, height = Image.open(tmp_path / "contact_sheet.png").size
    assert 8 * 192 < height < 9 * 192 and width > 2 * 12 * 24


def test_evaluate_measures_the_teacher_like_the_students_on_the_first_seed(test_backend, tmp_path):
    from adastate.teacher import TeacherVideo

    summary = evaluate(lambda mode: test_backend, held_out_prompts(2), [0, 1], chunks=4, horizon=1, out=tmp_path,
                       teacher=TeacherVideo(test_backend, steps=2))
    assert list(summary["modes"]) == ["teacher", "adaptive", "static"]
    assert summary["modes"]["teacher"]["runs"] == 2 and summary["modes"]["adaptive"]["runs"] == 4
    assert "teacher: realism classifier accuracy" in summary["targets"]
    run = json.loads((tmp_path / "runs" / "teacher-p0-s0.json").read_text())
    assert run["mode"] == "teacher" and len(run["chunks"]) == 4 and run["switch"]["at"] == 2
    assert summary["modes"]["teacher"]["anchor_attention_share"] is None
