"""Pictures of what the model carries: the state (or frozen anchor) latent, and per-chunk plots.

The colour projection is a fixed linear map from latent channels to RGB, the same for every
chunk, session and mode, so a colour means the same thing wherever it appears and a change of
colour is a change of the state. The "peek" decodes the state latent through the VAE: what the
state would look like if it were rendered — which it never is.
"""

import numpy as np
import torch

from .vae import VideoVAE

PANEL_SIZE = 128  # pixels: state pictures are upscaled (nearest) from the latent grid
PLOTS = (("motion", "motion (px / frame)"), ("anchor_attention_share", "attention to the anchor slot"),
         ("state_delta", "anchor change since last chunk"))
MODE_STYLE = {"adaptive": ("tab:blue", "-"), "static": ("tab:orange", "--")}
MODE_LABEL = {"adaptive": "adaptive state", "static": "static anchor"}
# The verdict calls one mode "still like its first frame" only when its revert is this much higher
# than the other's: correlations of two runs of the same prompt and seed differ by a few hundredths
# from chunk to chunk without either one locking.
REVERT_MARGIN = 0.05


def projection(channels: int) -> np.ndarray:
    """A fixed orthonormal map of `channels` latent channels onto 3 colour axes."""
    basis = np.random.default_rng(20260530).standard_normal((channels, 3))
    q, _ = np.linalg.qr(basis)
    return q.T  # [3, channels]


def upscale(image: np.ndarray, size: int = PANEL_SIZE) -> np.ndarray:
    factor = max(1, size // image.shape[0])
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def state_colors(latent: torch.Tensor) -> np.ndarray:
    """Anchor latent [C, A, h, w] (normalised, ~unit variance) → uint8 RGB [size, size·A, 3];
    the A anchor frames side by side."""
    z = latent.float().cpu().numpy()
    rgb = np.einsum("kc,cahw->ahwk", projection(z.shape[0]), z)
    rgb = np.clip(0.5 + rgb / 4, 0, 1)  # ±2 standard deviations span the colour range
    image = (np.concatenate(list(rgb), axis=1) * 255).round().astype(np.uint8)
    return upscale(image)


def state_peek(vae: VideoVAE, latent: torch.Tensor) -> np.ndarray:
    """Decode the anchor latent [C, A, h, w] as a video of its own; first decoded frame, upscaled."""
    return upscale(vae.decode_to_uint8(latent[None])[0])


def chunk_plots(records: dict):
    """Per-chunk curves, one line per mode: `records` maps mode → list of per-chunk dicts with
    the keys of PLOTS. Returns a matplotlib figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOTS), figsize=(10, 2.6))
    switches = sorted({r["index"] for rows in records.values() for r in rows if r.get("switched")})
    for ax, (key, title) in zip(axes, PLOTS):
        for index in switches:  # where the prompt changed
            ax.axvline(index - 0.5, color="grey", linestyle=":", linewidth=1)
        for mode, rows in records.items():
            points = [(r["index"], r[key]) for r in rows if r.get(key) is not None]
            if points:
                colour, style = MODE_STYLE.get(mode, ("black", "-"))
                ax.plot(*zip(*points), style, color=colour, marker="o", markersize=3, label=mode)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("chunk", fontsize=8)
        ax.tick_params(labelsize=7)
        if len(records) > 1 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    # a fixed layout: tight_layout measures every label by drawing it, a third of a redraw's time,
    # and the demo redraws while it streams (benchmarks/RESULTS.md, "Does the player stall?")
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.17, top=0.89, wspace=0.22)
    plt.close(fig)  # the caller renders it; closing keeps pyplot's global registry empty
    return fig


def summary_rows(records: dict) -> list[list]:
    """One row per mode: chunks, mean motion, mean anchor share, mean state change, seconds/chunk."""
    def mean(rows, key):
        values = [r[key] for r in rows if r.get(key) is not None]
        return round(float(np.mean(values)), 4) if values else None

    return [[mode, len(rows), mean(rows, "motion"), mean(rows, "anchor_attention_share"), mean(rows, "state_delta"),
             mean(rows, "seconds")] for mode, rows in records.items()]


SUMMARY_HEADERS = ["mode", "chunks", "mean motion (px/frame)", "mean anchor share", "mean state change",
                   "seconds / chunk"]


def filmstrip(frames: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Frames [H, W, 3] side by side, `gap` black columns between them, at the video's own size
    (the page draws them pixelated)."""
    height = frames[0].shape[0]
    spacer = np.zeros((height, gap, 3), np.uint8)
    return np.concatenate([part for frame in frames for part in (spacer, frame)][1:], axis=1)


def curve_rows(records: dict) -> list[dict]:
    """Per-chunk revert and pan speed of every mode, as the rows of a long table (one per mode and
    chunk) for a plot drawn in the browser."""
    return [{"chunk": r["index"], "mode": MODE_LABEL.get(mode, mode), "revert": r["revert"],
             "pan speed": r["pan_speed"]} for mode, rows in records.items() for r in rows]


def verdict(records: dict) -> str:
    """One line that says, from the measurements, which mode still looks like its first frame and
    how fast each pans, over the last quarter of the chunks so far (the first chunk, which always
    looks like itself, left out). `records`: mode → per-chunk dicts with "revert" and "pan_speed"."""
    if set(records) != {"adaptive", "static"} or min(len(rows) for rows in records.values()) < 2:
        return "the verdict needs at least two chunks of both modes"
    count = len(records["adaptive"])
    late = max(1, (count - 1) // 4)
    first, last = records["adaptive"][-late]["index"], records["adaptive"][-1]["index"]
    revert = {mode: float(np.mean([r["revert"] for r in rows[-late:]])) for mode, rows in records.items()}
    pan = {mode: float(np.mean([r["pan_speed"] for r in rows[-late:]])) for mode, rows in records.items()}
    span = f"chunk {last}" if first == last else f"chunks {first}–{last}"
    locked, moved = sorted(revert, key=revert.get, reverse=True)
    if revert[locked] - revert[moved] < REVERT_MARGIN:
        looks = (f"both modes look alike to their first frame (revert {revert['adaptive']:.2f} adaptive, "
                 f"{revert['static']:.2f} static)")
    else:
        looks = (f"the {MODE_LABEL[locked]} still looks like its first frame (revert {revert[locked]:.2f}), "
                 f"the {MODE_LABEL[moved]} has moved on ({revert[moved]:.2f})")
    return (f"**Over {span}:** {looks}; pan speed {pan['adaptive']:.2f} px/frame adaptive, "
            f"{pan['static']:.2f} static.")
