"""Training really runs on N devices: `accelerate launch` of 2 processes on the CPU runs a few steps of
the teacher, causal and DMD stages; every rank draws its own batches and rollouts, yet after every
step both ranks hold identical weights (the gradients were synchronised), and each stage's files
are written once."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import TEST_CONFIG
from distributed_stages import STEPS, digest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("teacher", "causal", "dmd")


def synthetic_clips(folder: Path):
    """16 clips of 6 latent frames with 16 captions: random enough that two ranks' batches differ."""
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(16, TEST_CONFIG["in_channels"], 6, 4, 6, generator=g)
    text = torch.randn(16, 5, TEST_CONFIG["text_dim"], generator=g)
    save_file({"latents": latents, "text": text}, folder / "clips.safetensors")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    data, out = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("runs")
    synthetic_clips(data)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               HF_HOME=str(tmp_path_factory.mktemp("hf-home")))  # no accelerate config of this machine's
    # `--cpu --num_processes 2` would start one process (accelerate's multi-CPU launch goes through
    # mpirun); the multi-process launcher starts two, and the recipe's Accelerator, seeing no GPU,
    # puts them on the CPU with gloo
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), str(ROOT / "tests" / "distributed_stages.py"), str(data), str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return out, [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]


def test_two_processes_ran(two_ranks):
    _, ranks = two_ranks
    assert [(r["processes"], r["distributed_type"], r["backend"]) for r in ranks] == [(2, "MULTI_CPU", "gloo")] * 2


@pytest.mark.parametrize("stage", STAGES)
def test_ranks_train_on_different_data_and_hold_identical_weights(two_ranks, stage):
    _, (first, second) = two_ranks
    a, b = first[stage], second[stage]
    assert len(a["batches"]) == len(b["batches"]) >= STEPS
    assert all(x != y for x, y in zip(a["batches"], b["batches"]))  # each rank its own data
    if stage == "dmd":
        assert len(a["rollouts"]) == len(b["rollouts"]) >= 2 * STEPS
        assert all(x != y for x, y in zip(a["rollouts"], b["rollouts"]))  # and its own noise
    # DMD steps two models (fake score, then student) per step
    assert len(a["weights"]) == (2 if stage == "dmd" else 1) * STEPS
    assert a["weights"] == b["weights"]
    assert len(set(a["weights"])) == len(a["weights"])  # every step changed the weights


def test_the_vae_stage_keeps_ranks_in_step(two_ranks):
    _, (first, second) = two_ranks
    weights = first["vae"]["weights"]
    assert len(weights) == STEPS and len(set(weights)) == STEPS and weights == second["vae"]["weights"]


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_is_written_once_by_the_main_process(two_ranks, stage):
    from adastate.model import CausalWanTransformer

    out, (first, _) = two_ranks
    log = [json.loads(line) for line in (out / stage / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == list(range(1, STEPS + 1))  # not once per rank
    model = CausalWanTransformer.from_pretrained(out / stage / "transformer")
    # the weights after the last step (DMD: the student's, stepped after the fake score's)
    assert digest(*model.parameters()) == first[stage]["weights"][-1]
