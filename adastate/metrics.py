"""What the evaluation measures on generated frames: motion, identity, drift.

Motion is dense optical flow (OpenCV's Farneback) between consecutive frames; identity is a
hue/saturation histogram, compared with the total-variation distance (0: same colours, 1: disjoint).
"""

import cv2
import numpy as np


def _grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def optical_flow(frames: np.ndarray) -> np.ndarray:
    """Dense flow between consecutive frames: [T-1, H, W, 2] pixels (dx, dy) for uint8 RGB [T, H, W, 3]."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] < 2:
        raise ValueError(f"need at least two RGB frames shaped (T, H, W, 3), got {frames.shape}")
    grey = [_grey(f) for f in frames]
    # window 15 px: wide enough for the few-pixel motions of 64 px frames, small enough for detail
    return np.stack([cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=3, winsize=15, iterations=3,
                                                  poly_n=5, poly_sigma=1.2, flags=0)
                     for a, b in zip(grey, grey[1:])])


def motion_magnitude(frames: np.ndarray, border: int = 4) -> float:
    """Mean optical-flow magnitude in pixels per frame (a `border` of pixels is left out, where
    flow is unreliable because content enters or leaves)."""
    flow = optical_flow(frames)
    if border and min(flow.shape[1:3]) > 4 * border:  # tiny test frames keep every pixel
        flow = flow[:, border:-border, border:-border]
    return float(np.linalg.norm(flow, axis=-1).mean())


def color_histogram(frames: np.ndarray, hue_bins: int = 12, saturation_bins: int = 4) -> np.ndarray:
    """Normalised hue × saturation histogram of all pixels of uint8 RGB `frames` ([..., 3]).
    Brightness is left out on purpose: a scene keeps its identity as its light changes."""
    pixels = np.asarray(frames, dtype=np.uint8).reshape(-1, 1, 3)
    hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.int64)
    index = hsv[:, 0] * hue_bins // 180 * saturation_bins + hsv[:, 1] * saturation_bins // 256
    histogram = np.bincount(index, minlength=hue_bins * saturation_bins).astype(np.float64)
    return histogram / histogram.sum()


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total-variation distance of two normalised histograms, in [0, 1]."""
    return float(0.5 * np.abs(a - b).sum())


def identity_drift(chunks: list) -> list:
    """Colour-histogram distance of every chunk's frames to the first chunk's."""
    reference = color_histogram(chunks[0])
    return [histogram_distance(color_histogram(chunk), reference) for chunk in chunks]
