"""One causal DiT with Wan 2.1's block structure, top to bottom.

The parameter names are those of diffusers' `WanTransformer3DModel`, so a state dict written by
diffusers (or by `save_pretrained` of this class) loads unchanged. What differs is how the
self-attention is carried out: every block hands its (pre-RoPE) queries, keys and values to a
`self_attention` object chosen by the caller. The full-sequence `forward` uses `GridAttention`
(bidirectional, positions 0..f-1, numerically what diffusers computes); streaming uses the anchor
slot / rolling window cache in `adastate.model.kv_cache`, which assigns positions afresh at
every chunk. One model, any attention pattern.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin

# Wan2.1-T2V-1.3B, as in the `transformer/config.json` of Wan-AI/Wan2.1-T2V-1.3B-Diffusers.
WAN_1_3B_CONFIG = dict(
    patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
)

# The embedded CPU model: same architecture, sized to stream faster than real time on 2 cores.
# text_dim 384 is all-MiniLM-L6-v2's hidden size; 24 latent channels are the embedded VAE's (2 frames
# × 12). The pooled prompt also modulates every block (see `pooled_text_dim`).
TINY_CONFIG = dict(
    patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=48, in_channels=24, out_channels=24,
    text_dim=384, freq_dim=64, ffn_dim=512, num_layers=6, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024, pooled_text_dim=384,
)


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype (Wan keeps its norms in fp32)."""

    def forward(self, x):
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).type_as(x)


def sinusoidal_embedding(timestep: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[cos | sin] features of the timestep (the order Wan was trained with)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timestep.device) / half)
    angles = timestep.float()[..., None] * freqs
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class RotaryEmbedding3D(nn.Module):
    """Rotary position embedding split over (frame, height, width) channel groups.

    Positions are given explicitly, not read from a table: the streaming cache places frames at
    the same relative layout every chunk, so no rollout ever outgrows a table.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        hw_dim = 2 * (head_dim // 6)
        self.dims = (head_dim - 2 * hw_dim, hw_dim, hw_dim)
        self.theta = theta

    def _angles(self, positions: torch.Tensor, dim: int) -> torch.Tensor:
        # float64 so that large positions keep their precision before cos/sin.
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim))
        return positions.to(torch.float64)[:, None] * inv_freq

    def forward(self, frame_positions: torch.Tensor, height: int, width: int):
        """cos, sin of shape [len(frame_positions) * height * width, head_dim / 2] (frame-major)."""
        device = frame_positions.device
        f = self._angles(frame_positions, self.dims[0])
        h = self._angles(torch.arange(height, device=device), self.dims[1])
        w = self._angles(torch.arange(width, device=device), self.dims[2])
        nf = len(frame_positions)
        angles = torch.cat([
            f[:, None, None].expand(nf, height, width, -1),
            h[None, :, None].expand(nf, height, width, -1),
            w[None, None, :].expand(nf, height, width, -1),
        ], dim=-1).reshape(nf * height * width, -1)
        return angles.cos().float(), angles.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of x [B, N, H, D] by angles [N, D/2]."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[:, None], sin[:, None]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2).type_as(x)


class GridAttention:
    """Bidirectional self-attention over a block of frames at positions 0..f-1 (diffusers' forward)."""

    def __init__(self, rope: RotaryEmbedding3D, frames: int, height: int, width: int, device):
        self.cos, self.sin = rope(torch.arange(frames, device=device), height, width)

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k = apply_rotary(q, self.cos, self.sin), apply_rotary(k, self.cos, self.sin)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)


class Attention(nn.Module):
    """Wan attention projections: RMS norm on q and k across all heads, then per-head attention."""

    def __init__(self, dim: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)

    def project_kv(self, x: torch.Tensor):
        """Keys and values [B, N, H, D]; keys normed, not yet rotated."""
        k = self.norm_k(self.to_k(x)).unflatten(2, (self.heads, -1))
        v = self.to_v(x).unflatten(2, (self.heads, -1))
        return k, v

    def project_q(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_q(self.to_q(x)).unflatten(2, (self.heads, -1))

    def output(self, attended: torch.Tensor) -> torch.Tensor:
        return self.to_out[0](attended.flatten(2).type_as(attended))


class GeluProjection(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x):
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, dim: int, inner_dim: int):
        super().__init__()
        self.net = nn.Sequential(GeluProjection(dim, inner_dim), nn.Dropout(0.0), nn.Linear(inner_dim, dim))

    def forward(self, x):
        return self.net(x)


class CausalWanBlock(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, heads: int, cross_attn_norm: bool, eps: float):
        super().__init__()
        self.norm1 = LayerNorm32(dim, eps, elementwise_affine=False)
        self.attn1 = Attention(dim, heads, eps)
        self.attn2 = Attention(dim, heads, eps)
        self.norm2 = LayerNorm32(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        self.ffn = FeedForward(dim, ffn_dim)
        self.norm3 = LayerNorm32(dim, eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(self, x, modulation, text_kv, self_attention, layer: int):
        # modulation: [B, 1 or N, 6, dim] (one timestep per sample, or one per token)
        shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = (
            self.scale_shift_table + modulation.float()).unbind(-2)

        h = (self.norm1(x.float()) * (1 + scale_sa) + shift_sa).type_as(x)
        q = self.attn1.project_q(h)
        k, v = self.attn1.project_kv(h)
        attended = self_attention(layer, q, k, v)
        x = (x.float() + self.attn1.output(attended) * gate_sa).type_as(x)

        h = self.norm2(x.float()).type_as(x)
        text_k, text_v = text_kv
        attended = F.scaled_dot_product_attention(
            self.attn2.project_q(h).transpose(1, 2), text_k.transpose(1, 2), text_v.transpose(1, 2))
        x = x + self.attn2.output(attended.transpose(1, 2))

        h = (self.norm3(x.float()) * (1 + scale_ff) + shift_ff).type_as(x)
        return (x.float() + self.ffn(h).float() * gate_ff).type_as(x)


@dataclass
class TextKV:
    """Cross-attention keys/values of one prompt, per layer: computed once, reused every chunk.
    `pooled`: the prompt's embedding for the time modulation (models with `pooled_text_dim`)."""
    layers: list
    pooled: torch.Tensor | None = None


class CausalWanTransformer(ModelMixin, ConfigMixin):
    """Wan 2.1 DiT whose self-attention pattern is supplied by the caller (full, or streaming)."""

    _supports_gradient_checkpointing = True
    _no_split_modules = ["CausalWanBlock"]
    _keep_in_fp32_modules = ["time_embedder", "scale_shift_table", "norm1", "norm2", "norm3"]

    @register_to_config
    def __init__(
        self,
        patch_size=(1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 16,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        pooled_text_dim: int | None = None,
    ):
        super().__init__()
        if image_dim is not None or added_kv_proj_dim is not None:
            raise ValueError("image-conditioned Wan (I2V) checkpoints are not supported; use a text-to-video one")
        if qk_norm != "rms_norm_across_heads":
            raise ValueError(f"qk_norm={qk_norm!r} is not supported; Wan 2.1 uses 'rms_norm_across_heads'")
        dim = num_attention_heads * attention_head_dim
        out_channels = out_channels or in_channels
        self.rope = RotaryEmbedding3D(attention_head_dim)
        self.patch_embedding = nn.Conv3d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.condition_embedder = nn.Module()
        self.condition_embedder.time_embedder = nn.Module()
        self.condition_embedder.time_embedder.linear_1 = nn.Linear(freq_dim, dim)
        self.condition_embedder.time_embedder.linear_2 = nn.Linear(dim, dim)
        self.condition_embedder.time_proj = nn.Linear(dim, 6 * dim)
        self.condition_embedder.text_embedder = nn.Module()
        self.condition_embedder.text_embedder.linear_1 = nn.Linear(text_dim, dim)
        self.condition_embedder.text_embedder.linear_2 = nn.Linear(dim, dim)
        if pooled_text_dim is not None:
            # Not in Wan: the mean of the prompt's token states, added to the time embedding, so
            # every block's modulation hears the prompt. A tiny model learns global attributes
            # (pan direction, speed) through cross-attention alone too slowly. Zero-initialised:
            # training starts from the plain Wan block.
            self.condition_embedder.pooled_text_proj = nn.Linear(pooled_text_dim, dim)
            nn.init.zeros_(self.condition_embedder.pooled_text_proj.weight)
            nn.init.zeros_(self.condition_embedder.pooled_text_proj.bias)
        self.blocks = nn.ModuleList(
            CausalWanBlock(dim, ffn_dim, num_attention_heads, cross_attn_norm, eps) for _ in range(num_layers))
        self.norm_out = LayerNorm32(dim, eps, elementwise_affine=False)
        self.proj_out = nn.Linear(dim, out_channels * math.prod(patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)
        self.gradient_checkpointing = False

    # -- pieces -------------------------------------------------------------------------------

    def token_grid(self, latent_shape) -> tuple[int, int, int]:
        """(frames, height, width) of the token grid for latents [B, C, f, h, w]."""
        p_t, p_h, p_w = self.config.patch_size
        return latent_shape[2] // p_t, latent_shape[3] // p_h, latent_shape[4] // p_w

    def encode_text(self, encoder_hidden_states: torch.Tensor) -> TextKV:
        """Project text states once into every layer's cross-attention keys and values."""
        emb = self.condition_embedder.text_embedder
        context = emb.linear_2(F.gelu(emb.linear_1(encoder_hidden_states), approximate="tanh"))
        pooled = None
        if self.config.pooled_text_dim is not None:
            # mean over real tokens: prompts are zero-padded, and a dropped caption is all zeros
            real = (encoder_hidden_states.abs().sum(-1, keepdim=True) > 0).to(encoder_hidden_states.dtype)
            mean = (encoder_hidden_states * real).sum(1) / real.sum(1).clamp_min(1)
            pooled = self.condition_embedder.pooled_text_proj(mean)
        return TextKV([block.attn2.project_kv(context) for block in self.blocks], pooled)

    def _time_embedding(self, timestep: torch.Tensor, dtype, pooled_text: torch.Tensor | None = None):
        emb = self.condition_embedder
        freq = sinusoidal_embedding(timestep, self.config.freq_dim)
        lin1 = emb.time_embedder.linear_1
        temb = emb.time_embedder.linear_2(F.silu(lin1(freq.to(lin1.weight.dtype)))).to(dtype)
        if pooled_text is not None:
            temb = temb + pooled_text[:, None].to(dtype)
        modulation = emb.time_proj(F.silu(temb))
        return temb, modulation.unflatten(-1, (6, -1))

    def forward_frames(self, latents: torch.Tensor, timestep: torch.Tensor, text_kv: TextKV,
                       self_attention) -> torch.Tensor:
        """Model output (flow velocity) for latents [B, C, f, h, w] under the given attention.

        timestep: [B] (one per sample) or [B, f*h*w/patch] (one per token).
        """
        batch = latents.shape[0]
        p_t, p_h, p_w = self.config.patch_size
        f, h, w = self.token_grid(latents.shape)
        x = self.patch_embedding(latents).flatten(2).transpose(1, 2).contiguous()
        if timestep.ndim == 1:
            timestep = timestep[:, None]  # one timestep for all tokens of a sample
        temb, modulation = self._time_embedding(timestep, x.dtype, text_kv.pooled)

        for layer, block in enumerate(self.blocks):
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = self._gradient_checkpointing_func(block, x, modulation, text_kv.layers[layer],
                                                      self_attention, layer)
            else:
                x = block(x, modulation, text_kv.layers[layer], self_attention, layer)

        shift, scale = (self.scale_shift_table + temb.unsqueeze(-2)).unbind(-2)
        x = (self.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
        x = self.proj_out(x)
        x = x.reshape(batch, f, h, w, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)

    # -- diffusers-compatible full-sequence call ----------------------------------------------

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_hidden_states_image: torch.Tensor | None = None, return_dict: bool = True,
                attention_kwargs: dict | None = None):
        """Bidirectional forward over all frames; same inputs and outputs as diffusers' Wan."""
        if encoder_hidden_states_image is not None:
            raise ValueError("image conditioning (I2V) is not supported by this model")
        f, h, w = self.token_grid(hidden_states.shape)
        attention = GridAttention(self.rope, f, h, w, hidden_states.device)
        out = self.forward_frames(hidden_states, timestep, self.encode_text(encoder_hidden_states), attention)
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)
