"""GPU smoke benchmark: the wan backend at Wan 2.1 1.3B size, streaming and training, on one GPU.

    python benchmarks/gpu_smoke.py [--chunks 20] [--out benchmarks/gpu_smoke.json]

Needs one CUDA GPU (an H100-class GPU runs it in well under 5 minutes) and no network: nothing is
downloaded. The transformer has Wan 2.1 1.3B's configuration with random weights in bfloat16 (the
modules diffusers keeps in float32 stay in float32, as when real weights load), the VAE is Wan 2.1's
VAE architecture with random weights, and the text encoder is a stand-in that gives each prompt
fixed random UMT5-sized states (512 x 4096). Random weights cost what trained ones cost.

It streams `--chunks` chunks at 480x832 in each anchor mode, after a two-chunk warm-up of each, with
the app's defaults (4 steps, a window of one chunk, anchor share measured), and records per chunk
the seconds (the split into step and decode is approximate on a GPU, whose kernels run
asynchronously; the total is exact, since decoded frames are copied to the host), then per mode
the generated frames per second, the first chunk's latency and the peak GPU memory, and the
adaptive / static cost per chunk. Then two training steps of each stage of the recipe (vae,
teacher, causal, dmd) run on the GPU, on the embedded model's configuration and synthetic latent
clips: that the recipe runs on a GPU, and what a step costs there. The JSON has what
docs/wan-backend.md predicts beside what was measured.

On a machine without a CUDA GPU it exits with code 2 and says so.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adastate.backends import Backend  # noqa: E402
from adastate.backends.wan import FPS, TEXT_TOKENS, VIDEO_SIZE, WanVideoVAE, place  # noqa: E402
from adastate.model import TINY_CONFIG, WAN_1_3B_CONFIG, CausalWanTransformer  # noqa: E402
from adastate.stream import ANCHOR_MODES, ChunkStream, StreamSettings  # noqa: E402
from adastate.vae import TINY_VAE_CONFIG  # noqa: E402

NO_GPU = 2  # exit code without a CUDA GPU
PROMPT = "a slow pan to the right across snowy hills with pine trees"
WARMUP_CHUNKS = 2
TRAIN_STAGES = ("vae", "teacher", "causal", "dmd")
TRAIN_STEPS = 2
# docs/wan-backend.md, "Frames per second and first-frame latency" (H100, 480x832, window 1 chunk)
PREDICTED = {"adaptive": {"generated_fps": 16.5, "first_chunk_seconds": 0.91},
             "static": {"generated_fps": 21.5, "first_chunk_seconds": 0.69},
             "adaptive_static_cost_ratio": 1.30}


class RandomPromptStates:
    """A stand-in for UMT5: each prompt becomes fixed random token states [1, tokens, text_dim]."""

    def __init__(self, text_dim: int, tokens: int = TEXT_TOKENS):
        self.text_dim, self.tokens = text_dim, tokens

    def __call__(self, prompt: str) -> torch.Tensor:
        generator = torch.Generator().manual_seed(sum(map(ord, prompt)))
        return torch.randn(1, self.tokens, self.text_dim, generator=generator)


def smoke_backend(device: torch.device, dtype: torch.dtype, transformer_config: dict, vae_config: dict,
                  video_size: tuple[int, int]) -> Backend:
    """A wan backend of random weights: `transformer_config` (Wan 1.3B's by default) and an
    `AutoencoderKLWan(**vae_config)` ({}: Wan 2.1's VAE)."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    with torch.device(device):  # initialised where it runs: no 5.7 GB float32 copy on the host
        transformer = CausalWanTransformer(**transformer_config)
        vae = AutoencoderKLWan(**vae_config)
    transformer = place(transformer, device, dtype)
    vae = WanVideoVAE(torch.nn.Module.to(vae, dtype=dtype).eval().requires_grad_(False))
    if vae.config.latent_channels != transformer.config.in_channels:
        raise ValueError(f"the VAE has {vae.config.latent_channels} latent channels, the transformer "
                         f"{transformer.config.in_channels}")
    height, width = video_size
    return Backend(name="wan", transformer=transformer, vae=vae,
                   encode_prompt=RandomPromptStates(transformer.config.text_dim),
                   latent_height=height // vae.config.spatial_factor, latent_width=width // vae.config.spatial_factor,
                   fps=FPS, device=device, dtype=dtype)


def peak_memory_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None


def reset_peak_memory(device: torch.device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def stream_mode(backend: Backend, anchor: str, chunks: int) -> dict:
    reset_peak_memory(backend.device)
    records = []
    for result in ChunkStream(backend, PROMPT, StreamSettings(anchor=anchor, chunks=chunks)):
        records.append({"index": result.index, "frames": int(result.frames.shape[0]), "seconds": result.seconds,
                        "anchor_attention_share": result.anchor_attention_share})
    later = records[1:] or records
    return {
        "chunks": records,
        "first_chunk_seconds": records[0]["seconds"]["total"],
        "generated_fps": sum(r["frames"] for r in records) / sum(r["seconds"]["total"] for r in records),
        "generated_fps_after_first_chunk": (sum(r["frames"] for r in later)
                                            / sum(r["seconds"]["total"] for r in later)),
        "median_chunk_seconds_after_first": statistics.median(r["seconds"]["total"] for r in later),
        "peak_memory_gb": peak_memory_gb(backend.device),
    }


def synthetic_clips(folder: Path, config: dict, clips: int = 8, frames: int = 6, latent: int = 16):
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    save_file({"latents": torch.randn(clips, config["in_channels"], frames, latent, latent, generator=generator),
               "text": torch.randn(clips, 16, config["text_dim"], generator=generator)}, folder / "clips.safetensors")


def train_stages(device: torch.device, model_config: dict, vae_config: dict, folder: Path) -> dict:
    """TRAIN_STEPS steps of each stage through the recipe (which trains on the GPU when there is one)."""
    from adastate.train.recipe import TrainConfig, train

    synthetic_clips(folder, model_config)
    common = dict(steps=TRAIN_STEPS, batch_size=2, chunks=2, model=dict(model_config), data=str(folder),
                  log_every=1, save_every=TRAIN_STEPS)
    extra = {"vae": dict(vae_model=vae_config, size=64), "teacher": {},
             "causal": dict(init=str(folder / "teacher")),
             "dmd": dict(init=str(folder / "causal"), teacher=str(folder / "teacher"), fake_updates=1)}
    results = {}
    for stage in TRAIN_STAGES:
        reset_peak_memory(device)
        started = time.perf_counter()
        train(TrainConfig(stage=stage, out=str(folder / stage), **common, **extra[stage]))
        seconds = time.perf_counter() - started
        log = [json.loads(line) for line in (folder / stage / "log.jsonl").read_text().splitlines()]
        losses = {k: v for k, v in log[-1].items() if k not in ("step", "seconds")}
        results[stage] = {"steps": TRAIN_STEPS, "seconds_with_setup": seconds, "last_losses": losses,
                          "peak_memory_gb": peak_memory_gb(device)}
    return results


def measure(device: torch.device, dtype: torch.dtype, chunks: int, transformer_config: dict = WAN_1_3B_CONFIG,
            vae_config: dict | None = None, video_size: tuple[int, int] = VIDEO_SIZE,
            train_model_config: dict = TINY_CONFIG, train_vae_config: dict = TINY_VAE_CONFIG) -> dict:
    started = time.perf_counter()
    backend = smoke_backend(device, dtype, transformer_config, vae_config or {}, video_size)
    setup_seconds = time.perf_counter() - started
    parameters = sum(p.numel() for p in backend.transformer.parameters())
    cold = {mode: stream_mode(backend, mode, WARMUP_CHUNKS)["first_chunk_seconds"] for mode in ANCHOR_MODES}
    streaming = {mode: stream_mode(backend, mode, chunks) for mode in ANCHOR_MODES}
    ratio = (streaming["adaptive"]["median_chunk_seconds_after_first"]
             / streaming["static"]["median_chunk_seconds_after_first"])
    del backend
    if device.type == "cuda":
        torch.cuda.empty_cache()
    with tempfile.TemporaryDirectory(prefix="gpu-smoke-") as folder:
        training = train_stages(device, train_model_config, train_vae_config, Path(folder))
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "torch": torch.__version__, "dtype": str(dtype).removeprefix("torch."),
        "video_size": list(video_size), "chunks": chunks, "transformer_config": transformer_config,
        "transformer_parameters": parameters,
        "setup_seconds": setup_seconds,
        "cold_first_chunk_seconds": cold,  # the process's first chunk of each mode, before any warm-up
        "streaming": streaming,
        "adaptive_static_cost_ratio": ratio,
        "predicted": PREDICTED,
        "training": {"model_config": train_model_config, "stages": training},
        "seconds": time.perf_counter() - started,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=20, help="chunks streamed per anchor mode")
    parser.add_argument("--out", default="benchmarks/gpu_smoke.json")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_smoke.py measures the wan backend on a CUDA GPU, and this machine has none "
              "(torch.cuda.is_available() is False): run it on a machine with an H100-class GPU. "
              "Nothing was measured or written.", file=sys.stderr)
        return NO_GPU
    if args.chunks < 2:
        parser.error("--chunks must be at least 2 (the first chunk is measured apart from the rest)")
    results = measure(torch.device("cuda"), torch.bfloat16, args.chunks)
    Path(args.out).write_text(json.dumps(results, indent=2))
    for mode in ANCHOR_MODES:
        s = results["streaming"][mode]
        print(f"{mode}: {s['generated_fps_after_first_chunk']:.1f} FPS after the first chunk "
              f"(predicted {PREDICTED[mode]['generated_fps']}), first chunk {s['first_chunk_seconds']:.2f} s, "
              f"peak {s['peak_memory_gb']:.1f} GB")
    print(f"adaptive / static cost per chunk: {results['adaptive_static_cost_ratio']:.2f} "
          f"(predicted {PREDICTED['adaptive_static_cost_ratio']}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
