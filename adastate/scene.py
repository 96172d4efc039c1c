"""Scenes as files: everything a stream needs to continue later, in one safetensors file.

A scene holds the KV cache (anchor slot and window, pre-RoPE), the anchor latent, the window's
clean latents (for re-caching at a prompt switch), the decoder's carried state if it has one,
and in the header's metadata: anchor mode, prompt, seed, next chunk index, the stream's layout
and the model's identity. Per-chunk noise depends only on (seed, chunk index, step), so

    generate N chunks  ==  generate k chunks, save, resume for N - k chunks     (same frames)

`resume_stream(..., state_only=True)` instead starts a fresh stream under a new prompt whose
anchor slot holds the saved scene's state (window empty): the scene's look, carried over.

A scene file may come from anyone (the demo takes uploads), so reading one checks everything it
asks of the machine against the reader's own limits (`SceneLimits`), and every tensor's name,
shape, dtype and values against what the model would have written. Errors name the file by its
name only, never by a server path, in one line.
"""

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .checkpoints import CheckpointError, load_state_dict
from .stream import ANCHOR_MODES, MAX_CHUNKS, ChunkStream, StreamSettings
from .text import check_prompt

FORMAT = "adastate-scene/1"
METADATA_KEY = "adastate.scene"
DECODER_SLOT_KINDS = (None, "Rep", "tensor")  # what a carried decoder cache slot holds (see backends/wan.py)


class SceneError(ValueError):
    """A scene file that cannot be used here; the message says why."""


@dataclass(frozen=True)
class SceneLimits:
    """The most a scene may ask of whoever continues it. A reader that takes scenes from strangers
    (the demo) allows what its own inputs allow; the defaults are what StreamSettings accepts, for
    a reader that continues its own files (the CLI). Every scene this project writes has the
    default layout (3 latent frames a chunk, a 1-frame state)."""
    max_steps: int = 50
    max_window: int = 16
    chunk_frames: int = StreamSettings.chunk_frames
    state_frames: int = StreamSettings.state_frames


def model_identity(model) -> dict:
    """What must match for a saved cache to mean the same thing: the configuration, and a
    fingerprint of the weights (the patch embedding, cheap to hash even at 1.3B)."""
    config = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True, default=list).encode()).hexdigest()[:16]
    weight = model.patch_embedding.weight.detach().float().cpu().contiguous()
    weights_hash = hashlib.sha256(weight.numpy().tobytes()).hexdigest()[:16]
    return {"config_hash": config_hash, "weights_hash": weights_hash}


@dataclass
class Scene:
    meta: dict      # JSON-ready: format, anchor, prompt, seed, index, settings, model, latent, backend
    tensors: dict   # name -> CPU tensor
    source: str = "the scene"  # how messages name it: the file's name, never its path

    @property
    def anchor(self) -> str:
        return self.meta["anchor"]

    @property
    def index(self) -> int:
        return self.meta["index"]

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    def error(self, problem: str) -> SceneError:
        return SceneError(f"{self.source}: {problem}")


def stream_settings(meta: dict, **changes) -> StreamSettings:
    """The settings a scene was generated with (its layout, schedule, seed), with `changes`."""
    saved = dict(meta["settings"], denoising_steps=tuple(meta["settings"]["denoising_steps"]))
    return StreamSettings(**{"anchor": meta["anchor"], "seed": meta["seed"], "chunks": meta["index"], **saved,
                             **changes})


def without_prefix(tensors: dict, prefix: str) -> dict:
    return {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}


def own_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU tensor with memory of its own. safetensors refuses tensors that share memory, and
    on the CPU a static stream's anchor slot is a view of its first window chunk (until that
    chunk leaves the window); a kept scene must not pin the rest of a stream's buffers either."""
    return tensor.detach().to("cpu", copy=True).contiguous()


def snapshot(stream: ChunkStream) -> Scene:
    """The stream's scene after its last chunk (tensors copied to the CPU)."""
    if stream.index == 0:
        raise SceneError("nothing to save yet: no chunk has been generated")
    s, backend = stream.settings, stream.backend
    tensors = {f"cache.{name}": t for name, t in stream.cache.tensors().items()}
    tensors["anchor_latent"] = stream.anchor_latent
    for slot, latents in enumerate(stream.window_latents):
        tensors[f"window_latents.{slot}"] = latents
    decoder = None
    if hasattr(stream.decoder, "state"):
        decoder, decoder_tensors = stream.decoder.state()
        tensors.update({f"decoder.{name}": t for name, t in decoder_tensors.items()})
    meta = {"format": FORMAT, "anchor": s.anchor, "prompt": stream.prompt, "seed": s.seed, "index": stream.index,
            "settings": {"chunk_frames": s.chunk_frames, "state_frames": s.state_frames,
                         "window_chunks": s.window_chunks, "denoising_steps": list(s.denoising_steps),
                         "shift": s.shift},
            "model": model_identity(backend.transformer), "backend": backend.name,
            "latent": [backend.latent_channels, backend.latent_height, backend.latent_width],
            "decoder": decoder}
    return Scene(meta, {name: own_copy(t) for name, t in tensors.items()})


def save_scene(scene: Scene, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(scene.tensors, str(path), metadata={METADATA_KEY: json.dumps(scene.meta)})
    return path


# -- reading: every field and tensor checked --------------------------------------------------------

def shown(value, limit: int = 40) -> str:
    """A value as a message quotes it: short, whatever was sent."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def whole(value, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} must be a whole number from {low} to {high}, got {shown(value)}")
    return value


KINDS = {str: "text", int: "a whole number", list: "a list", dict: "an object", (int, float): "a number"}


def field(record: dict, key: str, kind, where: str):
    """record[key], which must be a `kind` (one of KINDS; JSON's true and false are no numbers)."""
    if key not in record:
        raise ValueError(f"the {where} has no {key!r}")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{key!r} in the {where} must be {KINDS[kind]}, got {shown(value)}")
    return value


def check_meta(meta, limits: SceneLimits | None):
    """Raise ValueError naming the first thing wrong with a scene header."""
    if not isinstance(meta, dict):
        raise ValueError(f"the scene header must be a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise ValueError(f"the header's format is {shown(meta.get('format'))}, expected {FORMAT!r}")
    if field(meta, "anchor", str, "header") not in ANCHOR_MODES:
        raise ValueError(f"unknown anchor mode {shown(meta['anchor'])}; a scene is one of: {', '.join(ANCHOR_MODES)}")
    try:
        check_prompt(field(meta, "prompt", str, "header"))
    except ValueError as e:
        raise ValueError(f"the scene's prompt: {e}") from None
    whole(field(meta, "seed", int, "header"), "the seed", 0, 2**63 - 1)
    whole(field(meta, "index", int, "header"), "the chunk index", 1, MAX_CHUNKS - 1)
    settings = field(meta, "settings", dict, "header")
    chunk_frames = whole(field(settings, "chunk_frames", int, "settings"), "chunk_frames", 1, 16)
    state_frames = whole(field(settings, "state_frames", int, "settings"), "state_frames", 1, 8)
    window = whole(field(settings, "window_chunks", int, "settings"), "window_chunks", 1, 16)
    steps = field(settings, "denoising_steps", list, "settings")
    if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in steps):
        raise ValueError(f"the denoising steps must be numbers, got {shown(steps)}")
    shift = field(settings, "shift", (int, float), "settings")
    if not math.isfinite(shift) or shift <= 0:
        raise ValueError(f"the shift must be a positive number, got {shown(shift)}")
    if limits is not None:
        if len(steps) > limits.max_steps:
            raise ValueError(f"the scene asks for {len(steps)} denoising steps per chunk; at most "
                             f"{limits.max_steps} here")
        if window > limits.max_window:
            raise ValueError(f"the scene keeps a window of {window} chunks; at most {limits.max_window} here")
        if (chunk_frames, state_frames) != (limits.chunk_frames, limits.state_frames):
            raise ValueError(f"the scene's chunks are {chunk_frames} latent frames with a {state_frames}-frame state; "
                             f"this model makes {limits.chunk_frames} with a {limits.state_frames}-frame state")
    stream_settings(meta).check()
    identity = field(meta, "model", dict, "header")
    for key in ("config_hash", "weights_hash"):
        field(identity, key, str, "model identity")
    field(meta, "backend", str, "header")
    latent = field(meta, "latent", list, "header")
    if len(latent) != 3 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in latent):
        raise ValueError(f"the latent size must be 3 positive whole numbers, got {shown(latent)}")
    if meta.get("decoder") is not None:
        decoder = field(meta, "decoder", dict, "header")
        whole(field(decoder, "frames", int, "decoder state"), "the decoder's frame count", 0, 2**31)
        slots = field(decoder, "slots", list, "decoder state")
        if not all(kind in DECODER_SLOT_KINDS for kind in slots):
            raise ValueError(f"the decoder's cache slots must each be one of {DECODER_SLOT_KINDS}, got {shown(slots)}")


def read_scene(path, limits: SceneLimits | None = None) -> Scene:
    """Read and check a scene file; SceneError says in one line what is wrong with it.
    `limits`: what this reader allows (None: whatever StreamSettings accepts)."""
    name = Path(path).name
    try:
        tensors = load_state_dict(path, what="scene file", shown_as=name)
        with safe_open(str(path), "pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except CheckpointError as e:
        raise SceneError(str(e)) from None
    if raw is None:
        raise SceneError(f"{name}: not an AdaState scene file (its header has no scene description)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise SceneError(f"{name}: not an AdaState scene file (its scene description is not JSON)") from None
    try:
        check_meta(meta, limits)
    except ValueError as e:
        raise SceneError(f"{name}: not a usable AdaState scene file: {e}") from None
    for tensor_name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise SceneError(f"{name}: tensor {shown(tensor_name)} holds values that are not finite (NaN or infinity)")
    return Scene(meta, tensors, name)


def expected_tensors(meta: dict, backend) -> dict:
    """{name: (shape, dtype)} of every tensor that `backend`'s model writes into a scene like
    this one (decoder tensors: name and dtype; their shapes are the decoder's business)."""
    model, settings = backend.transformer, meta["settings"]
    channels, height, width = meta["latent"]
    frames, state, window = settings["chunk_frames"], settings["state_frames"], settings["window_chunks"]
    _, token_rows, token_cols = model.token_grid((1, channels, 1, height, width))
    tokens = token_rows * token_cols
    heads, head_dim = model.config.num_attention_heads, model.config.attention_head_dim
    slots = min(meta["index"], window)  # the window fills one chunk at a time
    dtype = backend.dtype
    expected = {"anchor_latent": ((channels, state, height, width), dtype)}
    for slot in range(slots):
        expected[f"window_latents.{slot}"] = ((1, channels, frames, height, width), dtype)
    for layer in range(len(model.blocks)):
        for part in ("key", "value"):
            expected[f"cache.anchor.{layer}.{part}"] = ((1, state * tokens, heads, head_dim), dtype)
            for slot in range(slots):
                expected[f"cache.window.{layer}.{slot}.{part}"] = ((1, frames * tokens, heads, head_dim), dtype)
    decoder = meta.get("decoder")
    for slot, kind in enumerate(decoder["slots"] if decoder else []):
        if kind == "tensor":
            expected[f"decoder.{slot}"] = (None, backend.vae.dtype)
    return expected


def check_compatible(scene: Scene, backend):
    """The scene must come from this model (configuration and weights) at this latent size, and
    hold exactly the tensors that model writes."""
    ours = model_identity(backend.transformer)
    theirs = scene.meta["model"]
    if theirs.get("config_hash") != ours["config_hash"]:
        raise scene.error(f"saved by a model with a different configuration (config {theirs.get('config_hash')}, "
                          f"this model's is {ours['config_hash']}); continue it with the {scene.meta.get('backend')} "
                          "model that made it")
    if theirs.get("weights_hash") != ours["weights_hash"]:
        raise scene.error(f"saved by different weights of the same model (weights {theirs.get('weights_hash')}, "
                          f"loaded: {ours['weights_hash']}); load the checkpoint that made it (anchor mode {scene.anchor})")
    latent = [backend.latent_channels, backend.latent_height, backend.latent_width]
    if scene.meta["latent"] != latent:
        raise scene.error(f"its latents are {scene.meta['latent']}, this backend makes {latent}")
    expected = expected_tensors(scene.meta, backend)
    for name in sorted(set(expected) - set(scene.tensors)):
        raise scene.error(f"tensor {name!r} is missing")
    for name in sorted(set(scene.tensors) - set(expected)):
        raise scene.error(f"unexpected tensor {shown(name)}")
    for name, (shape, dtype) in expected.items():
        tensor = scene.tensors[name]
        if shape is not None and tuple(tensor.shape) != shape:
            raise scene.error(f"tensor {name!r} has shape {list(tensor.shape)}, this model writes {list(shape)}")
        if tensor.dtype != dtype:
            raise scene.error(f"tensor {name!r} is {tensor.dtype}, this model writes {dtype}")


def resume_stream(backend, scene: Scene, chunks: int, prompt: str | None = None, state_only: bool = False,
                  seed: int | None = None, **stream_options) -> ChunkStream:
    """A stream that continues `scene` for `chunks` more chunks.

    Resume (default): same prompt (a different `prompt` switches at the first new chunk), same
    seed, chunk indices continuing from the scene's, window and decoder restored.
    `state_only`: a new video under `prompt` (default: the scene's) and `seed` (default: the
    scene's) from chunk 0, its anchor slot holding the scene's state and the window empty.
    """
    check_compatible(scene, backend)
    meta = scene.meta
    if not state_only and scene.index + chunks > MAX_CHUNKS:
        raise scene.error(f"it is at chunk {scene.index}; {chunks} more would pass the limit of {MAX_CHUNKS} "
                          "chunks a stream")
    settings = stream_settings(meta, seed=meta["seed"] if seed is None else seed,
                               chunks=chunks + (0 if state_only else scene.index))
    start_prompt = (prompt or meta["prompt"]) if state_only else meta["prompt"]
    stream = ChunkStream(backend, start_prompt, settings, **stream_options)
    stream.cache.load_tensors(without_prefix(scene.tensors, "cache."), window=not state_only)
    stream.anchor_latent = scene.tensors["anchor_latent"]
    if not state_only:
        stream.index = scene.index
        for slot in range(settings.window_chunks):
            if f"window_latents.{slot}" in scene.tensors:
                stream.window_latents.append(scene.tensors[f"window_latents.{slot}"].to(backend.device, backend.dtype))
        if meta.get("decoder") is not None and hasattr(stream.decoder, "load_state"):
            try:
                stream.decoder.load_state(meta["decoder"], without_prefix(scene.tensors, "decoder."), backend.device)
            except ValueError as e:
                raise scene.error(f"its decoder state does not fit this VAE: {e}") from None
        if prompt is not None and prompt != meta["prompt"]:
            stream.switch_prompt(prompt)
    return stream
