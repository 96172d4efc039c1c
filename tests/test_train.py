"""The training recipe on tiny configurations: each stage learns, DMD and horizon weights are right,
and gradients flow through the state recurrence."""

import json
import math
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from adastate.model import AnchorWindowCache, CacheLayout, CausalWanTransformer
from adastate.sampling import denoise_block, shifted_sigmas, write_cache
from adastate.train.losses import dmd_loss, horizon_weights
from adastate.train import recipe
from adastate.train.recipe import TrainConfig, sample_sigmas, shifted, train
from adastate.vae import TINY_VAE_CONFIG
from adastate.train.rollout import self_forcing_rollout
from conftest import TEST_CONFIG


def test_horizon_weights():
    assert torch.allclose(horizon_weights(6, 0.0), torch.ones(6))
    w = horizon_weights(6, 2.0)
    assert torch.all(w[1:] > w[:-1]) and torch.isclose(w.mean(), torch.tensor(1.0))
    assert torch.isclose(w[-1] / w[0], torch.tensor(4.0))
    assert torch.isclose(horizon_weights(6, 4.0)[-1] / horizon_weights(6, 4.0)[0], torch.tensor(16.0))


def test_dmd_gradient_is_zero_when_real_and_fake_agree_and_follows_horizon_weights():
    generated = torch.randn(2, 4, 6, 4, 4, requires_grad=True)
    same = torch.randn(2, 4, 6, 4, 4)
    dmd_loss(generated, same, same.clone(), horizon_weights(6, 2.0)).backward()
    assert torch.count_nonzero(generated.grad) == 0

    generated.grad = None
    real, fake = torch.zeros(2, 4, 6, 4, 4), torch.ones(2, 4, 6, 4, 4)  # the same pull on every frame
    weights = horizon_weights(6, 2.0)
    dmd_loss(generated, real, fake, weights).backward()
    per_frame = generated.grad.abs().mean(dim=(0, 1, 3, 4))
    assert torch.allclose(per_frame / per_frame[0], weights / weights[0], rtol=1e-4)


def test_gradients_flow_through_the_state_recurrence(test_model):
    """A loss on chunk 2 reaches chunk 0's state only if the cache keeps gradients."""
    layout = CacheLayout(chunk_frames=2, anchor_frames=1, window_chunks=1)
    kv = test_model.encode_text(torch.randn(1, 5, 32))
    sigmas = shifted_sigmas((1000, 500))

    def grad_of_first_state(keep_graph):
        cache = AnchorWindowCache.for_model(test_model, layout, 4, 6)
        first = torch.randn(1, 4, 3, 4, 6, requires_grad=True)
        cache.begin_block(1)
        with torch.set_grad_enabled(keep_graph):
            write_cache(test_model, kv, cache, first)
        out = None
        for chunk in (1, 2):
            cache.begin_block(1)
            out = denoise_block(test_model, kv, cache, (1, 4, 3, 4, 6), sigmas, 0, chunk)
            with torch.set_grad_enabled(keep_graph):
                write_cache(test_model, kv, cache, out)
        # chunk 2 sees chunk 0 only through the state chain S_0 → S_1 (W = 1 evicted X_0)
        grad, = torch.autograd.grad(out[:, :, 1:].sum(), first, allow_unused=True)
        return grad

    grad = grad_of_first_state(True)
    assert grad is not None and grad[:, :, :1].abs().sum() > 0
    assert grad_of_first_state(False) is None


def test_self_forcing_rollout_backpropagates(test_model):
    kv = test_model.encode_text(torch.randn(1, 5, 32))
    video = self_forcing_rollout(test_model, kv, CacheLayout(2, 1, 1), (1, 4, 3, 4, 6), 3, shifted_sigmas(),
                                 seed=0, generator=torch.Generator().manual_seed(0))
    assert video.shape == (1, 4, 6, 4, 6) and video.requires_grad
    video.square().mean().backward()
    assert test_model.blocks[0].attn1.to_q.weight.grad.abs().sum() > 0


def test_rollout_carries_gradients_on_its_last_chunks_only(test_model):
    """Context chunks run without gradients: the same chunks, but a loss on them reaches no weight."""
    kv = test_model.encode_text(torch.randn(1, 5, 32))

    def rollout(grad_chunks):
        return self_forcing_rollout(test_model, kv, CacheLayout(2, 1, 1), (1, 4, 3, 4, 6), 4, shifted_sigmas(),
                                    seed=0, generator=torch.Generator().manual_seed(0), grad_chunks=grad_chunks)

    video = rollout(2)
    assert torch.equal(video, rollout(None))
    weight = test_model.blocks[0].attn1.to_q.weight
    context, = torch.autograd.grad(video[:, :, :4].square().sum(), weight, retain_graph=True)
    late, = torch.autograd.grad(video[:, :, 4:].square().sum(), weight)
    assert context.abs().sum() == 0 and late.abs().sum() > 0
    with pytest.raises(ValueError, match="grad_chunks"):
        rollout(5)


@pytest.fixture
def clips(tmp_path):
    """Synthetic latent clips: drifting smooth patterns, learnable in a few steps."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 4, 1, 4, 6, generator=g)
    drift = torch.linspace(0, 1, 6).view(1, 1, 6, 1, 1)
    latents = (base + drift * torch.randn(4, 4, 1, 4, 6, generator=g)).contiguous()
    text = torch.randn(4, 5, TEST_CONFIG["text_dim"], generator=g)
    # stored in float16, as the data stage stores them
    save_file({"latents": latents.half(), "text": text.half()}, tmp_path / "clips.safetensors")
    return tmp_path


def test_teacher_ema_is_what_later_stages_load_and_it_resumes(clips, tmp_path):
    """With an EMA, transformer/ holds the average (what causal/dmd load), online/ the trained weights."""
    teacher = tmp_path / "teacher"
    train(config("teacher", teacher, data=str(clips), steps=6, lr=3e-3, ema=0.9, chunks=2, logit_normal=True,
                 sigma_shift=2.0))
    average = load_file(teacher / "transformer" / "diffusion_pytorch_model.safetensors")
    online = load_file(teacher / "online" / "diffusion_pytorch_model.safetensors")
    name = "blocks.0.attn1.to_q.weight"
    assert not torch.equal(average[name], online[name])
    torch.manual_seed(0)  # the initial weights, as the stage draws them
    initial = CausalWanTransformer(**TEST_CONFIG).state_dict()[name]
    # the average lags behind the trained weights: it lies between the start and them
    assert (average[name] - initial).norm() < (online[name] - initial).norm()
    train(config("teacher", teacher, data=str(clips), steps=8, lr=3e-3, ema=0.9, chunks=2))
    assert [json.loads(line)["step"] for line in (teacher / "log.jsonl").read_text().splitlines()][-2:] == [7, 8]


def test_stages_train_under_bfloat16_autocast_with_float32_weights(clips, tmp_path):
    teacher = tmp_path / "teacher"
    train(config("teacher", teacher, data=str(clips), steps=3, lr=3e-3, bf16=True))
    assert all(math.isfinite(loss) for loss in losses(teacher))
    weights = load_file(teacher / "transformer" / "diffusion_pytorch_model.safetensors")
    assert {w.dtype for w in weights.values()} == {torch.float32}
    causal = tmp_path / "causal"
    train(config("causal", causal, data=str(clips), init=str(teacher), steps=2, lr=1e-3, bf16=True,
                 logit_normal=True, sigma_shift=2.0))
    dmd = tmp_path / "dmd"
    train(config("dmd", dmd, data=str(clips), init=str(causal), teacher=str(teacher), steps=2, lr=1e-4,
                 fake_updates=2, bf16=True))
    assert all(math.isfinite(loss) for loss in losses(causal) + losses(dmd, "dmd") + losses(dmd, "fake"))
    for folder in (causal, dmd):
        weights = load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors")
        assert {w.dtype for w in weights.values()} == {torch.float32}


def test_bf16_warns_on_a_cpu_that_emulates_bfloat16(clips, tmp_path, monkeypatch):
    def bf16_run(units: bool) -> list[str]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: units)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train(config("teacher", tmp_path / f"teacher-{units}", data=str(clips), steps=1, bf16=True))
        return [str(w.message) for w in caught if "bfloat16 units" in str(w.message)]

    emulated = bf16_run(units=False)
    assert len(emulated) == 1 and "leave out --bf16" in emulated[0]
    assert bf16_run(units=True) == []


def test_dmd_regression_term_is_the_only_update_when_real_and_fake_scores_agree(clips, tmp_path):
    """With no fake-score updates and no guidance the fake score is the teacher, so DMD's gradient
    is exactly zero: the student moves only through the regression term, and only when it is on."""
    teacher = tmp_path / "teacher"
    train(config("teacher", teacher, data=str(clips), steps=2, lr=3e-3))
    before = load_file(teacher / "transformer" / "diffusion_pytorch_model.safetensors")
    moved = {}
    for weight in (0.0, 1.0):
        dmd = tmp_path / f"dmd-{weight}"
        train(config("dmd", dmd, data=str(clips), init=str(teacher), teacher=str(teacher), steps=1, lr=1e-3,
                     fake_updates=0, guidance=1.0, regression_weight=weight))
        after = load_file(dmd / "transformer" / "diffusion_pytorch_model.safetensors")
        moved[weight] = max((after[k] - before[k]).abs().max().item() for k in before)
        assert abs(losses(dmd, "dmd")[0]) < 1e-6
    assert moved[0.0] == 0.0 and moved[1.0] > 1e-4, moved
    assert len(losses(tmp_path / "dmd-1.0", "regression")) == 1 and not losses(tmp_path / "dmd-0.0", "regression")


def test_dmd_draws_its_noise_levels_with_the_dmd_shift(clips, tmp_path, monkeypatch):
    """--dmd-sigma-shift warps the noise levels of the fake score's updates and of the DMD loss;
    --sigma-shift stays the teacher-forced (regression) term's."""
    teacher = tmp_path / "teacher"
    train(config("teacher", teacher, data=str(clips), steps=1, lr=1e-3))
    shifts = []

    def recording(batch, generator=None, shift=recipe.DEFAULT_SHIFT, logit_normal=False):
        shifts.append(shift)
        return sample_sigmas(batch, generator, shift, logit_normal)

    monkeypatch.setattr(recipe, "sample_sigmas", recording)
    train(config("dmd", tmp_path / "dmd", data=str(clips), init=str(teacher), teacher=str(teacher), steps=1,
                 lr=1e-4, fake_updates=2, regression_weight=0.5, sigma_shift=2.0, dmd_sigma_shift=1.5))
    assert sorted(shifts).count(1.5) == 3 and set(shifts) == {1.5, 2.0}, shifts
    with pytest.raises(ValueError, match="--dmd-sigma-shift 0"):
        train(config("dmd", tmp_path / "bad", dmd_sigma_shift=0.0))


# the embedded VAE's architecture at test width
TEST_VAE_CONFIG = dict(TINY_VAE_CONFIG, hidden_channels=[16, 16], res_blocks=1)


def losses(folder, key="loss"):
    return [json.loads(line)[key] for line in (folder / "log.jsonl").read_text().splitlines() if key in line]


def config(stage, out, **kw):
    return TrainConfig(**{"stage": stage, "out": str(out), "model": dict(TEST_CONFIG), "chunks": 3, "chunk_frames": 2,
                          "batch_size": 4, "log_every": 1, "save_every": 1000, **kw})


def test_stages_learn_and_resume(clips, tmp_path):
    teacher = tmp_path / "teacher"
    train(config("teacher", teacher, data=str(clips), steps=100, lr=3e-3))
    curve = losses(teacher)
    assert sum(curve[-10:]) / 10 < 0.8 * sum(curve[:10]) / 10, curve

    for anchor in ("adaptive", "static"):
        causal = tmp_path / f"causal-{anchor}"
        train(config("causal", causal, data=str(clips), init=str(teacher), anchor=anchor, steps=40, lr=1e-3))
        curve = losses(causal)
        assert sum(curve[-10:]) / 10 < sum(curve[:10]) / 10, (anchor, curve)

    dmd = tmp_path / "dmd"
    train(config("dmd", dmd, data=str(clips), init=str(tmp_path / "causal-adaptive"), teacher=str(teacher),
                 steps=4, lr=1e-4, fake_updates=3, rollout_chunks=5))
    fake = losses(dmd, "fake")
    assert len(losses(dmd, "dmd")) == 4 and len(fake) == 4
    assert (dmd / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    # resume: asking for 6 steps continues from step 4
    train(config("dmd", dmd, data=str(clips), init=str(tmp_path / "causal-adaptive"), teacher=str(teacher),
                 steps=6, lr=1e-4, fake_updates=1))
    assert [json.loads(line)["step"] for line in (dmd / "log.jsonl").read_text().splitlines()][-2:] == [5, 6]

    # ship: the student and a VAE in one folder that the tiny backend loads, with a model card
    vae = tmp_path / "vae"
    train(TrainConfig(stage="vae", out=str(vae), model=dict(TEST_CONFIG), vae_model=TEST_VAE_CONFIG, size=16,
                      batch_size=2, steps=2, log_every=1))
    shipped = tmp_path / "shipped"
    train(TrainConfig(stage="ship", out=str(shipped), init=str(dmd), vae=str(vae), anchor="adaptive"))
    card = (shipped / "README.md").read_text()
    for stage in ("teacher", "causal", "dmd", "vae"):
        assert f"python -m adastate train {stage}" in card
    assert (shipped / "loss_curves.png").stat().st_size > 0
    assert CausalWanTransformer.from_pretrained(shipped / "transformer").config.in_channels == TEST_CONFIG["in_channels"]

    # snapshot: mid-campaign weights (here the teacher) and the VAE, with how far each stage got
    campaign = tmp_path / "campaign"
    train(TrainConfig(stage="snapshot", out=str(campaign), init=str(teacher), vae=str(vae)))
    card = (campaign / "README.md").read_text()
    assert "python -m adastate train teacher" in card and "python -m adastate train vae" in card
    assert "--vae-model" not in card  # the VAE's architecture is in vae/config.json, not a flag
    snapshot_teacher = campaign / "teacher" / "transformer"
    assert sorted(p.name for p in snapshot_teacher.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert (campaign / "vae" / "vae" / "config.json").is_file()
    # the copy keeps the checkpoint's step: a card built from it later says how far the run got
    assert (campaign / "teacher" / "progress.json").read_text() == (teacher / "progress.json").read_text()
    # a new machine continues from the snapshot: --init starts the teacher from its weights
    restarted = tmp_path / "teacher-restarted"
    train(config("teacher", restarted, data=str(clips), init=str(campaign / "teacher"), steps=1, lr=0.0))
    assert torch.equal(load_file(restarted / "transformer" / "diffusion_pytorch_model.safetensors")["proj_out.weight"],
                       load_file(snapshot_teacher / "diffusion_pytorch_model.safetensors")["proj_out.weight"])


def test_vae_and_data_stages(tmp_path):
    vae = tmp_path / "vae"
    train(TrainConfig(stage="vae", out=str(vae), model=dict(TEST_CONFIG), vae_model=TEST_VAE_CONFIG, size=16,
                      batch_size=4, steps=40, lr=2e-3, log_every=1, save_every=1000))
    curve = losses(vae, "l1")
    assert sum(curve[-5:]) / 5 < 0.8 * sum(curve[:5]) / 5, curve
    assert len(json.loads((vae / "vae" / "config.json").read_text())["latent_std"]) == TEST_CONFIG["in_channels"]

    data = tmp_path / "data"
    train(TrainConfig(stage="data", out=str(data), vae=str(vae), clips=3, size=16, chunks=2, chunk_frames=2))
    clips = load_file(data / "clips.safetensors")
    # 2 chunks x 2 latent frames of 16 px video at spatial factor 4; MiniLM's 64 token states
    assert clips["latents"].shape == (3, TEST_CONFIG["in_channels"], 4, 4, 4)
    assert clips["text"].shape == (3, 64, 384) and clips["text"].abs().sum() > 0
    assert len(json.loads((data / "captions.json").read_text())) == 3

    mirrored = tmp_path / "mirrored"
    train(TrainConfig(stage="data", out=str(mirrored), vae=str(vae), clips=3, size=16, chunks=2, chunk_frames=2,
                      mirror=True))
    pairs = load_file(mirrored / "clips.safetensors")
    captions = json.loads((mirrored / "captions.json").read_text())
    assert pairs["latents"].shape[0] == 6 and torch.equal(pairs["latents"][0::2], clips["latents"])
    for original, flipped in zip(captions[0::2], captions[1::2]):  # same world, the other pan direction
        assert ("left" in original) == ("right" in flipped) and original != flipped


def test_decoder_fine_tune_keeps_the_encoder_and_its_latents(tmp_path):
    vae = tmp_path / "vae"
    train(TrainConfig(stage="vae", out=str(vae), model=dict(TEST_CONFIG), vae_model=TEST_VAE_CONFIG, size=16,
                      batch_size=2, steps=2, log_every=1))
    decoder = tmp_path / "decoder"
    train(TrainConfig(stage="decoder", out=str(decoder), init=str(vae), size=16, batch_size=2, steps=4, lr=1e-3,
                      gan_start=2, log_every=1, save_every=2))
    before = load_file(vae / "vae" / "diffusion_pytorch_model.safetensors")
    after = load_file(decoder / "vae" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    settings = [json.loads((folder / "vae" / "config.json").read_text()) for folder in (vae, decoder)]
    assert settings[0]["latent_std"] == settings[1]["latent_std"]  # the latents' normalisation too
    log = [json.loads(line) for line in (decoder / "log.jsonl").read_text().splitlines()]
    # the adversarial loss joins after gan_start steps; the discriminator learns from the first
    assert ["adversarial" in r for r in log] == [False, False, True, True]
    assert all(math.isfinite(r["discriminator"]) for r in log)
    assert (decoder / "discriminator" / "diffusion_pytorch_model.safetensors").is_file()
    train(TrainConfig(stage="decoder", out=str(decoder), init=str(vae), size=16, batch_size=2, steps=5, lr=1e-3,
                      log_every=1))
    assert json.loads((decoder / "log.jsonl").read_text().splitlines()[-1])["step"] == 5


def test_shifted_moves_the_picture_by_the_asked_pixels_and_crops_alike():
    video = torch.zeros(1, 3, 2, 64, 64)
    video[..., 30, 20] = 1
    moved = shifted(video, 3 / 64, -2 / 64)  # 3 px right, 2 px up; 8 px cropped on every side
    assert moved.shape == (1, 3, 2, 48, 48)
    assert [tuple(p) for p in (moved[0, 0, 0] > 0.5).nonzero().tolist()] == [(30 - 2 - 8, 20 + 3 - 8)]
    assert shifted(torch.zeros(1, 8, 2, 16, 16), 0.1, 0.1).shape[-2:] == (12, 12)  # latents: 2 cells cropped


def test_vae_learns_to_decode_moved_latents_as_the_moved_video(tmp_path):
    train(TrainConfig(stage="vae", out=str(tmp_path / "vae"), model=dict(TEST_CONFIG), vae_model=TEST_VAE_CONFIG,
                      size=32, batch_size=2, steps=3, log_every=1, equivariance=1.0))
    log = [json.loads(line) for line in (tmp_path / "vae" / "log.jsonl").read_text().splitlines() if "loss" in line]
    assert len(log) == 3 and all(math.isfinite(r["equivariance"]) and r["equivariance"] > 0 for r in log)
    with pytest.raises(ValueError, match="multiple of 32"):  # 16 px: 4x4 latents, no eighth to crop
        train(TrainConfig(stage="vae", out=str(tmp_path / "small"), model=dict(TEST_CONFIG),
                          vae_model=TEST_VAE_CONFIG, size=16, batch_size=2, steps=1, equivariance=1.0))


def test_vae_extended_with_detail_keeps_its_latents_and_the_teacher_widens_to_them(clips, tmp_path):
    base = tmp_path / "vae"
    train(TrainConfig(stage="vae", out=str(base), model=dict(TEST_CONFIG), vae_model=TEST_VAE_CONFIG, size=16,
                      batch_size=2, steps=2, log_every=1))
    extended = tmp_path / "vae-detail"
    train(TrainConfig(stage="vae", out=str(extended), init=str(base), detail_channels=2, size=16, batch_size=2,
                      steps=3, lr=1e-3, log_every=1))
    before = load_file(base / "vae" / "diffusion_pytorch_model.safetensors")
    after = load_file(extended / "vae" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))
    assert any(k.startswith("detail_encoder.") for k in after)
    settings = [json.loads((folder / "vae" / "config.json").read_text()) for folder in (base, extended)]
    channels = TEST_CONFIG["in_channels"]
    assert settings[1]["latent_channels"] == channels + 2 and settings[1]["detail_channels"] == 2
    assert settings[1]["latent_std"][:channels] == settings[0]["latent_std"]  # the base latents' normalisation
    data = [tmp_path / "data", tmp_path / "data-detail"]
    for folder, vae in zip(data, (base, extended)):
        train(TrainConfig(stage="data", out=str(folder), vae=str(vae), clips=2, size=16, chunks=2, chunk_frames=2))
    latents = [load_file(folder / "clips.safetensors")["latents"] for folder in data]
    assert latents[1].shape[1] == channels + 2 and torch.equal(latents[1][:, :channels], latents[0])

    # a teacher of the base latents, continued on latents with 2 detail channels more
    teacher = tmp_path / "teacher"
    train(config("teacher", teacher, data=str(clips), steps=2, lr=1e-3))
    wide_clips = tmp_path / "wide-clips"
    wide_clips.mkdir()
    stored = load_file(clips / "clips.safetensors")
    detail = torch.randn(stored["latents"].shape[0], 2, *stored["latents"].shape[2:]).half()
    save_file(dict(stored, latents=torch.cat([stored["latents"], detail], dim=1)), wide_clips / "clips.safetensors")
    widened_teacher = tmp_path / "teacher-widened"
    train(config("teacher", widened_teacher, data=str(wide_clips), init=str(teacher), steps=1, lr=0.0))
    narrow = CausalWanTransformer.from_pretrained(teacher / "transformer").eval()
    wide = CausalWanTransformer.from_pretrained(widened_teacher / "transformer").eval()
    assert wide.config.in_channels == wide.config.out_channels == channels + 2
    x = torch.randn(1, channels + 2, 2, 4, 6)
    text, t = torch.randn(1, 5, TEST_CONFIG["text_dim"]), torch.tensor([700.0])
    with torch.no_grad():
        known, grown = narrow(x[:, :channels], t, text).sample, wide(x, t, text).sample
    # what it computed on the channels it knew, whatever the new ones hold; the new ones start at zero
    assert torch.allclose(grown[:, :channels], known, atol=1e-5) and grown[:, channels:].abs().max() == 0


def test_card_reports_the_checkpoint_step_not_steps_logged_after_it(tmp_path):
    from adastate.train.card import stage_lines

    run = tmp_path / "run"
    run.mkdir()
    (run / "train_config.json").write_text(json.dumps({"stage": "teacher", "out": str(run), "steps": 3000}))
    (run / "progress.json").write_text(json.dumps({"step": 1500}))
    log = [{"step": s, "seconds": s / 10, "loss": 1 / s} for s in (1475, 1500, 1525)]  # stopped at 1525, saved at 1500
    (run / "log.jsonl").write_text("\n".join(json.dumps(r) for r in log))
    [line] = stage_lines([run])
    assert "— 1500 steps" in line and "loss 0.0006667" in line and "1525" not in line


def run_folder(tmp_path, name, **config):
    """A stage folder holding only its train_config.json: what the card's provenance reads."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "train_config.json").write_text(json.dumps({"out": str(folder), **config}))
    return folder


def test_a_run_continued_from_another_of_its_stage_comes_after_it_on_the_card(tmp_path):
    from adastate.train.card import provenance

    teacher = run_folder(tmp_path, "teacher", stage="teacher")
    first = run_folder(tmp_path, "dmd-first", stage="dmd", teacher=str(teacher))
    resumed = run_folder(tmp_path, "dmd-resumed", stage="dmd", init=str(first), teacher=str(teacher))
    assert provenance(resumed) == [teacher, first, resumed]


def test_a_run_extending_shipped_weights_comes_after_the_run_that_started_from_nothing(tmp_path):
    from adastate.train.card import provenance

    detail = run_folder(tmp_path, "vae-detail", stage="vae", init=str(tmp_path / "shipped"))  # outside the chain
    base = run_folder(tmp_path, "vae", stage="vae")
    data = run_folder(tmp_path, "data", stage="data", vae=str(base))
    assert provenance(detail, data) == provenance(data, detail) == [base, detail, data]
