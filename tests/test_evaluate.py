"""The evaluation's bookkeeping: what it reads, what it writes, how it decides the targets."""

import json

import pytest

from adastate.evaluate import evaluate, held_out_prompts, read_prompts, requested_speed, summarise


def test_requested_speed_from_worlds_and_words(tmp_path):
    entry = held_out_prompts(1)[0]
    assert entry["world"] >= 10**9 and requested_speed(entry) in (1.0, 2.0, 3.0)
    assert requested_speed({"prompt": "a rapid pan left over dunes"}) == 3.0
    assert requested_speed({"prompt": "a gentle drift"}) == 1.0
    assert requested_speed({"prompt": "a sunset"}) is None
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(["a slow pan", {"prompt": "x", "world": 5}]))
    assert read_prompts(path) == [{"prompt": "a slow pan"}, {"prompt": "x", "world": 5}]
    path.write_text("{}")
    with pytest.raises(ValueError, match="non-empty JSON list"):
        read_prompts(path)


def run(mode, fidelity, drift, share):
    return {"mode": mode, "chunks": [{"motion_fidelity": f, "motion": f, "identity_drift": d,
                                      "anchor_attention_share": share, "state_delta": 0.1}
                                     for f, d in zip(fidelity, drift)],
            "ground_truth": {"drift": [0.0, 0.05, 0.05, 0.05], "vae_motion_fidelity": [0.9] * 4}}


def test_targets_are_decided_past_the_training_horizon():
    per_mode = {"adaptive": {"runs": [run("adaptive", [1.0, 0.9, 0.9, 0.85], [0, 0.1, 0.1, 0.1], 0.1)], "notice": None},
                "static": {"runs": [run("static", [1.0, 0.9, 0.5, 0.5], [0, 0.1, 0.1, 0.1], 0.3)], "notice": None}}
    summary = summarise(per_mode, chunks=4, horizon=2)
    a, t = summary["modes"]["adaptive"], summary["targets"]
    assert a["motion_fidelity_past_horizon"] == pytest.approx(0.875) and a["motion_fidelity_last_chunk"] == 0.85
    assert t["motion_fidelity_ratio_adaptive_over_static"] == pytest.approx(1.75)
    assert t["adaptive_motion_fidelity_last_chunk_at_least_0.8"] and t["motion_fidelity_ratio_at_least_1.2"]
    assert t["identity_drift_at_most_10_percent_worse"] and t["static_anchor_share_larger"]


def test_evaluate_writes_summary_runs_plot_and_table(test_backend, tmp_path):
    summary = evaluate(lambda mode: test_backend, held_out_prompts(1), [0], chunks=3, horizon=1, out=tmp_path)
    for name in ("summary.json", "per_chunk.png", "RESULTS.md", "runs/adaptive-p0-s0.json", "runs/static-p0-s0.json"):
        assert (tmp_path / name).is_file(), name
    assert len(summary["modes"]["static"]["per_chunk"]["motion_fidelity"]) == 3
    assert "| motion fidelity past the training horizon |" in (tmp_path / "RESULTS.md").read_text()
