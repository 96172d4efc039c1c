"""Motion fidelity of the bidirectional teacher: the motion the students are distilled towards.

    python benchmarks/teacher_motion.py [--teacher runs/teacher] [--vae runs/vae] [--count 6]
                                        [--steps 16] [--guidance 3.0] [--out benchmarks/teacher_motion.json]

Samples one training-length clip (4 chunks) per held-out world and noise seed with the teacher (Euler steps of the
flow ODE at the same shifted schedule, classifier-free guidance as in DMD's real score), decodes
it with the VAE and divides its optical-flow magnitude by the camera speed the prompt asked for,
as `python -m adastate eval` does for the students; and checks the direction: the mean horizontal
flow must point against the camera's pan (a camera panning right moves the scene left). Needs the
training runs (runs/ is not shipped).
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adastate.evaluate import held_out_prompts, requested_speed  # noqa: E402
from adastate.data import sample_world_spec  # noqa: E402
from adastate.metrics import motion_magnitude, optical_flow  # noqa: E402
from adastate.model import CausalWanTransformer  # noqa: E402
from adastate.sampling import shifted_sigmas, timesteps  # noqa: E402
from adastate.text import MiniLMTextEncoder  # noqa: E402
from adastate.train.recipe import guided_x0  # noqa: E402
from adastate.vae import TinyVideoVAE  # noqa: E402


@torch.no_grad()
def sample_clip(teacher, text, shape, sigmas, guidance: float, seed: int) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    null = torch.zeros_like(text)
    for sigma, next_sigma in zip(sigmas, sigmas[1:] + [0.0]):
        clean = guided_x0(teacher, x, torch.tensor([sigma]), text, null, guidance)
        noise = (x - (1 - sigma) * clean) / sigma
        x = (1 - next_sigma) * clean + next_sigma * noise
    return x


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", default="runs/teacher")
    parser.add_argument("--vae", default="runs/vae")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="initial-noise seeds")
    parser.add_argument("--out", default="benchmarks/teacher_motion.json")
    args = parser.parse_args()

    teacher = CausalWanTransformer.from_pretrained(Path(args.teacher) / "transformer").eval()
    vae = TinyVideoVAE.from_pretrained(Path(args.vae) / "vae").eval()
    encode = MiniLMTextEncoder("cpu")
    sigmas = shifted_sigmas(timesteps(args.steps))
    shape = (1, teacher.config.in_channels, 12, 16, 16)  # 4 chunks of 3 latent frames at 64 px
    runs = []
    for seed in args.seeds:
        for entry in held_out_prompts(args.count):
            latents = sample_clip(teacher, encode(entry["prompt"]), shape, sigmas, args.guidance, seed)
            frames = vae.decode_to_uint8(latents)
            fidelity = motion_magnitude(frames) / requested_speed(entry)
            horizontal = float(optical_flow(frames)[..., 0].mean())
            agrees = horizontal * sample_world_spec(entry["world"]).direction < 0
            runs.append({"prompt": entry["prompt"], "seed": seed, "motion_fidelity": fidelity, "mean_dx": horizontal,
                         "direction_agrees": agrees})
            print(f"seed {seed}  {fidelity:.3f}  dx {horizontal:+.3f} {'agrees' if agrees else 'WRONG'}  {entry['prompt']}")
    per_seed = {seed: [r for r in runs if r["seed"] == seed] for seed in args.seeds}
    result = {"command": "python " + " ".join(sys.argv), "mean_motion_fidelity":
              statistics.mean(r["motion_fidelity"] for r in runs),
              "direction_agreement": statistics.mean(r["direction_agrees"] for r in runs),
              # the share of clips moving the scene leftwards, per noise seed: near 0 or 1 means the
              # noise, not the prompt, picks the direction
              "leftward_share_per_seed": {seed: statistics.mean(r["mean_dx"] < 0 for r in rows)
                                          for seed, rows in per_seed.items()},
              "runs": runs}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print("mean motion fidelity", round(result["mean_motion_fidelity"], 3),
          "direction agreement", round(result["direction_agreement"], 3),
          "leftward share per seed", result["leftward_share_per_seed"])


if __name__ == "__main__":
    main()
