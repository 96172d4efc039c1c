"""What one streamed chunk costs the demo's process, piece by piece, in CPU seconds.

    python benchmarks/chunk_cost.py [--threads 1] [--rounds 5] [--out benchmarks/chunk_cost.json]

On two cores, 16 frames a second of 6-frame chunks leave 0.75 CPU-seconds per chunk for everything:
the model, the pictures, the server and, for a local demo, the browser. Each comparison here is
interleaved round by round in one process, so the machine's drift hits both sides alike:

- the engine's chunk (denoise, cache write, decode) with the anchor share measured from the
  flash kernel's log-sum-exp (what streams), from an extra value channel (the way any device can),
  and not measured;
- the VAE decoder with its weights as loaded and in channels-last memory format (what the tiny
  backend uses);
- a state picture and a peek saved as lossless WebP at the default effort and at `demo.WEBP`;
- one redraw of the per-chunk plots of a 40-chunk run, as Gradio renders it (savefig to WebP).
"""

import argparse
import copy
import io
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = "a slow pan to the right across green hills under a blue sky"


def cpu_seconds(action) -> float:
    start = time.process_time()
    action()
    return time.process_time() - start


def compare(variants: dict, rounds: int, repeats: int) -> dict:
    """Median CPU seconds per call of each variant, measured in turns."""
    seconds = {name: [] for name in variants}
    for _ in range(rounds):
        for name, action in variants.items():
            seconds[name].append(cpu_seconds(lambda: [action() for _ in range(repeats)]) / repeats)
    return {name: statistics.median(values) for name, values in seconds.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the demo leaves a core to the rest)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from adastate import demo
    from adastate.backends import load_backend
    from adastate.model import kv_cache
    from adastate.stream import ChunkStream, StreamSettings
    from adastate.viz import chunk_plots, state_colors, state_peek

    torch.set_num_threads(args.threads)
    backend = load_backend("tiny")
    results = {"command": "python " + " ".join(sys.argv), "threads": args.threads}

    # the engine: one stream per way of measuring the share, past the window, advanced in turns
    streams = {name: ChunkStream(backend, PROMPT, StreamSettings(chunks=10_000, measure_anchor_share=measure))
               for name, measure in (("share from log-sum-exp", True), ("share from a value channel", True),
                                     ("share not measured", False))}

    def chunk(name):
        def step():
            if name == "share from a value channel":
                chosen, kv_cache.attention_with_anchor_share = (kv_cache.attention_with_anchor_share,
                                                                kv_cache.share_from_indicator)
                try:
                    streams[name].next_chunk()
                finally:
                    kv_cache.attention_with_anchor_share = chosen
            else:
                streams[name].next_chunk()
        return step

    for name in streams:
        for _ in range(3):
            chunk(name)()
    results["engine chunk"] = compare({name: chunk(name) for name in streams}, args.rounds, 4)

    vae = backend.vae
    as_loaded = copy.deepcopy(vae)
    as_loaded.decoder.to(memory_format=torch.contiguous_format)
    latents = torch.randn(1, backend.latent_channels, 3, backend.latent_height, backend.latent_width)
    with torch.no_grad():
        results["decode a chunk"] = compare({"contiguous weights": lambda: as_loaded.decode(latents),
                                             "channels-last weights": lambda: vae.decode(latents)}, args.rounds, 5)

    state = torch.randn(backend.latent_channels, 1, backend.latent_height, backend.latent_width)
    pictures = {"state": state_colors(state), "peek": state_peek(vae, state)}

    def encoded(picture, options) -> bytes:
        out = io.BytesIO()
        Image.fromarray(picture).save(out, format="WEBP", **options)
        return out.getvalue()

    saves = {f"{name}, {label}": (picture, options) for name, picture in pictures.items()
             for label, options in (("WebP default effort", {"lossless": True}), ("demo.WEBP", demo.WEBP))}
    results["save a picture"] = compare({label: (lambda save=save: encoded(*save)) for label, save in saves.items()},
                                        args.rounds, 20)
    results["picture bytes"] = {label: len(encoded(*save)) for label, save in saves.items()}

    rng = np.random.default_rng(0)
    records = [{"index": i, "motion": float(rng.random()), "anchor_attention_share": float(rng.random()),
                "state_delta": float(rng.random()) if i else None} for i in range(40)]

    def redraw(modes):
        return lambda: chunk_plots({mode: records for mode in modes}).savefig(io.BytesIO(), format="webp")

    results["redraw the plots of 40 chunks"] = compare(
        {"one mode (generate)": redraw(["adaptive"]), "two modes (compare)": redraw(["adaptive", "static"])},
        args.rounds, 1)
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
