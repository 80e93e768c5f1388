"""Training the 2D motion denoiser: masked L2 on x0, AdamW, EMA, resume, data-parallel.

Run alone (``mas train``) or data-parallel with torchrun: ``torchrun --nproc_per_node N
-m mas_cli train ...`` (gloo on CPU, NCCL on GPU). Each rank draws its own batches;
the effective batch is ``batch_size x N``. Rank 0 writes the checkpoints.

Files in ``out``: ``model.safetensors`` + ``model.json`` (EMA weights: what sampling
uses), ``train_state.safetensors`` + ``train_state.json`` (raw weights, EMA, optimiser,
step: what resume uses) and ``log.jsonl`` (loss and validation loss over time).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from . import validate
from .atomic import atomic_write
from .catalogue import DEFAULT_CAMERAS
from .checkpoint import load_checkpoint, save_checkpoint
from .dataset import CONFIDENCE_THRESHOLD, MotionData2D
from .device import pick_device
from .diffusion import alpha_bar_schedule, q_sample
from .errors import MasError
from .model import PACE_ANY_SHARE, ModelConfig, MotionDenoiser

DATA_NOTE = "Trained on a data set without a licence note: check the licence of the data before sharing the model."


@dataclass
class TrainConfig:
    steps: int = 20000
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.01
    warmup_steps: int = 500
    ema_decay: float = 0.999
    save_every: int = 1000
    seed: int = 0
    mirror: bool = True
    grad_clip: float = 1.0
    bf16: bool = False  # CPU/GPU autocast to bfloat16 for the forward pass (weights, EMA, optimiser stay float32)
    still_weight: float = 1.0     # how often the stillest windows are drawn against the others (1: as often)
    still_quantile: float = 0.4   # the share of windows that counts as stillest (by mean 2D joint speed)
    noise_weighting: str = "auto"  # or "uniform", "alpha_bar", "min_snr", "v": how each noise level's x0 error
                                   # counts (noise_level_weights); auto: uniform for an x0 model, v for a v model
    velocity_weight: float = 0.0  # weight of the frame-to-frame velocity error next to the position error
    contact_weight: float = 0.0   # weight of the foot-contact loss (masked_contact_loss) next to the position error
    motion_check: int = 64        # 2D samples drawn at each checkpoint to log how alive they are (0: none)
    teacher: str | None = None    # guidance distillation (Meng et al. 2023): learn this model's pace-guided x0
                                  # (scale teacher_guidance) instead of the data's, so that one call does what
                                  # guidance does with two; the model then samples unguided (its card says so)
    teacher_guidance: float | list[float] = 2.0   # or one a pace class
    teacher_away_from: list[str] | None = None    # each class's guidance reference, "any" or a class
                                                  # (sampler.pace_guided); None: all "any"
    teacher_guided_below: list[int] | None = None  # each class guided only at noise steps below this one
                                                   # (sampler.pace_guided's below); None: at every step


def masked_x0_loss(pred: torch.Tensor, x0: torch.Tensor, conf: torch.Tensor,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over confident joints: pred, x0 B x L x J x 2; conf B x L x J (0 on
    padding); each window's errors multiplied by ``weights`` (B) if given."""
    mask = (conf >= CONFIDENCE_THRESHOLD).to(pred.dtype)
    return _weighted_mean(((pred - x0) ** 2).sum(-1), mask, weights)


def masked_velocity_loss(pred: torch.Tensor, x0: torch.Tensor, conf: torch.Tensor,
                         weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error of the frame-to-frame velocity (normalised units a frame) over joints
    confident in both frames; as ``masked_x0_loss``. It weighs what a position error barely
    sees: a foot that glides where it should stand, or frames that alternate."""
    mask = (conf >= CONFIDENCE_THRESHOLD).to(pred.dtype)
    err = (pred[:, 1:] - pred[:, :-1]) - (x0[:, 1:] - x0[:, :-1])
    return _weighted_mean((err ** 2).sum(-1), mask[:, 1:] * mask[:, :-1], weights)


CONTACT_SPEED = 0.25   # m/s in the image plane: a data foot slower than this (over 2 frames) stands


def masked_contact_loss(pred: torch.Tensor, x0: torch.Tensor, conf: torch.Tensor, feet: list[int], still: float,
                        weights: torch.Tensor | None = None) -> torch.Tensor:
    """MDM's foot-contact loss in 2D: the squared velocity of each predicted foot (normalised units a
    frame) where the data's foot stands, i.e. moves less than ``still`` a frame (measured from
    frame f-1 to f+1; confident in all three), averaged as ``masked_x0_loss``. It acts only where a
    foot truly stands, so it pushes against a glide without stilling the rest of the motion
    (the velocity loss over every joint made the model stiller, docs/results.md)."""
    P, X = pred[:, :, feet], x0[:, :, feet]                                   # B, L, K, 2
    ok = (conf[:, :, feet] >= CONFIDENCE_THRESHOLD).to(pred.dtype)
    stands = ((X[:, 2:] - X[:, :-2]).norm(dim=-1) < 2 * still).to(pred.dtype) * ok[:, 2:] * ok[:, 1:-1] * ok[:, :-2]
    v = P[:, 2:] - P[:, :-2]
    return _weighted_mean((v ** 2).sum(-1) / 4, stands, weights)


def _weighted_mean(sq: torch.Tensor, mask: torch.Tensor, weights) -> torch.Tensor:
    """sum(w_b mask sq) / (2 sum(mask)): B x L x J squared errors of 2 coordinates."""
    per_window = (sq * mask).sum((1, 2))
    if weights is not None:
        per_window = per_window * weights.to(sq.dtype)
    return per_window.sum() / (2 * mask.sum().clamp(min=1.0))


def noise_level_weights(alpha_bar: torch.Tensor, kind: str = "uniform",
                        skip_out: torch.Tensor | None = None) -> torch.Tensor:
    """The weight of each noise level's x0 error (T), mean 1.

    uniform: all alike, which lets the highest noise levels dominate the loss (there the best
    x0 is a blurred mean pose and the error is largely irreducible). alpha_bar: w_t =
    alpha_bar_t = SNR / (1 + SNR), the P2 weighting with k = 1, gamma = 1 (Choi et al. 2022)
    written for an x0 model; every level up to mid-way then counts about alike, the noisiest little.
    min_snr: w_t = min(SNR_t, 5), the Min-SNR-5 weighting (Hang et al. 2023) for an x0 model: the
    least noisy levels count most. v: w_t = min(SNR_t + 1, 50), the squared error of a v model's
    output (its x0 error is sqrt(1 - alpha_bar_t) times its v error), capped so that the least noisy
    levels (the lowest 8 of 100 with the cosine schedule), where v is nearly the noise itself, count
    alike and do not take half of the loss (uncapped, t = 0 alone would weigh 46 times the mean).
    The shipped model's x0 error at the least noisy levels is a floor of about 5 cm (0.0086 in
    normalised units squared, against 0.00007 of detector noise): given a nearly clean walk it
    returns feet that glide (docs/results.md). skip: w_t = 1 / c_t^2 for a model with a linear skip
    (``skip_out``, model.py), so that its network's residual counts alike at every level (EDM's weighting).
    """
    if kind == "uniform":
        return torch.ones_like(alpha_bar)
    if kind == "alpha_bar":
        return alpha_bar / alpha_bar.mean()
    if kind == "min_snr":
        w = (alpha_bar / (1 - alpha_bar).clamp(min=1e-12)).clamp(max=5.0)
        return w / w.mean()
    if kind == "v":
        w = (1 / (1 - alpha_bar).clamp(min=1e-12)).clamp(max=50.0)
        return w / w.mean()
    if kind == "skip":
        if skip_out is None:
            raise MasError("--noise-weighting skip needs a model with a linear skip (--skip-radius)")
        w = 1 / skip_out.detach().cpu().to(alpha_bar.dtype).clamp(min=1e-6) ** 2
        return (w / w.mean()).to(alpha_bar.device)
    raise MasError(f"unknown noise weighting {kind!r}; use 'uniform', 'alpha_bar', 'min_snr', 'v' or 'skip'")


def training_loss(model, alpha_bar: torch.Tensor, x0, conf, length, generator=None,
                  level_weights: torch.Tensor | None = None, velocity_weight: float = 0.0,
                  contact=None, teacher=None) -> torch.Tensor:
    """One diffusion training loss: random t, noise x0 to x_t, predict x0 (a self-conditioned model reading
    its own x0 for half the windows; a model with pace classes reading each window's own class); the x0 error
    of each window weighted by its noise level's weight (``noise_level_weights``), plus
    ``velocity_weight`` times the velocity error; ``contact``: (weight, feet, still) for the
    foot-contact loss (``masked_contact_loss``). ``teacher``: a denoiser (x_t, t, length, x0_prev, pace) -> x0
    whose output is the target instead of the data's x0, and which gives a self-conditioned model its
    previous x0 (guidance distillation, ``TrainConfig.teacher``)."""
    B = x0.shape[0]
    T = alpha_bar.shape[0]
    t = torch.randint(0, T, (B,), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    x_t = q_sample(x0, alpha_bar[t], noise)
    net = getattr(model, "module", model)
    pace = None
    if net.cfg.pace_classes:
        # each window's own class; a tenth read "any" (class C), so that the model also samples without one
        pace = net.pace_class(x0, length)
        drop = (torch.rand(B, generator=generator) < PACE_ANY_SHARE).to(x0.device)
        pace = torch.where(drop, torch.full_like(pace, net.cfg.pace_classes), pace)
    x0_prev = None
    if net.cfg.self_condition:
        # half the windows read the network's own x0 of this x_t (no gradient through it), the rest zeros,
        # so that it learns both the first step of a chain and every later one (Chen et al. 2022)
        chosen = (torch.rand(B, generator=generator) < 0.5).to(x0.device)
        x0_prev = torch.zeros_like(x0)
        if chosen.any():
            with torch.no_grad():
                x0_prev[chosen] = (teacher or model)(x_t[chosen], t[chosen], None if length is None else length[chosen],
                                                     None, None if pace is None else pace[chosen]).to(x0.dtype)
    if teacher is not None:
        with torch.no_grad():
            x0 = teacher(x_t, t, length, x0_prev, pace).to(x0.dtype)
    pred = model(x_t, t, length, x0_prev, pace)
    w = level_weights[t] if level_weights is not None else None
    loss = masked_x0_loss(pred, x0, conf, w)
    if velocity_weight:
        loss = loss + velocity_weight * masked_velocity_loss(pred, x0, conf, w)
    if contact is not None:
        loss = loss + contact[0] * masked_contact_loss(pred, x0, conf, contact[1], contact[2], w)
    return loss


@torch.no_grad()
def validation_loss(model, alpha_bar, data: MotionData2D, device, batches: int = 8, batch_size: int = 64) -> float:
    """Loss on the validation windows with fixed t and noise, so values compare across runs."""
    if len(data) == 0:
        return float("nan")
    g = torch.Generator().manual_seed(1234)
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for b in range(batches):
        idx = torch.arange(b * batch_size, (b + 1) * batch_size) % len(data)
        L = int(data.length[idx].max())
        x0, conf = data.pose[idx, :L].to(device), data.conf[idx, :L].to(device)
        total += float(training_loss(model, alpha_bar, x0, conf, data.length[idx].to(device), g))
        n += 1
    model.train(was_training)
    return total / n


LIMB_RETURN_STEPS = (0, 20, 60)


@torch.no_grad()
def limb_return(model: MotionDenoiser, alpha_bar: torch.Tensor, data: MotionData2D, device,
                steps=LIMB_RETURN_STEPS, num: int = 64, frames: int = 60) -> dict:
    """How much of the limbs' motion the denoiser gives back ({t: slope}): real windows noised to
    each step t, and the slope of the x0's motion of every joint relative to the root (its window
    mean removed) on the clean windows' (``num`` windows of ``frames``, or of the longest there are,
    spread over the set; fixed noise, so values compare across steps and runs). A denoiser should
    give back nearly all of it at t = 0 (a noise of about 1 cm); the shipped human and quadruped
    give back half (0.51, 0.52 on their validation windows) at every t up to 20, which stills their
    samples' limbs step after step (docs/results.md)."""
    frames = min(frames, int(data.length.max()) if len(data) else 0)
    full = torch.nonzero(data.length >= frames).flatten()
    if not len(full) or frames < 2:
        return {}
    full = full[torch.linspace(0, len(full) - 1, min(num, len(full))).long()]     # spread over the set's clips
    x0 = data.pose[full, :frames].to(device)
    r = data.layout.root
    g = torch.Generator().manual_seed(1234)
    was_training = model.training
    model.eval()

    def limbs(x):
        rel = x - x[:, :, r:r + 1]
        return rel - rel.mean(1, keepdim=True)

    clean = limbs(x0)
    out = {}
    for t in [t for t in steps if t < len(alpha_bar)]:
        tt = torch.full((len(x0),), int(t), device=device)
        noise = torch.randn(x0.shape, generator=g).to(device)
        pred = limbs(model(q_sample(x0, alpha_bar[tt], noise), tt))
        out[str(t)] = float((pred * clean).sum() / (clean * clean).sum())
    model.train(was_training)
    return out


@torch.no_grad()
def motion_check(model: MotionDenoiser, card: dict, data: MotionData2D, device, num: int = 64) -> dict:
    """``metrics.motion_statistics_2d`` of ``num`` plain 2D samples of the model (of the data's
    median window length; seeds 0 .. num-1, so checks compare across steps and runs), with the
    same of up to 256 of the data's windows of at least that length, spread evenly over the set and
    cut to that length. ``data``: the training set, what the samples should resemble (the validation
    set's first windows come from a few clips: the dog's 64 travel in 89% against 10% of its
    training windows). The validation loss does not say whether a model's motion is still or glides; this
    does (docs/results.md, 'Why the motions glide'). ``card``: the run's model card (``model_card``)."""
    from .checkpoint import LoadedModel
    from .metrics import motion_statistics_2d
    from .sampler import sample_2d_batch

    frames = max(8, min(model.cfg.max_frames, int(data.length.float().median())))
    feet, root = [data.layout.index(n) for n in data.layout.feet], data.layout.root
    was_training = model.training
    model.eval()
    uv = sample_2d_batch(LoadedModel("training run", model, card), list(range(num)), frames, None, device)
    model.train(was_training)
    full = torch.nonzero(data.length >= frames).flatten()
    full = full[torch.linspace(0, len(full) - 1, min(256, len(full))).long()]
    fake = motion_statistics_2d(uv.float().cpu().numpy() * data.scale, data.fps, feet, root)
    real = (motion_statistics_2d(data.pose[full, :frames].numpy() * data.scale, data.fps, feet, root)
            if len(full) else None)      # detector noise included: real windows are seldom nearly still
    return {"samples": fake, "data": real}


@torch.no_grad()
def fit_linear_skip(model: MotionDenoiser, alpha_bar: torch.Tensor, data: MotionData2D, device,
                    num: int = 128, batch_size: int = 64) -> None:
    """Fit the model's linear skip (``model.py``) at every noise step t: ``skip_filter`` h_t, the least-squares
    filter from the taps of x_t to the clean windows (a Wiener filter learned from the data), and ``skip_out``
    c_t, the RMS of what it leaves (the network's output is scaled by it). ``num`` windows spread over the
    set, noised to each step with fixed noise; confident joints only."""
    r, T = model.cfg.skip_radius, len(alpha_bar)
    idx = torch.linspace(0, len(data) - 1, min(num, len(data))).long()
    g = torch.Generator().manual_seed(4321)
    for t in range(T):
        normal, rhs = torch.zeros(r + 1, r + 1, dtype=torch.float64), torch.zeros(r + 1, dtype=torch.float64)
        target_sq, count = 0.0, 0
        for chunk in idx.split(batch_size):
            L = int(data.length[chunk].max())
            x0, length = data.pose[chunk, :L].to(device), data.length[chunk].to(device)
            ok = (data.conf[chunk, :L] >= CONFIDENCE_THRESHOLD).to(device)
            x_t = q_sample(x0, alpha_bar[torch.full((len(chunk),), t, device=device)],
                           torch.randn(x0.shape, generator=g).to(device))
            rows, target = model.skip_taps(x_t, length)[ok].reshape(-1, r + 1).double(), x0[ok].reshape(-1).double()
            normal += (rows.T @ rows).cpu()
            rhs += (rows.T @ target).cpu()
            target_sq += float(target @ target)
            count += len(target)
        h = torch.linalg.solve(normal + 1e-6 * torch.eye(r + 1, dtype=torch.float64), rhs)
        # the sum of squares the filter leaves, from the normal equations: |y|^2 - 2 h.A'y + h.A'A h
        residual = target_sq - 2 * float(h @ rhs) + float(h @ normal @ h)
        model.skip_filter[t] = h.float()
        model.skip_out[t] = max(residual / count, 1e-12) ** 0.5


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v) and v.ndim > 0:
                tensors[f"opt.{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = float(v)
    return tensors, {"scalars": scalars, "param_groups": sd["param_groups"]}


def _unflatten_optimizer(opt: torch.optim.Optimizer, tensors: dict, info: dict) -> None:
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, idx, k = key.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    for key, v in info["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = torch.tensor(v)
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})


def save_train_state(out: Path, model, ema, opt, step: int, extra: dict) -> None:
    from safetensors.torch import save_file

    opt_tensors, opt_info = _flatten_optimizer(opt)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    tensors.update(opt_tensors)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(out / "train_state.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    info = dict(extra, step=step, optimizer=opt_info)
    atomic_write(out / "train_state.json", lambda tmp: tmp.write_text(json.dumps(info, indent=1)))


def check_resume(info: dict, model_cfg: ModelConfig | None, cfg: TrainConfig, out: Path) -> None:
    """Refuse to resume a run whose saved model or step count does not fit what was asked."""
    saved = ModelConfig.from_dict(info["model"])
    done = int(info["step"])
    if model_cfg is not None:
        asked = dict(model_cfg.to_dict(), num_joints=saved.num_joints, root=saved.root)
        differ = [f"{k} {getattr(saved, k)} (asked {v})" for k, v in asked.items() if getattr(saved, k) != v]
        if differ:
            raise MasError(f"{out} holds a run with another model: {', '.join(differ)}; resume with the same "
                           f"settings, or start over with --restart")
    if cfg.steps <= done:
        raise MasError(f"{out} has already trained {done} steps, and --steps {cfg.steps} asks for no more; "
                       f"give --steps above {done} to train further")


def warm_start(model: MotionDenoiser, init) -> bool:
    """Start from the weights of a checkpoint (a shipped model's name or a path) of the same architecture,
    or of fewer layers: then its layers are the first ones, and each further layer starts as the identity
    (its attention's and feed-forward's output projections zero), so the grown model starts as the source.
    With self-conditioning or pace classes added, their input layers start at zero, so the model starts as the
    source.
    From a model that predicts something else (x0 or v, or a model without a linear skip) only the body is
    kept: the output layer starts at zero, so a v model starts as x0 = sqrt(ab) x_t, a skip model as its
    filter alone. Returns whether the linear skip came with the weights (a skip of the same radius: it
    was trained with the network, so it is kept, not fit again)."""

    src = load_checkpoint(init)
    differ = [f"{k} {v} (here {getattr(model.cfg, k)})" for k, v in src.config.to_dict().items()
              if getattr(model.cfg, k) != v
              and k not in ("output", "prediction", "frame", "root", "standardise", "skip_radius", "layers",
                            "self_condition", "pace_classes", "pace_measure")]
    if src.config.layers > model.cfg.layers:                  # more layers grow the model; fewer cannot
        differ.append(f"layers {src.config.layers} (here {model.cfg.layers})")
    if differ:
        raise MasError(f"--init {init} is another architecture: {', '.join(differ)}; give the same model settings "
                       f"(or more layers, to grow it)")
    weights = src.model.state_dict()
    if src.config.layers < model.cfg.layers:              # grown deeper: the new layers on top start as identity
        weights.update({k: v for k, v in model.state_dict().items()
                        if k.startswith("encoder.layers.") and int(k.split(".")[2]) >= src.config.layers})
    if model.cfg.standardise != src.config.standardise:    # this run's own statistics, or none
        weights = {k: v for k, v in weights.items() if not k.startswith("feature_")}
        weights.update({k: v for k, v in model.state_dict().items() if k.startswith("feature_")})
    if model.cfg.skip_radius != src.config.skip_radius:   # this run's skip (fit when the run starts), or none
        weights = {k: v for k, v in weights.items() if not k.startswith("skip_")}
        weights.update({k: v for k, v in model.state_dict().items() if k.startswith("skip_")})
    if model.cfg.self_condition != src.config.self_condition:   # added: its layer starts at zero; dropped: it goes
        weights = {k: v for k, v in weights.items() if not k.startswith("self_cond.")}
        weights.update({k: v for k, v in model.state_dict().items() if k.startswith("self_cond.")})
    if model.cfg.pace_classes != src.config.pace_classes:       # added: zero at the start (edges fit by build_run)
        weights = {k: v for k, v in weights.items() if not k.startswith("pace_")}
        weights.update({k: v for k, v in model.state_dict().items() if k.startswith("pace_")})
    model.load_state_dict(weights)
    with torch.no_grad():
        for block in model.encoder.layers[src.config.layers:]:
            # pre-norm residual blocks whose output projections are zero add nothing: the model is the same
            for linear in (block.self_attn.out_proj, block.linear2):
                linear.weight.zero_()
                linear.bias.zero_()
    if src.config.prediction != model.cfg.prediction or (model.cfg.skip_radius and not src.config.skip_radius):
        with torch.no_grad():
            model.output.weight.zero_()
            model.output.bias.zero_()
    return bool(model.cfg.skip_radius) and model.cfg.skip_radius == src.config.skip_radius


def join_processes(device: str) -> tuple[torch.device, int, int]:
    """(device, world size, rank). Under torchrun: one process per GPU (NCCL) or per CPU group (gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dev = pick_device(device if world == 1 else ("cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"))
    if world > 1:
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev, world, rank


def model_card(data: MotionData2D, cfg: TrainConfig, data_path, init=None, data_note: str | None = None) -> dict:
    """The checkpoint card of a run (``catalogue``): layout, fps, normalisation, cameras, provenance."""
    cams = data.meta["config"]["cameras"]
    return {"layout": data.layout.to_dict(), "fps": data.fps,
            "normalisation": {"scale": data.scale, "root_motion": data.meta["config"].get("root_motion", True),
                              "kind": "global scale after centring on the mean root"},
            "mas_cameras": {"elevation_deg": DEFAULT_CAMERAS["elevation_deg"],
                            "distance_m": 0.5 * (cams["distance_min"] + cams["distance_max"])},
            "training": {"data": str(data_path), "windows": len(data), "train": asdict(cfg),
                         **({"init": str(init)} if init is not None else {})},
            "licence": data_note or data.meta.get("licence", DATA_NOTE)}


def guided_teacher(name_or_path, models: list[MotionDenoiser], dev, scale: float = 2.0, away_from=None,
                   below=None):
    """The teacher of guidance distillation: a model with the same inputs as ``models`` (joints, frames,
    self-conditioning, pace classes), frozen, sampled with pace guidance ``scale`` away from ``away_from``,
    each class only at noise steps below ``below`` (``sampler.pace_guided``). The models take its pace edges, so
    that a class means to them what it means to the teacher."""
    from .sampler import pace_guided
    src = load_checkpoint(name_or_path, dev)
    a, b = src.config, models[0].cfg
    if not b.pace_classes or (a.num_joints, a.max_frames, a.self_condition, a.pace_classes, a.pace_measure) != (
            b.num_joints, b.max_frames, b.self_condition, b.pace_classes, b.pace_measure):
        raise MasError(f"teacher {name_or_path!r} does not match the model trained (it must have pace classes and "
                       f"the same joints, frames, self-conditioning and pace measure); start the run with "
                       f"--init {name_or_path}")
    if isinstance(scale, (list, tuple)) and len(scale) != b.pace_classes:
        raise MasError(f"--teacher-guidance gives {len(scale)} numbers for a model of {b.pace_classes} pace classes; "
                       "give one number, or one a class")
    for m in models:
        m.pace_edges.copy_(src.model.pace_edges)
    src.model.eval().requires_grad_(False)
    if below is not None:
        below = list(below) if isinstance(below, (list, tuple)) else [below] * b.pace_classes
        for v in below:
            validate.number("--teacher-guided-below", v, 1, b.diffusion_steps, "a noise step a class, stillest "
                            f"first, up to the model's {b.diffusion_steps} (e.g. 100,50,100,100)")
    return pace_guided(src.model, b.pace_classes, scale, away_from=away_from, below=below)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then a cosine decay to 10% of ``cfg.lr`` at the last step."""
    lr = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
    return lr * (0.5 * (1 + math.cos(math.pi * step / cfg.steps)) * 0.9 + 0.1)


@torch.no_grad()
def update_ema(ema: MotionDenoiser, model: MotionDenoiser, step: int, decay: float) -> None:
    """ema <- ema + (1 - d) (model - ema), with d warming up as (1 + step) / (10 + step) to ``decay``."""
    d = min(decay, (1 + step) / (10 + step))
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - d)


def build_run(out: Path, data: MotionData2D, model_cfg: ModelConfig | None, cfg: TrainConfig, dev, resume: bool,
              init=None, log=print):
    """(model, ema, optimiser, steps done): a new run (from ``init``'s weights if given), or the
    one saved in ``out`` (checked to fit what is asked: ``check_resume``)."""
    from safetensors.torch import load_file

    state_file = out / "train_state.json"
    info = json.loads(state_file.read_text()) if resume and state_file.exists() else None
    if info is not None:
        check_resume(info, model_cfg, cfg, out)
        model_cfg = ModelConfig.from_dict(info["model"])
    model_cfg = model_cfg or ModelConfig()
    model_cfg.num_joints = data.layout.num_joints
    model_cfg.root = data.layout.root
    longest = int(data.length.max())
    if longest > model_cfg.max_frames:
        raise MasError(f"the data has windows of {longest} frames but the model's max_frames is "
                       f"{model_cfg.max_frames}; raise max_frames")
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    model = MotionDenoiser(model_cfg).to(dev)
    if model_cfg.standardise and info is None:
        model.fit_standardisation(data.pose, data.length)
    inherited = False
    if init is not None and info is None:
        inherited = warm_start(model, init)
    if model_cfg.skip_radius and info is None and not inherited:
        alpha_bar = alpha_bar_schedule(model_cfg.schedule, model_cfg.diffusion_steps).float().to(dev)
        log(f"fitting the linear skip (radius {model_cfg.skip_radius} frames) at {len(alpha_bar)} noise steps")
        fit_linear_skip(model, alpha_bar, data, dev)
    if model_cfg.pace_classes and info is None:
        model.fit_pace(data.pose, data.length)
        log(f"pace classes: {model_cfg.pace_measure} edges " + ", ".join(f"{float(e):.4f}" for e in model.pace_edges))
    ema = MotionDenoiser(model_cfg).to(dev)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if info is None:
        return model, ema, opt, 0
    tensors = load_file(str(out / "train_state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    _unflatten_optimizer(opt, {k: v.to(dev) for k, v in tensors.items()}, info["optimizer"])
    log(f"resuming {out} at step {int(info['step'])}")
    return model, ema, opt, int(info["step"])


def train(data_path, out, model_cfg: ModelConfig | None = None, cfg: TrainConfig | None = None,
          device: str = "auto", resume: bool = True, data_note: str | None = None, log=print,
          init=None) -> dict:
    """Train (or resume) a denoiser on a monocular 2D set; returns a summary of the run.

    ``init``: a checkpoint to start from (warm start) instead of random weights; ignored on resume.
    The EMA weights are saved as ``out/model`` every ``cfg.save_every`` steps, with the whole
    state (``train_state.*``) to resume from and a line of ``log.jsonl``.
    """
    from tqdm import tqdm

    cfg = cfg or TrainConfig()
    if cfg.teacher:
        for g in (cfg.teacher_guidance if isinstance(cfg.teacher_guidance, (list, tuple)) else [cfg.teacher_guidance]):
            validate.number("--teacher-guidance", g, 0.0, 10.0, "1 is the teacher unguided, 2 doubles each "
                            "class's pull; one number, or one a pace class separated by commas")
    elif cfg.teacher_away_from is not None or cfg.teacher_guided_below is not None:
        raise MasError("--teacher-away-from and --teacher-guided-below are settings of guidance distillation: give "
                       "--distill-guidance TEACHER")
    out = Path(out)
    dev, world, rank = join_processes(device)
    data = MotionData2D.load(data_path, "train")
    val = MotionData2D.load(data_path, "val")
    model, ema, opt, done = build_run(out, data, model_cfg, cfg, dev, resume, init, log)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    alpha_bar = alpha_bar_schedule(model.cfg.schedule, model.cfg.diffusion_steps).float().to(dev)
    # batches and noise depend on (seed, rank, step of the (re)start)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + rank * 7919 + done)
    weighting = cfg.noise_weighting
    if weighting == "auto":                        # each prediction's own loss
        weighting = "skip" if model.cfg.skip_radius else "v" if model.cfg.prediction == "v" else "uniform"
    level_weights = noise_level_weights(alpha_bar, weighting, getattr(model, "skip_out", None))
    contact = None
    if cfg.contact_weight:
        if not data.layout.feet:
            raise MasError(f"--contact-weight needs a layout that names its feet; {data.layout.name!r} names none")
        contact = (cfg.contact_weight, [data.layout.index(n) for n in data.layout.feet],
                   CONTACT_SPEED / data.fps / data.scale)
    weights = data.still_weights(cfg.still_quantile, cfg.still_weight) if cfg.still_weight != 1.0 else None
    batches = data.batches(cfg.batch_size, gen, mirror=cfg.mirror, weights=weights)
    card = model_card(data, cfg, data_path, init, data_note)
    teacher = None
    if cfg.teacher:
        teacher = guided_teacher(cfg.teacher, [model, ema], dev, cfg.teacher_guidance, cfg.teacher_away_from,
                                 cfg.teacher_guided_below)
        card["mas_sampling"] = {"pace_guidance": 1.0}      # the guidance is in the weights now
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        log(f"model: {model.num_parameters() / 1e6:.2f} M parameters; data: {len(data)} windows; "
            f"device {dev}; {world} process(es)")
    bar = tqdm(range(done, cfg.steps), initial=done, total=cfg.steps, desc="training", unit="step",
               disable=rank != 0, mininterval=2.0)
    t0, losses, last_loss = time.time(), [], float("nan")

    def checkpoint(step):
        vloss = validation_loss(ema, alpha_bar, val, dev)
        held_out = val if len(val) else data
        entry = {"step": step, "loss": sum(losses) / max(len(losses), 1), "val_loss_ema": vloss,
                 "seconds": time.time() - t0, "limb_return": limb_return(ema, alpha_bar, held_out, dev)}
        if cfg.motion_check:
            entry["motion_2d"] = motion_check(ema, card, data, dev, cfg.motion_check)
        losses.clear()
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")
        run_card = dict(card, training=dict(card["training"], steps=step))
        save_checkpoint(out / "model", ema, run_card)
        save_train_state(out, model, ema, opt, step, {"model": model.cfg.to_dict(), "card": run_card})
        line = f"step {step}: loss {entry['loss']:.4f}, validation loss (EMA) {vloss:.4f}"
        if entry["limb_return"]:
            line += "; limb motion given back at t = " + ", ".join(f"{t}: {v:.2f}" for t, v in entry["limb_return"].items())
        if cfg.motion_check:
            m = entry["motion_2d"]["samples"]
            line += f"; 2D samples: {100 * m['still_share']:.0f}% nearly still, {100 * m['travelling_share']:.0f}% travelling"
            if not math.isnan(m["planted_share_p50"]):
                line += f", a foot planted in {100 * m['planted_share_p50']:.0f}% of travelling frames"
        bar.write(line)

    net.train()
    for step in bar:
        x0, conf, length = (t.to(dev) for t in next(batches))
        lr = learning_rate(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = training_loss(net, alpha_bar, x0, conf, length, gen, level_weights, cfg.velocity_weight, contact,
                                 teacher)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        update_ema(ema, model, step, cfg.ema_decay)
        last_loss = float(loss.detach())
        if not math.isfinite(last_loss):
            raise MasError(f"training diverged at step {step} (loss {last_loss}); lower --lr")
        losses.append(last_loss)
        bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.1e}", refresh=False)
        if rank == 0 and ((step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps):
            checkpoint(step + 1)
    bar.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"steps": cfg.steps, "last_loss": last_loss, "seconds": time.time() - t0, "out": str(out)}
