"""`python -m adastate eval`: both anchor modes on held-out worlds, far past the training horizon.

For every (prompt, seed) and mode it streams `chunks` chunks and measures per chunk:
  motion fidelity  mean Farneback flow magnitude of the chunk's frames / the camera speed the
                   prompt asked for (its world's ground truth);
  identity drift   hue/saturation-histogram distance of chunk i to chunk 0, beside the same number
                   for the ground-truth video of that world;
  anchor share     attention that content queries give the anchor slot.
Held-out prompts are captions of worlds whose seeds (≥ 10⁹) the data stage never draws.
"""

import json
from pathlib import Path

import numpy as np
import torch

from .data import SPEEDS, World, caption, sample_world_spec
from .metrics import identity_drift, motion_magnitude
from .stream import ANCHOR_MODES, ChunkStream, StreamSettings
from .vae import frames_to_video

HELD_OUT_WORLDS = 10**9   # data-stage world seeds are drawn below this
SPEED_WORDS = {"slow": "slow", "gentle": "slow", "leisurely": "slow", "steady": "steady", "smooth": "steady",
               "moderate": "steady", "fast": "fast", "quick": "fast", "rapid": "fast"}


def held_out_prompts(count: int) -> list[dict]:
    """`count` captions of unseen worlds, with the world seed that gives their ground truth."""
    return [{"prompt": caption(sample_world_spec(HELD_OUT_WORLDS + i), seed=1), "world": HELD_OUT_WORLDS + i}
            for i in range(count)]


def read_prompts(path) -> list[dict]:
    """A JSON list of prompts: strings, or {"prompt": ..., "world": seed} objects. A plain string's
    requested speed is read from its speed word (slow / steady / fast and their synonyms)."""
    entries = json.loads(Path(path).read_text())
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty JSON list of prompts")
    return [e if isinstance(e, dict) else {"prompt": str(e)} for e in entries]


def requested_speed(entry: dict) -> float | None:
    """Camera speed in pixels per frame that the prompt asks for (None if it names none)."""
    if "world" in entry:
        return sample_world_spec(int(entry["world"])).camera_speed
    words = [SPEED_WORDS[w] for w in entry["prompt"].lower().replace(",", " ").split() if w in SPEED_WORDS]
    return SPEEDS[words[0]] if words else None


def ground_truth(entry: dict, backend, chunks: int, frames_per_chunk: int) -> dict | None:
    """The world's own video: its identity drift per chunk, and the motion fidelity it keeps after
    a round trip through the backend's VAE (what a perfect generator could reach through it)."""
    if "world" not in entry:
        return None
    world = World(sample_world_spec(int(entry["world"])))
    video = world.render(0, chunks * frames_per_chunk)
    pixels = frames_to_video(video)[None]
    with torch.no_grad():
        latents = backend.vae.encode(pixels.to(backend.device, backend.dtype))
    decoded = backend.vae.decode_to_uint8(latents)
    speed = world.spec.camera_speed
    return {"drift": identity_drift(np.split(video, chunks)),
            "vae_motion_fidelity": [motion_magnitude(c) / speed for c in np.split(decoded, chunks)]}


def evaluate_run(backend, entry: dict, settings: StreamSettings) -> list[dict]:
    speed = requested_speed(entry)
    records, chunk_frames = [], []
    for result in ChunkStream(backend, entry["prompt"], settings):
        motion = motion_magnitude(result.frames)
        chunk_frames.append(result.frames)
        records.append({**result.record(), "motion": motion,
                        "motion_fidelity": None if speed is None else motion / speed})
    for record, drift in zip(records, identity_drift(chunk_frames)):
        record["identity_drift"] = drift
    return records


def mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def evaluate(load, prompts: list[dict], seeds: list[int], chunks: int, horizon: int, out) -> dict:
    """`load(anchor)` → Backend for that mode; `horizon`: the training rollout in chunks."""
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    per_mode = {}
    for mode in ANCHOR_MODES:
        backend = load(mode)
        runs = []
        for p, entry in enumerate(prompts):
            for seed in seeds:
                records = evaluate_run(backend, entry, StreamSettings(anchor=mode, chunks=chunks, seed=seed))
                frames_per_chunk = records[0]["frames"]
                run = {"mode": mode, "prompt": entry["prompt"], "world": entry.get("world"), "seed": seed,
                       "requested_speed": requested_speed(entry), "chunks": records,
                       "ground_truth": ground_truth(entry, backend, chunks, frames_per_chunk)}
                (out / "runs" / f"{mode}-p{p}-s{seed}.json").write_text(json.dumps(run, indent=1))
                runs.append(run)
        per_mode[mode] = {"runs": runs, "notice": backend.notice}
    summary = summarise(per_mode, chunks, horizon)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot(summary, out / "per_chunk.png")
    (out / "RESULTS.md").write_text(markdown(summary))
    return summary


def per_chunk_mean(runs, key, chunks):
    return [mean(run["chunks"][i][key] for run in runs) for i in range(chunks)]


def summarise(per_mode: dict, chunks: int, horizon: int) -> dict:
    """Per-chunk means over runs, and the numbers the targets are stated in: past the training
    horizon (chunks ≥ horizon) and at the last chunk."""
    summary = {"chunks": chunks, "training_horizon": horizon, "modes": {}}
    for mode, data in per_mode.items():
        runs = data["runs"]
        curves = {key: per_chunk_mean(runs, key, chunks)
                  for key in ("motion_fidelity", "motion", "identity_drift", "anchor_attention_share", "state_delta")}
        for key, name in (("drift", "ground_truth_drift"), ("vae_motion_fidelity", "ground_truth_vae_motion_fidelity")):
            curves[name] = [mean(r["ground_truth"][key][i] for r in runs if r["ground_truth"]) for i in range(chunks)]
        past = slice(horizon, chunks)
        summary["modes"][mode] = {
            "runs": len(runs), "notice": data["notice"], "per_chunk": curves,
            "motion_fidelity_past_horizon": mean(curves["motion_fidelity"][past]),
            "motion_fidelity_last_chunk": curves["motion_fidelity"][-1],
            "identity_drift_past_horizon": mean(curves["identity_drift"][past]),
            "ground_truth_drift_past_horizon": mean(curves["ground_truth_drift"][past]),
            "ground_truth_vae_motion_fidelity": mean(curves["ground_truth_vae_motion_fidelity"]),
            "anchor_attention_share": mean(curves["anchor_attention_share"][1:]),
        }
    a, s = summary["modes"]["adaptive"], summary["modes"]["static"]
    ratio = lambda x, y: None if x is None or not y else x / y  # noqa: E731
    summary["targets"] = {
        "adaptive_motion_fidelity_last_chunk_at_least_0.8": a["motion_fidelity_last_chunk"] is not None
        and a["motion_fidelity_last_chunk"] >= 0.8,
        "motion_fidelity_ratio_adaptive_over_static": ratio(a["motion_fidelity_past_horizon"], s["motion_fidelity_past_horizon"]),
        "identity_drift_ratio_adaptive_over_static": ratio(a["identity_drift_past_horizon"], s["identity_drift_past_horizon"]),
        "static_anchor_share_larger": s["anchor_attention_share"] > a["anchor_attention_share"],
    }
    t = summary["targets"]
    t["motion_fidelity_ratio_at_least_1.2"] = (t["motion_fidelity_ratio_adaptive_over_static"] or 0) >= 1.2
    t["identity_drift_at_most_10_percent_worse"] = (t["identity_drift_ratio_adaptive_over_static"] or 99) <= 1.1
    return summary


def plot(summary: dict, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("motion_fidelity", "motion fidelity (flow / requested)"), ("identity_drift", "identity drift to chunk 0"),
              ("anchor_attention_share", "anchor attention share")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (key, title) in zip(axes, panels):
        for mode, style in (("adaptive", "-"), ("static", "--")):
            ax.plot(summary["modes"][mode]["per_chunk"][key], style, label=mode)
        if key == "identity_drift":
            ax.plot(summary["modes"]["adaptive"]["per_chunk"]["ground_truth_drift"], ":", color="grey", label="ground truth")
        ax.axvline(summary["training_horizon"] - 0.5, color="grey", lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("chunk")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(summary: dict) -> str:
    def fmt(v):
        return "—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    a, s = summary["modes"]["adaptive"], summary["modes"]["static"]
    rows = [("motion fidelity past the training horizon", "motion_fidelity_past_horizon"),
            ("motion fidelity at the last chunk", "motion_fidelity_last_chunk"),
            ("identity drift past the horizon", "identity_drift_past_horizon"),
            ("ground-truth drift past the horizon", "ground_truth_drift_past_horizon"),
            ("ground truth through the VAE: motion fidelity", "ground_truth_vae_motion_fidelity"),
            ("anchor attention share", "anchor_attention_share")]
    lines = [f"{summary['chunks']} chunks per run, training horizon {summary['training_horizon']} chunks, "
             f"{a['runs']} runs per mode.", "", "| | adaptive state | static anchor |", "| --- | --- | --- |"]
    lines += [f"| {label} | {fmt(a[key])} | {fmt(s[key])} |" for label, key in rows]
    lines += ["", "| target | measured |", "| --- | --- |"]
    lines += [f"| {key} | {fmt(value)} |" for key, value in summary["targets"].items()]
    return "\n".join(lines) + "\n\n![per-chunk curves](per_chunk.png)\n"
