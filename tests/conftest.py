import socket
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adastate.backends import Backend  # noqa: E402
from adastate.model import CausalWanTransformer  # noqa: E402
from adastate.vae import TinyVideoVAE  # noqa: E402

# Video frames per chunk of the embedded model in assets/: 3 latent frames × the VAE's temporal factor 2.
SHIPPED_CHUNK_FRAMES = 6

# Small enough for exact tests in milliseconds, large enough to exercise every part of a block:
# head_dim 24 splits into 8 frame / 8 height / 8 width rotary channels.
TEST_CONFIG = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=24, in_channels=4, out_channels=4,
    text_dim=32, freq_dim=16, ffn_dim=64, num_layers=2, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=64,
)


@pytest.fixture
def test_model():
    torch.manual_seed(0)
    return CausalWanTransformer(**TEST_CONFIG).eval()


def prompt_states(prompt: str) -> torch.Tensor:
    """A stand-in text encoder: fixed random token states per prompt (no model load)."""
    generator = torch.Generator().manual_seed(sum(map(ord, prompt)))
    return torch.randn(1, 5, TEST_CONFIG["text_dim"], generator=generator)


@pytest.fixture
def test_backend(test_model):
    torch.manual_seed(1)
    vae = TinyVideoVAE(latent_channels=4, temporal_factor=2, spatial_factor=2, hidden_channels=8).eval()
    return Backend(name="test", transformer=test_model, vae=vae, encode_prompt=prompt_states,
                   latent_height=4, latent_width=6, fps=8.0)


@pytest.fixture(scope="session")
def app_url():
    """The demo app served on a free localhost port for the whole test session."""
    import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.demo.close()
