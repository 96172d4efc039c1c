"""The training recipe of the embedded model, stage by stage (`python -m adastate train STAGE`).

    vae      the small video autoencoder, on rendered worlds; then its latent mean/std
    decoder  the VAE's decoder fine-tuned alone against a patch discriminator (the encoder, and so
             the latents every later stage trains on, stay as they are): texture and crisp edges
    data     latent clips (+ caption token states) of many worlds, encoded once
    teacher  a bidirectional flow-matching DiT on those clips
    causal   the causal student, initialised from the teacher with the teacher-forced diffusion
             loss (cheaper than regressing ODE trajectories, which would need many teacher
             sampling runs on this CPU, and it already teaches the block-causal cache layout)
    dmd      Self-Forcing training: the student rolls out on its own cache, DMD against the teacher
             (real score) and a fake score trained alongside, with horizon weights
    ship     copy a student (--init) and the VAE (--vae) into --out with a model card
    snapshot mid-campaign weights: the model of --init (e.g. the teacher) and the VAE (--vae) into
             --out, with a card of how far every stage got and how to continue

Each stage is a plain loop under `accelerate` (so `accelerate launch` runs it on several GPUs),
checkpoints every `save_every` steps into its folder, and resumes from the last checkpoint. On N
processes every rank draws its own batches and noise (`rank_generator`), starts from the same
weights, runs its forward through the prepared model (`Objective` where the forward is more than
the model's own) so that gradients are averaged across ranks, and only the main process writes
logs and checkpoints.
"""

import copy
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from ..model import TINY_CONFIG, CacheLayout, CausalWanTransformer
from ..sampling import DEFAULT_SHIFT, shifted_sigmas
from ..teacher import guided_x0
from ..vae import TINY_VAE_CONFIG, TinyVideoVAE, frames_to_video
from .losses import (PatchDiscriminator, discriminator_loss, dmd_loss, flow_matching_loss, generator_loss,
                     horizon_weights, noised, video_frames)
from .rollout import self_forcing_rollout, teacher_forced_loss

STAGES = ("vae", "decoder", "data", "teacher", "causal", "dmd", "ship", "snapshot")


@dataclass
class TrainConfig:
    stage: str
    out: str                       # this stage's folder
    steps: int = 1000
    batch_size: int = 4
    lr: float = 2e-4
    seed: int = 0
    anchor: str = "adaptive"       # causal / dmd: which student
    chunks: int = 4                # clip / rollout length in chunks (longer than the window)
    rollout_chunks: int = 0        # dmd: roll out up to this many chunks, DMD (and gradients) on the last `chunks`
                                   # of a rollout of random length from `chunks` on (0: exactly `chunks`)
    chunk_frames: int = 3
    window_chunks: int = 1
    alpha: float = 2.0             # horizon weight exponent (paper: 2 best at 5 s, 4 at 30 s)
    guidance: float = 3.0          # classifier-free guidance of the real score
    fake_updates: int = 2          # fake-score updates per student update (DMD2 uses 5)
    regression_weight: float = 0.0  # dmd: weight of the causal stage's teacher-forced loss on data, added to the
                                   # DMD loss (DMD alone wore down the progression the causal stage learned)
    dmd_sigma_shift: float = DEFAULT_SHIFT  # dmd: noise levels of the DMD loss and the fake score's updates warped by
                                   # this shift. At 5 most draws are near pure noise, where the guided teacher
                                   # predicts the caption's typical look; a smaller shift spends DMD on detail
    caption_dropout: float = 0.1   # teacher: learn the unconditional score for guidance
    clips: int = 512               # data: how many clips
    mirror: bool = False           # data: add each clip mirrored, captioned with the opposite pan
    size: int = 64                 # data/vae: video size in pixels
    data: str = ""                 # teacher/causal/dmd: the data stage's folder
    vae: str = ""                  # data: the vae stage's folder
    init: str = ""                 # causal: the teacher; dmd: the causal student; teacher: weights to start from;
                                   # decoder: the vae run
    teacher: str = ""              # dmd: the teacher (real score, and the fake score's start)
    model: dict = field(default_factory=lambda: dict(TINY_CONFIG))
    vae_model: dict = field(default_factory=lambda: dict(TINY_VAE_CONFIG))  # vae: architecture
    detail_channels: int = 0       # vae with --init: extend that VAE by this many latent channels from a detail
                                   # encoder (its own encoder frozen, so its latents stay valid)
    edge_weight: float = 1.0       # vae/decoder: L1 on image gradients and frame differences (sharp, moving)
    equivariance: float = 0.0      # vae: weight of decoding shifted or shrunk latents as the shifted or shrunk
                                   # video (EQ-VAE). Unregularised detail codes change wholesale when the picture
                                   # moves by a pixel; codes that move with the picture are learnt faster, but at
                                   # weight 1 they keep little detail (benchmarks/RESULTS.md, "VAE")
    gan_weight: float = 0.1        # decoder: weight of the adversarial loss, relative to the reconstruction loss
                                   # (their gradients balanced at the decoder's last layer)
    gan_start: int = 0             # decoder: steps of reconstruction loss alone before the adversarial loss joins
                                   # (the discriminator trains from the first step, so it is not random then)
    sigma_shift: float = DEFAULT_SHIFT  # teacher/causal: training noise levels warped by this shift
    logit_normal: bool = False     # teacher/causal: logit-normal instead of uniform noise levels
    ema: float = 0.0               # teacher: decay of an EMA of the weights, saved as the model (0: none)
    bf16: bool = False             # teacher/causal/dmd: bfloat16 autocast (weights, norms, optimiser stay float32):
                                   # 1.4x on a CPU with avx512_bf16, far slower without (benchmarks/RESULTS.md,
                                   # "Training throughput")
    warmup: int = 0                # steps of linear learning-rate warm-up
    lr_floor: float = 1.0          # cosine decay to lr * lr_floor at the last step (1: constant)
    save_every: int = 100
    log_every: int = 10


def sample_sigmas(batch: int, generator: torch.Generator | None = None, shift: float = DEFAULT_SHIFT,
                  logit_normal: bool = False) -> torch.Tensor:
    """Training noise levels: u uniform (or logit-normal: most draws mid-range, where a small
    model's learning signal is) warped by the sampling shift, so training spends its effort where
    the sampling steps are."""
    u = torch.sigmoid(torch.randn(batch, generator=generator)) if logit_normal else torch.rand(batch, generator=generator)
    return shift * u / (1 + (shift - 1) * u)


# -- bookkeeping --------------------------------------------------------------------------------

class Run:
    """A stage's folder: log.jsonl of losses, checkpoints of models and optimisers, resume. Only
    the main process writes; every process reads (resume)."""

    def __init__(self, config: TrainConfig, accelerator: Accelerator):
        self.config, self.dir = config, Path(config.out)
        self.writes = accelerator.is_main_process
        if self.writes:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "train_config.json").write_text(json.dumps(asdict(config), indent=2))
        self.started = time.time()

    def log(self, step: int, **values):
        if not self.writes:
            return
        values = {"step": step, "seconds": round(time.time() - self.started, 1), **values}
        with open(self.dir / "log.jsonl", "a") as f:
            f.write(json.dumps(values) + "\n")
        print(json.dumps(values), flush=True)

    def save(self, step: int, models: dict, optimizers: dict):
        if not self.writes:
            return
        for name, model in models.items():
            model.save_pretrained(self.dir / name)
        save_file({f"{name}/{k}": v for name, opt in optimizers.items() for k, v in optimizer_tensors(opt).items()},
                  self.dir / "optimizer.safetensors")
        (self.dir / "progress.json").write_text(json.dumps({"step": step}))

    def resume(self, models: dict, optimizers: dict) -> int:
        progress = self.dir / "progress.json"
        if not progress.exists():
            return 0
        for name, model in models.items():
            model.load_state_dict(load_file(self.dir / name / "diffusion_pytorch_model.safetensors"))
        state = load_file(self.dir / "optimizer.safetensors")
        for name, opt in optimizers.items():
            load_optimizer_tensors(opt, {k.split("/", 1)[1]: v for k, v in state.items() if k.startswith(name + "/")})
        return json.loads(progress.read_text())["step"]


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict:
    """Adam's moments and step counts as flat tensors (safetensors, not pickle)."""
    out = {}
    for index, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            out[f"{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return out


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict):
    state_dict = opt.state_dict()
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state_dict["state"].setdefault(int(index), {})[key] = value
    opt.load_state_dict(state_dict)


def load_clips(folder: str) -> dict:
    return load_file(Path(folder) / "clips.safetensors")


def batches(clips: dict, batch_size: int, generator: torch.Generator, frames: int | None = None):
    """Endless random batches of (latents, caption states): `frames`-long windows (default: whole
    clips) starting anywhere in the stored clips, in float32."""
    latents, text = clips["latents"], clips["text"]
    text_index = clips.get("text_index", torch.arange(len(text)))
    n, stored = latents.shape[0], latents.shape[2]
    frames = frames or stored
    if frames > stored:
        raise ValueError(f"clips of {frames} latent frames were asked for; the data holds {stored}")
    while True:
        index = torch.randint(n, (batch_size,), generator=generator).tolist()
        start = torch.randint(stored - frames + 1, (batch_size,), generator=generator).tolist()
        window = torch.stack([latents[i, :, s:s + frames] for i, s in zip(index, start)])
        yield window.float(), text[text_index[index]].float()


# Rank r draws from seed + r * stride. torch's CPU generator keeps only a seed's low 32 bits, so
# the stride is odd and below 2**32: ranks' seeds stay distinct modulo 2**32.
RANK_SEED_STRIDE = 2**31 - 1


def rank_seed(seed: int, accelerator: Accelerator) -> int:
    """`seed` on the main process (a single process draws as it always did), another on every other rank."""
    return seed + RANK_SEED_STRIDE * accelerator.process_index


def rank_generator(config: TrainConfig, accelerator: Accelerator) -> torch.Generator:
    """This process's data and noise: each rank its own. Initial weights come from
    torch.manual_seed(config.seed), the same on every rank."""
    return torch.Generator().manual_seed(rank_seed(config.seed, accelerator))


def on_device(accelerator: Accelerator, batch):
    return tuple(t.to(accelerator.device) for t in batch)


class Objective(torch.nn.Module):
    """A model behind a function of it (a teacher-forced loss, a rollout, a reconstruction), so that
    `accelerator.prepare` wraps the whole computation: every forward the function makes runs inside
    the prepared module's forward, and on N processes backward averages the gradients of all ranks.
    Checkpoints save `model` itself."""

    def __init__(self, model: torch.nn.Module, function):
        super().__init__()
        self.model, self.function = model, function

    def forward(self, *args):
        return self.function(self.model, *args)


def drop_captions(text: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    keep = (torch.rand(text.shape[0], generator=generator) >= p).to(text)
    return text * keep[:, None, None]


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to `lr_floor` of the peak."""
    progress = max(0, step - config.warmup) / max(1, config.steps - config.warmup)
    decay = config.lr_floor + (1 - config.lr_floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * min(1.0, step / max(1, config.warmup)) * decay


def loop(run: Run, accelerator: Accelerator, models: dict, optimizers: dict, step_fn):
    """Run `step_fn(step) -> dict of losses` from the last checkpoint to config.steps."""
    config = run.config
    models = {k: accelerator.unwrap_model(m) for k, m in models.items()}  # checkpoints hold the bare models
    start = run.resume(models, optimizers)
    for step in range(start + 1, config.steps + 1):
        for optimizer in optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step)
        losses = step_fn(step)
        if step % config.log_every == 0 or step == config.steps:
            run.log(step, **{k: float(v.detach()) for k, v in losses.items()})
        if step % config.save_every == 0 or step == config.steps:
            run.save(step, models, optimizers)
            accelerator.wait_for_everyone()  # the next stage (or a resume) reads what the main process wrote


def native_bfloat16(device: torch.device) -> bool:
    """Whether bfloat16 matmuls run on their own units: a CUDA device, or a CPU with avx512_bf16 or AMX.
    Elsewhere PyTorch emulates them (an AVX2-only CPU: a 512x512 matmul 31x slower than float32)."""
    return device.type != "cpu" or torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def autocast(config: TrainConfig, accelerator: Accelerator):
    """bfloat16 autocast when `config.bf16` (here rather than accelerate's mixed_precision, which is
    fixed once per process, and a second stage in one process would raise)."""
    return torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=config.bf16)


def optimise(accelerator, optimizer, loss, model):
    optimizer.zero_grad(set_to_none=True)
    accelerator.backward(loss)
    accelerator.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


# -- stages -------------------------------------------------------------------------------------

def image_gradients(video: torch.Tensor) -> list[torch.Tensor]:
    """Differences along x, y and time of video [B, 3, T, H, W]: edges, texture and motion."""
    return [video.diff(dim=-1), video.diff(dim=-2), video.diff(dim=2)]


def random_world(config: TrainConfig, generator: torch.Generator):
    """A world seed (below the held-out ones), its spec, and a start frame anywhere up to 20000,
    so that late scenes are seen too."""
    from ..data import sample_world_spec

    seed = int(torch.randint(10**9, (1,), generator=generator))
    start = int(torch.randint(20000, (1,), generator=generator))
    return seed, sample_world_spec(seed, config.size, config.size), start


def world_clips(config: TrainConfig, generator: torch.Generator, frames: int, device) -> torch.Tensor:
    """A batch of `frames`-long clips of random worlds from random starts, video [B, 3, T, H, W]."""
    from ..data import World

    clips = []
    for _ in range(config.batch_size):
        _, spec, start = random_world(config, generator)
        clips.append(frames_to_video(World(spec).render(start, frames)))
    return torch.stack(clips).to(device)


def reconstruction_losses(recon: torch.Tensor, video: torch.Tensor) -> dict:
    """L1, L1 of edges and frame differences, and PSNR (logged) of a reconstruction."""
    edges = sum((a - b).abs().mean() for a, b in zip(image_gradients(recon), image_gradients(video)))
    psnr = 10 * torch.log10(4 / ((recon.detach() - video) ** 2).mean())  # peak-to-peak 2 in [-1, 1]
    return {"l1": (recon - video).abs().mean(), "edges": edges, "psnr": psnr}


def shifted(x: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """x [B, C, T, H, W] (a video or its latents) moved by (dx, dy) of its width and height, with
    an eighth of the size cropped on every side (more than the shift: no border is left in it)."""
    b, c, t, h, w = x.shape
    theta = torch.tensor([[1.0, 0.0, -2 * dx], [0.0, 1.0, -2 * dy]]).expand(b, 2, 3).to(x)
    grid = F.affine_grid(theta, [b, c * t, h, w], align_corners=False)
    y = F.grid_sample(x.flatten(1, 2), grid, mode="bilinear", align_corners=False).view(b, c, t, h, w)
    return y[..., h // 8:h - h // 8, w // 8:w - w // 8]


def equivariance_transform(generator: torch.Generator):
    """A random transform that a video [B, 3, T, H, W] and its latents [B, C, f, h, w] should
    undergo alike, as a function of either: a shift by up to 3 pixels along each axis at 64 px
    (the pan between two frames; a fraction of a latent cell), or a shrink to 1/2 or 3/4."""
    kind = int(torch.randint(3, (1,), generator=generator))
    if kind:
        scale = (0.5, 0.75)[kind - 1]

        def shrink(x):
            y = F.interpolate(x.flatten(1, 2), scale_factor=scale, mode="bilinear", antialias=True)
            return y.view(*x.shape[:3], *y.shape[-2:])
        return shrink
    dx, dy = (torch.randint(-3, 4, (2,), generator=generator) / 64).tolist()
    return lambda x: shifted(x, dx, dy)


def train_vae(config: TrainConfig, accelerator: Accelerator):
    """A VAE from scratch, or (`init`) a trained one extended with `detail_channels`: then only the
    detail encoder and the decoder learn, and the first channels keep their latents and statistics."""
    run = Run(config, accelerator)
    generator = rank_generator(config, accelerator)
    torch.manual_seed(config.seed)
    if config.init:
        if config.detail_channels <= 0:
            raise ValueError("extending a VAE (--init) needs --detail-channels > 0")
        vae = TinyVideoVAE.extended(TinyVideoVAE.from_pretrained(Path(config.init) / "vae"), config.detail_channels)
        vae.encoder.requires_grad_(False)
    else:
        vae = TinyVideoVAE(latent_channels=config.model["in_channels"], **config.vae_model)
    tf = vae.config.temporal_factor
    if config.equivariance and (config.size // vae.config.spatial_factor) % 8:
        raise ValueError(f"--equivariance crops an eighth of the latents on every side: a {config.size}-px video's "
                         f"latents must be a multiple of 8 wide (video size a multiple of {8 * vae.config.spatial_factor})")
    optimizer = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=config.lr)

    def reconstruct(model, video, transform):
        """The reconstruction, and (with `transform`) the decoded transformed latents."""
        mean, logvar = model.encode_moments(video)
        z = (mean + torch.randn_like(mean) * (0.5 * logvar).exp() - model.mean) / model.std
        return model.decode(z), model.decode(transform(z)) if transform else None, mean, logvar

    autoencoder, optimizer = accelerator.prepare(Objective(vae, reconstruct), optimizer)

    def clip_batch():
        return world_clips(config, generator, tf, accelerator.device)

    def step_fn(step):
        video = clip_batch()
        transform = equivariance_transform(generator) if config.equivariance else None
        recon, moved, mean, logvar = autoencoder(video, transform)
        losses = reconstruction_losses(recon, video)
        losses["kl"] = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).mean()
        losses["loss"] = losses["l1"] + config.edge_weight * losses["edges"] + 1e-4 * losses["kl"]
        if transform:
            moved = reconstruction_losses(moved, transform(video))
            losses["equivariance"] = moved["l1"] + config.edge_weight * moved["edges"]
            losses["loss"] = losses["loss"] + config.equivariance * losses["equivariance"]
        optimise(accelerator, optimizer, losses["loss"], autoencoder)
        return losses

    loop(run, accelerator, {"vae": vae}, {"vae": optimizer}, step_fn)
    if not accelerator.is_main_process:
        return
    # Normalise the new latents to zero mean / unit std per channel, measured on fresh clips; an
    # extended VAE's first channels keep the statistics that earlier models were trained with.
    model = vae.eval()
    kept = model.config.latent_channels - model.config.detail_channels if config.init else 0
    with torch.no_grad():
        z = torch.cat([model.encode_moments(clip_batch())[0] for _ in range(16)])
    mean, std = model.mean.flatten().clone(), model.std.flatten().clone()
    mean[kept:], std[kept:] = z.mean(dim=(0, 2, 3, 4))[kept:], z.std(dim=(0, 2, 3, 4))[kept:]
    model.register_to_config(latent_mean=mean.tolist(), latent_std=std.tolist())
    model.mean.copy_(mean.view(1, -1, 1, 1, 1))
    model.std.copy_(std.view(1, -1, 1, 1, 1))
    model.save_pretrained(run.dir / "vae")
    run.log(config.steps, latent_mean=mean.tolist(), latent_std=std.tolist())


def train_decoder(config: TrainConfig, accelerator: Accelerator):
    """Fine-tune the decoder of the VAE run `init`. Its encoder is frozen, so the latents stay what
    the data, the teacher and the students were trained on; the decoder learns to draw them with
    the texture and edges that an L1 loss averages away, against a patch discriminator on frames."""
    run = Run(config, accelerator)
    generator = rank_generator(config, accelerator)
    torch.manual_seed(config.seed)
    vae = TinyVideoVAE.from_pretrained(Path(config.init) / "vae")
    vae.requires_grad_(False)
    vae.decoder.requires_grad_(True)
    discriminator = PatchDiscriminator()
    # GAN-style Adam: a short momentum memory, as the two players' targets keep moving
    decoder_opt = torch.optim.AdamW(vae.decoder.parameters(), lr=config.lr, betas=(0.5, 0.9), weight_decay=0.0)
    discriminator_opt = torch.optim.AdamW(discriminator.parameters(), lr=config.lr, betas=(0.5, 0.9),
                                          weight_decay=0.0)

    def reconstruct(model, video):
        """Decode a posterior sample, as the VAE was trained: a decoder robust to latents near the mean."""
        with torch.no_grad():
            mean, logvar = model.encode_moments(video)
            z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        return model.decode((z - model.mean) / model.std)

    autoencoder, critic, decoder_opt, discriminator_opt = accelerator.prepare(
        Objective(vae, reconstruct), discriminator, decoder_opt, discriminator_opt)

    def step_fn(step):
        video = world_clips(config, generator, vae.config.temporal_factor, accelerator.device)
        recon = autoencoder(video)
        real, fake = video_frames(video), video_frames(recon)
        losses = {"discriminator": discriminator_loss(critic(real), critic(fake.detach()))}
        optimise(accelerator, discriminator_opt, losses["discriminator"], critic)
        losses |= reconstruction_losses(recon, video)
        losses["loss"] = losses["l1"] + config.edge_weight * losses["edges"]
        if step > config.gan_start:
            losses["adversarial"] = generator_loss(critic(fake))
            losses["balance"] = balance(losses["loss"], losses["adversarial"], vae.decoder[-1].weight)
            losses["loss"] = losses["loss"] + config.gan_weight * losses["balance"] * losses["adversarial"]
        optimise(accelerator, decoder_opt, losses["loss"], autoencoder)
        return losses

    loop(run, accelerator, {"vae": vae, "discriminator": discriminator},
         {"vae": decoder_opt, "discriminator": discriminator_opt}, step_fn)


def balance(reconstruction: torch.Tensor, adversarial: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """How much the adversarial loss must be scaled to pull on the decoder's last layer as hard as
    the reconstruction loss does (VQGAN's adaptive weight). A fixed weight let the discriminator
    take over within 200 steps: stripes and coloured fringes, PSNR and realism both worse
    (benchmarks/RESULTS.md, "VAE")."""
    pull = [torch.autograd.grad(loss, last_layer, retain_graph=True)[0].norm() for loss in (reconstruction, adversarial)]
    return (pull[0] / (pull[1] + 1e-4)).clamp(max=1e4).detach()


def build_data(config: TrainConfig, accelerator: Accelerator):
    """Render `clips` world clips (starting anywhere up to frame 20000, so late scenes are seen),
    encode frames with the VAE and captions with MiniLM.

    `mirror` adds every clip flipped left-right, captioned as the same world panning the other
    way: pairs that differ only in direction, so the text's direction words are the only way to
    tell them apart (a teacher trained without them ignored direction; benchmarks/RESULTS.md).
    Built once, by the main process.
    """
    from ..data import World, caption
    from ..text import MiniLMTextEncoder

    if not accelerator.is_main_process:
        return
    run = Run(config, accelerator)
    vae = TinyVideoVAE.from_pretrained(Path(config.vae) / "vae").eval()
    encoder = MiniLMTextEncoder()
    generator = torch.Generator().manual_seed(config.seed)
    frames = config.chunks * config.chunk_frames * vae.config.temporal_factor
    latents, captions = [], []
    with torch.no_grad():
        for i in range(config.clips):
            seed, spec, start = random_world(config, generator)
            video = frames_to_video(World(spec).render(start, frames))
            views = [(video, spec)]
            if config.mirror:
                views.append((video.flip(-1), replace(spec, direction=-spec.direction)))
            for view, view_spec in views:
                latents.append(vae.encode(view[None])[0].half())
                captions.append(caption(view_spec, seed, start=start, frames=frames))  # what this clip shows
            if (i + 1) % 50 == 0:
                run.log(i + 1, clips=i + 1)
        # captions repeat (a few wordings of a few attributes): encode each distinct one once
        distinct = sorted(set(captions))
        text = torch.stack([encoder(c)[0] for c in distinct]).half()
    text_index = torch.tensor([distinct.index(c) for c in captions])
    save_file({"latents": torch.stack(latents).contiguous(), "text": text.contiguous(), "text_index": text_index},
              run.dir / "clips.safetensors")
    (run.dir / "captions.json").write_text(json.dumps(captions, indent=1))


def train_teacher(config: TrainConfig, accelerator: Accelerator):
    run = Run(config, accelerator)
    generator = rank_generator(config, accelerator)
    torch.manual_seed(config.seed)
    clips = load_clips(config.data)
    if config.init:  # start from earlier weights (a campaign snapshot); a checkpoint in --out still wins
        teacher = start_from(config.init, clips)
    else:  # the data's VAE decides the latent channels
        channels = clips["latents"].shape[1]
        teacher = CausalWanTransformer(**dict(config.model, in_channels=channels, out_channels=channels))
    # with an EMA, the average is what later stages load (`transformer/`), the trained weights `online/`
    ema = copy.deepcopy(teacher).requires_grad_(False).to(accelerator.device) if config.ema else None
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=config.lr, weight_decay=0.0)
    teacher, optimizer = accelerator.prepare(teacher, optimizer)
    data = batches(clips, config.batch_size, generator, config.chunks * config.chunk_frames)

    def step_fn(step):
        latents, text = on_device(accelerator, next(data))
        text = drop_captions(text, config.caption_dropout, generator)
        sigma = sample_sigmas(latents.shape[0], generator, config.sigma_shift, config.logit_normal).to(latents)
        noise = torch.randn(latents.shape, generator=generator).to(latents)
        with autocast(config, accelerator):
            velocity = teacher(noised(latents, noise, sigma), 1000 * sigma, text).sample
        loss = flow_matching_loss(velocity, latents, noise)
        optimise(accelerator, optimizer, loss, teacher)
        if ema is not None:
            update_ema(ema, accelerator.unwrap_model(teacher), min(config.ema, (1 + step) / (10 + step)))
        return {"loss": loss}

    if ema is None:
        loop(run, accelerator, {"transformer": teacher}, {"transformer": optimizer}, step_fn)
    else:
        loop(run, accelerator, {"transformer": ema, "online": teacher}, {"online": optimizer}, step_fn)


def start_from(folder: str, clips: dict) -> CausalWanTransformer:
    """The transformer of the stage folder `folder`, widened to the latent channels of `clips`."""
    return widened(CausalWanTransformer.from_pretrained(Path(folder) / "transformer"), clips["latents"].shape[1])


def widened(model: CausalWanTransformer, channels: int) -> CausalWanTransformer:
    """`model` taking and predicting `channels` latent channels, for the latents of its VAE extended
    with detail channels (appended after the ones it knows, `TinyVideoVAE.extended`). The new
    inputs start with zero weight and the new outputs at zero, so the widened model computes
    exactly what `model` did on its channels and learns the detail from there."""
    known = model.config.in_channels
    if channels == known:
        return model
    if channels < known or model.config.out_channels != known:
        raise ValueError(f"cannot widen a model of {known} latent channels to {channels}")
    wide = CausalWanTransformer.from_config(model.config, in_channels=channels, out_channels=channels)
    state = model.state_dict()
    patch = wide.patch_embedding.weight.detach().zero_()
    patch[:, :known] = state["patch_embedding.weight"]
    # proj_out's outputs are (patch position, channel), the channel fastest: widen each position
    out_weight = wide.proj_out.weight.detach().zero_()
    out_weight.view(-1, channels, out_weight.shape[1])[:, :known] = state["proj_out.weight"].view(-1, known, out_weight.shape[1])
    out_bias = wide.proj_out.bias.detach().zero_()
    out_bias.view(-1, channels)[:, :known] = state["proj_out.bias"].view(-1, known)
    state.update({"patch_embedding.weight": patch, "proj_out.weight": out_weight, "proj_out.bias": out_bias})
    wide.load_state_dict(state)
    return wide


@torch.no_grad()
def update_ema(ema, model, decay: float):
    for average, weight in zip(ema.parameters(), model.parameters()):
        average.lerp_(weight, 1 - decay)


def layout_of(config: TrainConfig) -> CacheLayout:
    return CacheLayout(config.chunk_frames, 1, config.window_chunks)


def causal_loss(config: TrainConfig, generator: torch.Generator, model, text_kv, latents: torch.Tensor):
    """The causal stage's teacher-forced loss, with its noise levels (--sigma-shift, --logit-normal):
    the causal stage's objective, and DMD's regression term."""
    return teacher_forced_loss(model, text_kv, latents, layout_of(config), config.anchor == "adaptive",
                               lambda b: sample_sigmas(b, generator, config.sigma_shift,
                                                       config.logit_normal).to(latents))


def train_causal(config: TrainConfig, accelerator: Accelerator):
    run = Run(config, accelerator)
    generator = rank_generator(config, accelerator)
    torch.manual_seed(rank_seed(config.seed, accelerator))  # the loss's own noise (randn_like)
    clips = load_clips(config.data)
    student = start_from(config.init, clips)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=0.0)

    def loss_of(model, latents, text):
        return causal_loss(config, generator, model, model.encode_text(text), latents)

    objective, optimizer = accelerator.prepare(Objective(student, loss_of), optimizer)
    data = batches(clips, config.batch_size, generator)

    def step_fn(step):
        latents, text = on_device(accelerator, next(data))  # outside autocast: it refuses the stored float16
        with autocast(config, accelerator):
            loss = objective(latents, text)
        optimise(accelerator, optimizer, loss, objective)
        return {"loss": loss}

    loop(run, accelerator, {"transformer": student}, {"transformer": optimizer}, step_fn)


def train_dmd(config: TrainConfig, accelerator: Accelerator):
    run = Run(config, accelerator)
    generator = rank_generator(config, accelerator)
    clips = load_clips(config.data)
    student = start_from(config.init, clips)
    teacher = CausalWanTransformer.from_pretrained(Path(config.teacher) / "transformer").eval().requires_grad_(False)
    fake = copy.deepcopy(teacher).train().requires_grad_(True)
    teacher.to(accelerator.device)
    student_opt = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=0.0)
    fake_opt = torch.optim.AdamW(fake.parameters(), lr=config.lr, weight_decay=0.0)
    data = batches(clips, config.batch_size, generator)
    clip = clips["latents"].shape
    layout, adaptive = layout_of(config), config.anchor == "adaptive"
    sigmas = shifted_sigmas()
    weights = horizon_weights(config.chunks * config.chunk_frames, config.alpha)
    block_shape = (config.batch_size, clip[1], config.chunk_frames + (1 if adaptive else 0), clip[3], clip[4])
    longest = config.rollout_chunks or config.chunks
    if longest < config.chunks:
        raise ValueError(f"rollout_chunks must be 0 or at least chunks ({config.chunks}), got {config.rollout_chunks}")

    def rollout_of(model, text_kv, step):
        """The student's last `chunks` chunks of a rollout that ends at a random chunk up to `rollout_chunks`
        (the chunks before them are context without gradients): so it learns to keep going past the window."""
        length = config.chunks
        if longest > config.chunks:
            length = int(torch.randint(config.chunks, longest + 1, (1,), generator=generator))
        video = self_forcing_rollout(model, text_kv, layout, block_shape, length, sigmas,
                                     seed=rank_seed(config.seed * 1_000_003 + step, accelerator),
                                     generator=generator, grad_chunks=config.chunks)
        return video[:, :, -config.chunks * config.chunk_frames:]

    def student_terms(model, text, step, latents=None):
        """The rollout, and with `latents` the causal stage's loss on them, in one forward (one
        backward through the prepared model). That loss keeps the student's chunks (and the state,
        whose target there is its chunk's last frame) tied to how the data's scenes go on."""
        text_kv = model.encode_text(text)
        video = rollout_of(model, text_kv, step)
        if latents is None:
            return video, None
        return video, causal_loss(config, generator, model, text_kv, latents)

    rollout, fake, student_opt, fake_opt = accelerator.prepare(Objective(student, student_terms), fake, student_opt,
                                                               fake_opt)

    def step_fn(step):
        latents, text = on_device(accelerator, next(data))
        null_text = torch.zeros_like(text)
        losses = {}
        # fake score: flow matching on the student's current outputs (no student gradients). Its
        # updates share one rollout, each with new noise: a fresh rollout per update made a step
        # 1.9x slower (35.6 vs 18.7 s at batch 4, rollouts of up to 4 chunks, 5 fake updates, one
        # thread beside other jobs)
        with torch.no_grad(), autocast(config, accelerator):
            video, _ = rollout(text, step)
        for _ in range(config.fake_updates):
            sigma = sample_sigmas(video.shape[0], generator, config.dmd_sigma_shift).to(video)
            noise = torch.randn(video.shape, generator=generator).to(video)
            with autocast(config, accelerator):
                velocity = fake(noised(video, noise, sigma), 1000 * sigma, text).sample
            fake_loss = flow_matching_loss(velocity, video, noise)
            optimise(accelerator, fake_opt, fake_loss, fake)
            losses["fake"] = fake_loss
        # student: DMD through the chunks that carry gradients, horizon weighted
        with autocast(config, accelerator):
            video, regression = rollout(text, step, latents if config.regression_weight else None)
        sigma = sample_sigmas(video.shape[0], generator, config.dmd_sigma_shift).clamp(0.02, 0.98).to(video)
        noise = torch.randn(video.shape, generator=generator).to(video)
        with torch.no_grad(), autocast(config, accelerator):
            x_t = noised(video, noise, sigma)
            real_x0 = guided_x0(teacher, x_t, sigma, text, null_text, config.guidance)
            fake_x0 = guided_x0(accelerator.unwrap_model(fake), x_t, sigma, text, null_text, 1.0)
        loss = dmd_loss(video, real_x0, fake_x0, weights)
        losses["dmd"] = loss
        if regression is not None:
            losses["regression"] = regression
            loss = loss + config.regression_weight * regression
        optimise(accelerator, student_opt, loss, rollout)
        return losses

    loop(run, accelerator, {"transformer": student, "fake_score": fake},
         {"transformer": student_opt, "fake_score": fake_opt}, step_fn)


def train(config: TrainConfig):
    if config.stage not in STAGES:
        raise ValueError(f"unknown stage {config.stage!r}; choose one of: {', '.join(STAGES)}")
    if config.anchor not in ("adaptive", "static"):
        raise ValueError(f"unknown anchor mode {config.anchor!r}")
    if min(config.sigma_shift, config.dmd_sigma_shift) <= 0:
        raise ValueError(f"noise-level shifts must be positive, got --sigma-shift {config.sigma_shift}, "
                         f"--dmd-sigma-shift {config.dmd_sigma_shift}")
    if config.stage == "ship":
        from .card import ship
        return ship(config.init, config.vae, config.out, config.anchor)
    if config.stage == "snapshot":
        from .card import snapshot
        return snapshot(config.init, config.vae, config.out)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    if config.bf16 and not native_bfloat16(accelerator.device):
        warnings.warn("--bf16 on a CPU without bfloat16 units (no avx512_bf16, no AMX): its matmuls are emulated, "
                      "so a step runs several times slower than in float32 (a DMD step: 87 s instead of 12 s on "
                      "an AVX2 CPU); leave out --bf16 here", stacklevel=2)
    {"vae": train_vae, "decoder": train_decoder, "data": build_data, "teacher": train_teacher, "causal": train_causal,
     "dmd": train_dmd}[config.stage](config, accelerator)
