"""Controls for the evaluation's realism classifier (`metrics.realism_accuracy`): frames that are
plainly not the world — pixel noise, a heavy blur, a darkened picture, and mixtures of two of
them — scored against the held-out worlds' ground truth exactly as `python -m adastate eval`
scores a model (same worlds, chunk length and folds). A sound classifier tells every control apart
from the truth nearly always; a mixture scored lower than both of its parts means that one linear
boundary cannot separate real frames from two kinds of wrong ones.

    python benchmarks/realism_controls.py --out benchmarks/realism_controls.json
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adastate.data import World, sample_world_spec  # noqa: E402
from adastate.evaluate import held_out_prompts  # noqa: E402
from adastate.metrics import realism_accuracy  # noqa: E402


def noise(frames, rng):
    return rng.integers(0, 256, frames.shape, dtype=np.uint8)


def blurred(frames, rng):
    return uniform_filter(frames.astype(np.float32), size=(1, 9, 9, 1)).astype(np.uint8)


def darkened(frames, rng):
    return (frames * 0.3).astype(np.uint8)


CONTROLS = {"pixel noise": [noise], "blur (9 px box)": [blurred], "darkened to 30 %": [darkened],
            "first half blurred, second half noise": [blurred, noise],
            "first half darkened, second half noise": [darkened, noise]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", type=int, default=8)
    parser.add_argument("--frames", type=int, default=240, help="frames per world (the eval: 40 chunks x 6)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    worlds = [entry["world"] for entry in held_out_prompts(args.worlds)]
    truth = {w: World(sample_world_spec(w)).render(0, args.frames) for w in worlds}
    real = np.concatenate(list(truth.values()))
    real_groups = np.repeat(worlds, args.frames)
    rng = np.random.default_rng(0)
    results = {}
    for name, parts in CONTROLS.items():
        generated = []
        for frames in truth.values():
            halves = np.array_split(frames, len(parts))
            generated.append(np.concatenate([part(half, rng) for part, half in zip(parts, halves)]))
        results[name] = realism_accuracy(np.concatenate(generated), real, real_groups, real_groups, folds=4)
        print(f"{name:45s} {results[name]:.3f}")
    if args.out:
        args.out.write_text(json.dumps({"worlds": args.worlds, "frames": args.frames, "accuracy": results}, indent=1))


if __name__ == "__main__":
    main()
