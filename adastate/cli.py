"""`python -m adastate generate | train | bench`."""

import argparse
import json
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from .backends import BACKENDS, DEVICE_ENV
from .sampling import DEFAULT_STEPS
from .stream import ANCHOR_MODES, MAX_CHUNKS, RECACHE_ON_SWITCH

DEVICE_HELP = f"cpu or cuda (default: ${DEVICE_ENV}, else cpu for tiny and cuda for wan)"


@contextmanager
def interrupt_after():
    """Ctrl-C during the block takes effect when the block ends, so a chunk goes into the video and
    the statistics whole, or not at all (an interrupt mid-write left frames no record counted)."""
    received = []
    previous = signal.signal(signal.SIGINT, lambda *_: received.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def write_json(path, data):
    """Write atomically, so an interrupted run never leaves half a JSON file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def parse_prompt_at(values) -> dict:
    """["8:a desert at dusk", ...] → {8: "a desert at dusk", ...}"""
    schedule = {}
    for value in values or []:
        chunk, sep, text = value.partition(":")
        if not sep or not chunk.strip().isdigit():
            raise ValueError(f"--prompt-at wants CHUNK:TEXT with a chunk index ≥ 0, got {value!r}")
        schedule[int(chunk)] = text
    return schedule


def generate(args) -> int:
    from tqdm import tqdm

    from .backends import load_backend
    from .scene import read_scene, resume_stream, save_scene, snapshot
    from .stream import ChunkStream, StreamSettings
    from .text import check_prompt
    from .video import Mp4Writer

    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"--out must name an .mp4 file, got {out}")
    if args.save_scene and Path(args.save_scene).suffix != ".safetensors":
        raise ValueError(f"--save-scene must name a .safetensors file, got {args.save_scene}")
    options = {"prompt_schedule": parse_prompt_at(args.prompt_at), "recache_on_switch": args.recache_on_switch}
    if args.resume:
        scene = read_scene(args.resume)
        if args.anchor and args.anchor != scene.anchor:
            raise ValueError(f"the scene was made in {scene.anchor} mode; drop --anchor or use {scene.anchor}")
        if args.window is not None or args.steps is not None:
            settings = scene.meta["settings"]
            raise ValueError(f"a resumed stream keeps the scene's window ({settings['window_chunks']}) and denoising "
                             f"steps ({' '.join(f'{t:g}' for t in settings['denoising_steps'])}); drop --window and --steps")
        StreamSettings(chunks=args.chunks).check()
        backend = load_backend(args.backend, args.checkpoint, args.device, scene.anchor)
        chunks = resume_stream(backend, scene, args.chunks, check_prompt(args.prompt) if args.prompt else None,
                               args.state_only, args.seed, **options)
    else:
        if args.state_only:
            raise ValueError("--state-only needs --resume FILE (the scene whose state to carry over)")
        if args.prompt is None:
            raise ValueError("--prompt is required (unless --resume continues a saved scene)")
        settings = StreamSettings(anchor=args.anchor or "adaptive", chunks=args.chunks,
                                  seed=0 if args.seed is None else args.seed,
                                  window_chunks=1 if args.window is None else args.window,
                                  denoising_steps=DEFAULT_STEPS if args.steps is None else tuple(args.steps)).check()
        prompt = check_prompt(args.prompt)
        backend = load_backend(args.backend, args.checkpoint, args.device, settings.anchor)
        chunks = ChunkStream(backend, prompt, settings, **options)
    settings = chunks.settings
    for index in sorted(options["prompt_schedule"]):
        if not chunks.index <= index < settings.chunks:  # e.g. the same schedule given to a resumed run
            print(f"note: --prompt-at {index} is outside this run (chunks {chunks.index} to {settings.chunks - 1}): "
                  "ignored", file=sys.stderr)
    if backend.notice:
        print(f"note: {backend.notice}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)

    config = {"prompt": chunks.prompt, "anchor": settings.anchor, "chunks": settings.chunks - chunks.index,
              "first_chunk": chunks.index, "seed": settings.seed, "backend": backend.name,
              "device": str(backend.device),
              "checkpoint": str(args.checkpoint) if args.checkpoint else None,
              "resumed_from": str(args.resume) if args.resume else None, "state_only": args.state_only,
              "prompt_at": {str(k): v for k, v in options["prompt_schedule"].items()},
              "recache_on_switch": args.recache_on_switch,
              "notice": backend.notice, "chunk_frames": settings.chunk_frames,
              "state_frames": settings.state_frames, "window_chunks": settings.window_chunks,
              "denoising_steps": list(settings.denoising_steps), "shift": settings.shift, "fps": backend.fps,
              "frames_per_chunk": settings.chunk_frames * backend.frames_per_latent,
              "model": dict(backend.transformer.config)}
    records, interrupted = [], False
    bar = tqdm(total=settings.chunks - chunks.index, unit="chunk", file=sys.stderr, disable=None)
    try:
        with Mp4Writer(out, backend.fps) as video:
            for result in chunks:
                with interrupt_after():
                    video.write(result.frames)
                    records.append(result.record())
                bar.update()
    except KeyboardInterrupt:
        interrupted = True  # the writer has closed the file; what was written plays
    finally:
        bar.close()
        if args.stats_out:
            write_json(args.stats_out, {"config": config, "chunks": records, "interrupted": interrupted})
        if args.save_scene and records:  # also after Ctrl-C: the scene as far as it got
            save_scene(snapshot(chunks), args.save_scene)
    print(f"{'interrupted after' if interrupted else 'wrote'} {len(records)} chunks → {out}"
          + (f"; scene → {args.save_scene}" if args.save_scene and records else ""), file=sys.stderr)
    return 130 if interrupted else 0


def bench(args) -> int:
    from .bench import run_benchmarks

    results = run_benchmarks(long_chunks=args.long_chunks, quick=args.quick)
    print(json.dumps(results, indent=2))
    if args.out:
        write_json(args.out, results)
    return 0


def train(args) -> int:
    from dataclasses import fields

    from .train.recipe import TrainConfig
    from .train.recipe import train as run_stage

    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
              if f.name != "model" and getattr(args, f.name, None) is not None}
    run_stage(TrainConfig(**values))
    return 0


def evaluate(args) -> int:
    from .backends import load_backend
    from .evaluate import evaluate as run_evaluation
    from .evaluate import held_out_prompts, read_prompts

    if args.chunks < 1 or args.chunks > MAX_CHUNKS:
        raise ValueError(f"--chunks must be from 1 to {MAX_CHUNKS}, got {args.chunks}")
    if args.count < 1:
        raise ValueError(f"--count must be at least 1, got {args.count}")
    prompts = read_prompts(args.prompts) if args.prompts else held_out_prompts(args.count)
    checkpoints = {"adaptive": args.adaptive_checkpoint, "static": args.static_checkpoint}
    teacher = None
    if args.teacher:
        from dataclasses import replace

        from .checkpoints import load_pretrained
        from .model import CausalWanTransformer
        from .teacher import TeacherVideo

        base = load_backend(args.backend, checkpoints["adaptive"], args.device, "adaptive")  # its VAE and text encoder
        model = load_pretrained(CausalWanTransformer, Path(args.teacher) / "transformer").eval().to(base.device)
        teacher = TeacherVideo(replace(base, transformer=model), steps=args.teacher_steps)
    summary = run_evaluation(lambda mode: load_backend(args.backend, checkpoints[mode], args.device, mode),
                             prompts, args.seeds, args.chunks, args.horizon, args.out, teacher)
    for name, target in summary["targets"].items():
        met = {True: "met", False: "NOT met", None: "no data"}[target["met"]]
        measured = "-" if target["measured"] is None else f"{target['measured']:.3f}"
        print(f"{met:8} {name}: {measured} (goal {target['goal']})")
    print(f"wrote {Path(args.out) / 'RESULTS.md'}", file=sys.stderr)
    return 0


def add_train_parser(sub):
    """One flag per TrainConfig field, so the recipe's defaults live in one place."""
    from dataclasses import MISSING, fields

    from .train.recipe import STAGES, TrainConfig

    t = sub.add_parser("train", help="run one stage of the embedded model's training recipe",
                       description="Stages, in order: " + ", ".join(STAGES) + ". Each resumes from its last checkpoint.")
    t.add_argument("stage", choices=STAGES)
    for f in fields(TrainConfig):
        if f.name in ("stage", "model", "vae_model"):
            continue
        default = None if f.default is MISSING else f.default
        if isinstance(default, bool):
            t.add_argument("--" + f.name.replace("_", "-"), action="store_true", default=None, help=f"default: {default}")
            continue
        t.add_argument("--" + f.name.replace("_", "-"), type=type(default) if default is not None else str,
                       default=None, required=default is None, help=f"default: {default}")
    t.set_defaults(run=train)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adastate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="stream a video to an MP4 file")
    g.add_argument("--prompt", help="what to generate (with --resume: switch to this prompt)")
    g.add_argument("--anchor", choices=ANCHOR_MODES, default=None,
                   help="adaptive (default): self-evolving state; static: first frame frozen as the anchor")
    g.add_argument("--chunks", type=int, default=8, help=f"chunks to generate (1 to {MAX_CHUNKS})")
    g.add_argument("--seed", type=int, default=None, help="default 0 (with --resume: the scene's seed)")
    g.add_argument("--prompt-at", action="append", metavar="CHUNK:TEXT",
                   help="switch to TEXT from chunk CHUNK on (repeatable); the state and window carry the scene")
    g.add_argument("--recache-on-switch", action=argparse.BooleanOptionalAction, default=RECACHE_ON_SWITCH,
                   help="at a switch, also rewrite the window's cache under the new prompt (LongLive's re-cache)")
    g.add_argument("--save-scene", metavar="FILE", help="after the last chunk, save the scene (.safetensors)")
    g.add_argument("--resume", metavar="FILE", help="continue a saved scene for --chunks more chunks")
    g.add_argument("--state-only", action="store_true",
                   help="with --resume: a new video under --prompt from the scene's state alone (window empty)")
    g.add_argument("--out", required=True, help="output .mp4 (H.264)")
    g.add_argument("--stats-out", help="per-chunk statistics as JSON")
    g.add_argument("--backend", choices=BACKENDS, default=None,
                   help="tiny: the embedded CPU model; wan: Wan 2.1 on a GPU (default: $ADASTATE_BACKEND, else tiny)")
    g.add_argument("--checkpoint", help="weights: a diffusers-layout folder, a .safetensors file, or (wan) a Hub repo id")
    g.add_argument("--window", type=int, default=None,
                   help="previous chunks kept in the rolling window (default 1; with --resume: the scene's)")
    g.add_argument("--steps", type=int, nargs="+", default=None,
                   help=f"denoising timesteps before the shift, decreasing, in (0, 1000] (default "
                        f"{' '.join(map(str, DEFAULT_STEPS))}; with --resume: the scene's)")
    g.add_argument("--device", default=None, help=DEVICE_HELP)
    g.set_defaults(run=generate)

    add_train_parser(sub)

    e = sub.add_parser("eval", help="pan, realism, revert, progression, prompt switch and anchor share of both anchor modes")
    e.add_argument("--out", required=True,
                   help="folder for summary.json, runs/, per_chunk.png, contact_sheet.png, RESULTS.md")
    e.add_argument("--prompts", help="JSON list of prompts (default: captions of held-out worlds)")
    e.add_argument("--count", type=int, default=8, help="how many held-out worlds when --prompts is not given")
    e.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    e.add_argument("--chunks", type=int, default=40, help="chunks per run (issue 12's targets are set at 40)")
    e.add_argument("--horizon", type=int, default=4, help="the training rollout length in chunks")
    e.add_argument("--backend", choices=BACKENDS, default=None)
    e.add_argument("--adaptive-checkpoint", help="weights for adaptive mode (default: the shipped model)")
    e.add_argument("--static-checkpoint", help="weights for static mode (default: the shipped model)")
    e.add_argument("--teacher", help="a teacher stage folder (holding transformer/): evaluate the bidirectional "
                                      "teacher too, drawing long videos chunk by chunk (first seed only)")
    e.add_argument("--teacher-steps", type=int, default=16, help="the teacher's denoising steps per chunk")
    e.add_argument("--device", default=None, help=DEVICE_HELP)
    e.set_defaults(run=evaluate)

    b = sub.add_parser("bench", help="latency, memory, FLOP/s and frame-rate benchmarks")
    b.add_argument("--long-chunks", type=int, default=500, help="length of the long rollout")
    b.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    b.add_argument("--out", help="also write the results as JSON")
    b.set_defaults(run=bench)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError) as e:  # CheckpointError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before any output existed: nothing to keep
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
