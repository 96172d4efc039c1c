"""The demo's logic without the UI: widget values → settings, and the generators behind the
app's two actions, `/generate` (one mode) and `/compare` (both modes in step).

Each call owns its stream, cache and temporary folder; nothing is shared between visitors except
the read-only model weights. When a call ends or is cancelled (the stop button closes the
generator), its `finally` closes the video and removes its files.
"""

import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .backends import load_backend_or_fallback
from .metrics import motion_magnitude
from .stream import ANCHOR_MODES, ChunkStream, StreamSettings
from .text import check_prompt
from .video import Mp4Writer, encode_mp4
from .viz import chunk_plots, state_colors, state_peek, summary_rows

MAX_DEMO_CHUNKS = int(os.environ.get("ADASTATE_MAX_CHUNKS", "120"))  # a shared Space's ceiling per request
MAX_STEPS, MAX_WINDOW = 8, 4


def timesteps(steps: int) -> tuple:
    """`steps` evenly spaced timesteps from 1000 down (4 → 1000, 750, 500, 250)."""
    return tuple(1000 * (steps - i) / steps for i in range(steps))


def whole_number(value, name: str, low: int, high: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not number.is_integer() or not low <= number <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value}")
    return int(number)


def settings_from_inputs(seed, chunks, anchor, steps=4, window=1) -> StreamSettings:
    if anchor not in ANCHOR_MODES:
        raise ValueError(f"unknown anchor mode {anchor!r}; choose one of: {', '.join(ANCHOR_MODES)}")
    return StreamSettings(
        anchor=anchor, seed=whole_number(seed, "seed", 0, 2**31 - 1),
        chunks=whole_number(chunks, "chunks", 1, MAX_DEMO_CHUNKS),
        denoising_steps=timesteps(whole_number(steps, "denoising steps", 1, MAX_STEPS)),
        window_chunks=whole_number(window, "window", 1, MAX_WINDOW)).check()


class Backends:
    """One loaded backend per anchor mode (the embedded model ships one per mode), loaded on
    first use and shared read-only by all sessions."""

    def __init__(self, name: str | None = None, checkpoint: str | None = None):
        self.name = name or os.environ.get("ADASTATE_BACKEND", "tiny")
        self.checkpoint = checkpoint or os.environ.get("ADASTATE_CHECKPOINT") or None
        self.loaded, self.lock = {}, threading.Lock()

    def get(self, anchor: str):
        with self.lock:
            if anchor not in self.loaded:
                # no GPU, no Hub, a bad checkpoint: keep serving, with the embedded model and a notice
                backend, notice = load_backend_or_fallback(self.name, self.checkpoint, None, anchor)
                backend.notice = notice
                self.loaded[anchor] = backend
            return self.loaded[anchor]


@dataclass
class Update:
    """What the UI shows after a chunk (per mode for /compare)."""
    segment: str | None                 # this chunk's MP4, for a streaming video player
    state: np.ndarray                   # colour projection of the anchor latent
    peek: np.ndarray                    # the anchor latent decoded as if it were video (it never is)
    records: list = field(default_factory=list)  # per-chunk statistics so far
    video: str | None = None            # the whole video, once finished
    mode: str = "adaptive"


class Session:
    """One mode's stream, its per-chunk files and statistics."""

    def __init__(self, backends: Backends, prompt: str, settings: StreamSettings, folder: Path):
        self.backend = backends.get(settings.anchor)
        self.stream = ChunkStream(self.backend, prompt, settings)
        self.folder, self.mode = folder, settings.anchor
        self.video_path = folder / f"{self.mode}.mp4"
        self.video = Mp4Writer(self.video_path, self.backend.fps)
        self.records = []

    def step(self) -> Update:
        result = self.stream.next_chunk()
        segment = self.folder / f"{self.mode}-{result.index:05d}.mp4"
        encode_mp4(result.frames, segment, self.backend.fps)
        self.video.write(result.frames)
        self.records.append({**result.record(), "motion": motion_magnitude(result.frames)})
        return Update(str(segment), state_colors(result.anchor_latent),
                      state_peek(self.backend.vae, result.anchor_latent), list(self.records), mode=self.mode)

    def finish(self) -> str:
        self.video.close()
        return str(self.video_path)


def status_line(records: list, total: int, started: float, notice: str | None) -> str:
    done = len(records)
    frames = sum(r["frames"] for r in records)
    text = f"chunk {done} / {total} · {frames / max(time.perf_counter() - started, 1e-9):.1f} frames generated per second"
    return text + (f" · note: {notice}" if notice else "")


def generate_updates(backends: Backends, prompt, seed, chunks, anchor, steps=4, window=1):
    """Yield (Update, status text) per chunk, then a last pair whose Update carries the finished MP4."""
    prompt, settings = check_prompt(prompt), settings_from_inputs(seed, chunks, anchor, steps, window)
    folder = Path(tempfile.mkdtemp(prefix="adastate-"))
    started, session = time.perf_counter(), None
    try:
        session = Session(backends, prompt, settings, folder)
        for _ in range(settings.chunks):
            update = session.step()
            yield update, status_line(update.records, settings.chunks, started, session.backend.notice)
        update = replace(update, segment=None, video=session.finish())
        yield update, status_line(update.records, settings.chunks, started, session.backend.notice) + " · done"
    finally:  # also on cancel: close the video, drop the cache, remove the files
        if session is not None:
            session.video.close()
        shutil.rmtree(folder, ignore_errors=True)  # the app has copied what it shows by now


def compare_updates(backends: Backends, prompt, seed, chunks, steps=4, window=1):
    """Both modes from the same prompt and seed, chunk for chunk: yield ({mode: Update}, status)."""
    prompt = check_prompt(prompt)
    folder = Path(tempfile.mkdtemp(prefix="adastate-compare-"))
    started, sessions = time.perf_counter(), {}
    try:
        for mode in ANCHOR_MODES:
            sessions[mode] = Session(backends, prompt, settings_from_inputs(seed, chunks, mode, steps, window), folder)
        total = sessions["adaptive"].stream.settings.chunks
        for _ in range(total):
            updates = {mode: session.step() for mode, session in sessions.items()}
            yield updates, status_line(updates["adaptive"].records, total, started, sessions["adaptive"].backend.notice)
        updates = {mode: replace(updates[mode], segment=None, video=session.finish())
                   for mode, session in sessions.items()}
        yield updates, status_line(updates["adaptive"].records, total, started, None) + " · done"
    finally:
        for session in sessions.values():
            session.video.close()
        shutil.rmtree(folder, ignore_errors=True)


def plots_of(updates: dict):
    return chunk_plots({mode: update.records for mode, update in updates.items()})


def summary_of(updates: dict) -> list[list]:
    return summary_rows({mode: update.records for mode, update in updates.items()})
