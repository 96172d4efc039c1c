"""A tiny random Wan 2.1 pipeline written by diffusers itself (UMT5, Wan VAE, DiT, tokenizer), for
tests of the wan backend that must run offline on the CPU in seconds."""

import torch

from conftest import TEST_CONFIG

# The DiT's text_dim is the tiny UMT5's d_model and its in_channels the tiny VAE's z_dim.
HEIGHT, WIDTH = 32, 48          # pixels; the tiny VAE downsamples 8x: 4x6 latents, 2x3 tokens a frame
WORDS = "a the slow pan to right across snowy hills red car drives city at night".split()


def tiny_tokenizer():
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -15.0)]
    vocab += [("▁" + w, -1.0 - i) for i, w in enumerate(WORDS)] + [(c, -20.0) for c in "abcdefghijklmnopqrstuvwxyz,."]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def tiny_pipeline(latent_channels: int = TEST_CONFIG["in_channels"]):
    """A `WanPipeline` of random tiny parts (seeded: the same weights every call). Wan 2.1's own
    VAE has 16 latent channels; `latent_channels` must be a multiple of 4."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=TEST_CONFIG["text_dim"], d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16)).eval()
    repeats = latent_channels // 4
    vae = AutoencoderKLWan(base_dim=8, z_dim=latent_channels, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                           latents_mean=[0.1, -0.2, 0.3, 0.0] * repeats, latents_std=[1.5, 0.5, 2.0, 1.0] * repeats).eval()
    transformer = WanTransformer3DModel(**dict(TEST_CONFIG, in_channels=latent_channels,
                                               out_channels=latent_channels)).eval()
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0))
