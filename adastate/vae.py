"""The embedded model's small video autoencoder.

Each latent frame stands for `temporal_factor` consecutive video frames at 1/`spatial_factor`
resolution. A latent frame is encoded and decoded on its own (frames of a group are folded into
channels), so decoding chunk by chunk is exactly decoding the whole video: the streaming decoder
needs no cache. Latents are normalised with a per-channel mean and std stored in the config.
"""

import numpy as np
import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin


def frames_to_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 RGB frames [T, H, W, 3] → video [3, T, H, W] in [-1, 1], as the VAEs take it."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1


def video_to_frames(video: torch.Tensor) -> np.ndarray:
    """Video [3, T, H, W] in [-1, 1] → uint8 RGB frames [T, H, W, 3]."""
    return ((video.float().permute(1, 2, 3, 0) + 1) * 127.5).round().clamp(0, 255).byte().cpu().numpy()


def _conv_stack(channels: list[int], down: bool) -> nn.Sequential:
    layers = []
    for c_in, c_out in zip(channels, channels[1:]):
        if down:
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
        else:
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1), nn.SiLU()]
    return nn.Sequential(*layers)


class TinyVideoVAE(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, latent_channels: int = 8, temporal_factor: int = 4, spatial_factor: int = 4,
                 hidden_channels: int = 64, latent_mean: list | None = None, latent_std: list | None = None):
        super().__init__()
        levels = int(np.log2(spatial_factor))
        if 2**levels != spatial_factor:
            raise ValueError(f"spatial_factor must be a power of two, got {spatial_factor}")
        width = [hidden_channels] * (levels + 1)
        self.encoder = nn.Sequential(
            nn.Conv2d(3 * temporal_factor, hidden_channels, 3, padding=1), nn.SiLU(),
            _conv_stack(width, down=True),
            nn.Conv2d(hidden_channels, 2 * latent_channels, 3, padding=1))
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, hidden_channels, 3, padding=1), nn.SiLU(),
            _conv_stack(width, down=False),
            nn.Conv2d(hidden_channels, 3 * temporal_factor, 3, padding=1))
        self.register_buffer("mean", torch.tensor(latent_mean or [0.0] * latent_channels).view(1, -1, 1, 1, 1), False)
        self.register_buffer("std", torch.tensor(latent_std or [1.0] * latent_channels).view(1, -1, 1, 1, 1), False)

    def encode_moments(self, video: torch.Tensor):
        """Video [B, 3, T, H, W] in [-1, 1] (T a multiple of temporal_factor) → raw (mean, logvar)
        latents [B, C, T / temporal_factor, h, w], before normalisation."""
        b, _, t, h, w = video.shape
        tf = self.config.temporal_factor
        if t % tf:
            raise ValueError(f"video length {t} is not a multiple of temporal_factor {tf}")
        groups = video.reshape(b, 3, t // tf, tf, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b * t // tf, tf * 3, h, w)
        moments = self.encoder(groups)
        moments = moments.reshape(b, t // tf, *moments.shape[1:]).transpose(1, 2)
        return moments.chunk(2, dim=1)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Video [B, 3, T, H, W] in [-1, 1] → normalised latents (the posterior mean)."""
        mean, _ = self.encode_moments(video)
        return (mean - self.mean) / self.std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, C, f, h, w] → video [B, 3, f * temporal_factor, H, W] in [-1, 1]."""
        b, c, f, h, w = latents.shape
        tf = self.config.temporal_factor
        z = (latents * self.std + self.mean).transpose(1, 2).reshape(b * f, c, h, w)
        x = self.decoder(z)
        x = x.reshape(b, f, tf, 3, *x.shape[-2:]).permute(0, 3, 1, 2, 4, 5)
        return x.reshape(b, 3, f * tf, *x.shape[-2:]).clamp(-1, 1)

    @torch.no_grad()
    def decode_to_uint8(self, latents: torch.Tensor) -> np.ndarray:
        """Latents [1, C, f, h, w] → RGB frames uint8 [f * temporal_factor, H, W, 3]."""
        return video_to_frames(self.decode(latents.to(self.dtype))[0])
