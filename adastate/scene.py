"""Scenes as files: everything a stream needs to continue later, in one safetensors file.

A scene holds the KV cache (anchor slot and window, pre-RoPE), the anchor latent, the window's
clean latents (for re-caching at a prompt switch), the decoder's carried state if it has one,
and in the header's metadata: anchor mode, prompt, seed, next chunk index, the stream's layout
and the model's identity. Per-chunk noise depends only on (seed, chunk index, step), so

    generate N chunks  ==  generate k chunks, save, resume for N - k chunks     (same frames)

`resume_stream(..., state_only=True)` instead starts a fresh stream under a new prompt whose
anchor slot holds the saved scene's state (window empty): the scene's look, carried over.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import save_file

from .checkpoints import CheckpointError, load_state_dict
from .stream import ANCHOR_MODES, ChunkStream, StreamSettings

FORMAT = "adastate-scene/1"
METADATA_KEY = "adastate.scene"


class SceneError(ValueError):
    """A scene file that cannot be used here; the message says why."""


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

    @property
    def anchor(self) -> str:
        return self.meta["anchor"]

    @property
    def index(self) -> int:
        return self.meta["index"]


def stream_settings(meta: dict, **changes) -> StreamSettings:
    """The settings a scene was generated with (its layout, schedule, seed), with `changes`."""
    saved = dict(meta["settings"], denoising_steps=tuple(meta["settings"]["denoising_steps"]))
    return StreamSettings(**{"anchor": meta["anchor"], "seed": meta["seed"], "chunks": meta["index"], **saved,
                             **changes})


def without_prefix(tensors: dict, prefix: str) -> dict:
    return {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}


def snapshot(stream: ChunkStream) -> Scene:
    """The stream's scene after its last chunk (tensors copied to the CPU)."""
    if stream.index == 0:
        raise SceneError("nothing to save yet: no chunk has been generated")
    s, backend = stream.settings, stream.backend
    tensors = {f"cache.{name}": t for name, t in stream.cache.tensors().items()}
    tensors["anchor_latent"] = stream.anchor_latent.contiguous()
    for slot, latents in enumerate(stream.window_latents):
        tensors[f"window_latents.{slot}"] = latents.detach().cpu().contiguous()
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
    return Scene(meta, tensors)


def save_scene(scene: Scene, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(scene.tensors, str(path), metadata={METADATA_KEY: json.dumps(scene.meta)})
    return path


def read_scene(path) -> Scene:
    """Read and check a scene file; SceneError says what is wrong with it."""
    try:
        tensors = load_state_dict(path, what="scene file")
    except CheckpointError as e:
        raise SceneError(str(e)) from None
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        raw = (f.metadata() or {}).get(METADATA_KEY)
    try:
        meta = json.loads(raw)
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        if meta["anchor"] not in ANCHOR_MODES or not isinstance(meta["index"], int) or meta["index"] < 1:
            raise ValueError("bad anchor mode or chunk index")
        stream_settings(meta).check()
        if "anchor_latent" not in tensors or "cache.anchor.0.key" not in tensors:
            raise ValueError("the anchor slot is missing")
    except (TypeError, KeyError, ValueError) as e:
        raise SceneError(f"{path} is not an AdaState scene file ({e})") from None
    return Scene(meta, tensors)


def check_compatible(scene: Scene, backend):
    """The scene must come from this model (configuration and weights) at this latent size."""
    ours = model_identity(backend.transformer)
    theirs = scene.meta["model"]
    if theirs.get("config_hash") != ours["config_hash"]:
        raise SceneError(f"this scene was saved by a model with a different configuration "
                         f"(config {theirs.get('config_hash')}, this model's is {ours['config_hash']}); "
                         f"continue it with the {scene.meta.get('backend')} model that made it")
    if theirs.get("weights_hash") != ours["weights_hash"]:
        raise SceneError(f"this scene was saved by different weights of the same model (weights "
                         f"{theirs.get('weights_hash')}, loaded: {ours['weights_hash']}); load the checkpoint "
                         f"that made it (anchor mode {scene.anchor})")
    latent = [backend.latent_channels, backend.latent_height, backend.latent_width]
    if scene.meta["latent"] != latent:
        raise SceneError(f"this scene's latents are {scene.meta['latent']}, this backend makes {latent}")


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
    settings = stream_settings(meta, seed=meta["seed"] if seed is None else seed,
                               chunks=chunks + (0 if state_only else scene.index))
    start_prompt = (prompt or meta["prompt"]) if state_only else meta["prompt"]
    stream = ChunkStream(backend, start_prompt, settings, **stream_options)
    try:
        stream.cache.load_tensors(without_prefix(scene.tensors, "cache."), window=not state_only)
    except (KeyError, RuntimeError) as e:
        raise SceneError(f"the scene's cache does not fit this model: {e}") from None
    stream.anchor_latent = scene.tensors["anchor_latent"]
    if not state_only:
        stream.index = scene.index
        for slot in range(settings.window_chunks):
            if f"window_latents.{slot}" in scene.tensors:
                stream.window_latents.append(scene.tensors[f"window_latents.{slot}"].to(backend.device, backend.dtype))
        if meta.get("decoder") is not None and hasattr(stream.decoder, "load_state"):
            stream.decoder.load_state(meta["decoder"], without_prefix(scene.tensors, "decoder."), backend.device)
        if prompt is not None and prompt != meta["prompt"]:
            stream.switch_prompt(prompt)
    return stream

