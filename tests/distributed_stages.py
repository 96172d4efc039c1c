"""Run by tests/test_accelerate.py under `accelerate launch` with 2 processes: a few steps of the
teacher, causal and DMD stages on tiny synthetic data (and of the VAE stage on rendered worlds),
recording on every rank what it trained on (a digest of each batch and each rollout) and the
weights after every optimiser step.

    accelerate launch --multi_gpu --num_processes 2 tests/distributed_stages.py DATA OUT    (no GPU: 2 CPU processes)
writes OUT/rank0.json, OUT/rank1.json: {stage: {"batches": [...], "rollouts": [...], "weights": [...]}}.
"""

import hashlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adastate.train import recipe  # noqa: E402
from adastate.vae import TINY_VAE_CONFIG  # noqa: E402
from conftest import TEST_CONFIG  # noqa: E402

STEPS = 2


def digest(*tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def record(log: dict):
    """Wrap the recipe's data, rollout and optimiser step so each appends a digest to log[stage]."""
    batches, rollout, optimise = recipe.batches, recipe.self_forcing_rollout, recipe.optimise

    def recorded_batches(*args, **kwargs):
        for latents, text in batches(*args, **kwargs):
            log["current"]["batches"].append(digest(latents, text))
            yield latents, text

    def recorded_rollout(*args, **kwargs):
        video = rollout(*args, **kwargs)
        log["current"]["rollouts"].append(digest(video))
        return video

    def recorded_optimise(accelerator, optimizer, loss, model):
        optimise(accelerator, optimizer, loss, model)
        log["current"]["weights"].append(digest(*accelerator.unwrap_model(model).parameters()))

    recipe.batches, recipe.self_forcing_rollout, recipe.optimise = recorded_batches, recorded_rollout, recorded_optimise


def main(data: str, out: str):
    from accelerate import PartialState

    log = {}
    record(log)
    common = dict(data=data, steps=STEPS, batch_size=2, chunks=2, lr=1e-3, model=dict(TEST_CONFIG),
                  log_every=1, save_every=STEPS)
    stages = [("teacher", {}), ("causal", {"init": f"{out}/teacher"}),
              ("dmd", {"init": f"{out}/causal", "teacher": f"{out}/teacher", "fake_updates": 1,
                      "regression_weight": 0.5}),  # the regression term joins the same backward
              ("vae", {"vae_model": dict(TINY_VAE_CONFIG, hidden_channels=[16, 16], res_blocks=1), "size": 16})]
    for stage, extra in stages:
        log[stage] = log["current"] = {"batches": [], "rollouts": [], "weights": []}
        recipe.train(recipe.TrainConfig(stage=stage, out=f"{out}/{stage}", **common, **extra))
    del log["current"]
    state = PartialState()
    Path(out, f"rank{state.process_index}.json").write_text(json.dumps(
        {"processes": state.num_processes, "distributed_type": state.distributed_type.name, "backend": state.backend,
         **log}))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(*sys.argv[1:])
