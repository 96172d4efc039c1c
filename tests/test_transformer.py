"""The DiT against diffusers' own WanTransformer3DModel: the correctness anchor."""

import pytest
import torch
from diffusers import WanTransformer3DModel

from adastate.model import TINY_CONFIG, CausalWanTransformer
from conftest import TEST_CONFIG


def relative_error(a, b):
    return float((a - b).norm() / b.norm())


@pytest.fixture
def reference():
    torch.manual_seed(0)
    return WanTransformer3DModel(**TEST_CONFIG).eval()


def inputs(config, frames=5, height=8, width=6):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, config["in_channels"], frames, height, width, generator=g)
    t = torch.tensor([999.0, 3.0])
    text = torch.randn(2, 7, config["text_dim"], generator=g)
    return x, t, text


# the embedded model's size, without its one addition to Wan (the pooled-prompt modulation)
WAN_TINY = {k: v for k, v in TINY_CONFIG.items() if k != "pooled_text_dim"}


@pytest.mark.parametrize("config", [TEST_CONFIG, WAN_TINY], ids=["test", "tiny"])
def test_full_forward_equals_diffusers(config):
    torch.manual_seed(0)
    reference = WanTransformer3DModel(**config).eval()
    ours = CausalWanTransformer(**config).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)  # same parameter names, nothing left over
    x, t, text = inputs(config)
    with torch.no_grad():
        expected = reference(x, t, text).sample
        assert relative_error(ours(x, t, text).sample, expected) < 1e-5
        assert relative_error(ours(x, t, text, return_dict=False)[0], expected) < 1e-5
        per_token = torch.rand(2, x.shape[2] * x.shape[3] * x.shape[4] // 4) * 1000
        assert relative_error(ours(x, per_token, text).sample, reference(x, per_token, text).sample) < 1e-5


def test_from_pretrained_reads_a_diffusers_folder(reference, tmp_path):
    reference.save_pretrained(tmp_path / "transformer")
    ours = CausalWanTransformer.from_pretrained(tmp_path / "transformer").eval()
    x, t, text = inputs(TEST_CONFIG)
    with torch.no_grad():
        assert relative_error(ours(x, t, text).sample, reference(x, t, text).sample) < 1e-5
    # and our own save is readable by diffusers
    ours.save_pretrained(tmp_path / "ours")
    assert (tmp_path / "ours" / "diffusion_pytorch_model.safetensors").is_file()
    back = WanTransformer3DModel.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert relative_error(back(x, t, text).sample, reference(x, t, text).sample) < 1e-5


def test_the_parity_check_can_fail(reference):
    ours = CausalWanTransformer(**TEST_CONFIG).eval()
    ours.load_state_dict(reference.state_dict())
    with torch.no_grad():
        ours.blocks[1].attn1.norm_k.weight.mul_(1.01)
    x, t, text = inputs(TEST_CONFIG)
    with torch.no_grad():
        assert relative_error(ours(x, t, text).sample, reference(x, t, text).sample) > 1e-5


def test_image_conditioned_configs_are_refused():
    with pytest.raises(ValueError, match="I2V"):
        CausalWanTransformer(**{**TEST_CONFIG, "image_dim": 16, "added_kv_proj_dim": 16})


def test_pooled_prompt_modulation_starts_as_plain_wan_and_then_hears_the_prompt():
    torch.manual_seed(0)
    plain = CausalWanTransformer(**TEST_CONFIG).eval()
    pooled = CausalWanTransformer(**TEST_CONFIG, pooled_text_dim=TEST_CONFIG["text_dim"]).eval()
    missing = pooled.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["condition_embedder.pooled_text_proj.bias", "condition_embedder.pooled_text_proj.weight"]
    x, t, text = inputs(TEST_CONFIG)
    with torch.no_grad():
        assert torch.equal(pooled(x, t, text).sample, plain(x, t, text).sample)  # zero-initialised
        torch.nn.init.normal_(pooled.condition_embedder.pooled_text_proj.weight)
        assert relative_error(pooled(x, t, text).sample, plain(x, t, text).sample) > 1e-2
        # the pool is a mean over real tokens: zero padding changes nothing, a dropped caption pools to 0
        padded = torch.cat([text, torch.zeros(2, 5, TEST_CONFIG["text_dim"])], dim=1)
        assert torch.allclose(pooled.encode_text(padded).pooled, pooled.encode_text(text).pooled, atol=1e-6)
        bias = pooled.condition_embedder.pooled_text_proj.bias
        assert torch.equal(pooled.encode_text(torch.zeros_like(text)).pooled, bias.expand(2, -1))
