"""Does the bidirectional teacher draw the world and move it as the prompt asks? Checked by
looking and by measuring, before anything is distilled from it.

    python benchmarks/teacher_motion.py --teacher RUN/teacher --vae RUN/vae [--count 8] [--seeds 0 1 2]
                                        [--steps 24] [--guidance 3.0] [--shift 2.0] [--frames 6]
                                        [--out benchmarks/teacher_motion.json] [--sheet docs/teacher_samples.png]

Samples one clip of `frames` latent frames per held-out world (their captions) and noise seed
with the teacher: Euler steps of the flow ODE, classifier-free guidance as in DMD's real score.
Decoded clips are measured against the world's ground truth:
- pan per frame pair by phase correlation: the direction agrees with the prompt when the median
  x-pan has the sign of the true image motion; the speed ratio is |median pan| / the asked speed;
  the share of clips moving the scene leftwards per noise seed (near 0 or 1 for every seed: the
  noise, not the prompt, picks the direction);
- realism: a gradient-feature classifier telling samples from the same worlds' true frames apart.
The contact sheet shows, per world, the ground truth above the teacher's samples (first, middle
and last frame of each clip).
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adastate.data import World, sample_world_spec  # noqa: E402
from adastate.evaluate import held_out_prompts  # noqa: E402
from adastate.metrics import pan_per_frame, realism_accuracy  # noqa: E402
from adastate.model import CausalWanTransformer  # noqa: E402
from adastate.sampling import shifted_sigmas, timesteps  # noqa: E402
from adastate.teacher import sample_clip  # noqa: E402
from adastate.text import MiniLMTextEncoder  # noqa: E402
from adastate.vae import TinyVideoVAE  # noqa: E402


def contact_sheet(rows: list[tuple[str, np.ndarray]], path: Path, scale: int = 3):
    """One row per (label, frames): the frames side by side, upscaled without smoothing."""
    from PIL import Image, ImageDraw

    strips = [np.concatenate(list(frames), axis=1) for _, frames in rows]
    width = max(s.shape[1] for s in strips)
    strips = [np.pad(s, ((0, 2), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in strips]
    sheet = np.concatenate(strips).repeat(scale, 0).repeat(scale, 1)
    label_width = 520
    canvas = Image.new("RGB", (sheet.shape[1] + label_width, sheet.shape[0]), "white")
    canvas.paste(Image.fromarray(sheet), (label_width, 0))
    draw = ImageDraw.Draw(canvas)
    row_height = sheet.shape[0] // len(rows)
    for i, (label, _) in enumerate(rows):
        draw.text((6, i * row_height + row_height // 2 - 6), label[:80], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", required=True, help="a teacher stage folder (holding transformer/)")
    parser.add_argument("--vae", required=True, help="a vae stage folder (holding vae/)")
    parser.add_argument("--count", type=int, default=8, help="held-out worlds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="initial-noise seeds")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--shift", type=float, default=2.0, help="sampling schedule shift")
    parser.add_argument("--frames", type=int, default=6, help="latent frames per clip (the teacher's clip length)")
    parser.add_argument("--out", default="benchmarks/teacher_motion.json")
    parser.add_argument("--sheet", default="docs/teacher_samples.png")
    args = parser.parse_args()

    teacher = CausalWanTransformer.from_pretrained(Path(args.teacher) / "transformer").eval()
    vae = TinyVideoVAE.from_pretrained(Path(args.vae) / "vae").eval()
    encode = MiniLMTextEncoder("cpu")
    sigmas = shifted_sigmas(timesteps(args.steps), args.shift)
    tf = vae.config.temporal_factor
    shape = (1, teacher.config.in_channels, args.frames, 64 // vae.config.spatial_factor, 64 // vae.config.spatial_factor)
    runs, sheet, samples, truths, groups = [], [], [], [], []
    for w, entry in enumerate(held_out_prompts(args.count)):
        world = World(sample_world_spec(entry["world"]))
        truth = world.render(0, args.frames * tf)
        true_dx = float(world.camera_motion(1, 1)[0, 0])
        pick = [0, len(truth) // 2, len(truth) - 1]
        sheet.append((f"truth: {entry['prompt']}", truth[pick]))
        truths.append(truth)
        for seed in args.seeds:
            frames = vae.decode_to_uint8(sample_clip(teacher, encode(entry["prompt"]), shape, sigmas, args.guidance,
                                                        torch.Generator().manual_seed(seed)))
            dx = float(np.median(pan_per_frame(frames)[:, 0]))
            runs.append({"prompt": entry["prompt"], "seed": seed, "median_dx": dx, "true_dx": true_dx,
                         "direction_agrees": dx * true_dx > 0, "speed_ratio": abs(dx) / abs(true_dx)})
            print(f"seed {seed}  dx {dx:+.2f} (asked {true_dx:+.1f})  {entry['prompt']}", flush=True)
            sheet.append((f"teacher, noise seed {seed}", frames[pick]))
            samples.append(frames)
            groups.append(w)
    sample_groups = np.repeat(groups, len(samples[0]))
    truth_groups = np.repeat(np.arange(args.count), len(truths[0]))
    realism = realism_accuracy(np.concatenate(samples), np.concatenate(truths), sample_groups, truth_groups,
                               folds=min(4, args.count))
    result = {"command": "python " + " ".join(sys.argv),
              "direction_agreement": statistics.mean(r["direction_agrees"] for r in runs),
              "median_speed_ratio": statistics.median(r["speed_ratio"] for r in runs),
              "leftward_share_per_seed": {seed: statistics.mean(r["median_dx"] < 0 for r in runs if r["seed"] == seed)
                                          for seed in args.seeds},
              "realism_accuracy": realism, "runs": runs}
    Path(args.out).write_text(json.dumps(result, indent=2))
    contact_sheet(sheet, Path(args.sheet))
    print({k: v for k, v in result.items() if k != "runs"})


if __name__ == "__main__":
    main()
