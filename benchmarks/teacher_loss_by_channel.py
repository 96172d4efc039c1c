"""Which latent channels can a teacher predict? Its flow-matching loss per encoder's channels.

    python benchmarks/teacher_loss_by_channel.py --data RUN/data --vae VAE_FOLDER --teacher T1 [T2 ...]
                                                 [--clips 16] [--frames 6] [--out benchmarks/X.json]

On the same clips of a data stage's latents, the same noise and fixed noise levels, each teacher's
velocity error (the training loss) is averaged over the base encoder's channels and over the
detail encoder's (`detail_channels` of the VAE that made the data). A teacher of fewer channels
than the data (one trained before the detail channels) is measured on the base channels only.

Beside it, the loss of the best per-element linear guess from the noisy input alone, which knows
nothing of the clean latent but its variance: a model above that line has learnt nothing a
one-line formula would not give, and samples what it cannot predict as noise.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adastate.model import CausalWanTransformer  # noqa: E402
from adastate.train.losses import noised  # noqa: E402
from adastate.train.recipe import batches, load_clips  # noqa: E402
from adastate.vae import TinyVideoVAE  # noqa: E402

SIGMAS = (0.1, 0.3, 0.5, 0.7, 0.9)


def linear_guess_loss(clean: torch.Tensor, sigma: float) -> float:
    """Mean squared error of the best linear prediction of v = noise - clean from
    x = (1 - sigma) clean + sigma noise, per element, knowing only each channel's mean and variance."""
    channels = clean.transpose(0, 1).flatten(1)
    var = channels.var(dim=1)
    cov = sigma - (1 - sigma) * var                      # Cov(v, x), unit noise
    var_x = (1 - sigma) ** 2 * var + sigma**2
    return float((1 + var - cov**2 / var_x).mean())


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="a data stage's folder (clips.safetensors)")
    parser.add_argument("--vae", required=True, help="the VAE folder that encoded the data (its detail_channels)")
    parser.add_argument("--teacher", nargs="+", required=True, help="stage folders holding transformer/")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--frames", type=int, default=6, help="latent frames per clip")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    torch.set_num_threads(2)
    generator = torch.Generator().manual_seed(1)
    latents, text = next(batches(load_clips(args.data), args.clips, generator, args.frames))  # as training draws them
    noise = torch.randn(latents.shape, generator=generator)
    detail = TinyVideoVAE.load_config(args.vae).get("detail_channels", 0)
    base = latents.shape[1] - detail
    groups = {"base": slice(0, base), "detail": slice(base, latents.shape[1])} if detail else {"base": slice(0, base)}

    results = {"sigmas": SIGMAS, "linear_guess": {name: [linear_guess_loss(latents[:, part], s) for s in SIGMAS]
                                                  for name, part in groups.items()}}
    print(json.dumps(results), flush=True)
    for folder in args.teacher:
        model = CausalWanTransformer.from_pretrained(Path(folder) / "transformer").eval()
        channels = model.config.in_channels
        losses = {name: [] for name, part in groups.items() if part.stop <= channels}
        for s in SIGMAS:
            sigma = torch.full((args.clips,), s)
            velocity = model(noised(latents[:, :channels], noise[:, :channels], sigma), 1000 * sigma, text).sample
            error = (velocity - (noise - latents)[:, :channels]) ** 2
            for name in losses:
                losses[name].append(float(error[:, groups[name]].mean()))
        results[folder] = losses
        print(json.dumps({folder: losses}), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
