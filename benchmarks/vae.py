"""Does the VAE keep the world's look and motion? Reconstruction of held-out worlds, measured.

    python benchmarks/vae.py [--vae assets/tiny-adaptive/vae NEW/vae ...] [--worlds 16] [--frames 48]
                             [--out benchmarks/vae.json] [--sheet docs/vae.png]

For each VAE, on the same held-out worlds (seeds the data stages never draw) and clip starts:
- PSNR of the reconstruction (target ≥ 32 dB);
- pan: the global shift between consecutive decoded frames (phase correlation) against the
  world's true camera motion; the share of frame pairs within 20 % of the truth (target ≥ 90 %)
  and the per-position mean pan inside a latent group (a VAE that folds N frames into one
  latent and decodes them as one picture pans 0 inside the group and jumps between groups);
- realism: a classifier on gradient-orientation features telling decoded from real frames
  apart, folds grouped by clip (target ≤ 0.80; 0.5 = indistinguishable);
- code coherence, per encoder (base; detail if any): correlation of each frame's code with the
  next frame's, as they are and after moving the earlier one by the camera's pan. A transformer
  predicts a code that moves with the picture; one that changes wholesale when the picture moves by
  a pixel is noise to it, and a model trained on it draws noise;
- streaming: decoding chunk by chunk (3 latent frames) equals decoding the whole clip;
- speed: seconds to decode one chunk (3 latent frames) and to encode it, median of repeats.
The contact sheet shows, per VAE, ground truth above reconstruction for consecutive frames.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adastate.data import World, sample_world_spec  # noqa: E402
from adastate.evaluate import HELD_OUT_WORLDS  # noqa: E402
from adastate.metrics import pan_fidelity, pan_per_frame, realism_accuracy  # noqa: E402
from adastate.train.recipe import shifted  # noqa: E402
from adastate.vae import TinyVideoVAE, frames_to_video  # noqa: E402

CHUNK = 3                      # latent frames per streamed chunk


def held_out_clips(count: int, frames: int) -> list[dict]:
    rng = np.random.default_rng(0)
    clips = []
    for i in range(count):
        world = World(sample_world_spec(HELD_OUT_WORLDS + i))
        start = int(rng.integers(0, 20000))
        clips.append({"frames": world.render(start, frames), "motion": world.camera_motion(start + 1, frames - 1)})
    return clips


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def median_seconds(fn, repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def code_coherence(vae: TinyVideoVAE, latents: torch.Tensor, motion: np.ndarray, width: int) -> list[dict]:
    """Per encoder: correlation of consecutive coded units' codes, as they are and with the
    earlier one moved by the camera's pan between them (both cropped alike)."""
    n = vae.coded_frames
    result = []
    for codes in vae.frame_codes(latents):
        earlier, later = codes[:-1, None, :, None], codes[1:, None, :, None]  # [units - 1, 1, c, 1, h, w]
        moved = [shifted(earlier[u], *(motion[u * n:(u + 1) * n].sum(0) / width)) for u in range(len(earlier))]
        result.append({"as_is": correlation(earlier[:, 0], later[:, 0]),
                       "pan_compensated": correlation(torch.cat(moved), torch.cat([shifted(x, 0, 0) for x in later]))})
    return result


@torch.no_grad()
def measure(vae: TinyVideoVAE, clips: list[dict]) -> tuple[dict, list[np.ndarray]]:
    tf = vae.config.temporal_factor
    decoded, scores, fidelity, in_group = [], [], [], [[] for _ in range(tf)]
    streaming_error, coherence = 0.0, []
    for clip in clips:
        latents = vae.encode(frames_to_video(clip["frames"])[None])
        frames = vae.decode_to_uint8(latents)
        decoded.append(frames)
        scores.append(psnr(frames, clip["frames"]))
        pan = pan_per_frame(frames)
        coherence.append(code_coherence(vae, latents, clip["motion"], frames.shape[2]))
        fidelity.append(pan_fidelity(pan, clip["motion"]))
        # pan of the pair (t-1, t) by t's position inside its latent group, relative to the truth
        for t in range(1, len(frames)):
            in_group[t % tf].append(pan[t - 1, 0] / clip["motion"][t - 1, 0])
        chunked = np.concatenate([vae.decode_to_uint8(part) for part in latents.split(CHUNK, dim=2)])
        streaming_error = max(streaming_error, float(np.abs(chunked.astype(int) - frames.astype(int)).max()))
    groups = np.repeat(np.arange(len(clips)), clips[0]["frames"].shape[0])
    realism = realism_accuracy(np.concatenate(decoded), np.concatenate([c["frames"] for c in clips]), groups, groups)
    chunk_latents = latents[:, :, :CHUNK]
    chunk_video = frames_to_video(clips[0]["frames"][:CHUNK * tf])[None]
    result = {
        "temporal_factor": tf, "latent_channels": vae.config.latent_channels,
        "parameters": sum(p.numel() for p in vae.parameters()),
        "psnr_db": {"mean": float(np.mean(scores)), "min": float(np.min(scores))},
        "pan_within_20pct": {"mean": float(np.mean(fidelity)), "min": float(np.min(fidelity))},
        "pan_by_position_in_group": [float(np.median(r)) for r in in_group],
        "realism_accuracy": realism,
        "code_coherence": {name: {k: float(np.mean([c[i][k] for c in coherence])) for k in coherence[0][i]}
                           for i, name in enumerate(["base", "detail"][:len(coherence[0])])},
        "streaming_max_abs_difference": streaming_error,
        "seconds_decode_chunk": median_seconds(lambda: vae.decode_to_uint8(chunk_latents)),
        "seconds_encode_chunk": median_seconds(lambda: vae.encode(chunk_video)),
        "frames_per_chunk": CHUNK * tf,
    }
    return result, decoded


def contact_sheet(clips, decoded_by_vae: dict, path: Path, worlds: int = 3, frames: int = 8, scale: int = 3):
    """Rows per world: ground truth, then each VAE's reconstruction; consecutive frames across."""
    from PIL import Image, ImageDraw

    rows, labels = [], []
    for w in range(worlds):
        rows.append(np.concatenate(list(clips[w]["frames"][:frames]), axis=1))
        labels.append(f"world {w}: ground truth")
        for name, decoded in decoded_by_vae.items():
            rows.append(np.concatenate(list(decoded[w][:frames]), axis=1))
            labels.append(f"world {w}: {name}")
    sheet = np.concatenate(rows, axis=0).repeat(scale, 0).repeat(scale, 1)
    label_width = 260
    canvas = Image.new("RGB", (sheet.shape[1] + label_width, sheet.shape[0]), "white")
    canvas.paste(Image.fromarray(sheet), (label_width, 0))
    draw = ImageDraw.Draw(canvas)
    row_height = sheet.shape[0] // len(rows)
    for i, label in enumerate(labels):
        draw.text((6, i * row_height + row_height // 2 - 6), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vae", nargs="+", default=["assets/tiny-adaptive/vae"], help="VAE folders to compare")
    parser.add_argument("--worlds", type=int, default=16)
    parser.add_argument("--frames", type=int, default=48, help="frames per clip (a multiple of every temporal factor)")
    parser.add_argument("--out", default="benchmarks/vae.json")
    parser.add_argument("--sheet", default="docs/vae.png")
    args = parser.parse_args()

    torch.set_num_threads(2)
    clips = held_out_clips(args.worlds, args.frames)
    estimator = [pan_fidelity(pan_per_frame(c["frames"]), c["motion"]) for c in clips]
    results, decoded_by_vae = {"ground_truth_pan_within_20pct": float(np.mean(estimator))}, {}
    for folder in args.vae:
        vae = TinyVideoVAE.from_pretrained(folder).eval()
        results[folder], decoded_by_vae[folder] = measure(vae, clips)
        print(json.dumps({folder: results[folder]}, indent=1), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    contact_sheet(clips, decoded_by_vae, Path(args.sheet))
    print(f"wrote {args.out} and {args.sheet}")


if __name__ == "__main__":
    main()
