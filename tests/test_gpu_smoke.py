"""benchmarks/gpu_smoke.py: refuses to run without a GPU, and its measurements run end to end (on the
CPU, at tiny sizes), so that an hour of GPU time is not lost to a bug in the script."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import torch

from conftest import TEST_CONFIG

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_smoke.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_smoke", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_it_says_so_and_writes_nothing(tmp_path):
    out = tmp_path / "smoke.json"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "this machine has none" in done.stderr and "run it on a machine with an H100-class GPU" in done.stderr
    assert not out.exists()


def test_the_measurements_run_end_to_end_on_tiny_sizes():
    smoke = load_script()
    wan_sized = dict(TEST_CONFIG, in_channels=16, out_channels=16)  # Wan's 16 latent channels
    results = smoke.measure(torch.device("cpu"), torch.float32, chunks=3, transformer_config=wan_sized,
                            vae_config=dict(base_dim=8, dim_mult=[1, 2, 2, 2], num_res_blocks=1),
                            video_size=(32, 48), train_model_config=TEST_CONFIG,
                            train_vae_config=dict(smoke.TINY_VAE_CONFIG, hidden_channels=[16, 16], res_blocks=1))
    for mode in ("adaptive", "static"):
        streamed = results["streaming"][mode]
        assert [c["frames"] for c in streamed["chunks"]] == [9, 12, 12]  # Wan's causal VAE: 1 + 4 (f - 1) first
        assert streamed["generated_fps"] > 0 and streamed["first_chunk_seconds"] > 0
        assert streamed["peak_memory_gb"] is None  # measured on CUDA only
        assert results["cold_first_chunk_seconds"][mode] > 0
    assert results["adaptive_static_cost_ratio"] > 0
    assert results["transformer_parameters"] == sum(
        p.numel() for p in smoke.CausalWanTransformer(**wan_sized).parameters())
    stages = results["training"]["stages"]
    assert list(stages) == ["vae", "teacher", "causal", "dmd"]
    assert all(stage["steps"] == 2 and stage["last_losses"] for stage in stages.values())
    assert set(stages["dmd"]["last_losses"]) == {"fake", "dmd"}
