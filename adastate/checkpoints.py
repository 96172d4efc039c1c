"""Loading weights safely: safetensors only, with errors that say what is wrong with the file."""

import json
import struct
from pathlib import Path

from safetensors.torch import load_file


class CheckpointError(ValueError):
    """A checkpoint path that cannot be used; the message says why."""


def _describe_non_safetensors(head: bytes) -> str:
    if head[:1] == b"\x80":
        return "it is a Python pickle"
    if head[:2] == b"PK":
        return "it is a zip archive (a torch.save pickle)"
    return "it does not start with a safetensors header"


def check_safetensors(path, what: str = "checkpoint", shown_as: str | None = None) -> Path:
    """Return `path` if it is a readable safetensors file, else raise CheckpointError.

    Pickles are refused outright: unpickling runs arbitrary code, and weights never need it.
    `shown_as` names the file in messages instead of its path (a server's paths are its own).
    """
    path = Path(path)
    shown = shown_as or path
    if not path.exists():
        raise CheckpointError(f"{what} not found: {shown}")
    if not path.is_file():
        raise CheckpointError(f"{what} {shown} is not a file")
    with open(path, "rb") as f:
        head = f.read(9)
    size = path.stat().st_size
    header_len = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else -1
    if len(head) < 9 or head[8:9] != b"{" or header_len + 8 > size:
        raise CheckpointError(
            f"{shown} is not a safetensors file ({_describe_non_safetensors(head)}); "
            "AdaState only loads safetensors files")
    try:
        with open(path, "rb") as f:
            f.seek(8)
            json.loads(f.read(header_len))
    except ValueError as e:
        raise CheckpointError(f"{shown} has a corrupt safetensors header: {e}") from None
    return path


def load_state_dict(path, what: str = "checkpoint", shown_as: str | None = None) -> dict:
    path = check_safetensors(path, what, shown_as)
    try:
        return load_file(str(path))
    except Exception as e:  # truncated data, bad offsets: safetensors raises its own types
        raise CheckpointError(f"{shown_as or path} is a corrupt safetensors file: {e}") from None


def check_state_dict(model, state: dict, source):
    """Raise CheckpointError naming the keys of `state` that do not fit `model` (missing,
    unexpected, wrong shape)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(keys[:4])}{' …' if len(keys) > 4 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise CheckpointError(f"{source} does not match the model's configuration ({'; '.join(parts)})")


def load_into(model, path):
    """Load a safetensors state dict into `model`, strictly, naming what does not match."""
    state = load_state_dict(path)
    check_state_dict(model, state, path)
    model.load_state_dict(state)
    return model


def load_pretrained(cls, directory, weights_name: str = "diffusion_pytorch_model.safetensors"):
    """`cls.from_pretrained(directory)` for a diffusers-layout folder, with checked inputs."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory} has no config.json (expected a diffusers model folder)")
    try:
        config = cls.load_config(directory)
        model = cls.from_config(config)
    except (ValueError, TypeError, OSError) as e:
        raise CheckpointError(f"{directory}/config.json does not describe a {cls.__name__}: {e}") from None
    return load_into(model, directory / weights_name)
