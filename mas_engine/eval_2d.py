"""The paper's 2D evaluation (its Tables 2 and 3): a motion VAE's features, then FID, diversity,
precision and recall of one-view projections of generated motions against real 2D motions.

- ``MotionVAE``: a transformer encoder (6 layers, width 256, 4 heads) over 2D poses with two
  learned tokens whose outputs are the Gaussian's mean and log-variance (ACTOR-style); the mean
  (256 numbers) is the feature. A small decoder reconstructs the motion from a latent sample.
  It is trained on 2D motions only, from the held-out clips (never in the diffusion model's set).
- ``real_2d``: one-view 2D windows of held-out capture, cameras as the protocol draws them.
- ``evaluate_2d`` (``mas evaluate``): the rows (ground truth, the 2D model itself, MAS with 5
  and 2 views, MAS without 3D noise, score distillation, and the product's default: MAS with 5
  views and rigid bones) over repetitions, mean and 95% interval.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rigs.keypoints import KeypointLayout

from .atomic import atomic_write
from .cameras import Cameras
from .checkpoint import LoadedModel, load_checkpoint
from .dataset import fill_missing, project_windows
from .device import pick_device
from .diffusion import alpha_bar_schedule
from .errors import MasError
from .eval_3d import PAPER, held_out_clips, layout_spec
from .metrics import diversity, frechet_distance, precision_recall
from .postprocess import place_on_floor
from .sampler import MasSettings, check_request, sample_2d_batch, sample_mas


@dataclass
class EvaluatorConfig:
    num_joints: int = 16
    frames: int = 120
    width: int = 256
    layers: int = 6
    heads: int = 4
    ff_width: int = 512
    decoder_layers: int = 2
    kl_weight: float = 1e-4


class MotionVAE(nn.Module):
    def __init__(self, cfg: EvaluatorConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.width
        self.input = nn.Linear(cfg.num_joints * 2, D)
        self.tokens = nn.Parameter(torch.randn(2, D) * 0.02)            # -> mean, log-variance
        self.positions = nn.Parameter(torch.randn(cfg.frames + 2, D) * 0.02)
        layer = lambda: nn.TransformerEncoderLayer(D, cfg.heads, cfg.ff_width, 0.1, activation="gelu",  # noqa: E731
                                                   batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer(), cfg.layers, enable_nested_tensor=False)
        self.to_mu, self.to_logvar = nn.Linear(D, D), nn.Linear(D, D)
        self.latent_in = nn.Linear(D, D)
        self.decoder = nn.TransformerEncoder(layer(), cfg.decoder_layers, enable_nested_tensor=False)
        self.output = nn.Linear(D, cfg.num_joints * 2)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: batch x frames x joints x 2 (evaluator units) -> mean, log-variance (batch x width)."""
        B, F = x.shape[:2]
        h = torch.cat([self.tokens.expand(B, 2, -1), self.input(x.reshape(B, F, -1))], 1) + self.positions[:F + 2]
        h = self.encoder(h)
        return self.to_mu(h[:, 0]), self.to_logvar(h[:, 1])

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        B, F = x.shape[:2]
        h = self.decoder(self.latent_in(z)[:, None] + self.positions[2:F + 2])
        return self.output(h).reshape(x.shape), mu, logvar


def to_evaluator_units(uv: np.ndarray, scale: float) -> np.ndarray:
    """2D motions (... x frames x joints x 2, metres in the image plane) centred on their mean over
    frames and joints and divided by the data's scale."""
    uv = np.asarray(uv, np.float32)
    return (uv - uv.mean(axis=(-3, -2), keepdims=True)) / scale


def real_2d(clips: list[np.ndarray], layout: KeypointLayout, frames: int, count: int, elevation_deg: float,
            distance_m: float, rng: np.random.Generator) -> np.ndarray:
    """``count`` windows of ``frames`` frames from 3D clips, each seen from one view (azimuth uniform
    on the circle; the domain's elevation and distance): count x frames x J x 2, metres."""
    return project_one_view(random_windows(clips, frames, count, rng), layout, elevation_deg, distance_m, rng)


def random_windows(clips: list[np.ndarray], frames: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random windows of ``frames`` frames from the clips long enough: count x frames x J x 3."""
    usable = [c for c in clips if len(c) >= frames]
    if not usable:
        raise MasError(f"no held-out clip has {frames} frames")
    out = []
    for _ in range(count):
        c = usable[int(rng.integers(len(usable)))]
        s = int(rng.integers(0, len(c) - frames + 1))
        out.append(c[s:s + frames])
    return np.stack(out)


def project_one_view(motions: np.ndarray, layout: KeypointLayout, elevation_deg: float, distance_m: float,
                     rng: np.random.Generator, azimuth_range=(0.0, 2 * math.pi), facing: bool = False) -> np.ndarray:
    """3D motions (N x frames x J x 3, metres), each projected to one random view: N x frames x J x 2.
    facing: azimuths are measured from each motion's facing direction (``facing_azimuth``)."""

    N = len(motions)
    az = rng.uniform(*azimuth_range, size=N)
    if facing:
        az = az + np.array([facing_azimuth(m, layout) for m in motions])
    return project_windows(motions, az, np.full(N, math.radians(elevation_deg)), np.full(N, distance_m),
                           True, layout.root).astype(np.float32)


def train_evaluator(data: np.ndarray, cfg: EvaluatorConfig, steps: int = 2000, batch: int = 64, lr: float = 2e-4,
                    seed: int = 0, log=print) -> MotionVAE:
    """Train the VAE on evaluator-unit windows (N x frames x J x 2), mirrored at random."""
    torch.manual_seed(seed)
    model = MotionVAE(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    x_all = torch.from_numpy(data)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(x_all), (batch,), generator=gen)
        x = x_all[idx].clone()
        flip = torch.rand(batch, generator=gen) < 0.5
        x[flip, ..., 0] = -x[flip, ..., 0]          # mirror the image (the joint swap is not needed for features)
        recon, mu, logvar = model(x)
        rec = ((recon - x) ** 2).mean()
        kl = -0.5 * torch.mean(1 + logvar - mu ** 2 - logvar.exp())
        loss = rec + cfg.kl_weight * kl
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"evaluator step {step}: reconstruction {rec.item():.4f}, KL {kl.item():.2f} ({time.perf_counter() - t0:.0f} s)")
    return model.eval()


@torch.no_grad()
def features(model: MotionVAE, windows: np.ndarray, batch: int = 256) -> np.ndarray:
    """Encoder means of evaluator-unit windows: N x width."""
    out = [model.encode(torch.from_numpy(windows[i:i + batch]))[0] for i in range(0, len(windows), batch)]
    return torch.cat(out).numpy().astype(np.float64)


def save_evaluator(path, model: MotionVAE, card: dict) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path.with_suffix(".safetensors"),
                 lambda tmp: save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp)))
    atomic_write(path.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(dict(card, config=asdict(model.cfg)), indent=1)))


def load_evaluator(path) -> tuple[MotionVAE, dict]:
    from safetensors.torch import load_file

    path = Path(path)
    card = json.loads(path.with_suffix(".json").read_text())
    model = MotionVAE(EvaluatorConfig(**card["config"]))
    model.load_state_dict(load_file(str(path.with_suffix(".safetensors"))))
    return model.eval(), card


def score(real_feat: np.ndarray, fake_feat: np.ndarray, seed: int) -> dict:
    p, r = precision_recall(real_feat, fake_feat, k=3)
    return {"fid": frechet_distance(real_feat, fake_feat), "diversity": diversity(fake_feat, seed=seed),
            "precision": p, "recall": r}


def interval(values) -> tuple[float, float]:
    """Mean and the half-width of its 95% interval (normal approximation)."""
    v = np.asarray(values, float)
    return float(v.mean()), float(1.96 * v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0


def score_distillation(loaded, seeds, frames: int, device, iterations: int = 200, lr: float = 0.05,
                       elevation_deg: float | None = None, distance_m: float | None = None) -> np.ndarray:
    """The DreamFusion / score-distillation adaptation of the paper: a random 3D motion, then
    ``iterations`` times: project to one random view, noise it to a random t, let the model predict
    x0, and take one Adam step of the 3D motion towards it (loss: the squared difference).
    Returns motions x frames x J x 3 in metres (as ``sample_mas``)."""

    cams = loaded.cameras
    el = math.radians(elevation_deg if elevation_deg is not None else cams["elevation_deg"])
    dist = (distance_m if distance_m is not None else cams["distance_m"]) / loaded.scale
    g = torch.Generator(device="cpu").manual_seed(int(seeds[0]))
    N, J = len(seeds), loaded.layout.num_joints
    X = torch.randn(N, frames, J, 3, generator=g).to(device).requires_grad_(True)
    opt = torch.optim.Adam([X], lr=lr)
    ab = alpha_bar_schedule(loaded.config.schedule, loaded.config.diffusion_steps).float().to(device)
    T = loaded.config.diffusion_steps
    for _ in range(iterations):
        az = torch.rand(N, generator=g) * 2 * math.pi
        cam = Cameras.orbit(az.tolist(), [el] * N, [dist] * N, device=device, dtype=torch.float32)
        # each motion through its own camera: project all, keep the diagonal
        uv = cam.project(X)                                  # N x F x J x N x 2
        uv = uv[torch.arange(N), :, :, torch.arange(N)]      # N x F x J x 2
        t = torch.randint(int(0.02 * T), int(0.98 * T), (N,), generator=g).to(device)
        a = ab[t].view(N, 1, 1, 1)
        noisy = a.sqrt() * uv.detach() + (1 - a).sqrt() * torch.randn(uv.shape, generator=g).to(device)
        with torch.no_grad():
            x0 = loaded.model(noisy, t)
        loss = ((uv - x0) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    out = X.detach().cpu().numpy() * loaded.scale
    return np.stack([place_on_floor(m, loaded.layout.floor_offset) for m in out]).astype(np.float32)


def facing_azimuth(motion: np.ndarray, layout: KeypointLayout) -> float:
    """The direction a subject faces at its first frame (radians about Z), from its left/right pair
    with 'hip' in the name (else its first pair): ahead is the right-to-left vector turned -90 degrees
    (a subject facing -Y has its left at +X)."""
    pairs = [p for p in layout.pairs if "hip" in layout.joints[p[0]]] or list(layout.pairs)
    if not pairs:
        return 0.0
    a, b = pairs[0]
    if "left" not in layout.joints[a]:
        a, b = b, a
    lateral = motion[0, a] - motion[0, b]
    forward = np.array([lateral[1], -lateral[0]])
    return float(math.atan2(forward[1], forward[0]))


ROWS_2D = ("ground truth", "2D model", "MAS 5 views", "MAS 5 views (rigid bones)", "MAS 2 views", "MAS without 3D noise",
           "score distillation")
# the paper's MAS and its ablations (no bone, floor or foot prior), and the product's default (rigid bones,
# the card's floor prior, the foot lock)
MAS_ROWS = {"MAS 5 views": dict(views=5, **PAPER), "MAS 2 views": dict(views=2, **PAPER),
            "MAS without 3D noise": dict(views=5, noise_3d=False, **PAPER),
            "MAS 5 views (rigid bones)": dict(views=5, rigid_bones=True)}


def evaluate_2d(model="human", capture=None, names_file=None, num=1000, reps=10, quick=False, rows=ROWS_2D,
                side=False, evaluator=None, seconds=4.0, device="auto", seed=0, out=None, evaluator_steps=None,
                pace="data", log=print) -> dict:
    """The paper's 2D protocol (see the module docstring); returns {row: {metric: (mean, 95% half-width)}}.
    ``pace`` (``MasSettings.pace``, a model with pace classes): which classes every generated row draws; "training"
    measures the model as its training windows have the classes, not as its card's shares tilt them for 3D."""
    if quick:
        num, reps = min(num, 64), min(reps, 3)
    unknown = [r for r in rows if r not in ROWS_2D]
    if unknown:
        raise MasError(f"unknown row(s) {', '.join(unknown)}; rows: {', '.join(ROWS_2D)}")
    dev = pick_device(device)
    loaded = load_checkpoint(model, device=dev)
    layout, frames, scale = loaded.layout, int(round(seconds * loaded.fps)), loaded.scale
    el, dist = loaded.cameras["elevation_deg"], loaded.cameras["distance_m"]
    check_request(loaded, frames, MasSettings(pace=pace))
    clips, _ = held_out_clips(capture, names_file, layout_spec(layout)["kind"], loaded.fps)
    if len(clips) < 2:
        raise MasError(f"fewer than 2 held-out clips in {capture} (the validation clips of the split)")
    clips = [fill_missing(c, layout)[0] for c in clips]      # a ball unseen in capture: at the hand
    ev_path = Path(evaluator) if evaluator else Path("runs") / f"evaluator_{layout.name}_{frames}f"
    vae = evaluator_for(ev_path, clips, loaded, frames, quick, evaluator_steps, np.random.default_rng(seed),
                        f"held-out clips of {capture}", log)
    az_range = (math.pi / 4, 3 * math.pi / 4) if side else (0.0, 2 * math.pi)

    def one_view(motions, r):
        return project_one_view(motions, layout, el, dist, r, az_range, facing=side)

    def real_set(r):
        return one_view(random_windows(clips, frames, num, r), r)

    per_rep = {row: [] for row in rows}
    real_div = []
    for rep in range(reps):
        real_feat = features(vae, to_evaluator_units(real_set(np.random.default_rng([seed, rep, 0])), scale))
        real_div.append(diversity(real_feat, seed=rep))
        seeds = list(range(seed + rep * num, seed + (rep + 1) * num))
        for row in rows:
            # every row draws the same views (and ground truth its second real set) from a fresh
            # stream: rows are compared on equal terms, whichever others are run with them
            r = np.random.default_rng([seed, rep, 1])
            t0 = time.perf_counter()
            uv = (real_set(r) if row == "ground truth"
                  else row_views(row, loaded, seeds, frames, dev, lambda m: one_view(m, r), pace))
            per_rep[row].append(dict(score(real_feat, features(vae, to_evaluator_units(uv, scale)), rep),
                                     seconds=time.perf_counter() - t0))
        log(f"repetition {rep + 1}/{reps} done")
    table = {row: {m: interval([x[m] for x in per_rep[row]]) for m in ("fid", "diversity", "precision", "recall")}
             for row in rows}
    result = {"model": loaded.name, "layout": layout.name, "num": num, "reps": reps, "views": "side" if side else "all",
              "seconds": seconds, "pace": pace, "real_diversity": interval(real_div), "rows": table,
              "date": time.strftime("%Y-%m-%d"), "evaluator": str(ev_path)}
    write_report(result, out, log)
    return result


def evaluator_for(ev_path: Path, clips, loaded: LoadedModel, frames: int, quick: bool, steps, rng, source: str,
                  log=print):
    """The motion VAE that scores 2D windows of ``frames``: loaded from ``ev_path`` if it is there,
    else trained on held-out 2D windows (``clips`` seen from random cameras) and saved there."""
    if ev_path.with_suffix(".json").exists():
        vae, card = load_evaluator(ev_path)
        log(f"evaluator: {ev_path}.safetensors ({card['windows']} windows, {card['steps']} steps)")
        return vae
    layout, scale = loaded.layout, loaded.scale
    el, dist = loaded.cameras["elevation_deg"], loaded.cameras["distance_m"]
    windows = to_evaluator_units(real_2d(clips, layout, frames, 2000 if quick else 8000, el, dist, rng), scale)
    steps = steps or (600 if quick else 3000)
    log(f"training the evaluator on {len(windows)} held-out 2D windows ({steps} steps) -> {ev_path}")
    vae = train_evaluator(windows, EvaluatorConfig(num_joints=layout.num_joints, frames=frames), steps=steps, log=log)
    save_evaluator(ev_path, vae, {"layout": layout.to_dict(), "scale": scale, "windows": len(windows), "steps": steps,
                                  "data": source})
    return vae


def row_views(row: str, loaded: LoadedModel, seeds: list[int], frames: int, dev, one_view, pace="data") -> np.ndarray:
    """One row's generated 2D motions (motions x frames x joints x 2, metres): the 2D model's own
    samples, or 3D motions (MAS or score distillation) seen through ``one_view``; ``pace``: as ``MasSettings``'s."""
    if row == "2D model":
        return torch.cat([sample_2d_batch(loaded, seeds[i:i + 64], frames, None, dev, pace=pace).cpu()
                          for i in range(0, len(seeds), 64)]).numpy() * loaded.scale
    if row == "score distillation":
        return one_view(np.concatenate([score_distillation(loaded, seeds[i:i + 64], frames, dev)
                                        for i in range(0, len(seeds), 64)]))
    return one_view(sample_mas(loaded, seeds, frames, MasSettings(pace=pace, **MAS_ROWS[row]), dev).joints)


def pace_note(pace) -> str:
    """How the generated rows drew their pace classes, for the report's heading ("" for the default)."""
    return "" if pace == "data" else f"; pace classes {'as in the training windows' if pace == 'training' else pace}"


def write_report(result: dict, out=None, log=print) -> None:
    """The table as Markdown lines to ``log``, and with ``out``: OUT.json and OUT.md."""
    table, num, reps = result["rows"], result["num"], result["reps"]
    lines = [f"2D evaluation of {result['model']!r} ({num} samples x {reps} repetitions, {result['views']} views, "
             f"{result['seconds']:g} s{pace_note(result.get('pace', 'data'))}; "
             f"real diversity {result['real_diversity'][0]:.2f}): mean +- 95% interval",
             "", "| row | FID | diversity | precision | recall |", "|---|---:|---:|---:|---:|"]
    for row, m in table.items():
        lines.append(f"| {row} | " + " | ".join(f"{m[k][0]:.3f} +- {m[k][1]:.3f}" for k in ("fid", "diversity", "precision", "recall")) + " |")
    for line in lines:
        log(line)
    if out:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(result, indent=1)))
        atomic_write(out.with_suffix(".md"), lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
