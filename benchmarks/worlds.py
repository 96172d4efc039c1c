"""How much the procedural worlds progress along a journey, how smoothly, and how fast they render.

    python benchmarks/worlds.py [--worlds 24] [--frames 480] [--out benchmarks/worlds.json]
                                [--sheet docs/worlds.png]

Over `worlds` random worlds (seeds from 10⁶ on; any fixed set will do), each rendered from frame 0
for `frames` frames, cut into chunks of 12 frames (480 frames = 40 chunks):

- progression: colour distance (`adastate.metrics.colour_distance`, Bhattacharyya on hue ×
  saturation histograms) of the first 4 chunks vs the last 4. Target ≥ 0.25 (0.09 before the
  worlds progressed). The same with 4 brightness bins is reported beside it.
- smoothness: colour distance of every chunk to the next (no cuts). Target ≤ 0.08.
- camera motion: the rendered pan of every frame pair by phase correlation, against the ground
  truth `World.camera_motion`; and Farneback flow magnitude over the speed, per chunk.
- render speed: milliseconds per frame, for whole runs and for 12-frame clips at random starts.

Writes the numbers to `out` and a contact sheet to `sheet`: one world of each biome per row, the
first frame of chunks 0, 8, 16, 24, 32 and 39 across, 3× nearest-neighbour.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adastate.data.worlds import STYLES, World, sample_world_spec  # noqa: E402
from adastate.metrics import colour_distance, motion_magnitude  # noqa: E402

CHUNK = 12                      # video frames per chunk: 3 latent frames × 4 video frames
FIRST_SEED = 10**6
SHEET_CHUNKS = (0, 8, 16, 24, 32, 39)


def phase_correlation_pan(frames: np.ndarray) -> np.ndarray:
    """Global image shift (dx, dy) of every consecutive frame pair, in pixels."""
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float64) for f in frames]
    window = cv2.createHanningWindow(grey[0].shape[::-1], cv2.CV_64F)
    return np.array([cv2.phaseCorrelate(a, b, window)[0] for a, b in zip(grey, grey[1:])])


def measure(seed: int, frames: int) -> dict:
    world = World(sample_world_spec(seed))
    started = time.perf_counter()
    video = world.render(0, frames)
    render_s = time.perf_counter() - started
    chunks = np.split(video, frames // CHUNK)
    adjacent = [colour_distance(a, b) for a, b in zip(chunks, chunks[1:])]
    first, last = np.concatenate(chunks[:4]), np.concatenate(chunks[-4:])
    pan_error = np.abs(phase_correlation_pan(video) - world.camera_motion(1, frames - 1))
    speed = world.spec.camera_speed
    start, end = world.attributes_at(0), world.attributes_at(frames - 1)
    return {"seed": seed, "style": world.spec.style, "next_style": world.spec.next_style,
            "speed": world.spec.speed, "path": world.spec.path,
            "first_vs_last": colour_distance(first, last),
            "first_vs_last_with_brightness": colour_distance(first, last, value_bins=4),
            "adjacent_mean": float(np.mean(adjacent)), "adjacent_max": float(np.max(adjacent)),
            "pan_error_px_mean": float(pan_error.mean()), "pan_error_px_max": float(pan_error.max()),
            "flow_over_speed": float(np.mean([motion_magnitude(c) for c in chunks[::8]]) / speed),
            "render_ms_per_frame": 1000 * render_s / frames,
            "start": {k: start[k] for k in ("time_of_day", "cloud_cover", "roughness", "object_density", "path_width", "biome")},
            "end": {k: end[k] for k in ("time_of_day", "cloud_cover", "roughness", "object_density", "path_width", "biome")}}


def clip_render_ms(seeds, clips_per_world: int = 4) -> float:
    """Milliseconds per frame rendering 12-frame clips at random starts (as training data does)."""
    rng = np.random.default_rng(0)
    started, count = time.perf_counter(), 0
    for seed in seeds:
        world = World(sample_world_spec(seed))
        for start in rng.integers(0, 20000, clips_per_world):
            world.render(int(start), CHUNK)
            count += CHUNK
    return 1000 * (time.perf_counter() - started) / count


def contact_sheet(path: Path, frames: int):
    """One world of each biome (the first of that biome from FIRST_SEED on) per row."""
    seeds, seed = {}, FIRST_SEED
    while len(seeds) < len(STYLES):
        seeds.setdefault(sample_world_spec(seed).style, seed)
        seed += 1
    rows = []
    for style in STYLES:
        world = World(sample_world_spec(seeds[style]))
        rows.append(np.concatenate([world.render(c * CHUNK, 1)[0] for c in SHEET_CHUNKS if c * CHUNK < frames], 1))
    sheet = np.concatenate(rows, 0).repeat(3, 0).repeat(3, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return [seeds[style] for style in STYLES]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", type=int, default=24)
    parser.add_argument("--frames", type=int, default=480)
    parser.add_argument("--out", default="benchmarks/worlds.json")
    parser.add_argument("--sheet", default="docs/worlds.png")
    args = parser.parse_args()
    seeds = range(FIRST_SEED, FIRST_SEED + args.worlds)
    runs = [measure(seed, args.frames) for seed in seeds]

    def column(key):
        return np.array([run[key] for run in runs])

    summary = {
        "worlds": args.worlds, "frames": args.frames, "chunk_frames": CHUNK,
        "first_vs_last_mean": column("first_vs_last").mean(), "first_vs_last_min": column("first_vs_last").min(),
        "first_vs_last_with_brightness_mean": column("first_vs_last_with_brightness").mean(),
        "adjacent_mean": column("adjacent_mean").mean(), "adjacent_max_mean": column("adjacent_max").mean(),
        "adjacent_max": column("adjacent_max").max(),
        "pan_error_px_mean": column("pan_error_px_mean").mean(), "pan_error_px_max": column("pan_error_px_max").max(),
        "flow_over_speed_mean": column("flow_over_speed").mean(),
        "render_ms_per_frame_runs": column("render_ms_per_frame").mean(),
        "render_ms_per_frame_clips": clip_render_ms(seeds),
        "biome_transitions": sum(run["next_style"] is not None for run in runs)}
    summary = {k: round(float(v), 4) if isinstance(v, (float, np.floating)) else v for k, v in summary.items()}
    summary["sheet_seeds"] = contact_sheet(Path(args.sheet), args.frames)

    print(f"{'seed':>8} {'style':<16} {'→ next':<16} {'speed':<7} {'first/last':>10} {'+bright':>8} "
          f"{'adj mean':>8} {'adj max':>8} {'pan err':>8} {'ms/frame':>8}")
    for run in runs:
        print(f"{run['seed']:>8} {run['style']:<16} {(run['next_style'] or ''):<16} {run['speed']:<7} "
              f"{run['first_vs_last']:>10.3f} {run['first_vs_last_with_brightness']:>8.3f} {run['adjacent_mean']:>8.3f} "
              f"{run['adjacent_max']:>8.3f} {run['pan_error_px_mean']:>8.3f} {run['render_ms_per_frame']:>8.2f}")
    for key, value in summary.items():
        print(f"{key}: {value}")
    Path(args.out).write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
