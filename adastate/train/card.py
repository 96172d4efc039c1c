"""Shipping a trained student: weights + VAE into one folder, and a model card that traces every
stage that produced it (config, exact command, steps, wall-clock, loss curves)."""

import json
import shutil
from pathlib import Path


LINKS = ("init", "teacher", "data", "vae")  # the config keys that name the runs a run starts from
LOSSES = ("loss", "dmd", "fake", "regression")  # the log keys that training stages write (plotted, and on the card)


def run_config(folder: Path) -> dict:
    return json.loads((folder / "train_config.json").read_text())


def provenance(*run_dirs) -> list[Path]:
    """The stage folders behind runs, earliest first, following their LINKS. Within a stage, a run
    continued from another run's weights (--init, e.g. DMD resumed from a snapshot) comes after it."""
    links, todo = {}, [Path(d) for d in run_dirs]
    while todo:
        folder = todo.pop()
        if folder in links or not (folder / "train_config.json").exists():
            continue
        config = run_config(folder)
        links[folder] = (config["stage"], [Path(config[key]) for key in LINKS if config.get(key)])
        todo += links[folder][1]

    def generation(folder, seen=()) -> int:
        """0 for a run that starts from nothing, else 1 + the latest run it starts from; weights from
        outside the chain (shipped ones, e.g. the VAE a detail VAE extends) count as a run before it."""
        return 1 + max((generation(link, seen + (folder,)) if link in links else 0
                        for link in links[folder][1] if link not in seen), default=-1)

    order = ["vae", "decoder", "data", "teacher", "causal", "dmd"]
    return sorted(links, key=lambda f: (order.index(links[f][0]), generation(f)))


def read_log(folder: Path) -> list[dict]:
    log = folder / "log.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def checkpoint_step(folder: Path) -> int | None:
    """The step of the checkpoint a run's weights come from (None: a run that keeps no checkpoints)."""
    progress = folder / "progress.json"
    return json.loads(progress.read_text())["step"] if progress.exists() else None


def how_far(run: Path, config: dict) -> str:
    step = checkpoint_step(run)
    return "finished" if step is None or step >= config["steps"] else f"its checkpoint of step {step} of {config['steps']}"


def wall_clock(log: list[dict]) -> float:
    """Seconds spent, summed over the segments of a resumed run (its clock restarts at each resume)."""
    total, last = 0.0, 0.0
    for record in log:
        if record["seconds"] < last:
            total += last
        last = record["seconds"]
    return total + last


def command_of(config: dict) -> str:
    from .recipe import TrainConfig

    defaults = TrainConfig(stage=config["stage"], out=config["out"])
    flags = [f"--{key.replace('_', '-')}" + ("" if value is True else f" {value}") for key, value in config.items()
             if key not in ("stage", "out", "model", "vae_model") and value != getattr(defaults, key)]
    return " ".join(["python -m adastate train", config["stage"], "--out", config["out"], *flags])


def plot_losses(chain: list[Path], path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = {folder: read_log(folder) for folder in chain}
    trained = [folder for folder, log in logs.items() if any(key in r for r in log for key in LOSSES)]  # not data
    fig, axes = plt.subplots(1, len(trained), figsize=(3.4 * len(trained), 2.8), squeeze=False)
    for ax, folder in zip(axes[0], trained):
        log = logs[folder]
        for key in LOSSES:
            points = [(r["step"], r[key]) for r in log if key in r]
            if points:
                ax.plot(*zip(*points), label=key)
        # the run's folder beside its stage: a chain may hold two runs of a stage (a VAE and its extension)
        ax.set_title(f'{run_config(folder)["stage"]} ({folder.name})', fontsize=10)
        ax.set_xlabel("step")
        ax.set_yscale("symlog" if any(r.get(k, 1) <= 0 for r in log for k in LOSSES) else "log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def copy_weights(out: Path, folders: dict):
    """Model folders (config + safetensors) into out/<name>, replacing what was there."""
    for name, source in folders.items():
        if (out / name).exists():
            shutil.rmtree(out / name)
        shutil.copytree(source, out / name)


def stage_lines(chain: list[Path]) -> list[str]:
    """One line per stage: its exact command, the step of the checkpoint its weights come from, its
    wall-clock and the losses last logged up to that step (a stopped run may have logged a few steps
    past its last checkpoint; those steps are not in the weights)."""
    lines = []
    for folder in chain:
        config, log = run_config(folder), read_log(folder)
        step = checkpoint_step(folder)
        if step is None:
            step = log[-1]["step"] if log else "?"
        trained = [record for record in log if {"loss", "dmd"} & set(record) and record["step"] <= step]
        losses = ", ".join(f"{k} {v:.4g}" for k, v in (trained[-1] if trained else {}).items()
                           if k in LOSSES + ("l1", "psnr"))
        lines.append(f"- **{config['stage']}**: `{command_of(config)}` — {step} steps, "
                     f"{wall_clock(log) / 60:.1f} min wall-clock on 2 CPU cores" + (f"; last logged {losses}" if losses else ""))
    return lines


def snapshot(model_run, vae_run, out):
    """Mid-campaign weights that a new machine would lose: the VAE and the newest model of the
    chain behind `model_run` (weights only, no optimiser state) into `out`, each in a folder laid
    out as its run's (weights, train_config.json, log.jsonl), so `--vae out/vae`, `--teacher
    out/teacher` and `--init out/teacher` work as on the runs, with a card that says how far every
    stage got and how to continue it."""
    out, model_run, vae_run = Path(out), Path(model_run), Path(vae_run)
    model_config, vae_config = run_config(model_run), run_config(vae_run)
    stage, vae_stage = model_config["stage"], vae_config["stage"]  # vae_stage: vae, or its decoder fine-tune
    for run, name, model in ((model_run, stage, "transformer"), (vae_run, vae_stage, "vae")):
        copy_weights(out / name, {model: run / model})
        # progress.json: the checkpoint's step, so a card built from the copy says how far it got
        for record in ("train_config.json", "log.jsonl", "progress.json"):
            if (run / record).exists():
                shutil.copy(run / record, out / name / record)
    chain = provenance(model_run, vae_run)
    plot_losses(chain, out / "loss_curves.png")
    lines = ["# AdaState embedded model — training campaign in progress", "",
             f"Weights only, copied from the campaign's runs when work stopped: `{vae_stage}/` "
             f"({how_far(vae_run, vae_config)}) and `{stage}/` ({how_far(model_run, model_config)}; the folder later "
             "stages load with `--init` / `--teacher`). "
             "For continuing the campaign on a new machine: what the demo runs is `assets/tiny-*`, "
             "replaced only by students that beat it on the evaluation.", "",
             "## How far each stage got", "", *stage_lines(chain), "",
             "Each command resumes its run from the last checkpoint in its `--out` folder. If that folder is "
             f"gone (a new machine), the same command with a new `--out` and `--init {out / stage}` starts "
             "from these weights (the optimiser and the learning-rate schedule start afresh); "
             f"`--vae {out / vae_stage}` stands for the VAE run.", "",
             "![loss curves](loss_curves.png)", ""]
    (out / "README.md").write_text("\n".join(lines))


def ship(student_run, vae_run, out, anchor: str):
    """Copy the student's transformer and the VAE into `out` and write its README.md model card."""
    out, student_run = Path(out), Path(student_run)
    copy_weights(out, {"transformer": student_run / "transformer", "vae": Path(vae_run) / "vae"})
    chain = provenance(student_run, vae_run)
    plot_losses(chain, out / "loss_curves.png")
    lines = [f"# AdaState embedded model — {anchor} anchor", "",
             f"A {'self-evolving state' if anchor == 'adaptive' else 'static first-frame anchor'} student of Wan 2.1's "
             "architecture at the tiny CPU size (see `transformer/config.json`), with its small video VAE "
             "(`vae/`), trained by this repository on its procedural worlds (`adastate/data/worlds.py`) with "
             "captions encoded by all-MiniLM-L6-v2. Load with `CausalWanTransformer.from_pretrained(folder + "
             "'/transformer')`, or run `python -m adastate generate --anchor " + anchor + " ...`.", "",
             "## How it was made", "", "Every stage, in order (each resumes from its own checkpoint):", "",
             *stage_lines(chain), "", "![loss curves](loss_curves.png)", ""]
    (out / "README.md").write_text("\n".join(lines))
