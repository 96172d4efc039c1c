"""The GPU backend: Wan 2.1 text-to-video 1.3B, streamed chunk by chunk.

Pieces (all from one folder in the layout of `Wan-AI/Wan2.1-T2V-1.3B-Diffusers`, i.e. what
diffusers' `WanPipeline.save_pretrained` writes):

  text_encoder/, tokenizer/   UMT5 encoder; a prompt becomes 512 token states, zero past its end
                              (what `WanPipeline` feeds the transformer)
  vae/                        `AutoencoderKLWan`, decoded chunk by chunk with its causal feature
                              cache carried from one chunk to the next (`WanVideoVAE.open_stream`)
  transformer/                our `CausalWanTransformer` (diffusers parameter names)

The transformer's weights may instead come from one Self-Forcing-style `.safetensors` file with
Wan's original parameter names (`adastate.model.key_map`); text encoder and VAE then come from a
base folder or Hub repo ($ADASTATE_WAN_BASE, default `Wan-AI/Wan2.1-T2V-1.3B-Diffusers`).

Everything runs in bfloat16 on CUDA (float32 on the CPU). Errors that mean "not here" (no GPU,
Hub unreachable) are `BackendUnavailable`; unusable files are `CheckpointError`. Both are
ValueErrors. See docs/wan-backend.md for the plan, the cost arithmetic and the conversion of
pickled Self-Forcing checkpoints.
"""

import functools
import html
import json
import math
import os
import re
from pathlib import Path
from types import SimpleNamespace

import torch

from ..checkpoints import CheckpointError, check_safetensors, check_state_dict, load_state_dict
from ..model import WAN_1_3B_CONFIG, CausalWanTransformer
from ..model.key_map import KeyMapError, to_ours
from ..vae import VideoDecoder, VideoVAE
from . import DEVICE_ENV, Backend, BackendUnavailable, requested_device

DEFAULT_REPO = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
CHECKPOINT_ENV = "ADASTATE_WAN_CHECKPOINT"   # default --checkpoint of the wan backend
BASE_ENV = "ADASTATE_WAN_BASE"               # text encoder + VAE for a single-file transformer
SIZE_ENV = "ADASTATE_WAN_SIZE"               # video size in pixels, "HEIGHTxWIDTH"
TEXT_DEVICE_ENV = "ADASTATE_WAN_TEXT_DEVICE"  # e.g. "cpu" to keep UMT5-XXL (11 GB) off the GPU
VIDEO_SIZE = (480, 832)                      # Wan 2.1 1.3B / Self-Forcing resolution
FPS = 16.0                                   # Wan 2.1's frame rate
TEXT_TOKENS = 512                            # Wan pads (with zeros) or cuts prompts to this length
MARKER = "adastate.json"                     # {"anchor": "adaptive" | "static"}: what the weights were trained for
METADATA_KEY = "adastate_anchor"             # the same, in a single file's safetensors metadata
WEIGHTS = "diffusion_pytorch_model.safetensors"

# spaces.GPU duration: a fixed setup cost plus a per-chunk cost, both with margin (docs/wan-backend.md).
GPU_SETUP_SECONDS = 20.0      # weights to the GPU (ZeroGPU), prompt encoding, first-call kernel selection
GPU_SECONDS_PER_CHUNK = 1.5   # ~2x the predicted ~0.7 s of an adaptive chunk (4 steps + cache write + VAE) on an H100
GPU_MAX_SECONDS = 300


def gpu_duration(chunks: int) -> int:
    """Seconds to ask `spaces.GPU` for when streaming `chunks` chunks (either anchor mode).

    Assumes an H100-class GPU (ZeroGPU) and the defaults of this backend (480x832, 4 steps,
    window of one chunk): ~0.7 s of work per adaptive chunk, budgeted at 1.5 s, plus 20 s of
    setup; capped at GPU_MAX_SECONDS, so callers should cap the chunk count as well.
    """
    if not isinstance(chunks, int) or chunks < 1:
        raise ValueError(f"chunks must be a positive whole number, got {chunks!r}")
    return int(min(GPU_MAX_SECONDS, math.ceil(GPU_SETUP_SECONDS + GPU_SECONDS_PER_CHUNK * chunks)))


def max_chunks_for(seconds: float = GPU_MAX_SECONDS) -> int:
    """The most chunks whose `gpu_duration` fits in `seconds`."""
    return max(0, int((seconds - GPU_SETUP_SECONDS) // GPU_SECONDS_PER_CHUNK))


# -- where the weights come from ------------------------------------------------------------------

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_FILE = re.compile(r"^([A-Za-z0-9][\w.-]*/[\w.-]+)/(.+\.safetensors)$")
PICKLE_HINT = ("convert it once with: python -c \"import torch, safetensors.torch as s; "
               "d = torch.load('IN.pt', map_location='cpu', weights_only=True); "
               "d = d.get('generator_ema', d.get('generator', d)); "
               "s.save_file({k: v.contiguous() for k, v in d.items()}, 'OUT.safetensors')\" "
               "(see docs/wan-backend.md)")


def _hub(fetch, what: str) -> Path:
    try:
        return Path(fetch())
    except Exception as e:  # offline, unknown repo, HTTP errors: huggingface_hub has many types
        raise BackendUnavailable(f"cannot fetch {what} from the Hugging Face Hub ({type(e).__name__}: {e})") from None


def _hub_patterns(parts) -> list[str]:
    patterns = ["model_index.json", MARKER]
    for part in parts:
        if part == "transformer-config":
            patterns.append("transformer/config.json")
        elif part == "tokenizer":
            patterns.append("tokenizer/*")
        else:
            patterns += [f"{part}/*.json", f"{part}/*.safetensors"]
    return patterns


def locate(spec, parts=("transformer", "vae", "text_encoder", "tokenizer")) -> Path:
    """A local path, or download `owner/name` (the pipeline `parts`, safetensors only) or
    `owner/name/path/to/file.safetensors` from the Hub into its cache."""
    text = str(spec)
    path = Path(text).expanduser()
    if path.exists():
        return path
    if not text.startswith(("/", ".", "~")):
        match = _HUB_FILE.match(text)
        if match:
            from huggingface_hub import hf_hub_download
            return _hub(lambda: hf_hub_download(match[1], match[2]), text)
        if _REPO_ID.match(text) and not text.endswith(".safetensors"):
            from huggingface_hub import snapshot_download
            return _hub(lambda: snapshot_download(text, allow_patterns=_hub_patterns(parts)), text)
    raise CheckpointError(f"checkpoint not found: {path} (nor is it a Hub repo id such as {DEFAULT_REPO})")


def video_size() -> tuple[int, int]:
    text = os.environ.get(SIZE_ENV)
    if not text:
        return VIDEO_SIZE
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"${SIZE_ENV} must look like 480x832 (height x width), got {text!r}")
    return int(match[1]), int(match[2])


def pick_device(device) -> torch.device:
    """`device`, else $ADASTATE_DEVICE, else CUDA (BackendUnavailable without a GPU)."""
    chosen = requested_device(device)
    if chosen is not None:
        return chosen
    if not torch.cuda.is_available():
        raise BackendUnavailable(f"the wan backend needs a CUDA GPU and none is visible (pass --device cpu, or "
                                 f"set ${DEVICE_ENV}=cpu, to run it, very slowly, on the CPU)")
    return torch.device("cuda")


# -- the transformer --------------------------------------------------------------------------------

def _load_file(path: Path) -> dict:
    try:
        return load_state_dict(path)
    except CheckpointError as e:
        if "pickle" in str(e) or "zip archive" in str(e):
            raise CheckpointError(f"{e}; {PICKLE_HINT}") from None
        raise


def _folder_state(folder: Path) -> dict:
    """The transformer weights of a diffusers model folder: one file, or shards with an index."""
    single = folder / WEIGHTS
    index = folder / (WEIGHTS + ".index.json")
    if single.exists() or not index.exists():
        return _load_file(single)
    try:
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (ValueError, KeyError, AttributeError) as e:
        raise CheckpointError(f"{index} is not a diffusers weight index: {e}") from None
    state = {}
    for name in files:
        state.update(_load_file(folder / name))
    return state


def _transformer_config(folder: Path | None) -> dict:
    """The config in `folder/config.json`, or the 1.3B one when there is none."""
    if folder is None or not (folder / "config.json").is_file():
        return dict(WAN_1_3B_CONFIG)
    try:
        return dict(CausalWanTransformer.load_config(folder))
    except (ValueError, OSError) as e:
        raise CheckpointError(f"{folder}/config.json is unreadable: {e}") from None


def build_transformer(config: dict, state: dict, source, device, dtype) -> CausalWanTransformer:
    """A `CausalWanTransformer` holding `state` (either layout), placed on `device`.

    Built on the meta device and filled by assignment: no random initialisation of 1.3 B
    parameters, no second copy in memory. Modules diffusers keeps in float32 stay in float32.
    """
    try:
        state = to_ours(state)
    except KeyMapError as e:
        raise CheckpointError(f"{source}: {e}") from None
    try:
        with torch.device("meta"):
            model = CausalWanTransformer.from_config(config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: the transformer config is not usable: {e}") from None
    check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True, assign=True)
    return place(model, device, dtype)


def place(model: CausalWanTransformer, device, dtype) -> CausalWanTransformer:
    """`model` on `device` in `dtype`, except the modules diffusers keeps in float32; for inference."""
    keep = tuple(model._keep_in_fp32_modules)
    with torch.no_grad():
        for name, param in model.named_parameters():
            in_fp32 = dtype != torch.float32 and any(part in keep for part in name.split("."))
            param.data = param.data.to(device=device, dtype=torch.float32 if in_fp32 else dtype)
    return model.eval().requires_grad_(False)


def _trained_for(value, source) -> str | None:
    if value is None:
        return None
    if value not in ("adaptive", "static"):
        raise CheckpointError(f"{source}: anchor must be 'adaptive' or 'static', got {value!r}")
    return value


def _marker(folder: Path) -> str | None:
    for path in (folder / MARKER, folder / "transformer" / MARKER):
        if path.is_file():
            try:
                return _trained_for(json.loads(path.read_text()).get("anchor"), path)
            except (ValueError, AttributeError) as e:
                raise CheckpointError(f"{path} is not a JSON object with an 'anchor' entry: {e}") from None
    return None


def _file_marker(path: Path) -> str | None:
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata() or {}
    return _trained_for(metadata.get(METADATA_KEY), path)


def anchor_labels(trained_for: str | None) -> dict:
    """What each anchor mode means with weights trained for `trained_for` (None: unknown)."""
    if trained_for == "adaptive":
        return {"adaptive": "adaptive state (AdaState-trained weights)",
                "static": "static first-frame anchor, on AdaState-trained weights (not what they were trained for)"}
    if trained_for == "static":
        return {"adaptive": "adaptive state, training-free on Self-Forcing weights (never trained with a state frame)",
                "static": "static first-frame anchor (Self-Forcing)"}
    unknown = ("weights of unknown training: a base Wan 2.1 transformer is neither causal nor few-step, so expect "
               f"poor frames; put {MARKER} with {{\"anchor\": ...}} beside causal weights to label them")
    return {"adaptive": f"adaptive state, training-free; {unknown}", "static": f"static first-frame anchor; {unknown}"}


# -- text ---------------------------------------------------------------------------------------------

def clean_prompt(text: str) -> str:
    """What WanPipeline does to a prompt before tokenising: fix mojibake (if ftfy is installed),
    unescape HTML twice, collapse whitespace."""
    try:
        import ftfy
        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


class UMT5PromptEncoder:
    """prompt → [1, 512, d_model] UMT5 token states, zero past the prompt's tokens."""

    def __init__(self, tokenizer, model, max_tokens: int = TEXT_TOKENS):
        self.tokenizer, self.model, self.max_tokens = tokenizer, model, max_tokens
        self.hidden_size = model.config.d_model
        self._cached = functools.lru_cache(maxsize=32)(self._encode)

    @torch.no_grad()
    def _encode(self, prompt: str) -> torch.Tensor:
        tokens = self.tokenizer([clean_prompt(prompt)], padding="max_length", max_length=self.max_tokens,
                                truncation=True, add_special_tokens=True, return_attention_mask=True,
                                return_tensors="pt")
        device = next(self.model.parameters()).device
        mask = tokens.attention_mask.to(device)
        states = self.model(tokens.input_ids.to(device), mask).last_hidden_state
        length = int(mask[0].sum())
        states[:, length:] = 0  # padding positions carry no text: Wan zeroes them
        return states

    def __call__(self, prompt: str) -> torch.Tensor:
        return self._cached(prompt)


def load_text_encoder(folder: Path, device, dtype) -> UMT5PromptEncoder:
    from transformers import AutoTokenizer, UMT5EncoderModel

    for part in ("text_encoder", "tokenizer"):
        if not (folder / part).is_dir():
            raise CheckpointError(f"{folder} has no {part}/ folder (expected the layout of {DEFAULT_REPO})")
    encoder_dir = folder / "text_encoder"
    weights = sorted(encoder_dir.glob("*.safetensors"))
    if not weights:
        raise CheckpointError(f"{encoder_dir} holds no .safetensors weights (pickled weights are not loaded)")
    for path in weights:
        check_safetensors(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
        model = UMT5EncoderModel.from_pretrained(str(encoder_dir), dtype=dtype, use_safetensors=True)
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"cannot load the UMT5 text encoder from {folder}: {e}") from None
    return UMT5PromptEncoder(tokenizer, model.to(device).eval().requires_grad_(False))


# -- the VAE, decoded chunk by chunk ------------------------------------------------------------------

class WanStreamDecoder(VideoDecoder):
    """Decodes one video's latents chunk after chunk, exactly as one decode of all of them.

    AutoencoderKLWan decodes latent frame by latent frame: each causal 3D convolution of the
    decoder keeps the last (up to two) input frames it saw in a per-convolution cache slot, and
    the temporal upsamplers know the very first latent frame (it becomes one video frame, every
    later latent frame becomes `temporal_factor` frames). diffusers keeps that cache on the model
    and clears it at the start and end of `decode`; here each stream owns its cache, so it
    survives between chunks and several streams can run side by side.
    """

    def __init__(self, owner: "WanVideoVAE"):
        self.owner = owner
        self.cache = [None] * owner.cache_slots
        self.frames = 0  # latent frames decoded so far

    @property
    def device(self) -> torch.device:
        return self.owner.device

    @property
    def dtype(self) -> torch.dtype:
        return self.owner.dtype

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, C, f, h, w] → video [B, 3, T, H, W] in [-1, 1];
        T = 1 + 4 (f - 1) for the first chunk of a stream, 4 f after it."""
        from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

        vae = self.owner.vae
        x = vae.post_quant_conv(self.owner.denormalize(latents))  # 1x1x1: frame-wise, no cache
        pieces = []
        for i in range(x.shape[2]):
            pieces.append(vae.decoder(x[:, :, i:i + 1], feat_cache=self.cache, feat_idx=[0],
                                      first_chunk=self.frames == 0))
            self.frames += 1
        video = torch.cat(pieces, dim=2)
        if vae.config.patch_size is not None:
            video = unpatchify(video, patch_size=vae.config.patch_size)
        return video.clamp(-1.0, 1.0)

    def state(self) -> tuple[dict, dict]:
        """(JSON-ready description, CPU tensors by name): what a scene file needs to continue
        this decoder. Cache slots hold a tensor, nothing, or diffusers' "Rep" marker."""
        kinds, tensors = [], {}
        for i, entry in enumerate(self.cache):
            if isinstance(entry, torch.Tensor):
                kinds.append("tensor")
                tensors[str(i)] = entry.detach().cpu().contiguous()
            else:
                kinds.append(entry)  # None or "Rep"
        return {"frames": self.frames, "slots": kinds}, tensors

    def load_state(self, description: dict, tensors: dict, device=None):
        if len(description["slots"]) != len(self.cache):
            raise ValueError(f"the scene's decoder has {len(description['slots'])} cache slots, this VAE "
                             f"{len(self.cache)}")
        self.cache = [tensors[str(i)].to(device) if kind == "tensor" else kind
                      for i, kind in enumerate(description["slots"])]
        self.frames = description["frames"]


class WanVideoVAE(torch.nn.Module, VideoVAE):
    """`AutoencoderKLWan` behind the `VideoVAE` interface.

    `open_stream()` gives a decoder whose causal cache runs from chunk to chunk (every
    `ChunkStream` opens its own); `decode` and `decode_to_uint8` decode the given latents as a
    complete video.
    """

    def __init__(self, vae):
        super().__init__()
        from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

        self.vae = vae
        config = vae.config
        patch = config.patch_size or 1
        self.config = SimpleNamespace(
            temporal_factor=2 ** sum(bool(d) for d in config.temperal_downsample),
            spatial_factor=2 ** (len(config.dim_mult) - 1) * patch, latent_channels=config.z_dim)
        self.cache_slots = sum(isinstance(m, WanCausalConv3d) for m in vae.decoder.modules())
        self._mean = torch.tensor(config.latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self._std = torch.tensor(config.latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1)

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        """The transformer's normalised latents → the VAE's raw latents (as WanPipeline does)."""
        mean, std = self._mean.to(latents.device), self._std.to(latents.device)
        return (latents.float() * std + mean).to(self.dtype)

    def open_stream(self) -> WanStreamDecoder:
        return WanStreamDecoder(self)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """A whole video at once: [B, C, f, h, w] → [B, 3, 1 + 4 (f - 1), H, W] in [-1, 1]."""
        return self.open_stream().decode(latents)


def load_vae(folder: Path, device, dtype) -> WanVideoVAE:
    from diffusers import AutoencoderKLWan

    from ..checkpoints import load_pretrained

    if not (folder / "vae").is_dir():
        raise CheckpointError(f"{folder} has no vae/ folder (expected the layout of {DEFAULT_REPO})")
    vae = load_pretrained(AutoencoderKLWan, folder / "vae")
    # torch's own `to`: diffusers' override warns about float32 modules that this VAE does not have
    vae = torch.nn.Module.to(vae, device=device, dtype=dtype)
    return WanVideoVAE(vae.eval().requires_grad_(False))


# -- the backend ---------------------------------------------------------------------------------------

def load_wan(checkpoint=None, device=None, anchor: str = "adaptive", dtype: torch.dtype | None = None) -> Backend:
    """The wan backend.

    checkpoint: a folder (or Hub repo id) in the layout of `Wan-AI/Wan2.1-T2V-1.3B-Diffusers`;
    or one `.safetensors` file of transformer weights in either parameter layout (local, or
    `owner/name/path/file.safetensors` on the Hub), whose text encoder and VAE come from
    $ADASTATE_WAN_BASE (default: that repo). None: $ADASTATE_WAN_CHECKPOINT, else that repo.
    `anchor` only chooses which of the two mode labels becomes the notice.
    """
    if anchor not in ("adaptive", "static"):
        raise ValueError(f"unknown anchor mode {anchor!r}; choose adaptive or static")
    device = pick_device(device)
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    height, width = video_size()
    spec = checkpoint or os.environ.get(CHECKPOINT_ENV) or DEFAULT_REPO

    single_file = str(spec).endswith(".safetensors") or Path(str(spec)).expanduser().is_file()
    if single_file:
        weights = locate(spec)
        if not weights.is_file():
            raise CheckpointError(f"{weights} is not a file")
        base = locate(os.environ.get(BASE_ENV) or DEFAULT_REPO,
                      parts=("transformer-config", "vae", "text_encoder", "tokenizer"))
        state = _load_file(weights)
        trained_for = _file_marker(weights) or "static"  # original-layout files are Self-Forcing students
        config = _transformer_config(base / "transformer")
        source = weights
    else:
        base = locate(spec)
        if not (base / "transformer").is_dir():
            raise CheckpointError(f"{base} has no transformer/ folder (expected the layout of {DEFAULT_REPO})")
        state = _folder_state(base / "transformer")
        trained_for = _marker(base)
        config = _transformer_config(base / "transformer")
        source = base / "transformer"

    transformer = build_transformer(config, state, source, device, dtype)
    del state
    text_device = torch.device(os.environ.get(TEXT_DEVICE_ENV) or device)
    encoder = load_text_encoder(base, text_device, dtype if text_device.type == "cuda" else torch.float32)
    vae = load_vae(base, device, dtype)

    if encoder.hidden_size != transformer.config.text_dim:
        raise CheckpointError(f"the text encoder gives {encoder.hidden_size}-dim states but the transformer "
                              f"expects text_dim={transformer.config.text_dim}")
    if vae.config.latent_channels != transformer.config.in_channels:
        raise CheckpointError(f"the VAE has {vae.config.latent_channels} latent channels but the transformer "
                              f"expects in_channels={transformer.config.in_channels}")
    _, p_h, p_w = transformer.config.patch_size
    step_h, step_w = vae.config.spatial_factor * p_h, vae.config.spatial_factor * p_w
    if height % step_h or width % step_w:
        raise ValueError(f"video size {height}x{width} must be a multiple of {step_h}x{step_w} for this model")

    return Backend(
        name="wan", transformer=transformer, vae=vae, encode_prompt=encoder,
        latent_height=height // vae.config.spatial_factor, latent_width=width // vae.config.spatial_factor,
        fps=FPS, device=device, dtype=dtype, anchor_labels=anchor_labels(trained_for)).for_anchor(anchor)
