"""The embedded model's small video autoencoder.

Each latent frame stands for `temporal_factor` consecutive video frames at 1/`spatial_factor`
resolution. A latent frame is encoded and decoded on its own (frames of a group are folded into
channels), so decoding chunk by chunk is exactly decoding the whole video: the streaming decoder
needs no cache. Latents are normalised with a per-channel mean and std stored in the config.

`patch_size` folds p×p pixels into channels before the first convolution (and unfolds them after
the last), so no convolution runs at full resolution: the decoder stays cheap enough to stream.
`hidden_channels` is one width for every resolution level, or a list of widths from the first
level down to the latent's; `res_blocks` residual blocks sit at every level.

`frame_wise`: every frame is encoded and decoded alone, and a latent frame stacks its group's
frame codes in channels. A convolutional decoder that must draw several frames from one joint code
learns their common picture long before their few-pixel offsets: the first embedded VAE (4 frames
per latent frame) and a 2-frame joint one alike decoded each group of a panning clip as one
picture, with the whole motion as a jump between groups (benchmarks/RESULTS.md, "VAE"). Frame by
frame, the decoded video moves exactly as well as each frame is reconstructed.

`detail_channels`: a VAE extended by a second encoder that codes what the first one's latents miss
(texture, stars, thin edges), its channels appended after the first's, and a decoder that draws
from both (`TinyVideoVAE.extended`). The first encoder stays as it was, so the first channels are
exactly the latents that earlier models were trained on: a transformer widened with zero weights
for the new channels starts out drawing what it drew before, and learns the detail on top.

`VideoVAE` is the one interface every backend's VAE implements and the stream, the demo and the
pictures use: where its weights live (`device`, `dtype`), its sizes (`config`), `open_stream()` for
one video's chunks in order, and `decode_to_uint8` for latents that are a video of their own.
"""

from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin


def frames_to_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 RGB frames [T, H, W, 3] → video [3, T, H, W] in [-1, 1], as the VAEs take it."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1


def video_to_frames(video: torch.Tensor) -> np.ndarray:
    """Video [3, T, H, W] in [-1, 1] → uint8 RGB frames [T, H, W, 3]."""
    return ((video.float().permute(1, 2, 3, 0) + 1) * 127.5).round().clamp(0, 255).byte().cpu().numpy()


class VideoDecoder(ABC):
    """Normalised latents → video, on the device and in the dtype of its weights."""

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype: ...

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, f, h, w] on `device` in `dtype` → video [B, 3, T, H, W] in [-1, 1]."""

    @torch.no_grad()
    def decode_to_uint8(self, latents: torch.Tensor) -> np.ndarray:
        """Latents [1, C, f, h, w] on any device, in any dtype → RGB frames uint8 [T, H, W, 3]."""
        return video_to_frames(self.decode(latents.to(self.device, self.dtype))[0])


class VideoVAE(VideoDecoder):
    """A backend's VAE. `decode` decodes latents as a complete video of their own; `config` has
    `temporal_factor` (video frames per latent frame), `spatial_factor` and `latent_channels`."""

    def open_stream(self) -> VideoDecoder:
        """A decoder for one video's latents, chunk after chunk, in order; every stream opens its
        own. This default, the VAE itself, is right for a VAE that decodes each latent frame on its
        own; a causal VAE (Wan's) returns a decoder that carries its cache from chunk to chunk."""
        return self


# The embedded VAE: 2 frames per latent frame, each coded alone, 4x smaller in space (16x16 latents at
# 64 px), pixels folded 2x2 before the first convolution. Latent channels (both frames' codes) come
# from the transformer's in_channels.
TINY_VAE_CONFIG = dict(temporal_factor=2, spatial_factor=4, patch_size=2, hidden_channels=[64, 96], res_blocks=2,
                       frame_wise=True)


class ResBlock(nn.Module):
    """x + conv(silu(conv(silu(x)))): depth at one resolution without losing the identity path."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


def _encoder_levels(width: list[int], res_blocks: int) -> nn.Sequential:
    """Full resolution → latent resolution: [res blocks, stride-2 conv, SiLU] per level."""
    layers = []
    for c_in, c_out in zip(width, width[1:]):
        layers += [ResBlock(c_in) for _ in range(res_blocks)]
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
    layers += [ResBlock(width[-1]) for _ in range(res_blocks)]
    return nn.Sequential(*layers)


def _encoder(pixels: int, width: list[int], res_blocks: int, code_channels: int) -> nn.Sequential:
    """Folded pixels → (mean, logvar) of a frame code, stacked in channels."""
    return nn.Sequential(nn.Conv2d(pixels, width[0], 3, padding=1), nn.SiLU(), _encoder_levels(width, res_blocks),
                         nn.Conv2d(width[-1], 2 * code_channels, 3, padding=1))


def _decoder_levels(width: list[int], res_blocks: int) -> nn.Sequential:
    """Latent resolution → full resolution: [upsample, conv, SiLU, res blocks] per level."""
    layers = [ResBlock(width[-1]) for _ in range(res_blocks)]
    for c_in, c_out in zip(width[::-1], width[-2::-1]):
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1), nn.SiLU()]
        layers += [ResBlock(c_out) for _ in range(res_blocks)]
    return nn.Sequential(*layers)


class TinyVideoVAE(ModelMixin, ConfigMixin, VideoVAE):
    @register_to_config
    def __init__(self, latent_channels: int = 8, temporal_factor: int = 4, spatial_factor: int = 4,
                 hidden_channels: int | list = 64, res_blocks: int = 0, patch_size: int = 1,
                 frame_wise: bool = False, detail_channels: int = 0, latent_mean: list | None = None,
                 latent_std: list | None = None):
        super().__init__()
        levels = int(np.log2(spatial_factor // patch_size))
        if spatial_factor % patch_size or 2**levels * patch_size != spatial_factor:
            raise ValueError(f"spatial_factor / patch_size must be a power of two, got {spatial_factor} / {patch_size}")
        width = [hidden_channels] * (levels + 1) if isinstance(hidden_channels, int) else list(hidden_channels)
        if len(width) != levels + 1:
            raise ValueError(f"hidden_channels needs {levels + 1} widths for spatial_factor {spatial_factor}, got {width}")
        self.coded_frames = 1 if frame_wise else temporal_factor  # frames through the coder at once
        codes = temporal_factor // self.coded_frames                # codes stacked in one latent frame
        if not 0 <= detail_channels < latent_channels:
            raise ValueError(f"detail_channels must be in [0, {latent_channels}), got {detail_channels}")
        if (latent_channels - detail_channels) % codes or detail_channels % codes:
            raise ValueError(f"latent_channels {latent_channels} (detail {detail_channels}) do not split into "
                             f"{codes} frame codes")
        # channels of one frame code: the first encoder's, then the detail encoder's
        self.code_channels = [(latent_channels - detail_channels) // codes, detail_channels // codes]
        pixels = 3 * self.coded_frames * patch_size**2  # channels of the coded frames, patches folded in
        self.encoder = _encoder(pixels, width, res_blocks, self.code_channels[0])
        self.detail_encoder = _encoder(pixels, width, res_blocks, self.code_channels[1]) if detail_channels else None
        self.decoder = nn.Sequential(
            nn.Conv2d(sum(self.code_channels), width[-1], 3, padding=1), nn.SiLU(),
            _decoder_levels(width, res_blocks),
            nn.Conv2d(width[0], pixels, 3, padding=1))
        self.register_buffer("mean", torch.tensor(latent_mean or [0.0] * latent_channels).view(1, -1, 1, 1, 1), False)
        self.register_buffer("std", torch.tensor(latent_std or [1.0] * latent_channels).view(1, -1, 1, 1, 1), False)

    @classmethod
    def extended(cls, base: "TinyVideoVAE", detail_channels: int) -> "TinyVideoVAE":
        """`base` with `detail_channels` more latent channels from a new encoder. The base encoder,
        its latent statistics and the decoder are copied, the decoder's weights for the new channels
        start at zero: the extended VAE decodes exactly as `base` until the detail is trained."""
        if base.config.detail_channels:
            raise ValueError("this VAE already has detail channels")
        vae = cls.from_config(base.config, latent_channels=base.config.latent_channels + detail_channels,
                              detail_channels=detail_channels,
                              latent_mean=base.mean.flatten().tolist() + [0.0] * detail_channels,
                              latent_std=base.std.flatten().tolist() + [1.0] * detail_channels)
        vae.encoder.load_state_dict(base.encoder.state_dict())
        decoder = base.decoder.state_dict()
        first = vae.decoder[0].weight.detach().zero_()  # frame code [base | detail] → features
        first[:, :base.code_channels[0]] = decoder.pop("0.weight")
        vae.decoder.load_state_dict(dict(decoder, **{"0.weight": first}))
        return vae

    def encode_moments(self, video: torch.Tensor):
        """Video [B, 3, T, H, W] in [-1, 1] (T a multiple of temporal_factor) → raw (mean, logvar)
        latents [B, C, T / temporal_factor, h, w], before normalisation."""
        b, _, t, h, w = video.shape
        tf, n = self.config.temporal_factor, self.coded_frames
        if t % tf:
            raise ValueError(f"video length {t} is not a multiple of temporal_factor {tf}")
        units = video.reshape(b, 3, t // n, n, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b * t // n, n * 3, h, w)
        pixels = F.pixel_unshuffle(units, self.config.patch_size)
        encoders = [self.encoder] + ([self.detail_encoder] if self.detail_encoder is not None else [])
        # per encoder, a latent frame stacks its group's frame codes in channels; detail after base
        moments = [[m.reshape(b, t // tf, -1, *m.shape[-2:]).transpose(1, 2) for m in encoder(pixels).chunk(2, dim=1)]
                   for encoder in encoders]
        return tuple(torch.cat(parts, dim=1) for parts in zip(*moments))

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Video [B, 3, T, H, W] in [-1, 1] → normalised latents (the posterior mean)."""
        mean, _ = self.encode_moments(video)
        return (mean - self.mean) / self.std

    def frame_codes(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Latents [B, C, f, h, w] → each encoder's codes (base, then detail if any), one per coded
        unit (a frame when `frame_wise`), units of a video in time order: [B * units, c, h, w]."""
        b, c, f, h, w = latents.shape
        units = b * f * self.config.temporal_factor // self.coded_frames
        detail = self.config.detail_channels
        parts = latents.split([c - detail, detail] if detail else [c], dim=1)
        return [part.transpose(1, 2).reshape(units, -1, h, w) for part in parts]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, C, f, h, w] → video [B, 3, f * temporal_factor, H, W] in [-1, 1]."""
        b, _, f = latents.shape[:3]
        tf = self.config.temporal_factor
        # a unit's codes side by side, [base | detail], as the encoders made them
        z = torch.cat(self.frame_codes(latents * self.std + self.mean), dim=1)
        x = F.pixel_shuffle(self.decoder(z), self.config.patch_size)
        x = x.reshape(b, f, tf, 3, *x.shape[-2:]).permute(0, 3, 1, 2, 4, 5)
        return x.reshape(b, 3, f * tf, *x.shape[-2:]).clamp(-1, 1)
