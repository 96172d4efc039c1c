"""`python -m adastate eval`: both anchor modes on held-out worlds, far past the training horizon.

Every (prompt, seed) streams `chunks` chunks in each mode; with `--teacher`, the bidirectional
teacher draws the same videos chunk by chunk too (`adastate/teacher.py`, first seed only) and is
measured the same way. A prompt that is the caption of a
held-out world (seed ≥ 10⁹: the data stage never draws one) has ground truth: that world rendered
from frame 0 for as many frames, at the generated frames' size. Measured (DESIGN.md section 5):

  pan          per chunk, the median x-shift between consecutive frames (`metrics.pan_per_frame`;
               a frame pair belongs to the chunk of its later frame, so the step into a chunk
               counts) / the requested speed, signed so that positive is the prompt's direction.
               Per run: does the median pan of the whole run have the prompt's sign; |median pan|
               / requested speed over the first 4 chunks (the issue's "chunks 1-4") and over the
               last 4; the share of frame pairs within 20 % of the requested motion (a decoder
               that jumps every few frames has the right mean and few such pairs).
  realism      a classifier on gradient-orientation features tells generated frames from the same
               worlds' ground truth (`metrics.realism_accuracy`): all chunks, the first 4, the last
               4. Folds are grouped by world, so no world is both trained and tested on.
  revert       per chunk, the correlation of its frames with the run's first frame, beside the
               ground truth's own curve: a scene locked to its opening view stays high.
  progression  colour distance between the first 4 and the last 4 chunks, beside ground truth's.
  switch       a second run of the prompt switches at chunk 8 to the caption of another held-out
               world of another biome. With d the colour distance to that world's ground truth
               (its first 8 chunks), reach k chunks after the switch = 1 - d(chunk) / d(the 4
               chunks before the switch): 0 no closer to the new look than before, 1 there. The
               summary takes the 8th chunk from the switch on (chunk 15).
  anchor share attention that content queries give the anchor slot, per chunk.

The issue's targets are computed from these into summary.json and RESULTS.md. Plain-string prompts
(--prompts) have no world: no ground-truth numbers (None), and pan only if the prompt has a
speed word and a direction word (left / right).
"""

import json
import statistics
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .data import SPEEDS, World, caption, sample_world_spec
from .metrics import colour_distance, pan_fidelity, pan_per_frame, realism_accuracy, revert_correlation
from .stream import ANCHOR_MODES, ChunkStream, StreamSettings
from .vae import frames_to_video

HELD_OUT_WORLDS = 10**9   # data-stage world seeds are drawn below this
SWITCH_WORLDS = 1000      # a prompt's switch target is searched from its world seed + this
PHASE = 4                 # chunks in the "first" and the "last" phase of a run
SWITCH_AT, SWITCH_SPAN = 8, 8
SHEET_CHUNKS, SHEET_RUNS = (0, 10, 20, 39), 3
SHOWCASE = 3              # examples for the demo (examples.json): the runs where the modes differ most
SPEED_WORDS = {"slow": "slow", "gentle": "slow", "leisurely": "slow", "steady": "steady", "smooth": "steady",
               "moderate": "steady", "fast": "fast", "quick": "fast", "rapid": "fast"}
# the camera panning left moves the image right (+x): the convention of World.camera_motion
IMAGE_MOTION_OF_PAN = {"left": 1, "right": -1}


def phase_chunks(chunks: int) -> int:
    """Chunks in the first and in the last phase: PHASE, fewer in short runs so the two do not overlap."""
    return max(1, min(PHASE, chunks // 2))


def switch_chunks(chunks: int) -> tuple[int, int]:
    """(chunk of the switch, chunks watched after it) for runs of `chunks`; (0, 0): no switch."""
    at = min(SWITCH_AT, chunks // 2)
    return (at, min(SWITCH_SPAN, chunks - at)) if at else (0, 0)


def held_out_entry(world: int) -> dict:
    return {"prompt": caption(sample_world_spec(world), seed=1), "world": world}


def held_out_prompts(count: int) -> list[dict]:
    """`count` captions of unseen worlds, with the world seed that gives their ground truth."""
    return [held_out_entry(HELD_OUT_WORLDS + i) for i in range(count)]


def read_prompts(path) -> list[dict]:
    """A JSON list of prompts: strings, or {"prompt": ..., "world": seed} objects. A plain string's
    requested speed and direction are read from its words (slow / steady / fast and their
    synonyms; left / right)."""
    entries = json.loads(Path(path).read_text())
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty JSON list of prompts")
    return [e if isinstance(e, dict) else {"prompt": str(e)} for e in entries]


def _words(entry: dict) -> list[str]:
    return entry["prompt"].lower().replace(",", " ").split()


def requested_speed(entry: dict) -> float | None:
    """Camera speed in pixels per frame at 64 px that the prompt asks for (None if it names none)."""
    if "world" in entry:
        return SPEEDS[sample_world_spec(int(entry["world"])).speed]
    words = [SPEED_WORDS[w] for w in _words(entry) if w in SPEED_WORDS]
    return SPEEDS[words[0]] if words else None


def requested_direction(entry: dict) -> int | None:
    """Sign of the image's x-motion that the prompt asks for (None if it names no direction)."""
    if "world" in entry:
        return -sample_world_spec(int(entry["world"])).direction
    signs = [IMAGE_MOTION_OF_PAN[w] for w in _words(entry) if w in IMAGE_MOTION_OF_PAN]
    return signs[0] if signs else None


def switch_target(world: int) -> int:
    """The held-out world a run of `world`'s caption switches to: another biome, and none of its
    own transition, so that its look is one biome's."""
    spec, seed = sample_world_spec(world), world + SWITCH_WORLDS
    while (other := sample_world_spec(seed)).next_style or other.style in (spec.style, spec.next_style):
        seed += 1
    return seed


def flat(video: np.ndarray) -> np.ndarray:
    """[chunks, F, H, W, 3] → [chunks·F, H, W, 3]"""
    return video.reshape(-1, *video.shape[2:])


def ground_truth(cache: dict, world: int, shape: tuple) -> np.ndarray:
    """The world's own video from frame 0, shaped like a generated video [chunks, F, H, W, 3]."""
    if (world, shape) not in cache:
        chunks, per_chunk, height, width = shape[:4]
        cache[world, shape] = World(sample_world_spec(world, height, width)).render(0, chunks * per_chunk).reshape(shape)
    return cache[world, shape]


def stream_video(backend, prompt: str, settings: StreamSettings, schedule: dict | None = None):
    """Per-chunk records and the frames [chunks, F, H, W, 3] of one run."""
    records, frames = [], []
    for result in ChunkStream(backend, prompt, settings, prompt_schedule=schedule):
        records.append(result.record())
        frames.append(result.frames)
    return records, np.stack(frames)


def pan_measures(video: np.ndarray, speed: float | None, direction: int | None) -> tuple[dict, dict]:
    """Pan of a video [chunks, F, H, W, 3] against the requested `speed` (pixels per frame at its
    width) and `direction` (sign of the image's x-motion): per-chunk lists, and the run's numbers."""
    chunks, per_chunk = video.shape[:2]
    pans = pan_per_frame(flat(video))
    x = pans[:, 0]
    chunk_of_pair = np.arange(1, len(x) + 1) // per_chunk
    chunk_pans = [float(np.median(x[chunk_of_pair == i])) for i in range(chunks)]
    phase = phase_chunks(chunks)
    asked = speed is not None and direction is not None

    def speed_ratio(pairs):
        return None if speed is None else float(abs(np.median(x[pairs])) / speed)

    per_chunk_pan = {"pan": chunk_pans, "pan_ratio": [p * direction / speed if asked else None for p in chunk_pans]}
    return per_chunk_pan, {
        "direction_agrees": None if direction is None else bool(np.sign(np.median(x)) == direction),
        "speed_ratio_first": speed_ratio(chunk_of_pair < phase),
        "speed_ratio_last": speed_ratio(chunk_of_pair >= chunks - phase),
        "pan_fidelity": pan_fidelity(pans, (direction * speed, 0.0)) if asked else None,
        "pan_per_frame": x.tolist()}


def scene_measures(video: np.ndarray) -> dict:
    """Revert and progression of a video [chunks, F, H, W, 3], generated or ground truth."""
    first, phase = video[0, 0], phase_chunks(len(video))
    return {"revert": [revert_correlation(chunk, first) for chunk in video],
            "colour_to_first": [colour_distance(chunk, video[0]) for chunk in video],
            "progression": colour_distance(flat(video[:phase]), flat(video[-phase:]))}


def switch_reach(video: np.ndarray, new_look: np.ndarray, at: int) -> dict:
    """How far a run [chunks, F, H, W, 3] whose prompt switched at chunk `at` gets to `new_look`
    (frames of the new prompt's ground truth): per chunk from the switch on, 1 - its colour
    distance to the new look / that of the PHASE chunks before the switch."""
    before = colour_distance(flat(video[max(0, at - PHASE):at]), new_look)
    distance = [colour_distance(chunk, new_look) for chunk in video[at:]]
    return {"at": at, "before": before, "distance": distance,
            "reach": [1 - d / before for d in distance] if before > 0 else None}


def evaluate_run(video_of, mode: str, entry: dict, settings: StreamSettings, truth: dict) -> tuple[dict, np.ndarray]:
    """One (prompt, seed) in one mode, and its prompt-switch run: the run's JSON record and frames.
    `video_of(prompt, settings, schedule)` → (records, frames), as `stream_video` without its backend."""
    records, video = video_of(entry["prompt"], settings)
    chunks, per_chunk, height, width = video.shape[:4]
    speed = requested_speed(entry)
    speed = None if speed is None else speed * width / 64  # speeds are defined at 64 px
    direction = requested_direction(entry)
    chunk_pan, run_pan = pan_measures(video, speed, direction)
    scene = scene_measures(video)
    for i, record in enumerate(records):
        record.update(pan=chunk_pan["pan"][i], pan_ratio=chunk_pan["pan_ratio"][i], revert=scene["revert"][i],
                      colour_to_first=scene["colour_to_first"][i])
    run = {"mode": mode, "prompt": entry["prompt"], "world": entry.get("world"), "seed": settings.seed,
           "requested_speed": speed, "requested_direction": direction, "chunks": records, **run_pan,
           "progression": scene["progression"], "ground_truth": None, "switch": None}
    at, span = switch_chunks(chunks)
    if "world" in entry:
        run["ground_truth"] = scene_measures(ground_truth(truth, entry["world"], video.shape))
        if at:
            target = held_out_entry(switch_target(entry["world"]))
            _, switched = video_of(entry["prompt"], replace(settings, chunks=at + span), {at: target["prompt"]})
            new_look = flat(ground_truth(truth, target["world"], (span, *video.shape[1:])))
            run["switch"] = {"prompt": target["prompt"], "world": target["world"], **switch_reach(switched, new_look, at)}
    return run, video


@torch.no_grad()
def reconstructed(vae, frames: np.ndarray) -> np.ndarray:
    """Ground truth [chunks, F, H, W, 3] encoded and decoded by `vae`."""
    video = frames_to_video(flat(frames))[None].to(vae.device, vae.dtype)
    return vae.decode_to_uint8(vae.encode(video)).reshape(frames.shape)


def realism(videos: list, worlds: list, truth: dict) -> dict:
    """Accuracy of a classifier telling the runs' frames from their worlds' ground truth, over all
    chunks and over the first and last PHASE chunks (None: fewer than two worlds to fold by)."""
    pairs = [(video, world) for video, world in zip(videos, worlds) if world is not None]
    if len({world for _, world in pairs}) < 2:
        return {"all": None, "first": None, "last": None}
    chunks = len(pairs[0][0])
    phase = phase_chunks(chunks)
    real = {world: ground_truth(truth, world, video.shape) for video, world in pairs}

    def accuracy(span: slice) -> float:
        generated = [flat(video[span]) for video, _ in pairs]
        truths = [flat(video[span]) for video in real.values()]
        return realism_accuracy(np.concatenate(generated), np.concatenate(truths),
                                np.repeat([world for _, world in pairs], len(generated[0])),
                                np.repeat(list(real), len(truths[0])), folds=min(4, len(real)))

    return {"all": accuracy(slice(None)), "first": accuracy(slice(0, phase)), "last": accuracy(slice(chunks - phase, None))}


def evaluate(load, prompts: list[dict], seeds: list[int], chunks: int, horizon: int, out, teacher=None) -> dict:
    """`load(anchor)` → Backend for that mode; `horizon`: the training rollout in chunks. `teacher`
    (a `teacher.TeacherVideo`, or None): the bidirectional teacher too, measured like the students
    on the first seed (its long videos cost many denoising steps per chunk)."""
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    truth, per_mode, sheet = {}, {}, {}
    sheet_chunks = sorted({min(c, chunks - 1) for c in SHEET_CHUNKS})
    for mode in (("teacher",) if teacher else ()) + ANCHOR_MODES:
        started = time.perf_counter()
        if mode == "teacher":
            video_of, notice, mode_seeds = teacher, None, seeds[:1]
        else:
            backend = load(mode)
            video_of, notice, mode_seeds = partial(stream_video, backend), backend.notice, seeds
            vae = backend.vae  # the students': what their latents become
        runs, videos, worlds = [], [], []
        for p, entry in enumerate(prompts):
            for seed in mode_seeds:
                settings = StreamSettings(anchor="adaptive" if mode == "teacher" else mode, chunks=chunks, seed=seed)
                run, video = evaluate_run(video_of, mode, entry, settings, truth)
                (out / "runs" / f"{mode}-p{p}-s{seed}.json").write_text(json.dumps(run, indent=1))
                runs.append(run)
                videos.append(video)
                worlds.append(run["world"])
                if p < SHEET_RUNS and seed == seeds[0]:
                    rows = sheet.setdefault(f"{entry['prompt']} (seed {seed})", {})
                    if run["world"] is not None:
                        rows["ground truth"] = ground_truth(truth, run["world"], video.shape)[sheet_chunks, 0]
                    rows[mode] = video[sheet_chunks, 0]
        per_mode[mode] = {"runs": runs, "notice": notice, "realism": realism(videos, worlds, truth),
                          "seconds": time.perf_counter() - started}
    summary = summarise(per_mode, chunks, horizon)
    # the same worlds through the students' VAE alone: what a generator that drew every latent
    # perfectly would score (hasattr: a VAE that only decodes cannot say)
    held_out = sorted({entry["world"] for entry in prompts if "world" in entry})
    summary["vae_realism"] = realism([reconstructed(vae, ground_truth(truth, w, video.shape)) for w in held_out],
                                     held_out, truth) if hasattr(vae, "encode") else None
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "examples.json").write_text(json.dumps(showcase(per_mode, chunks), indent=1))
    plot(summary, out / "per_chunk.png")
    contact_sheet(sheet, sheet_chunks, out / "contact_sheet.png")
    (out / "RESULTS.md").write_text(markdown(summary))
    return summary


# -- the summary and the targets ----------------------------------------------------------------

def mean(values):
    values = [float(v) for v in values if v is not None]
    return float(np.mean(values)) if values else None


def median(values):
    values = [v for v in values if v is not None]
    return float(statistics.median(values)) if values else None


def mean_curve(curves: list) -> list:
    """Mean over runs of per-chunk values (None where no run has one)."""
    return [mean(values) for values in zip(*curves)]


def ratio(x, y):
    return None if x is None or not y else x / y


def summarise(per_mode: dict, chunks: int, horizon: int) -> dict:
    """Per-chunk means over runs, the per-mode numbers the targets are stated in, and the targets."""
    phase = phase_chunks(chunks)
    at, after = switch_chunks(chunks)
    summary = {"chunks": chunks, "training_horizon": horizon, "phase_chunks": phase,
               "switch": {"at": at, "chunks_after": after}, "modes": {}}
    for mode, data in per_mode.items():
        runs = data["runs"]
        truths = [r["ground_truth"] for r in runs if r["ground_truth"]]
        switches = [r["switch"]["reach"] for r in runs if r["switch"] and r["switch"]["reach"]]
        curves = {key: mean_curve([[c[key] for c in r["chunks"]] for r in runs])
                  for key in ("pan_ratio", "revert", "colour_to_first", "anchor_attention_share")}
        curves["ground_truth_revert"] = mean_curve([t["revert"] for t in truths])
        curves["ground_truth_colour_to_first"] = mean_curve([t["colour_to_first"] for t in truths])
        curves["switch_reach"] = mean_curve(switches)
        summary["modes"][mode] = {
            "runs": len(runs), "notice": data["notice"], "seconds": data["seconds"], "per_chunk": curves,
            "direction_agreement": mean(r["direction_agrees"] for r in runs),
            "speed_ratio_first": median(r["speed_ratio_first"] for r in runs),
            "speed_ratio_last": median(r["speed_ratio_last"] for r in runs),
            "pan_fidelity": mean(r["pan_fidelity"] for r in runs),
            "realism_accuracy": data["realism"],
            "revert_last": mean(curves["revert"][-phase:]),
            "ground_truth_revert_last": mean(curves["ground_truth_revert"][-phase:]),
            "progression": mean(r["progression"] for r in runs),
            "progression_vs_ground_truth": ratio(mean(r["progression"] for r in runs if r["ground_truth"]),
                                                 mean(t["progression"] for t in truths)),
            "ground_truth_progression": mean(t["progression"] for t in truths),
            "switch_reach": mean(reach[-1] for reach in switches),
            # chunk 0 has nothing in the anchor slot yet
            "anchor_attention_share": mean(curves["anchor_attention_share"][1:]),
        }
    summary["targets"] = targets(summary["modes"], phase)
    return summary


def target(measured, goal: str, bound: float) -> dict:
    met = None if measured is None else {">=": measured >= bound, "<=": measured <= bound, ">": measured > bound}[goal]
    return {"measured": measured, "goal": f"{goal} {bound:g}", "met": met}


def targets(modes: dict, phase: int) -> dict:
    """Issue 12's targets, each from the measurements. The quality targets hold for every mode."""
    found = {}
    for mode, m in modes.items():
        found[f"{mode}: direction agrees with the prompt (share of runs)"] = target(m["direction_agreement"], ">=", 0.9)
        found[f"{mode}: pan speed / requested, first {phase} chunks (median)"] = target(m["speed_ratio_first"], ">=", 0.7)
        found[f"{mode}: pan speed / requested, last {phase} chunks (median)"] = target(m["speed_ratio_last"], ">=", 0.7)
        found[f"{mode}: realism classifier accuracy"] = target(m["realism_accuracy"]["all"], "<=", 0.8)
    a, s = modes["adaptive"], modes["static"]
    found["adaptive keeps its speed: last / first chunks"] = target(
        ratio(a["speed_ratio_last"], a["speed_ratio_first"]), ">=", 0.8)
    found["adaptive pans faster at the end: adaptive / static speed, last chunks"] = target(
        ratio(a["speed_ratio_last"], s["speed_ratio_last"]), ">=", 1.2)
    reverts_more = None if None in (a["revert_last"], s["revert_last"]) else s["revert_last"] - a["revert_last"]
    found["static reverts more: static - adaptive correlation with the first frame, last chunks"] = target(
        reverts_more, ">", 0)
    found["adaptive progression / ground truth's"] = target(a["progression_vs_ground_truth"], ">=", 0.5)
    return found


def showcase(per_mode: dict, chunks: int, count: int = SHOWCASE) -> list[dict]:
    """The (prompt, seed) runs where the two anchors differ most, best first, for the demo's
    examples: the static run's late frames still resembling its first frame more than the adaptive
    run's do (revert, last PHASE chunks), plus how much further the adaptive scene travelled
    (progression). Each prompt appears once; `difference` is that score, measured."""
    phase = phase_chunks(chunks)
    static = {(r["prompt"], r["seed"]): r for r in per_mode["static"]["runs"]}
    scored = []
    for run in per_mode["adaptive"]["runs"]:
        other = static.get((run["prompt"], run["seed"]))
        if other is None:
            continue
        late = [mean(c["revert"] for c in r["chunks"][-phase:]) for r in (other, run)]
        reverts_more = None if None in late else late[0] - late[1]
        travels_further = run["progression"] - other["progression"]
        scored.append({"prompt": run["prompt"], "seed": run["seed"], "chunks": chunks,
                       "difference": (reverts_more or 0.0) + travels_further,
                       "static_minus_adaptive_revert_late": reverts_more,
                       "adaptive_minus_static_progression": travels_further})
    examples, prompts = [], set()
    for entry in sorted(scored, key=lambda e: -e["difference"]):
        if entry["prompt"] not in prompts:
            prompts.add(entry["prompt"])
            examples.append(entry)
    return examples[:count]


# -- pictures and the table -----------------------------------------------------------------------

def plot(summary: dict, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("pan_ratio", None, "pan speed / requested (+: the prompt's direction)"),
              ("revert", "ground_truth_revert", "correlation with the first frame"),
              ("colour_to_first", "ground_truth_colour_to_first", "colour distance to chunk 0"),
              ("anchor_attention_share", None, "anchor attention share"),
              ("switch_reach", None, "prompt switch: reach of the new look")]
    modes = summary["modes"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.5))
    for ax, (key, truth_key, title) in zip(axes, panels):
        # the switch curve starts at the chunk of the switch: count from 1 there
        x0 = 1 if key == "switch_reach" else 0
        for mode, style in zip(modes, ("-", "--", "-.")):
            curve = modes[mode]["per_chunk"][key]
            ax.plot(range(x0, x0 + len(curve)), [np.nan if v is None else v for v in curve], style, label=mode)
        if truth_key:
            curve = next(iter(modes.values()))["per_chunk"][truth_key]
            ax.plot([np.nan if v is None else v for v in curve], ":", color="grey", label="ground truth")
        if key == "switch_reach":
            ax.set_xlabel("chunks after the switch")
        else:
            ax.axvline(summary["training_horizon"] - 0.5, color="grey", lw=0.8)
            ax.set_xlabel("chunk")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def contact_sheet(runs: dict, chunks: list, path, height: int = 192):
    """Per run {title: {row label: frames [len(chunks), H, W, 3]}}: its title above a row per
    label, one frame per chunk, upscaled by nearest neighbour so no smoothing hides blur."""
    from PIL import Image, ImageDraw

    label_width, gap, line = 110, 4, 14
    frame_h, frame_w = [frames for rows in runs.values() for frames in rows.values()][0].shape[1:3]
    scale = max(1, height // frame_h)
    tile_w, tile_h = frame_w * scale, frame_h * scale
    rows = sum(len(r) for r in runs.values())
    sheet = Image.new("RGB", (label_width + len(chunks) * (tile_w + gap), len(runs) * 2 * line + line
                              + rows * (tile_h + gap)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, chunk in enumerate(chunks):
        draw.text((label_width + c * (tile_w + gap), 0), f"chunk {chunk}", fill="black")
    y = line
    for title, rows_of_run in runs.items():
        y += line // 2
        draw.text((4, y), title, fill="black")
        y += line + line // 2
        for label, frames in rows_of_run.items():
            draw.text((4, y + tile_h // 2), label, fill="black")
            for c, frame in enumerate(frames):
                tile = Image.fromarray(frame).resize((tile_w, tile_h), Image.NEAREST)
                sheet.paste(tile, (label_width + c * (tile_w + gap), y))
            y += tile_h + gap
    sheet.save(path)


def fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(summary: dict) -> str:
    modes, phase = summary["modes"], summary["phase_chunks"]
    at, after = summary["switch"]["at"], summary["switch"]["chunks_after"]
    first = next(iter(modes.values()))
    rows = [("runs (prompts × seeds; the teacher draws the first seed only)", lambda m: m["runs"], None),
            ("direction agrees with the prompt (share of runs)", lambda m: m["direction_agreement"], None),
            (f"pan speed / requested, first {phase} chunks (median over runs)", lambda m: m["speed_ratio_first"], None),
            (f"pan speed / requested, last {phase} chunks (median over runs)", lambda m: m["speed_ratio_last"], None),
            ("frame pairs within 20 % of the requested pan", lambda m: m["pan_fidelity"], None),
            ("realism classifier accuracy, all chunks (0.5: indistinguishable)", lambda m: m["realism_accuracy"]["all"], None),
            (f"realism classifier accuracy, first {phase} chunks", lambda m: m["realism_accuracy"]["first"], None),
            (f"realism classifier accuracy, last {phase} chunks", lambda m: m["realism_accuracy"]["last"], None),
            (f"correlation with the first frame, last {phase} chunks", lambda m: m["revert_last"],
             first["ground_truth_revert_last"]),
            (f"progression: colour distance, first vs last {phase} chunks", lambda m: m["progression"],
             first["ground_truth_progression"]),
            (f"prompt switch at chunk {at}: reach of the new look by chunk {at + after - 1} (0: none, 1: all the way)",
             lambda m: m["switch_reach"], None),
            ("anchor attention share (chunks ≥ 1)", lambda m: m["anchor_attention_share"], None),
            ("seconds for all runs", lambda m: m["seconds"], None)]
    lines = [f"{summary['chunks']} chunks per run, training horizon {summary['training_horizon']} chunks. "
             "How each number is measured: `adastate/evaluate.py`.", "",
             "| | " + " | ".join(modes) + " | ground truth |", "| --- |" + " --- |" * (len(modes) + 1)]
    lines += [f"| {label} | " + " | ".join(fmt(get(m)) for m in modes.values()) + f" | {fmt(truth)} |"
              for label, get, truth in rows]
    vae = summary.get("vae_realism")
    if vae and vae["all"] is not None:
        lines += ["", f"The ground truth encoded and decoded by the students' VAE, the same classifier: {fmt(vae['all'])} "
                      f"(first {phase} chunks {fmt(vae['first'])}, last {phase} {fmt(vae['last'])}): what a model that "
                      "drew every latent perfectly would score."]
    lines += ["", "| target | measured | goal | met |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {fmt(t['measured'])} | {t['goal']} | {fmt(t['met'])} |"
              for name, t in summary["targets"].items()]
    return "\n".join(lines) + "\n\n![per-chunk curves](per_chunk.png)\n\n![contact sheet](contact_sheet.png)\n"
