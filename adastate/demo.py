"""The demo's logic without the UI: widget values → settings, and the generators behind the
app's actions: `/generate` (one mode, optionally endless), `/compare` (both modes in step),
`/resume` (continue a saved scene, or carry its state into a new prompt), and the two actions that
reach a running generation, `/switch_prompt` and `/save_scene`.

Each call owns its stream, cache and temporary folder; nothing is shared between visitors except
the read-only model weights. When a call ends or is cancelled (the stop button closes the
generator), its `finally` closes the video and removes its files. A browser session's latest
stream stays reachable (`LiveStreams`, keyed by Gradio's session hash) for switch and save,
until the session starts another or leaves.
"""

import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .backends import load_backend, load_backend_or_fallback, requested_device
from .metrics import motion_magnitude
from .scene import read_scene, resume_stream, save_scene, snapshot
from .sampling import timesteps
from .stream import ANCHOR_MODES, RECACHE_ON_SWITCH, ChunkStream, StreamSettings
from .text import check_prompt
from .video import Mp4Writer, encode_mp4
from .viz import chunk_plots, state_colors, state_peek, summary_rows

MAX_DEMO_CHUNKS = int(os.environ.get("ADASTATE_MAX_CHUNKS", "120"))  # a shared Space's ceiling per request
ENDLESS_CHUNKS = int(os.environ.get("ADASTATE_ENDLESS_CHUNKS", "2000"))  # endless mode stops here at the latest
MAX_STEPS, MAX_WINDOW = 8, 4
# Drawing the per-chunk plots costs about a third of a chunk's time in the app (measured through
# gradio_client: 0.53 s per chunk without plots, 0.75-1.0 s with), so they are redrawn at most
# this often (and always on the last update).
PLOT_INTERVAL = 1.0


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
    """One backend per anchor mode, loaded on first use and shared read-only by all sessions. The
    embedded model ships one model per mode; a backend whose weights serve both modes (wan: 1.3 B
    parameters and an 11 GB text encoder) is loaded once and only its notice differs per mode.

    With no device named (`device`, else $ADASTATE_DEVICE), a backend that cannot run here (no
    GPU, no Hub, a bad checkpoint) gives way to the embedded model, with a notice: the Space stays
    up. A device named on purpose gets the requested backend on it, or its error, never a fallback.
    """

    def __init__(self, name: str | None = None, checkpoint: str | None = None, device=None):
        self.name = name or os.environ.get("ADASTATE_BACKEND", "tiny")
        self.checkpoint = checkpoint or os.environ.get("ADASTATE_CHECKPOINT") or None
        self.device = requested_device(device)  # a bad $ADASTATE_DEVICE stops the app at start-up
        self.loaded, self.lock = {}, threading.Lock()

    def get(self, anchor: str):
        with self.lock:
            if anchor not in self.loaded:
                self.loaded[anchor] = self._load(anchor)
            return self.loaded[anchor]

    def _load(self, anchor: str):
        shared = next((backend for backend in self.loaded.values() if backend.anchor_labels), None)
        if shared is not None:
            return shared.for_anchor(anchor)
        if self.device is not None:
            return load_backend(self.name, self.checkpoint, self.device, anchor)
        backend, notice = load_backend_or_fallback(self.name, self.checkpoint, None, anchor)
        backend.notice = notice
        return backend


@dataclass
class Update:
    """What the UI shows after a chunk (per mode for /compare)."""
    segment: str | None                 # this chunk's MP4, for a streaming video player
    state: np.ndarray                   # colour projection of the anchor latent
    peek: np.ndarray                    # the anchor latent decoded as if it were video (it never is)
    records: list = field(default_factory=list)  # per-chunk statistics so far
    video: str | None = None            # the whole video, once finished
    mode: str = "adaptive"
    replot: bool = True                 # the plots are due for a redraw


class Throttle:
    """`due()` is true at most once per `interval` seconds (and on the first call)."""

    def __init__(self, interval: float):
        self.interval, self.last = interval, None

    def due(self) -> bool:
        now = time.perf_counter()
        if self.last is not None and now - self.last < self.interval:
            return False
        self.last = now
        return True


class Session:
    """One mode's stream, its per-chunk files and statistics."""

    def __init__(self, backend, stream: ChunkStream, folder: Path):
        self.backend, self.stream = backend, stream
        self.folder, self.mode = folder, stream.settings.anchor
        self.video_path = folder / f"{self.mode}.mp4"
        self.video = Mp4Writer(self.video_path, self.backend.fps)
        self.records = []
        self.lock = threading.Lock()  # a save from another request waits for the chunk in progress

    @classmethod
    def new(cls, backends: Backends, prompt: str, settings: StreamSettings, folder: Path) -> "Session":
        backend = backends.get(settings.anchor)
        return cls(backend, ChunkStream(backend, prompt, settings), folder)

    def step(self) -> Update:
        with self.lock:
            result = self.stream.next_chunk()
        segment = self.folder / f"{self.mode}-{result.index:05d}.mp4"
        encode_mp4(result.frames, segment, self.backend.fps)
        # Gradio has copied the segment before last by now: keep the folder small in endless mode
        self.folder.joinpath(f"{self.mode}-{result.index - 2:05d}.mp4").unlink(missing_ok=True)
        self.video.write(result.frames)
        self.records.append({**result.record(), "motion": motion_magnitude(result.frames)})
        return Update(str(segment), state_colors(result.anchor_latent),
                      state_peek(self.backend.vae, result.anchor_latent), list(self.records), mode=self.mode)

    def scene(self):
        with self.lock:
            return snapshot(self.stream)

    def finish(self) -> str:
        self.video.close()
        return str(self.video_path)


class LiveStreams:
    """Each browser session's latest stream, so that /switch_prompt and /save_scene (separate
    requests) reach it. Only that session's own requests can: the key is its session hash.
    API clients never "leave" as a browser tab does, so only the `capacity` most recently
    started sessions are kept."""

    def __init__(self, capacity: int = 32):
        self.sessions, self.lock, self.capacity = OrderedDict(), threading.Lock(), capacity

    def start(self, key, session: Session):
        if key is not None:
            with self.lock:
                self.sessions.pop(key, None)
                self.sessions[key] = session
                while len(self.sessions) > self.capacity:
                    self.sessions.popitem(last=False)  # the longest-idle session's stream goes

    def get(self, key) -> Session:
        with self.lock:
            session = self.sessions.get(key)
        if session is None:
            raise ValueError("nothing is streaming in this session yet: generate first")
        return session

    def switch(self, key, prompt, recache: bool = RECACHE_ON_SWITCH) -> str:
        session = self.get(key)
        prompt = check_prompt(prompt)
        session.stream.switch_prompt(prompt, bool(recache))
        return (f"switching to “{prompt}” from chunk {session.stream.index + 1} on"
                + (" (window re-cached)" if recache else ""))

    def save(self, key, folder=None) -> str:
        """Write the session's scene as it is after its latest chunk; returns the file's path."""
        session = self.get(key)
        scene = session.scene()
        folder = Path(folder or tempfile.mkdtemp(prefix="adastate-scene-"))
        return str(save_scene(scene, folder / f"scene-{scene.anchor}-chunk{scene.index:05d}.safetensors"))

    def end(self, key):
        """The browser session left: drop its stream (and with it the cache)."""
        with self.lock:
            self.sessions.pop(key, None)


def status_line(records: list, total: int, started: float, notice: str | None) -> str:
    done = len(records)
    frames = sum(r["frames"] for r in records)
    text = f"chunk {done} / {total} · {frames / max(time.perf_counter() - started, 1e-9):.1f} frames generated per second"
    if records and any(r["prompt"] != records[0]["prompt"] for r in records):
        text += f" · prompt: “{records[-1]['prompt']}”"
    return text + (f" · note: {notice}" if notice else "")


def generate_updates(backends: Backends, prompt, seed, chunks, anchor, steps=4, window=1, endless=False,
                     live: LiveStreams | None = None, key=None):
    """Yield (Update, status text) per chunk, then a last pair whose Update carries the finished MP4.
    `endless`: ignore `chunks` and stream until cancelled (or ENDLESS_CHUNKS)."""
    prompt = check_prompt(prompt)
    settings = settings_from_inputs(seed, 1 if endless else chunks, anchor, steps, window)
    if endless:
        settings = replace(settings, chunks=ENDLESS_CHUNKS)
    folder = Path(tempfile.mkdtemp(prefix="adastate-"))
    yield from run_session(lambda: Session.new(backends, prompt, settings, folder), folder, live, key,
                           "endless" if endless else None)


def resume_updates(backends: Backends, scene_file, prompt, seed, chunks, state_only=False,
                   live: LiveStreams | None = None, key=None):
    """Continue a saved scene for `chunks` more chunks, or (`state_only`) start a new video under
    `prompt` from its state alone. An empty prompt keeps the scene's."""
    if not scene_file:
        raise ValueError("upload a scene file (.safetensors) saved by this demo or the CLI")
    scene = read_scene(scene_file)
    chunks = whole_number(chunks, "chunks", 1, MAX_DEMO_CHUNKS)
    prompt = check_prompt(prompt) if prompt and str(prompt).strip() else None
    seed = whole_number(seed, "seed", 0, 2**31 - 1) if state_only else None
    backend = backends.get(scene.anchor)
    folder = Path(tempfile.mkdtemp(prefix="adastate-"))

    def start():
        return Session(backend, resume_stream(backend, scene, chunks, prompt, state_only, seed), folder)

    yield from run_session(start, folder, live, key, None)


def run_session(start, folder: Path, live, key, label):
    started, session = time.perf_counter(), None
    try:
        session = start()
        if live is not None:
            live.start(key, session)
        stream = session.stream
        total = label or stream.settings.chunks - stream.index
        plots = Throttle(PLOT_INTERVAL)
        while stream.index < stream.settings.chunks:
            update = replace(session.step(), replot=plots.due())
            yield update, status_line(update.records, total, started, session.backend.notice)
        update = replace(update, segment=None, video=session.finish(), replot=True)
        yield update, status_line(update.records, total, started, session.backend.notice) + " · done"
    finally:  # also on cancel: close the video, remove the files (the stream stays saveable)
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
            sessions[mode] = Session.new(backends, prompt, settings_from_inputs(seed, chunks, mode, steps, window),
                                         folder)
        total = sessions["adaptive"].stream.settings.chunks
        plots = Throttle(PLOT_INTERVAL)
        for _ in range(total):
            replot = plots.due()
            updates = {mode: replace(session.step(), replot=replot) for mode, session in sessions.items()}
            yield updates, status_line(updates["adaptive"].records, total, started, sessions["adaptive"].backend.notice)
        updates = {mode: replace(updates[mode], segment=None, video=session.finish(), replot=True)
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
