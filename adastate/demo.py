"""The demo's logic without the UI: widget values → settings, the generators behind the app's
actions, and how visitors share the machine, its memory and its disk.

Actions: `/generate` (one mode, optionally endless), `/compare` (both modes in step), `/resume`
(continue a saved scene, or carry its state into a new prompt), and the two that reach a running
generation, `/switch_prompt` and `/save_scene`. The app hands over its inputs as they arrive
(JSON values, unchecked), so every check, and the message that names what is wrong, is here.

Sharing the machine (`Scheduler`): at most `places` streams run at once, and a visitor runs at
most one (starting another stops the previous one after its chunk in progress). Running streams
take turns chunk by chunk on `slots` compute slots, first come first served, so a new stream's
first chunk waits for no more than one chunk of each stream already running. An endless run ends
as soon as a visitor waits for a place (one endless run per waiting visitor).

Sharing memory and disk (`Visitors`, keyed by Gradio's session hash): every file the demo writes
lives in its visitor's folder — the latest run's video, one saved scene (a new save replaces it),
the scene file the visitor last uploaded — and goes when the session ends or has been idle for
`idle_seconds`. A stream lives on the model's device only while it runs; when it ends, its scene
(a CPU copy) is kept for /save_scene while all kept scenes fit `memory_budget`, least recently used
dropped first.
"""

import ctypes
import html
import json
import logging
import math
import os
import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from .backends import load_backend, load_backend_or_fallback, requested_device
from .metrics import motion_magnitude, pan_per_frame, revert_correlation
from .sampling import timesteps
from .scene import Scene, SceneError, SceneLimits, check_compatible, read_scene, resume_stream, save_scene, shown, snapshot
from .stream import ANCHOR_MODES, ChunkStream, StreamSettings
from .text import check_prompt
from .video import Mp4Writer, encode_mp4
from .viz import chunk_plots, curve_rows, filmstrip, state_colors, state_peek, summary_rows, verdict

MAX_DEMO_CHUNKS = int(os.environ.get("ADASTATE_MAX_CHUNKS", "120"))  # a shared Space's ceiling per request
ENDLESS_CHUNKS = int(os.environ.get("ADASTATE_ENDLESS_CHUNKS", "2000"))  # endless mode stops here at the latest
MAX_STEPS, MAX_WINDOW = 8, 4
DEMO_LIMITS = SceneLimits(max_steps=MAX_STEPS, max_window=MAX_WINDOW)  # what an uploaded scene may ask for
MAX_STREAMS = int(os.environ.get("ADASTATE_MAX_STREAMS", "4"))      # streams running at once (each holds a KV cache)
COMPUTE_SLOTS = int(os.environ.get("ADASTATE_CONCURRENCY", "2"))    # chunks computed at once
MAX_WAITING = int(os.environ.get("ADASTATE_MAX_WAITING", "16"))     # visitors waiting for a place (each holds a thread)
SESSION_IDLE_SECONDS = int(os.environ.get("ADASTATE_SESSION_IDLE", "1800"))
SWEEP_SECONDS = min(60.0, SESSION_IDLE_SECONDS / 4)  # how often idle sessions are looked for
SESSION_MEMORY_MB = float(os.environ.get("ADASTATE_SESSION_MEMORY_MB", "1024"))  # scenes kept for ended streams
# The largest upload: a scene file's plausible maximum at the demo's widest window (4 chunks: 13
# latent frames of keys and values in every layer). tiny: 7.4 MiB (tests/test_app.py checks the
# limit against it); wan (30 layers, 480x832): 3.7 GB of keys and values plus the VAE's carried
# cache (estimated, not measured).
SCENE_UPLOAD_MB = {"tiny": 16, "wan": 8192}
# A redraw of the per-chunk plots (matplotlib, rendered by Gradio) costs 0.3 CPU-seconds, nearly a
# chunk's model time on one core: redrawn every second it held a local demo with its browser at
# 7 generated frames a second, every 4 s at 9 (benchmarks/RESULTS.md, "Where a chunk's CPU goes").
# So at most this often, and always on the last update; the comparison's revert and pan curves
# are drawn by the browser and follow every chunk.
PLOT_INTERVAL = 4.0
# The pictures are lossless WebP at its fastest setting: under 1 ms a picture instead of up to 24 ms
# at the default effort, for files a few KB larger (benchmarks/RESULTS.md, "Where a chunk's CPU goes").
WEBP = dict(lossless=True, method=0)
# Gradio probes and re-muxes every streamed segment with its own ffmpeg processes (0.1-0.15 s a
# segment on 2 cores), whatever its length: with the embedded model's 6-frame chunks, one segment
# per chunk made the player wait at every other chunk. So a segment holds at least this much video
# (the first and the last may hold less); the pictures and statistics still update every chunk.
SEGMENT_SECONDS = 0.75
# With the browser open on 2 cores a stream can be slower than playback (a comparison always is:
# two streams, two players' re-muxes; benchmarks/RESULTS.md, "Does the player stall?"), and a player
# that starts at once runs dry again and again. So a run's video starts only when, at the pace
# measured so far, the rest of the run will arrive before the player reaches it (`PlaybackStart`;
# on a machine faster than playback that is after 2-4 chunks) — or once this much video is held,
# so that a very slow run still starts. An endless run has no end to wait for: it holds less.
MAX_BUFFER_SECONDS = float(os.environ.get("ADASTATE_MAX_BUFFER_SECONDS", "20"))
ENDLESS_BUFFER_SECONDS = 4.0
DELIVERY_SECONDS = 0.3  # a segment's way from the model to the screen: re-mux, network, decoding
PACE_MARGIN = 1.25  # held video is not re-muxed or decoded: the pace measured while holding is faster
FILMSTRIP_FRAMES = 10  # a comparison's filmstrip shows at most this many frames per mode, evenly spaced
WAIT_POLL = 1.0  # seconds between status updates of a visitor waiting for a place

log = logging.getLogger(__name__)
try:  # glibc keeps what a thread freed in that thread's arena until asked to return it (see Visitors.sweep_every)
    GLIBC = ctypes.CDLL("libc.so.6")
except OSError:  # another C library: nothing to ask
    GLIBC = None


def showcase_examples(path: Path, fallback: list[list]) -> list[list]:
    """The demo's examples as [prompt, seed, chunks, anchor]: the runs where the shipped models'
    evaluation (`python -m adastate eval --out docs/eval`, its examples.json) found the two anchors
    differing most, or `fallback` where there is no such file yet."""
    try:
        chosen = json.loads(Path(path).read_text())
        return [[e["prompt"], int(e["seed"]), min(int(e["chunks"]), MAX_DEMO_CHUNKS), "adaptive"] for e in chosen] \
            or fallback
    except (OSError, ValueError, KeyError, TypeError) as error:
        if Path(path).exists():
            log.warning("ignoring %s: %s", path, error)
        return fallback


# -- inputs, as they arrive -----------------------------------------------------------------------

def whole_number(value, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{name} must be a number, got {shown(value)}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {shown(value)}") from None
    if not number.is_integer() or not low <= number <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {shown(value)}")
    return int(number)


def true_or_false(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {shown(value)}")
    return value


def prompt_text(value) -> str:
    if not isinstance(value, str):
        raise ValueError(f"the prompt must be text, got {shown(value)}")
    return check_prompt(value)


def uploaded_path(value) -> Path:
    """The file the visitor uploaded: Gradio hands over its file data (a JSON object whose "path"
    is in Gradio's upload folder); a path is taken as it is (library use)."""
    if value is None or value == "":
        raise ValueError("upload a scene file (.safetensors) saved by this demo or the CLI")
    path = value.get("path") if isinstance(value, dict) else value
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"the scene file must be an uploaded file, got {shown(value)}")
    return Path(path)


def upload_limit_bytes(backend_name: str) -> int:
    return int(float(os.environ.get("ADASTATE_MAX_UPLOAD_MB") or SCENE_UPLOAD_MB[backend_name]) * 2**20)


def reserved_chunks(chunks, endless=False) -> int:
    """How many chunks to reserve GPU time for before the inputs are checked: a bad value reserves
    one, and the run then refuses it with its message."""
    if endless is True:
        return ENDLESS_CHUNKS
    try:
        return whole_number(chunks, "chunks", 1, MAX_DEMO_CHUNKS)
    except ValueError:
        return 1


def settings_from_inputs(seed, chunks, anchor, steps=4, window=1) -> StreamSettings:
    if not isinstance(anchor, str) or anchor not in ANCHOR_MODES:
        raise ValueError(f"unknown anchor mode {shown(anchor)}; choose one of: {', '.join(ANCHOR_MODES)}")
    return StreamSettings(
        anchor=anchor, seed=whole_number(seed, "seed", 0, 2**31 - 1),
        chunks=whole_number(chunks, "chunks", 1, MAX_DEMO_CHUNKS),
        denoising_steps=timesteps(whole_number(steps, "denoising steps", 1, MAX_STEPS)),
        window_chunks=whole_number(window, "window", 1, MAX_WINDOW)).check()


def as_markdown_text(text: str) -> str:
    """`text` shown literally in Markdown: a prompt may come from a stranger's scene file, and the
    status line must not turn it into HTML, links or emphasis."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", html.escape(text, quote=False))


# -- models ---------------------------------------------------------------------------------------

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

    def warm_up(self) -> threading.Thread | None:
        """Load every mode's embedded model and matplotlib in a background thread, so that the server
        is up at once and the first visitor's first click does not wait for them: on a fresh app the
        first chunk showed 3.8-4.0 s after the click without this, 1.3 s with it, a later run's after
        1.0 s (benchmarks/RESULTS.md, "Where a chunk's CPU goes"). A click meanwhile waits for the
        model it needs, as it would have anyway. Other backends load on first use, inside the
        request: on ZeroGPU that is where a GPU is attached."""
        if self.name != "tiny":
            return None

        def load():
            try:
                for anchor in ANCHOR_MODES:
                    self.get(anchor)
                chunk_plots({})  # imports matplotlib
            except Exception:  # the click that needs it will meet the error and show it
                log.exception("warming up failed")

        thread = threading.Thread(target=load, name="warm-up", daemon=True)
        thread.start()
        return thread


# -- one stream and what it shows -------------------------------------------------------------------

@dataclass
class Update:
    """What the UI shows after a chunk (per mode for /compare)."""
    segment: str | None                 # this chunk's MP4, for a streaming video player
    state: str                          # picture: colour projection of the anchor latent
    peek: str                           # picture: the anchor latent decoded as if it were video (it never is)
    records: list = field(default_factory=list)  # per-chunk statistics so far
    video: str | None = None            # the whole video, once finished
    mode: str = "adaptive"
    replot: bool = True                 # the plots are due for a redraw
    filmstrip: str | None = None        # picture: one frame every few chunks side by side (comparisons)
    held_seconds: float = 0.0           # video held back until playback can start without stalling


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


class PlaybackStart:
    """When the players of a run may start without running dry later, shared by the runs that start
    together (a comparison's two). After each chunk the runs have done, `ready(done, chunk_seconds)`
    says whether to start now: true once every chunk still to come is predicted to be streamed
    before the players reach it, at the pace of the last `recent` chunks (a chunk waits for its
    segment to fill, about one chunk more, and for delivery); true from then on."""

    def __init__(self, chunks: int, most_seconds: float | None = None, recent: int = 8, clock=time.perf_counter):
        self.chunks, self.clock = chunks, clock
        self.most_seconds = MAX_BUFFER_SECONDS if most_seconds is None else most_seconds
        self.done_at, self.done = deque(maxlen=recent + 1), 0
        self.started = False

    def pace(self) -> float | None:
        """Seconds per chunk, lately (None: fewer than two chunks done)."""
        if len(self.done_at) < 2:
            return None
        return PACE_MARGIN * (self.done_at[-1] - self.done_at[0]) / (len(self.done_at) - 1)

    def ready(self, done: int, chunk_seconds: float) -> bool:
        if not self.started and done > self.done:  # the first of the runs to report this chunk
            self.done = done
            self.done_at.append(self.clock())
            pace, left = self.pace(), self.chunks - done
            if left <= 0 or done * chunk_seconds >= self.most_seconds:
                self.started = True
            elif pace is not None:
                # chunk j (done <= j < chunks) is on screen at (j - done + 2) * pace + delivery from
                # now and played from j * chunk_seconds on: linear in j, so the ends decide
                late = [(j - done + 2) * pace + DELIVERY_SECONDS - j * chunk_seconds for j in (done, self.chunks - 1)]
                self.started = max(late) <= 0
        return self.started


def computed_ahead(items):
    """Yield what the iterator `items` yields, computing the next item in a thread while the
    consumer handles the last one. Never more than one ahead: item k + 1 starts only once the
    consumer asks for item k, that is once it is done with item k - 1. A comparison needs this:
    Gradio re-muxes each streamed segment (about 0.13 s per player on 2 cores) before it asks for
    the next chunk, and without the overlap the two players stall at almost every chunk
    (benchmarks/RESULTS.md, "Does the player stall?"). When the consumer stops early, the item in
    progress finishes before this generator returns, so whoever cleans up after `items` can."""
    permits, results, stopped = threading.Semaphore(1), queue.Queue(), threading.Event()

    def work():
        try:
            while permits.acquire() and not stopped.is_set():
                results.put((True, next(items)))
        except StopIteration:
            results.put((False, None))
        except BaseException as error:  # handed to the consumer, raised there
            results.put((False, error))

    worker = threading.Thread(target=work, name="computed-ahead", daemon=True)
    worker.start()
    try:
        while True:
            permits.release()  # the item after the one asked for may start
            more, value = results.get()
            if not more:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stopped.set()
        permits.release()
        worker.join()


class Run:
    """One anchor mode's stream in a visitor's run, its per-chunk files and statistics.
    `filmstrip_every`: also keep the first frame of every that many chunks, as a filmstrip."""

    def __init__(self, backend, stream: ChunkStream, folder: Path, filmstrip_every: int | None = None,
                 playback: PlaybackStart | None = None):
        self.backend, self.stream = backend, stream
        self.playback = playback or PlaybackStart(stream.settings.chunks - stream.index)
        self.folder, self.mode = folder, stream.settings.anchor
        folder.mkdir(parents=True, exist_ok=True)
        self.video_path = folder / f"{self.mode}.mp4"
        self.video = Mp4Writer(self.video_path, self.backend.fps)
        self.records = []
        self.first_frame = self.last_frame = None  # for revert, and for the pan into the next chunk
        self.unsent, self.streamed = [], False  # frames not yet in a streamed segment; any streamed yet
        self.filmstrip_every, self.filmstrip_frames, self.filmstrip_path = filmstrip_every, [], None
        self.lock = threading.Lock()  # a save from another request waits for the chunk in progress

    @classmethod
    def new(cls, backends: Backends, prompt: str, settings: StreamSettings, folder: Path,
            filmstrip_every: int | None = None, playback: PlaybackStart | None = None) -> "Run":
        backend = backends.get(settings.anchor)
        return cls(backend, ChunkStream(backend, prompt, settings), folder, filmstrip_every, playback)

    def step(self) -> Update:
        """One chunk: the two pictures of the anchor and, when SEGMENT_SECONDS of video are ready
        (or on the run's first and last chunk), a video segment, as files of this run (the app serves
        them from here: Gradio writes no copies of its own, which it would keep after the session).
        Video is held back until `playback` says the player may start (a comparison's two runs share one).
        The pictures stay as long as the run's video (about 2 KB a chunk)."""
        with self.lock:
            result = self.stream.next_chunk()
        name = f"{self.mode}-{result.index:05d}"
        segment, state, peek = (self.folder / f"{name}{suffix}" for suffix in (".mp4", "-state.webp", "-peek.webp"))
        self.unsent.append(result.frames)
        unsent_seconds = sum(len(frames) for frames in self.unsent) / self.backend.fps
        last = self.stream.index >= self.stream.settings.chunks  # of this run
        chunk_seconds = len(result.frames) / self.backend.fps
        ready = self.playback.ready(len(self.records) + 1, chunk_seconds)
        if ready and (not self.streamed or last or unsent_seconds >= SEGMENT_SECONDS - 1e-9):
            encode_mp4(np.concatenate(self.unsent), segment, self.backend.fps)
            self.unsent, self.streamed = [], True
        else:
            segment = None
        Image.fromarray(state_colors(result.anchor_latent)).save(state, **WEBP)
        Image.fromarray(state_peek(self.backend.vae, result.anchor_latent)).save(peek, **WEBP)
        # Gradio has read the segment before last by now: keep the folder small in endless mode
        self.folder.joinpath(f"{self.mode}-{result.index - 2:05d}.mp4").unlink(missing_ok=True)
        self.video.write(result.frames)
        self.records.append({**result.record(), **self.measures(result.frames)})
        if self.filmstrip_every and (len(self.records) - 1) % self.filmstrip_every == 0:
            self.filmstrip_frames.append(result.frames[0])
            self.filmstrip_path = self.folder / f"{self.mode}-filmstrip-{len(self.filmstrip_frames):02d}.webp"
            Image.fromarray(filmstrip(self.filmstrip_frames)).save(self.filmstrip_path, **WEBP)
        return Update(segment and str(segment), str(state), str(peek), list(self.records), mode=self.mode,
                      filmstrip=self.filmstrip_path and str(self.filmstrip_path),
                      held_seconds=0.0 if self.streamed else unsent_seconds)

    def measures(self, frames: np.ndarray) -> dict:
        """A chunk's motion, its likeness to the run's first frame ("revert") and its pan speed:
        |median x-shift| of its frame pairs, the step into it from the previous chunk included, as
        the evaluation measures them (adastate/evaluate.py)."""
        if self.first_frame is None:
            self.first_frame = frames[0]
        with_step_in = frames if self.last_frame is None else np.concatenate([self.last_frame[None], frames])
        self.last_frame = frames[-1]
        return {"motion": motion_magnitude(frames), "revert": revert_correlation(frames, self.first_frame),
                "pan_speed": float(abs(np.median(pan_per_frame(with_step_in)[:, 0])))}

    def scene(self) -> Scene:
        with self.lock:
            return snapshot(self.stream)

    def finish(self) -> str:
        self.video.close()
        return str(self.video_path)

    def close(self):
        """The run is over: close the video (what was written plays) and remove the segments,
        which the app has streamed by now."""
        self.video.close()
        for segment in self.folder.glob(f"{self.mode}-?????.mp4"):
            segment.unlink(missing_ok=True)


# -- sharing the machine ----------------------------------------------------------------------------

class FairSlots:
    """`count` slots, granted strictly in the order they were requested: one who releases a slot
    and asks again queues behind everyone already waiting. A released slot goes straight to the
    first in line, so `waiting()` drops the moment a slot frees."""

    def __init__(self, count: int):
        self.free, self.queue, self.granted = count, deque(), set()
        self.changed = threading.Condition()

    def request(self) -> object:
        ticket = object()
        with self.changed:
            if self.free and not self.queue:
                self.free -= 1
                self.granted.add(ticket)
            else:
                self.queue.append(ticket)
        return ticket

    def wait(self, ticket, timeout: float | None = None) -> bool:
        """True once `ticket` holds a slot; False if `timeout` passed first (it stays in line)."""
        with self.changed:
            return self.changed.wait_for(lambda: ticket in self.granted, timeout)

    def release(self, ticket):
        """Give back a granted slot, or give up a place in line."""
        with self.changed:
            if ticket in self.granted:
                self.granted.remove(ticket)
                if self.queue:
                    self.granted.add(self.queue.popleft())
                    self.changed.notify_all()
                else:
                    self.free += 1
            elif ticket in self.queue:
                self.queue.remove(ticket)

    def waiting(self) -> int:
        with self.changed:
            return len(self.queue)

    def ahead_of(self, ticket) -> int:
        with self.changed:
            return self.queue.index(ticket) if ticket in self.queue else 0

    @contextmanager
    def held(self):
        ticket = self.request()
        try:
            self.wait(ticket)
            yield
        finally:
            self.release(ticket)


class Scheduler:
    """How streams share the machine: `places` streams run at once; they compute chunk by chunk in
    turns on `slots` slots; at most `max_waiting` visitors wait for a place (each waiting request
    holds one of the web server's threads), more are told to come back."""

    def __init__(self, places: int = MAX_STREAMS, slots: int = COMPUTE_SLOTS, max_waiting: int = MAX_WAITING):
        self.places, self.slots, self.max_waiting = FairSlots(places), FairSlots(slots), max_waiting
        self.lock = threading.Lock()
        self.making_room = 0  # endless runs ending for a waiting visitor who has not got their place yet

    def enter(self) -> object:
        """A place in line (or a place) for a new stream."""
        with self.lock:
            waiting = self.places.waiting()
            if waiting >= self.max_waiting:
                raise ValueError(f"the demo is full: {waiting} visitor{'s are' if waiting != 1 else ' is'} waiting "
                                 "for a free place; try again in a minute")
            return self.places.request()

    def make_room(self) -> bool:
        """Should this endless run end now? Yes if a visitor waits for a place that no other
        ending run is freeing already."""
        with self.lock:
            if self.places.waiting() > self.making_room:
                self.making_room += 1
                return True
            return False

    def leave(self, ticket, made_room: bool):
        with self.lock:  # the place goes to the first in line before the count drops
            self.places.release(ticket)
            if made_room:
                self.making_room -= 1

    def turn(self):
        """Context: computing one chunk."""
        return self.slots.held()


# -- sharing memory and disk: what is kept per visitor ---------------------------------------------

class Running:
    """A visitor's running stream(s), as the other requests of that visitor reach them."""

    def __init__(self):
        self.run: Run | None = None   # the steerable stream, once it runs (None for a comparison)
        self.comparing = False
        self.stop_reason: str | None = None

    def stop(self, reason: str):
        self.stop_reason = reason


@dataclass
class Visit:
    """One browser session's share of the demo."""
    folder: Path
    last_seen: float
    running: Running | None = None
    scene: Scene | None = None         # where the last stream ended (CPU tensors), for /save_scene
    scene_gone: str | None = None      # why there is no kept scene although a stream ran
    scene_file: Path | None = None     # the one saved scene file
    upload: Path | None = None         # the scene file this visitor uploaded last
    runs_started: int = 0
    kept_run: tuple[int, Path] | None = None  # (number, folder) of the newest ended run: its video is offered


class Visitors:
    """Each session's running stream, kept scene and files (see the module's docstring).

    `root`: where visitors' folders go (the app: inside Gradio's cache, so that Gradio serves the
    videos and scenes from there instead of copying them). `uploads`: Gradio's upload folder;
    uploaded scene files there belong to the visitor who used them, and a rejected one is removed
    at once. `key` None is a run that belongs to no session: its files go when it ends.
    """

    def __init__(self, root: Path | None = None, scheduler: Scheduler | None = None,
                 memory_budget_mb: float = SESSION_MEMORY_MB, idle_seconds: float = SESSION_IDLE_SECONDS,
                 uploads: Path | None = None, clock=time.monotonic):
        self.root = Path(root or Path(tempfile.gettempdir()) / "adastate-runs")
        self.scheduler = scheduler or Scheduler()
        self.memory_budget, self.idle_seconds = memory_budget_mb * 2**20, idle_seconds
        self.uploads, self.clock = uploads, clock
        self.visits: dict = {}
        self.lock = threading.RLock()
        self.sweeper = None

    # visits

    def _new_visit(self) -> Visit:
        folder = self.root / secrets.token_hex(8)  # not the session hash: API clients choose that
        folder.mkdir(parents=True)
        return Visit(folder, self.clock())

    def _visit(self, key) -> Visit:
        """The session's visit (a new one if it has none), marked as seen now."""
        with self.lock:
            visit = self.visits.get(key) if key is not None else None
            if visit is None:
                visit = self._new_visit()
                if key is not None:
                    self.visits[key] = visit
            visit.last_seen = self.clock()
            return visit

    def _current(self, key) -> Visit | None:
        return self.visits.get(key) if key is not None else None

    def _remove(self, visit: Visit):
        shutil.rmtree(visit.folder, ignore_errors=True)
        self._delete_upload(visit.upload)

    def end(self, key):
        """The session ended (its browser tab closed): stop its stream, remove what it kept."""
        with self.lock:
            visit = self.visits.pop(key, None)
        if visit is None:
            return
        if visit.running is not None:
            visit.running.stop("stopped: the session ended")  # the run removes the folder as it ends
            self._delete_upload(visit.upload)
        else:
            self._remove(visit)

    def sweep(self):
        """Remove sessions idle for longer than `idle_seconds`; drop kept scenes, least recently
        used first, until they fit the memory budget."""
        now = self.clock()
        with self.lock:
            idle = [key for key, visit in self.visits.items()
                    if visit.running is None and now - visit.last_seen > self.idle_seconds]
            for key in idle:
                self._remove(self.visits.pop(key))
            kept = sorted((visit for visit in self.visits.values() if visit.scene is not None),
                          key=lambda visit: visit.last_seen)
            excess = sum(visit.scene.nbytes for visit in kept) - self.memory_budget
            for visit in kept:
                if excess <= 0:
                    break
                excess -= visit.scene.nbytes
                visit.scene = None
                visit.scene_gone = (f"this session's last stream was dropped from memory to make room for others "
                                    f"(they share {self.memory_budget / 2**20:.0f} MB): save while a stream runs")

    def sweep_every(self, seconds: float):
        """Sweep in a background thread (once per Visitors, however often called), and return the
        memory that streams freed to the operating system: the web server runs streams on many
        threads, and without malloc_trim the server's RSS settled about 130 MiB higher after
        bursts of concurrent streams (benchmarks/RESULTS.md, "Reliability")."""
        def sweeping():
            while True:
                time.sleep(seconds)
                try:
                    self.sweep()
                    if GLIBC is not None:
                        GLIBC.malloc_trim(0)
                except Exception:  # a sweep that failed must not end the sweeping
                    log.exception("sweeping the demo's sessions failed")

        with self.lock:
            if self.sweeper is None:
                self.sweeper = threading.Thread(target=sweeping, name="adastate-sweeper", daemon=True)
                self.sweeper.start()

    def kept_scene_bytes(self) -> int:
        with self.lock:
            return sum(visit.scene.nbytes for visit in self.visits.values() if visit.scene is not None)

    # uploads

    def _deletable_upload(self, path: Path | None) -> bool:
        """Only scene files in Gradio's upload folder are the visitor's to lose: never a file of the
        demo's own (its folders are in the same folder), never anything else Gradio keeps there."""
        if path is None or self.uploads is None or path.suffix != ".safetensors":
            return False
        resolved = path.resolve()
        return resolved.is_relative_to(Path(self.uploads).resolve()) and not resolved.is_relative_to(self.root.resolve())

    def _delete_upload(self, path: Path | None):
        if self._deletable_upload(path):
            path.unlink(missing_ok=True)
            try:
                path.parent.rmdir()  # Gradio keeps each upload in a folder of its own
            except OSError:
                pass

    def adopt_upload(self, key, path: Path):
        """`path` is the scene file this visitor uploaded: it replaces their previous upload and
        goes with their session. (Two visitors who upload the very same bytes share Gradio's
        copy; the first to leave takes it along.)"""
        with self.lock:
            visit = self._current(key)
            if visit is None or visit.upload == path:
                return
            previous, visit.upload = visit.upload, path
        self._delete_upload(previous)

    def discard_upload(self, key, path: Path):
        """A rejected upload leaves nothing behind."""
        with self.lock:
            visit = self._current(key)
            if visit is not None and visit.upload == path:
                visit.upload = None
        self._delete_upload(path)

    # streams

    def stream(self, key, start, endless: bool = False):
        """Run the streams `start(folder)` returns (one mode, or both in step) as `key`'s visitor's
        run: yield ({mode: Update}, status) per chunk — ({}, status) while waiting for a place — and
        a last pair whose updates carry the finished videos. `endless`: the run gives way to a
        waiting visitor. Each chunk is computed while the previous one is being shown
        (`computed_ahead`), so a prompt switch applies from the chunk after the one in progress."""
        scheduler = self.scheduler
        ticket = scheduler.enter()  # a refusal changes nothing
        admitted = made_room = False
        visit, runs = None, []
        try:
            visit = self._visit(key)
            running = Running()
            with self.lock:
                visit.runs_started += 1
                number = visit.runs_started
                if visit.running is not None:
                    visit.running.stop("stopped: a newer run started in this session")
                visit.running = running
            folder = visit.folder / f"run-{number}"
            while not scheduler.places.wait(ticket, WAIT_POLL):
                if running.stop_reason:
                    yield {}, running.stop_reason
                    return
                before = scheduler.places.ahead_of(ticket)
                yield {}, (f"waiting for a free place: {before} visitor{'s' if before != 1 else ''} ahead of you"
                           if before else "waiting for a free place: you are next")
            admitted = True
            started = time.perf_counter()
            runs = start(folder)
            running.run, running.comparing = (runs[0], False) if len(runs) == 1 else (None, True)
            lead = runs[0]  # the runs go in step: the first one's count and statistics stand for all
            total = "endless" if endless else lead.stream.settings.chunks - lead.stream.index
            plots, updates, ending = Throttle(PLOT_INTERVAL), None, "done"

            def chunks():
                nonlocal ending, made_room
                while lead.stream.index < lead.stream.settings.chunks:
                    if running.stop_reason:
                        ending = running.stop_reason
                        return
                    if endless and scheduler.make_room():
                        made_room = True
                        ending = "ended to make room for a visitor who was waiting (save the scene to continue it later)"
                        return
                    replot = plots.due()
                    with scheduler.turn():
                        updates = {run.mode: replace(run.step(), replot=replot) for run in runs}
                    yield updates

            for updates in computed_ahead(chunks()):
                yield updates, status_line(updates[lead.mode].records, total, started, lead.backend.notice,
                                           updates[lead.mode].held_seconds)
            if updates is None:  # stopped before its first chunk
                yield {}, ending
                return
            updates = {run.mode: replace(updates[run.mode], segment=None, video=run.finish(), replot=True)
                       for run in runs}
            status = status_line(updates[lead.mode].records, total, started, lead.backend.notice)
            yield updates, f"{status} · {ending}"
        finally:  # also when cancelled (the stop button closes the generator)
            for run in runs:
                run.close()
            if admitted:
                scheduler.leave(ticket, made_room)
            else:
                scheduler.places.release(ticket)
            if visit is not None:
                self._run_ended(key, visit, running, number, folder)

    def _run_ended(self, key, visit: Visit, running: Running, number: int, folder: Path):
        """Keep the newest run's video and the scene its stream ended with; remove the rest."""
        scene = None
        if self._current(key) is visit and visit.running is running and running.run is not None \
                and running.run.stream.index > 0:
            scene = running.run.scene()  # a CPU copy: the stream and its device memory go with the run
        with self.lock:
            if self._current(key) is not visit:  # no session, or it ended while this ran
                shutil.rmtree(folder, ignore_errors=True)
                if key is None or visit.running is running:
                    self._remove(visit)
                return
            if visit.running is running:
                visit.running = None
                if scene is not None:
                    visit.scene, visit.scene_gone = scene, None
            if folder.exists():  # the run started: it has a video to offer (or had, if cut short)
                if visit.kept_run is None or number > visit.kept_run[0]:
                    if visit.kept_run is not None:
                        shutil.rmtree(visit.kept_run[1], ignore_errors=True)
                    visit.kept_run = (number, folder)
                else:
                    shutil.rmtree(folder, ignore_errors=True)
            visit.last_seen = self.clock()
        self.sweep()

    def switch(self, key, prompt, recache) -> str:
        prompt, recache = prompt_text(prompt), true_or_false(recache, "re-cache")
        with self.lock:
            visit = self._current(key)
            running = visit.running if visit is not None else None
        if running is None:
            raise ValueError("nothing is streaming in this session: a switch steers a running generation (to "
                             "continue a finished one under a new prompt, save its scene and continue it)")
        if running.comparing:
            raise ValueError("the running comparison cannot switch prompts: switch steers a generate or "
                             "continue-scene stream")
        if running.run is None:
            raise ValueError("your stream has not started yet (it is waiting for a free place): switch once it runs")
        with running.run.lock:  # the chunk in progress (computed ahead of the one shown) keeps its prompt
            stream = running.run.stream
            if stream.index >= stream.settings.chunks:
                raise ValueError(f"all {stream.settings.chunks} chunks of this run are computed (the player is "
                                 "still showing them): nothing left to switch — save the scene and continue it")
            stream.switch_prompt(prompt, recache)
            first = stream.index + 1
        with self.lock:
            visit.last_seen = self.clock()
        return (f"switching to “{as_markdown_text(prompt)}” from chunk {first} on"
                + (" (window re-cached)" if recache else ""))

    def save(self, key) -> str:
        """Write the session's scene — its running stream after its latest chunk, or where its last
        stream ended — as its one scene file; returns the file's path."""
        with self.lock:
            visit = self._current(key)
            running = visit.running if visit is not None else None
            kept = visit.scene if visit is not None else None
            gone = visit.scene_gone if visit is not None else None
        if running is not None and running.comparing:
            raise ValueError("a comparison cannot be saved: save a generate or continue-scene stream")
        if running is not None and running.run is not None and running.run.stream.index > 0:
            scene = running.run.scene()
        elif kept is not None:
            scene = kept
        elif running is not None:
            raise ValueError("nothing to save yet: the stream has not made its first chunk")
        else:
            raise ValueError(gone or "nothing to save in this session: generate first")
        path = save_scene(scene, visit.folder / f"scene-{scene.anchor}-chunk{scene.index:05d}.safetensors")
        with self.lock:
            if self._current(key) is not visit:  # the session ended meanwhile: its folder is going
                path.unlink(missing_ok=True)
                raise ValueError("this session has ended: reload the page")
            previous, visit.scene_file, visit.last_seen = visit.scene_file, path, self.clock()
        if previous is not None and previous != path:
            previous.unlink(missing_ok=True)  # one scene file per session
        return str(path)


def status_line(records: list, total, started: float, notice: str | None, held_seconds: float = 0.0) -> str:
    done = len(records)
    frames = sum(r["frames"] for r in records)
    text = f"chunk {done} / {total} · {frames / max(time.perf_counter() - started, 1e-9):.1f} frames generated per second"
    if held_seconds:
        text += f" · buffering ({held_seconds:.1f} s of video): playback starts when it can run to the end without stopping"
    if records and any(r["prompt"] != records[0]["prompt"] for r in records):
        text += f" · prompt: “{as_markdown_text(records[-1]['prompt'])}”"
    return text + (f" · note: {notice}" if notice else "")


# -- the actions ----------------------------------------------------------------------------------

def one_mode(steps):
    """(Update or None while waiting, status) from a one-mode run's ({mode: Update}, status)."""
    for updates, status in steps:
        yield next(iter(updates.values()), None), status


def generate_updates(backends: Backends, prompt, seed, chunks, anchor, steps=4, window=1, endless=False,
                     visitors: Visitors | None = None, key=None):
    """Yield (Update, status text) per chunk, then a last pair whose Update carries the finished MP4.
    `endless`: ignore `chunks` and stream until cancelled (or ENDLESS_CHUNKS, or a visitor waits)."""
    prompt = prompt_text(prompt)
    endless = true_or_false(endless, "endless")
    settings = settings_from_inputs(seed, 1 if endless else chunks, anchor, steps, window)
    playback = None
    if endless:
        settings = replace(settings, chunks=ENDLESS_CHUNKS)
        playback = PlaybackStart(ENDLESS_CHUNKS, most_seconds=ENDLESS_BUFFER_SECONDS)
    yield from one_mode((visitors or Visitors()).stream(
        key, lambda folder: [Run.new(backends, prompt, settings, folder, playback=playback)], endless))


def resume_updates(backends: Backends, scene_file, prompt, seed, chunks, state_only=False,
                   visitors: Visitors | None = None, key=None):
    """Continue a saved scene for `chunks` more chunks, or (`state_only`) start a new video under
    `prompt` from its state alone. An empty prompt keeps the scene's."""
    visitors = visitors or Visitors()
    path = uploaded_path(scene_file)
    visitors.adopt_upload(key, path)
    chunks = whole_number(chunks, "chunks", 1, MAX_DEMO_CHUNKS)
    state_only = true_or_false(state_only, "state only")
    prompt = None if prompt is None or isinstance(prompt, str) and not prompt.strip() else prompt_text(prompt)
    seed = whole_number(seed, "seed", 0, 2**31 - 1) if state_only else None
    try:
        scene = read_scene(path, DEMO_LIMITS)
        backend = backends.get(scene.anchor)
        check_compatible(scene, backend)
    except SceneError:
        visitors.discard_upload(key, path)
        raise

    def start(folder):
        return [Run(backend, resume_stream(backend, scene, chunks, prompt, state_only, seed), folder)]

    yield from one_mode(visitors.stream(key, start))


def compare_updates(backends: Backends, prompt, seed, chunks, steps=4, window=1,
                    visitors: Visitors | None = None, key=None):
    """Both modes from the same prompt and seed, chunk for chunk: yield ({mode: Update}, status)
    (an empty dict while waiting for a place)."""
    prompt = prompt_text(prompt)
    settings = {mode: settings_from_inputs(seed, chunks, mode, steps, window) for mode in ANCHOR_MODES}
    every = math.ceil(settings["adaptive"].chunks / FILMSTRIP_FRAMES)

    def start(folder):
        playback = PlaybackStart(settings["adaptive"].chunks)  # the two players start together
        return [Run.new(backends, prompt, settings[mode], folder, every, playback) for mode in ANCHOR_MODES]

    yield from (visitors or Visitors()).stream(key, start)


def plots_of(updates: dict):
    return chunk_plots({mode: update.records for mode, update in updates.items()})


def summary_of(updates: dict) -> list[list]:
    return summary_rows({mode: update.records for mode, update in updates.items()})


def curves_of(updates: dict):
    """Per-chunk revert and pan speed of both modes as a table for the browser's plots."""
    import pandas as pd

    return pd.DataFrame(curve_rows({mode: update.records for mode, update in updates.items()}))


def verdict_of(updates: dict) -> str:
    return verdict({mode: update.records for mode, update in updates.items()})
