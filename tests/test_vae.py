"""The embedded VAE: the streaming decoder's contract, frame-wise codes, old checkpoints still load."""

from pathlib import Path

import numpy as np
import pytest
import torch

from adastate.vae import TINY_VAE_CONFIG, TinyVideoVAE

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@pytest.fixture
def vae():
    torch.manual_seed(0)
    return TinyVideoVAE(latent_channels=8, **dict(TINY_VAE_CONFIG, hidden_channels=[8, 8], res_blocks=1)).eval()


def test_decoding_chunk_by_chunk_equals_decoding_the_whole_video(vae):
    video = torch.rand(1, 3, 12, 16, 16) * 2 - 1
    latents = vae.encode(video)
    assert latents.shape == (1, 8, 6, 4, 4)
    whole = vae.decode_to_uint8(latents)
    chunked = np.concatenate([vae.decode_to_uint8(part) for part in latents.split(3, dim=2)])
    assert whole.shape == (12, 16, 16, 3) and np.array_equal(whole, chunked)


def test_frame_wise_codes_keep_each_frame_to_its_own_channels(vae):
    """Changing one frame changes only its own half of its latent frame's channels, and decoding
    that half alone gives that frame: no frame is drawn from another's code."""
    video = torch.rand(1, 3, 4, 16, 16) * 2 - 1
    edited = video.clone()
    edited[:, :, 1] = 0  # frame 1: the second frame of latent frame 0
    change = (vae.encode(video) - vae.encode(edited)).abs().amax(dim=(0, 3, 4))  # [channel, latent frame]
    assert change[:4].max() == 0 and change[4:, 0].max() > 0 and change[:, 1].max() == 0
    decoded, decoded_edited = vae.decode(vae.encode(video)), vae.decode(vae.encode(edited))
    assert torch.equal(decoded[:, :, [0, 2, 3]], decoded_edited[:, :, [0, 2, 3]])


def test_joint_coding_and_old_checkpoints_still_load():
    joint = TinyVideoVAE(latent_channels=8, **dict(TINY_VAE_CONFIG, frame_wise=False, hidden_channels=[8, 8]))
    assert joint.encode(torch.zeros(1, 3, 4, 16, 16)).shape == (1, 8, 2, 4, 4)
    with pytest.raises(ValueError, match="do not split"):
        TinyVideoVAE(latent_channels=7, **TINY_VAE_CONFIG)
    shipped = ASSETS / "tiny-adaptive" / "vae"
    if shipped.is_dir():  # whatever VAE ships, its folder loads into the class its config names
        loaded = TinyVideoVAE.from_pretrained(shipped)
        assert loaded.decode_to_uint8(torch.zeros(1, loaded.config.latent_channels, 1, 16, 16)).shape[1:] == (64, 64, 3)


def test_detail_channels_extend_a_vae_without_changing_its_latents(vae):
    """An extended VAE's first channels are the base VAE's latents, so models trained on them stay
    valid; until its detail is trained it decodes exactly as the base; with detail it still keeps
    each frame to its own channels and streams chunk by chunk exactly."""
    video = torch.rand(1, 3, 12, 16, 16) * 2 - 1
    extended = TinyVideoVAE.extended(vae, detail_channels=4).eval()
    latents = extended.encode(video)
    assert latents.shape == (1, 12, 6, 4, 4) and torch.equal(latents[:, :8], vae.encode(video))
    assert torch.equal(extended.decode(latents), vae.decode(latents[:, :8]))
    torch.nn.init.normal_(extended.decoder[0].weight, std=0.1)  # now the detail channels draw too
    assert not torch.equal(extended.decode(latents), vae.decode(latents[:, :8]))
    whole = extended.decode_to_uint8(latents)
    chunked = np.concatenate([extended.decode_to_uint8(part) for part in latents.split(3, dim=2)])
    assert np.array_equal(whole, chunked)
    edited = video.clone()
    edited[:, :, 1] = 0  # the second frame of latent frame 0: its base code is channels 4-7, its detail 10-11
    change = (extended.encode(video) - extended.encode(edited)).abs().amax(dim=(0, 3, 4))
    changed = (change[:, 0] > 0).nonzero().flatten().tolist()
    assert changed == [4, 5, 6, 7, 10, 11] and change[:, 1:].max() == 0
    with pytest.raises(ValueError, match="already has detail"):
        TinyVideoVAE.extended(extended, 4)
    wide = TinyVideoVAE.extended(vae, detail_channels=12).eval()  # more detail channels than base ones
    assert torch.equal(wide.decode(wide.encode(video)), vae.decode(vae.encode(video)))
