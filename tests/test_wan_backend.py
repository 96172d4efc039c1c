"""The wan backend, offline on the CPU: tiny random UMT5 / Wan VAE / DiT saved in both checkpoint
layouts, loaded by the code the Space uses, streamed in both anchor modes; the streaming VAE
decode against diffusers' one-shot decode; the key map against diffusers' own model."""

import json
import os
import re
import shutil

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in this file may reach the Hub

import numpy as np
import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import load_file, save_file

from adastate.backends import DEVICE_ENV, BackendUnavailable, load_backend, load_backend_or_fallback
from adastate.backends import wan
from adastate.checkpoints import CheckpointError
from adastate.model import CausalWanTransformer
from adastate.model.key_map import original_to_ours, ours_to_original, strip_wrappers
from adastate.stream import ChunkStream, StreamSettings
from conftest import TEST_CONFIG
from tiny_wan import HEIGHT, WIDTH, tiny_pipeline

PROMPT = "a slow pan to the right across snowy hills"


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """The tiny convolutions are overhead-bound: extra threads only contend on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv(wan.SIZE_ENV, f"{HEIGHT}x{WIDTH}")
    for name in (wan.BASE_ENV, wan.CHECKPOINT_ENV, wan.TEXT_DEVICE_ENV, "ADASTATE_BACKEND", DEVICE_ENV):
        monkeypatch.delenv(name, raising=False)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipeline():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def checkpoints(pipeline, tmp_path_factory):
    """The same weights in both layouts: a diffusers pipeline folder, and one Self-Forcing-style
    file (original Wan names under Self-Forcing's `generator.model.` wrapper) marked AdaState-trained."""
    root = tmp_path_factory.mktemp("wan")
    pipeline.save_pretrained(root / "pipeline")
    original = ours_to_original(pipeline.transformer.state_dict())
    single = root / "adastate_student.safetensors"
    save_file({f"generator.model.{k}": v.contiguous() for k, v in original.items()}, single,
              metadata={wan.METADATA_KEY: "adaptive"})
    return root / "pipeline", single


def stream_frames(backend, anchor, chunks=3, prompt=PROMPT):
    return [r for r in ChunkStream(backend, prompt, StreamSettings(anchor=anchor, chunks=chunks, seed=3))]


# -- key map ---------------------------------------------------------------------------------------------

def test_key_map_names_and_round_trip():
    torch.manual_seed(0)
    reference = WanTransformer3DModel(**TEST_CONFIG)
    ours = reference.state_dict()
    original = ours_to_original(ours)
    for name in ("patch_embedding.weight", "text_embedding.0.weight", "text_embedding.2.bias", "time_embedding.0.weight",
                 "time_projection.1.weight", "head.head.weight", "head.modulation", "blocks.1.modulation",
                 "blocks.0.self_attn.q.weight", "blocks.0.self_attn.o.bias", "blocks.0.self_attn.norm_k.weight",
                 "blocks.1.cross_attn.v.weight", "blocks.1.norm3.weight", "blocks.0.ffn.0.weight", "blocks.0.ffn.2.bias"):
        assert name in original, name
    assert not any(".norm2." in k or "attn1" in k or "scale_shift_table" in k for k in original)
    assert len(original) == len(ours)
    for wrapper in ("", "generator.model.", "model.diffusion_model.", "module._orig_mod."):
        back = original_to_ours({wrapper + k: v for k, v in original.items()})
        assert back.keys() == ours.keys()
        assert all(back[k] is ours[k] for k in ours)
    # Self-Forcing keeps an EMA copy beside the raw generator: the EMA weights win
    both = {**{f"generator.model.{k}": torch.zeros_like(v) for k, v in original.items()},
            **{f"generator_ema.model.{k}": v for k, v in original.items()}}
    assert all(strip_wrappers(both)[k] is original[k] for k in original)
    with pytest.raises(KeyError, match="img_emb"):
        original_to_ours({**original, "img_emb.proj.0.weight": torch.zeros(1)})


def test_key_map_agrees_with_diffusers_converter():
    """diffusers' own converter (for single-file Wan checkpoints) maps our original names back identically."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    torch.manual_seed(0)
    ours = WanTransformer3DModel(**TEST_CONFIG).state_dict()
    converted = convert_wan_transformer_to_diffusers(ours_to_original(ours))
    assert converted.keys() == ours.keys()
    assert all(converted[k] is ours[k] for k in ours)


def test_original_layout_file_gives_diffusers_outputs(tmp_path):
    """original-layout state dict → ours → diffusers' WanTransformer3DModel: identical outputs."""
    torch.manual_seed(0)
    reference = WanTransformer3DModel(**TEST_CONFIG).eval()
    path = tmp_path / "self_forcing.safetensors"
    save_file({f"generator.model.{k}": v.contiguous() for k, v in ours_to_original(reference.state_dict()).items()},
              path)
    ours = wan.build_transformer(TEST_CONFIG, load_file(path), path, torch.device("cpu"), torch.float32)
    assert isinstance(ours, CausalWanTransformer)
    via_ours = WanTransformer3DModel(**TEST_CONFIG).eval()
    via_ours.load_state_dict(ours.state_dict(), strict=True)

    g = torch.Generator().manual_seed(1)
    x, text = torch.randn(1, 4, 3, 4, 6, generator=g), torch.randn(1, 7, TEST_CONFIG["text_dim"], generator=g)
    t = torch.tensor([700.0])
    with torch.no_grad():
        expected = reference(x, t, text).sample
        assert torch.equal(via_ours(x, t, text).sample, expected)
        assert torch.allclose(ours(x, t, text).sample, expected, rtol=1e-5, atol=1e-5)


# -- VAE: streaming decode -----------------------------------------------------------------------------

def test_chunk_by_chunk_decode_equals_one_full_decode(pipeline):
    vae = wan.WanVideoVAE(pipeline.vae)
    latents = torch.randn(1, 4, 9, 4, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = pipeline.vae.decode(vae.denormalize(latents)).sample  # diffusers' own one-shot decode
        stream = vae.open_stream()
        chunks = [stream.decode(latents[:, :, i:i + 3]) for i in (0, 3, 6)]
    assert [c.shape[2] for c in chunks] == [9, 12, 12]  # 1 + 4 * 2, then 4 * 3 frames
    assert full.shape[2] == 33
    assert torch.allclose(torch.cat(chunks, dim=2), full, atol=1e-5, rtol=1e-5)
    # the carried cache is what makes this true: a chunk decoded after other content, or as the
    # start of a new video, comes out differently
    with torch.no_grad():
        other = vae.open_stream()
        other.decode(torch.zeros_like(latents[:, :, :3]))
        after_other = other.decode(latents[:, :, 3:6])
        restarted = vae.open_stream().decode(latents[:, :, 3:6])
    assert not torch.allclose(after_other, full[:, :, 9:21], atol=1e-3)
    assert restarted.shape[2] == 9


def test_state_peek_and_colours_of_a_wan_stream(checkpoints):
    """Regression: the state panel crashed on the first chunk of every Wan run ('WanVideoVAE'
    object has no attribute 'device'). The peek is the state decoded as a one-frame video."""
    from adastate.viz import PANEL_SIZE, state_colors, state_peek

    backend = load_backend("wan", checkpoints[0], "cpu")
    result = next(iter(ChunkStream(backend, PROMPT, StreamSettings(chunks=1))))
    assert result.anchor_latent.shape == (4, 1, 4, 6)
    peek = state_peek(backend.vae, result.anchor_latent)
    assert peek.shape == (PANEL_SIZE, PANEL_SIZE * WIDTH // HEIGHT, 3) and peek.dtype == np.uint8 and peek.std() > 0
    alone = backend.vae.open_stream().decode_to_uint8(result.anchor_latent[None])
    assert alone.shape == (1, HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(peek[::PANEL_SIZE // HEIGHT, ::PANEL_SIZE // HEIGHT], alone[0])
    assert state_colors(result.anchor_latent).shape == (PANEL_SIZE, PANEL_SIZE * WIDTH // HEIGHT, 3)


def test_both_vaes_implement_the_one_vae_interface(checkpoints):
    from adastate.backends import Backend
    from adastate.vae import TinyVideoVAE, VideoDecoder, VideoVAE

    wan_backend = load_backend("wan", checkpoints[0], "cpu")
    tiny = TinyVideoVAE(latent_channels=4, temporal_factor=2, spatial_factor=2, hidden_channels=8)
    for vae in (wan_backend.vae, tiny):
        assert isinstance(vae, VideoVAE) and isinstance(vae.open_stream(), VideoDecoder)
        assert (vae.device, vae.dtype) == (torch.device("cpu"), torch.float32)
        latents = torch.randn(1, 4, 2, 4, 6, dtype=torch.float64)  # any dtype: the VAE casts to its own
        assert vae.decode_to_uint8(latents).shape[0] == {wan_backend.vae: 5, tiny: 4}[vae]
    assert wan_backend.vae.open_stream() is not wan_backend.vae.open_stream()  # one causal cache per stream
    assert tiny.open_stream() is tiny  # frame by frame: nothing to carry
    with pytest.raises(TypeError, match="does not implement adastate.vae.VideoVAE"):
        Backend(name="raw", transformer=wan_backend.transformer, vae=wan_backend.vae.vae,  # diffusers' own VAE
                encode_prompt=wan_backend.encode_prompt, latent_height=4, latent_width=6, fps=16.0)


# -- text -----------------------------------------------------------------------------------------------

def test_prompt_states_match_wan_pipeline(pipeline):
    encoder = wan.UMT5PromptEncoder(pipeline.tokenizer, pipeline.text_encoder)
    for prompt in (PROMPT, "  a red   car &amp; the city at night "):
        states = encoder(prompt)
        with torch.no_grad():
            expected = pipeline._get_t5_prompt_embeds(prompt, max_sequence_length=512, device=torch.device("cpu"))
        assert states.shape == (1, 512, TEST_CONFIG["text_dim"])
        assert torch.allclose(states, expected, atol=1e-6)
        length = len(pipeline.tokenizer(wan.clean_prompt(prompt)).input_ids)
        assert states[0, :length].abs().sum(-1).min() > 0 and not states[0, length:].any()


# -- the backend, end to end ----------------------------------------------------------------------------

def test_pipeline_folder_streams_both_modes(checkpoints, pipeline):
    folder, _ = checkpoints
    backend = load_backend("wan", folder, "cpu", "static")
    assert backend.name == "wan" and backend.dtype == torch.float32 and backend.fps == 16.0
    assert (backend.latent_height, backend.latent_width, backend.frames_per_latent) == (4, 6, 4)
    reference = pipeline.transformer.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in backend.transformer.state_dict().items())
    assert "unknown training" in backend.notice and backend.notice.startswith("wan backend: static")
    assert set(backend.anchor_labels) == {"adaptive", "static"}

    for anchor in ("adaptive", "static"):
        results = stream_frames(backend, anchor)
        assert [r.frames.shape for r in results] == [(9, HEIGHT, WIDTH, 3), (12, HEIGHT, WIDTH, 3), (12, HEIGHT, WIDTH, 3)]
        assert all(r.frames.dtype == np.uint8 and r.latents.shape == (4, 3, 4, 6) for r in results)
        deltas = [r.state_delta for r in results[1:]]
        assert all(d > 0 for d in deltas) if anchor == "adaptive" else all(d == 0 for d in deltas)


def test_single_file_loads_the_same_model_and_video(checkpoints, monkeypatch):
    folder, single = checkpoints
    monkeypatch.setenv(wan.BASE_ENV, str(folder))
    from_file = load_backend("wan", single, "cpu", "adaptive")
    from_folder = load_backend("wan", folder, "cpu", "adaptive")
    assert from_file.notice == "wan backend: adaptive state (AdaState-trained weights)"
    assert "on AdaState-trained weights" in from_file.anchor_labels["static"]
    a, b = from_file.transformer.state_dict(), from_folder.transformer.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for anchor in ("adaptive", "static"):
        for x, y in zip(stream_frames(from_file, anchor), stream_frames(from_folder, anchor)):
            assert np.array_equal(x.frames, y.frames)


def test_interleaved_streams_each_keep_their_own_decode_cache(checkpoints):
    backend = load_backend("wan", checkpoints[0], "cpu")
    alone = stream_frames(backend, "adaptive", chunks=2)
    first = ChunkStream(backend, PROMPT, StreamSettings(anchor="adaptive", chunks=2, seed=3))
    other = ChunkStream(backend, "a red car", StreamSettings(anchor="static", chunks=2, seed=5))
    side_by_side = []
    for _ in range(2):
        side_by_side.append(first.next_chunk())
        other.next_chunk()
    assert [r.frames.shape[0] for r in side_by_side] == [9, 12]
    assert all(np.array_equal(x.frames, y.frames) for x, y in zip(alone, side_by_side))


@pytest.mark.parametrize("anchor", ["adaptive", "static"])
def test_a_saved_scene_resumes_with_the_decoders_causal_cache(checkpoints, tmp_path, anchor):
    from adastate.scene import read_scene, resume_stream, save_scene, snapshot

    backend = load_backend("wan", checkpoints[0], "cpu", anchor)
    whole = stream_frames(backend, anchor, chunks=3)
    first = ChunkStream(backend, PROMPT, StreamSettings(anchor=anchor, chunks=2, seed=3))
    head = list(first)
    scene = read_scene(save_scene(snapshot(first), tmp_path / "scene.safetensors"))
    assert scene.meta["decoder"]["frames"] == 2 * 3  # latent frames the decoder has seen
    tail = list(resume_stream(backend, scene, 1))
    assert [r.frames.shape[0] for r in head + tail] == [9, 12, 12]
    assert all(np.array_equal(x.frames, y.frames) for x, y in zip(whole, head + tail))


def test_marker_file_labels_a_folder(checkpoints, tmp_path):
    folder = shutil.copytree(checkpoints[0], tmp_path / "self_forcing")
    (folder / "adastate.json").write_text(json.dumps({"anchor": "static"}))
    backend = load_backend("wan", folder, "cpu", "adaptive")
    assert backend.notice == "wan backend: " + wan.anchor_labels("static")["adaptive"]
    assert "training-free on Self-Forcing weights" in backend.notice
    (folder / "adastate.json").write_text(json.dumps({"anchor": "sideways"}))
    with pytest.raises(CheckpointError, match="adaptive' or 'static"):
        load_backend("wan", folder, "cpu")


def test_bfloat16_keeps_wans_float32_modules(checkpoints):
    """The CUDA placement (bf16, norms/modulation/time embedding in fp32), exercised on the CPU."""
    backend = wan.load_wan(checkpoints[0], "cpu", dtype=torch.bfloat16)
    dtypes = {name: p.dtype for name, p in backend.transformer.named_parameters()}
    assert dtypes["blocks.0.scale_shift_table"] == dtypes["blocks.0.norm2.weight"] == torch.float32
    assert dtypes["condition_embedder.time_embedder.linear_1.weight"] == torch.float32
    assert dtypes["blocks.0.attn1.to_q.weight"] == dtypes["proj_out.weight"] == torch.bfloat16
    frames = stream_frames(backend, "adaptive", chunks=1)[0].frames
    assert frames.shape == (9, HEIGHT, WIDTH, 3) and frames.std() > 0


@pytest.mark.parametrize("device_from", ["flag", "environment"])
def test_cli_generate_on_a_pipeline_folder(checkpoints, tmp_path, monkeypatch, device_from):
    from adastate.cli import main
    from adastate.video import read_video

    out = tmp_path / "wan.mp4"
    if device_from == "flag":
        device = ["--device", "cpu"]
    else:
        device = []
        monkeypatch.setenv(DEVICE_ENV, "cpu")
    code = main(["generate", "--backend", "wan", "--checkpoint", str(checkpoints[0]), *device,
                 "--prompt", PROMPT, "--chunks", "2", "--out", str(out), "--stats-out", str(tmp_path / "s.json")])
    assert code == 0
    frames, fps, codec = read_video(out)
    assert frames.shape == (9 + 12, HEIGHT, WIDTH, 3) and fps == 16.0 and codec == "h264"
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["config"]["backend"] == "wan" and stats["config"]["device"] == "cpu" and len(stats["chunks"]) == 2


def test_environment_selects_the_backend_checkpoint_and_device(checkpoints, monkeypatch):
    monkeypatch.setenv("ADASTATE_BACKEND", "wan")
    monkeypatch.setenv(wan.CHECKPOINT_ENV, str(checkpoints[0]))
    assert load_backend(None, None, "cpu").name == "wan"
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    backend = load_backend()
    assert backend.name == "wan" and backend.device == torch.device("cpu") and backend.notice.startswith("wan")


def test_a_bad_device_is_a_clear_error(checkpoints, monkeypatch, capsys):
    from adastate.cli import main

    monkeypatch.setenv(DEVICE_ENV, "tpu")
    with pytest.raises(ValueError, match=r"\$ADASTATE_DEVICE must be one of cpu, cuda .*got 'tpu'"):
        load_backend("wan", checkpoints[0])
    with pytest.raises(ValueError, match="the device must be one of cpu, cuda .*got 'gpu'"):
        load_backend("tiny", None, "gpu")
    assert main(["generate", "--backend", "wan", "--checkpoint", str(checkpoints[0]), "--prompt", PROMPT,
                 "--out", "never.mp4"]) == 2
    assert "error: $ADASTATE_DEVICE must be one of cpu, cuda" in capsys.readouterr().err


# -- failures the app falls back on, and files we refuse ---------------------------------------------

def test_unreachable_hub_is_backend_unavailable_and_falls_back(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BackendUnavailable, match="cannot fetch nobody-here/no-such-wan from the Hugging Face Hub"):
        load_backend("wan", "nobody-here/no-such-wan", "cpu")
    assert issubclass(BackendUnavailable, ValueError)
    backend, notice = load_backend_or_fallback("wan", "nobody-here/no-such-wan", "cpu")
    assert backend.name == "tiny"
    assert notice.startswith("the wan backend is unavailable (cannot fetch")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_no_gpu_is_backend_unavailable(checkpoints, monkeypatch):
    with pytest.raises(BackendUnavailable, match="needs a CUDA GPU"):
        load_backend("wan", checkpoints[0], None)
    with pytest.raises(BackendUnavailable, match="no CUDA GPU"):
        load_backend("wan", checkpoints[0], "cuda")
    monkeypatch.setenv(DEVICE_ENV, "cuda")  # asked for on purpose, for either backend
    for name in ("wan", "tiny"):
        with pytest.raises(BackendUnavailable, match=r"\$ADASTATE_DEVICE is 'cuda' but no CUDA GPU is visible"):
            load_backend(name, checkpoints[0] if name == "wan" else None)


def test_missing_local_files_are_not_looked_up_on_the_hub(tmp_path):
    for missing in (tmp_path / "nothing", "weights/missing.safetensors", "./owner/name"):
        with pytest.raises(CheckpointError, match="checkpoint not found"):
            load_backend("wan", missing, "cpu")


def test_pickles_are_refused_and_the_documented_conversion_works(checkpoints, tmp_path, monkeypatch):
    folder, single = checkpoints
    monkeypatch.setenv(wan.BASE_ENV, str(folder))
    generator = {f"model.{k}": v for k, v in strip_wrappers(load_file(single)).items()}
    pickled = tmp_path / "self_forcing_dmd.pt"
    torch.save({"generator": generator, "generator_ema": generator}, pickled)
    with pytest.raises(CheckpointError, match="not a safetensors file.*weights_only=True"):
        load_backend("wan", pickled, "cpu")

    recipe = re.search(r'python -c "(.*?)" \(see', wan.PICKLE_HINT).group(1)
    recipe = recipe.replace("IN.pt", str(pickled)).replace("OUT.safetensors", str(tmp_path / "converted.safetensors"))
    exec(recipe, {})
    backend = load_backend("wan", tmp_path / "converted.safetensors", "cpu", "static")
    assert backend.notice == "wan backend: static first-frame anchor (Self-Forcing)"


def test_gpu_duration():
    durations = [wan.gpu_duration(n) for n in (1, 8, 16, 64, 10_000)]
    assert durations == sorted(durations) and durations[0] >= 20 and durations[-1] == wan.GPU_MAX_SECONDS
    assert wan.gpu_duration(16) == 44  # 20 s setup + 16 x 1.5 s
    assert wan.gpu_duration(wan.max_chunks_for()) <= wan.GPU_MAX_SECONDS
    with pytest.raises(ValueError):
        wan.gpu_duration(0)
