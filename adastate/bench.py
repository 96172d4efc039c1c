"""Benchmarks of the streaming engine on the embedded backend (`python -m adastate bench`).

Every ratio is measured inside one run, because this machine is shared and its speed drifts.
"""

import statistics
import time

import psutil
import torch
from torch.utils.flop_counter import FlopCounterMode

from .backends import load_backend
from .sampling import shifted_sigmas
from .stream import ChunkStream, StreamSettings

PROMPT = "a slow pan to the right across green hills under a blue sky"


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def timed_chunk(chunks) -> float:
    return chunks.next_chunk().seconds["total"]


def long_rollout(backend, chunks: int, probes: int = 15) -> dict:
    """Per-chunk latency at chunk 10 vs chunk `chunks`, and resident memory along the rollout.

    Two streams are advanced to chunk 10 and to chunk `chunks`, then timed alternately, chunk
    for chunk, so that the machine's drift hits both sides of the ratio alike.
    """
    settings = StreamSettings(anchor="adaptive", chunks=chunks + probes)
    early, late = ChunkStream(backend, PROMPT, settings), ChunkStream(backend, PROMPT, settings)
    for _ in range(10):
        early.next_chunk()
    memory = []
    for _ in range(chunks):
        late.next_chunk()
        memory.append(rss_mib())
    early_s, late_s = [], []
    for _ in range(probes):
        early_s.append(timed_chunk(early))
        late_s.append(timed_chunk(late))
    return {
        "chunks": chunks,
        "latency_chunk_10_s": statistics.median(early_s),
        f"latency_chunk_{chunks}_s": statistics.median(late_s),
        "latency_ratio": statistics.median(late_s) / statistics.median(early_s),
        "rss_mib_at_chunk_10": memory[10],
        f"rss_mib_at_chunk_{chunks}": memory[-1],
        "rss_mib_max_after_chunk_10": max(memory[10:]),
    }


def mode_cost(backend, chunks: int, rounds: int = 3) -> dict:
    """Median per-chunk time of adaptive vs static, interleaved so drift hits both alike."""
    times = {"adaptive": [], "static": []}
    for _ in range(rounds):
        for mode in times:
            results = list(ChunkStream(backend, PROMPT, StreamSettings(anchor=mode, chunks=chunks)))
            times[mode] += [r.seconds["total"] for r in results[2:]]  # skip warm-up chunks
    adaptive, static = statistics.median(times["adaptive"]), statistics.median(times["static"])
    settings = StreamSettings()
    return {"adaptive_chunk_s": adaptive, "static_chunk_s": static, "ratio": adaptive / static,
            "target_ratio": (settings.chunk_frames + settings.state_frames) / settings.chunk_frames * 1.1}


def matmul_rate(size: int = 1024, repeats: int = 20) -> float:
    """The machine's float32 matrix-multiply FLOP/s as torch sees it, best of several."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def denoise_flops(backend, repeats: int = 30) -> dict:
    """Achieved FLOP/s of one denoising forward (adaptive block, full cache) vs matmul rate."""
    chunks = ChunkStream(backend, PROMPT, StreamSettings(anchor="adaptive", chunks=4))
    for _ in range(3):  # fill the anchor slot and the window
        chunks.next_chunk()
    model, cache = backend.transformer, chunks.cache
    cache.begin_block(chunks.state_frames)
    x = torch.randn(chunks.block_shape)
    t = torch.full((1,), 1000.0 * shifted_sigmas()[1])
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            model.forward_frames(x, t, chunks.text_kv, cache)
        flops = counter.get_total_flops()
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.forward_frames(x, t, chunks.text_kv, cache)
            seconds.append(time.perf_counter() - start)
    rate = matmul_rate()
    achieved = flops / statistics.median(seconds)
    return {"forward_gflop": flops / 1e9, "forward_s": statistics.median(seconds),
            "achieved_gflops": achieved / 1e9, "matmul_gflops": rate / 1e9, "fraction_of_matmul": achieved / rate,
            "threads": torch.get_num_threads()}


def frame_rate(backend, chunks: int) -> dict:
    """Video frames produced per second (denoise + cache write + decode) vs playback rate."""
    start = time.perf_counter()
    first = None
    frames = 0
    for result in ChunkStream(backend, PROMPT, StreamSettings(anchor="adaptive", chunks=chunks)):
        first = first or time.perf_counter() - start
        frames += result.frames.shape[0]
    fps = frames / (time.perf_counter() - start)
    return {"generated_fps": fps, "playback_fps": backend.fps, "realtime_factor": fps / backend.fps,
            "time_to_first_chunk_s": first, "video_size": list(result.frames.shape[1:3])}


def run_benchmarks(long_chunks: int = 500, quick: bool = False) -> dict:
    backend = load_backend("tiny")
    if quick:
        long_chunks = min(long_chunks, 25)
    return {
        "backend": backend.name, "notice": backend.notice,
        "frame_rate": frame_rate(backend, 6 if quick else 30),
        "mode_cost": mode_cost(backend, 6 if quick else 20, rounds=1 if quick else 3),
        "denoise_flops": denoise_flops(backend, 3 if quick else 30),
        "long_rollout": long_rollout(backend, long_chunks),
    }
