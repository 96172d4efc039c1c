"""The one map between Wan 2.1's original parameter names and ours.

Ours are diffusers' `WanTransformer3DModel` names (what `CausalWanTransformer` uses). The original
names are those of the Wan 2.1 reference code (`wan/modules/model.py`), which Self-Forcing and
CausVid keep for their causal students. Self-Forcing saves its generator inside wrappers, so the
same tensor may be called `generator.model.blocks.0.self_attn.q.weight`; the wrapper prefixes
below are removed first.

Per block `blocks.{i}.` (the prefix itself is unchanged):

    original                 ours
    self_attn.{q,k,v}        attn1.to_{q,k,v}
    self_attn.o              attn1.to_out.0
    self_attn.norm_{q,k}     attn1.norm_{q,k}
    cross_attn.{q,k,v}       attn2.to_{q,k,v}
    cross_attn.o             attn2.to_out.0
    cross_attn.norm_{q,k}    attn2.norm_{q,k}
    norm3                    norm2            the affine LayerNorm before cross-attention
    ffn.0 / ffn.2            ffn.net.0.proj / ffn.net.2
    modulation               scale_shift_table     (a parameter [1, 6, dim])

Top level:

    patch_embedding          patch_embedding
    text_embedding.0 / .2    condition_embedder.text_embedder.linear_1 / linear_2
    time_embedding.0 / .2    condition_embedder.time_embedder.linear_1 / linear_2
    time_projection.1        condition_embedder.time_proj
    head.head                proj_out
    head.modulation          scale_shift_table     (a parameter [1, 2, dim])

Wan's `norm1` and `norm2` (before self-attention and before the FFN) have no parameters, and so
neither do our `norm1` and `norm3`; only the cross-attention norm carries weights, which is why
original `norm3` is our `norm2`. Image-conditioning (I2V) parameters are not part of the map.
"""

import re

# (original, ours), names of modules or parameters relative to `blocks.{i}.`
BLOCK_NAMES = (
    ("self_attn.q", "attn1.to_q"),
    ("self_attn.k", "attn1.to_k"),
    ("self_attn.v", "attn1.to_v"),
    ("self_attn.o", "attn1.to_out.0"),
    ("self_attn.norm_q", "attn1.norm_q"),
    ("self_attn.norm_k", "attn1.norm_k"),
    ("cross_attn.q", "attn2.to_q"),
    ("cross_attn.k", "attn2.to_k"),
    ("cross_attn.v", "attn2.to_v"),
    ("cross_attn.o", "attn2.to_out.0"),
    ("cross_attn.norm_q", "attn2.norm_q"),
    ("cross_attn.norm_k", "attn2.norm_k"),
    ("norm3", "norm2"),
    ("ffn.0", "ffn.net.0.proj"),
    ("ffn.2", "ffn.net.2"),
    ("modulation", "scale_shift_table"),
)

# (original, ours), top-level names
TOP_NAMES = (
    ("patch_embedding", "patch_embedding"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("head.head", "proj_out"),
    ("head.modulation", "scale_shift_table"),
)

# Wrappers around a saved generator, outermost first. Self-Forcing's checkpoints hold
# {"generator": ..., "generator_ema": ...} whose keys start with `model.` (its diffusion wrapper);
# ComfyUI-style files use `model.diffusion_model.`; DDP / FSDP / torch.compile add the others.
WRAPPER_PREFIXES = ("generator_ema.", "generator.", "model.diffusion_model.", "model.", "module.",
                    "_fsdp_wrapped_module.", "_orig_mod.")

_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


class KeyMapError(KeyError):
    """A parameter name the map does not know (the message names it)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def _rename(name: str, table, to_ours: bool) -> str | None:
    for original, ours in table:
        source, target = (original, ours) if to_ours else (ours, original)
        if name == source:
            return target
        if name.startswith(source + "."):
            return target + name[len(source):]
    return None


def _convert(key: str, to_ours: bool) -> str:
    match = _BLOCK.match(key)
    if match:
        renamed = _rename(match.group(2), BLOCK_NAMES, to_ours)
        if renamed is not None:
            return f"blocks.{match.group(1)}.{renamed}"
    else:
        renamed = _rename(key, TOP_NAMES, to_ours)
        if renamed is not None:
            return renamed
    layout = "original Wan" if to_ours else "diffusers"
    raise KeyMapError(f"{key!r} is not a {layout} parameter name of a text-to-video Wan 2.1 transformer")


def strip_wrappers(state: dict) -> dict:
    """Remove Self-Forcing / training wrapper prefixes. Where both `generator_ema.` and
    `generator.` copies are present, the EMA weights are kept (what Self-Forcing samples with)."""
    keys = list(state)
    if any(k.startswith("generator_ema.") for k in keys):
        state = {k: v for k, v in state.items() if k.startswith("generator_ema.")}
    out = {}
    for key, value in state.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix):], True
                    break
        if key in out:
            raise KeyMapError(f"two tensors are both named {key!r} once wrapper prefixes are removed")
        out[key] = value
    return out


def is_original_layout(state: dict) -> bool:
    """True for Wan's original names (after `strip_wrappers`), False for diffusers' names."""
    return any(k.startswith(("head.head", "time_projection.", "text_embedding.")) or
               (_BLOCK.match(k) and ".self_attn." in k) for k in state)


def original_to_ours(state: dict) -> dict:
    """Original Wan names (optionally wrapped) → diffusers / CausalWanTransformer names."""
    return {_convert(key, to_ours=True): value for key, value in strip_wrappers(state).items()}


def ours_to_original(state: dict) -> dict:
    """diffusers / CausalWanTransformer names → original Wan names (no wrapper prefix)."""
    return {_convert(key, to_ours=False): value for key, value in state.items()}


def to_ours(state: dict) -> dict:
    """Either layout, wrapped or not → our names."""
    state = strip_wrappers(state)
    return original_to_ours(state) if is_original_layout(state) else state
