"""Training throughput of the teacher step: clips per second and achieved FLOP/s, before and after.

    python benchmarks/train_throughput.py [--steps 6] [--rounds 3] [--out benchmarks/train_throughput.json]

"before" is the recipe that trained the shipped teacher: batch 4 of 12-latent-frame clips (4
chunks), 8 latent channels, no pooled-prompt path, threads as torch chose. "after" is the
campaign's: batch 16 of 6-frame clips (2 chunks: the teacher scores DMD's 2-chunk gradient window,
so longer clips buy it nothing), the 24-channel frame-wise VAE latents and the pooled-prompt path
of TINY_CONFIG, with bfloat16 autocast (`--bf16`: this CPU has avx512_bf16; weights, norms and
the optimiser stay float32). A few extra variants show where the gain comes from. Variants are timed in
alternation, round after round, so the machine's drift hits all alike; the matmul rate is measured
in the same run. FLOPs are counted by torch's FlopCounterMode on one forward + backward.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adastate.bench import matmul_rate  # noqa: E402
from adastate.model import TINY_CONFIG, CausalWanTransformer  # noqa: E402
from adastate.train.losses import flow_matching_loss, noised  # noqa: E402

OLD_CONFIG = {k: v for k, v in TINY_CONFIG.items() if k != "pooled_text_dim"} | {"in_channels": 8, "out_channels": 8}
VARIANTS = {  # name: (model config, batch, latent frames, bfloat16 autocast)
    "before: batch 4 x 12 frames": (OLD_CONFIG, 4, 12, False),
    "batch 16 x 12 frames": (OLD_CONFIG, 16, 12, False),
    "batch 16 x 6 frames": (OLD_CONFIG, 16, 6, False),
    "batch 16 x 6 frames, 24 channels, pooled prompt": (TINY_CONFIG, 16, 6, False),
    "after: the same with bfloat16 autocast": (TINY_CONFIG, 16, 6, True),
}


def teacher_step(model, optimizer, batch: int, frames: int, bf16: bool):
    """One step as train_teacher does it (flow matching, AdamW, clipped gradients)."""
    channels = model.config.in_channels
    latents = torch.randn(batch, channels, frames, 16, 16)
    text, sigma, noise = torch.randn(batch, 64, 384), torch.rand(batch), torch.randn_like(latents)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        velocity = model(noised(latents, noise, sigma), 1000 * sigma, text).sample
    loss = flow_matching_loss(velocity, latents, noise)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/train_throughput.json")
    args = parser.parse_args()

    setups = {}
    for name, (config, batch, frames, bf16) in VARIANTS.items():
        torch.manual_seed(0)
        model = CausalWanTransformer(**config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        with FlopCounterMode(display=False) as counter:
            teacher_step(model, optimizer, batch, frames, bf16)
        setups[name] = (model, optimizer, (batch, frames, bf16), counter.get_total_flops())
    seconds = {name: [] for name in setups}
    for _ in range(args.rounds):
        for name, (model, optimizer, shape, _) in setups.items():
            teacher_step(model, optimizer, *shape)  # warm
            start = time.perf_counter()
            for _ in range(args.steps):
                teacher_step(model, optimizer, *shape)
            seconds[name].append((time.perf_counter() - start) / args.steps)
    rate = matmul_rate()
    results = {"command": "python " + " ".join(sys.argv), "threads": torch.get_num_threads(),
               "matmul_gflops": rate / 1e9, "variants": {}}
    for name, (_, _, (batch, frames, _), flops) in setups.items():
        step = statistics.median(seconds[name])
        results["variants"][name] = {"batch": batch, "latent_frames": frames, "seconds_per_step": step,
                                     "clips_per_second": batch / step, "gflop_per_step": flops / 1e9,
                                     "fraction_of_matmul_rate": flops / step / rate}
    before = results["variants"]["before: batch 4 x 12 frames"]["clips_per_second"]
    for name, row in results["variants"].items():
        row["clips_per_second_vs_before"] = row["clips_per_second"] / before
        print(f"{name:50s} {row['seconds_per_step']:.3f} s/step  {row['clips_per_second']:5.1f} clips/s "
              f"({row['clips_per_second_vs_before']:.2f}x)  {100 * row['fraction_of_matmul_rate']:.0f} % of matmul rate")
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
