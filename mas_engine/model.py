"""The 2D motion denoiser: an MDM-style transformer encoder that predicts the clean motion x0.

Input: a noisy 2D motion x_t (batch x frames x joints x 2, normalised) and the step t.
Frames are grouped ``frames_per_token`` at a time into one token (a temporal patch):
at 30 fps two frames per token halve the sequence, and so the cost, with no visible loss
on smooth motion. The step is a token of its own, first in the sequence, as in MDM.
With ``output="upsampled"`` a token gives one value (the mean of its frames' outputs) and the frames
are interpolated linearly between token centres, so they cannot alternate at half the frame rate.
With ``prediction="v"`` the network gives v = sqrt(ab) eps - sqrt(1 - ab) x0 and the model returns
x0 = sqrt(ab) x_t - sqrt(1 - ab) v: the input passes through where the noise is low, and the network
only has to say what to change (an x0 network must rebuild even a nearly clean input, and does not).
With ``frame="root"`` the network reads and writes each joint relative to the root joint in its
frame, the root where it is: a linear, invertible change of coordinates, so the diffusion, MAS and
the loss stay in image coordinates. Why try it: in image coordinates a motion that travels puts every
joint several units from the origin, a transformer's LayerNorms keep only the direction of such a
token, and the x0 error grows with a coordinate's size. It made the body's joints come back better,
not the legs (docs/results.md, *The denoisers give back half of a limb's motion*).
With ``standardise`` the network reads and writes every coordinate of its frame z-scored by the training
data's mean and std (as the reference normalises its data, and MDM its features), and its input is scaled
to unit variance at every noise level (EDM's c_in); the diffusion stays in the data's one global scale, so
MAS is unchanged. A fresh model with it gave the limbs back faster at the least noisy levels over its first
1,500 steps, at the same loss (docs/results.md, *The output LayerNorm*).
With ``output_norm=False`` no LayerNorm stands between the last block and the output layer: the residual
stream carries the input embedding, so the input reaches the output linearly (a norm divides each token by
its own size first). A fresh model learns a nearly clean motion back twice as fast without it; it reaches
the same plateau.
With ``skip_radius = r > 0`` the model returns x0 = h_t * x_t + c_t network(x_t), EDM's c_skip and c_out
with a filter instead of a number: x_t filtered over time by step t's symmetric filter h_t of 2 r + 1 frames
(learned), plus the network's output scaled by c_t, the RMS of what that filter leaves to predict at step t
(fixed). Both are fit by least squares on the data when a run starts (``train.fit_linear_skip``), and the
loss then weighs step t by 1 / c_t^2, so that the network learns a unit-size residual at every noise level.
Why: the shipped x0 network rebuilds even a nearly clean motion from its own template and gives back half of
the limbs' motion, where the filter alone (a learned Wiener filter) gives back 0.97 of it with an x0 error
88 times smaller at t = 0, and is the better denoiser up to t = 20 of 100 (docs/results.md, *A linear
skip*). A number alone would give the noise back as well; a filter over time passes the smooth motion.
With ``self_condition`` the network also reads an earlier estimate of x0 (``x0_prev``: at sampling the previous
step's, in training its own for the same x_t; zeros when there is none), in its frame and standardised as its output,
through a linear layer of its own (zero at the start, so a warm-started model starts as its source). Why try it:
the shipped denoiser cannot tell a standing person's centimetre sway from the in-band noise a step leaves, and
its samples wander where real people stand still; given its last estimate, x_t - sqrt(ab) x0_prev is nearly the
noise alone, so what it made up once can be seen and taken back (docs/results.md, *Self-conditioning*).
With ``pace_classes = C > 0`` the network also reads a pace class, added to every token: 0 .. C - 1, the quantile
bin of the motion's pace (``pace_measure``: ``window_pace`` or ``window_reach``) among the training windows
(``pace_edges``, part of the weights), or C, "any" (a tenth of the training windows read it, so the model also
samples without one). Why try it: every model so far makes every motion move, where a quarter of real 4 s windows
stand nearly still; told the pace, a still window is no longer an outlier to be averaged away, and sampling can
draw the classes as often as the data has them (docs/results.md, *A pace class*).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F_
from torch import nn

from .catalogue import ModelConfig  # noqa: F401 - the config lives with the card rules (no torch)
from .diffusion import alpha_bar_schedule

PACE_LAG = 6    # frames over which window_pace measures displacement (0.2 s at 30 fps: the 4 mm detector noise
                # then adds about 0.04 m/s, a quarter of what it adds frame to frame)
PACE_ANY_SHARE = 0.1   # the share of training windows that read the "any" class
REACH_LAG = 30  # frames over which window_reach measures how far a joint goes (1 s at 30 fps: a tremor comes back
                # within it, a gesture does not)


def sinusoidal(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sinusoidal embedding: (...,) -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=positions.device) / half)
    angles = positions.float()[..., None] * freqs
    return torch.cat([torch.sin(angles), torch.cos(angles)], -1)


def joint_displacement(x: torch.Tensor, length: torch.Tensor | None, lag: int) -> torch.Tensor:
    """batch x frames x joints x 2 (any unit u, frames valid up to ``length``) -> batch x joints, each joint's mean
    over valid frame pairs of |x[f + lag] - x[f]| / lag, in u per frame. A motion shorter than lag + 1 frames
    measures over its whole length."""
    B, F = x.shape[:2]
    n = torch.full((B,), F, device=x.device) if length is None else length.to(x.device).long()
    lags = (n - 1).clamp(1, lag)
    out = x.new_zeros(B, x.shape[2])
    for k in lags.unique().tolist():         # one lag for nearly every window; the shortest their own
        pick = lags == k
        step = (x[pick, k:] - x[pick, :-k]).norm(dim=-1)                  # b, F - k, joints
        valid = (torch.arange(F - k, device=x.device)[None] + k < n[pick, None]).to(x.dtype)
        out[pick] = (step * valid[..., None]).sum(1) / valid.sum(1).clamp_min(1)[:, None] / k
    return out


def window_pace(x: torch.Tensor, length: torch.Tensor | None = None, lag: int = PACE_LAG) -> torch.Tensor:
    """How much each motion moves: batch x frames x joints x 2 (any unit u, frames valid up to ``length``)
    -> batch, the mean over joints of ``joint_displacement`` over ``lag`` frames, in u per frame."""
    return joint_displacement(x, length, lag).mean(-1)


def window_reach(x: torch.Tensor, length: torch.Tensor | None = None, root: int = 0,
                 lag: int = REACH_LAG) -> torch.Tensor:
    """How far the most moving joint goes: batch x frames x joints x 2 (any unit u, frames valid up to ``length``)
    -> batch, the largest over joints of ``joint_displacement`` over ``lag`` frames, in u per frame, each joint
    taken relative to the root and the root itself. One arm that sweeps far is as much reach as a body that
    travels as far; a whole body that trembles is little (window_pace counts it as much as a sweep of the same
    speed)."""
    r = x - x[:, :, root:root + 1]
    r[:, :, root] = x[:, :, root]
    return joint_displacement(r, length, lag).max(-1).values


class MotionDenoiser(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        D, P = cfg.width, cfg.frames_per_token
        self.max_tokens = -(-cfg.max_frames // P)
        self.input = nn.Linear(P * cfg.num_joints * 2, D)
        self.time_mlp = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        layer = nn.TransformerEncoderLayer(D, cfg.heads, cfg.ff_width, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(D) if cfg.output_norm else nn.Identity()
        self.output = nn.Linear(D, P * cfg.num_joints * 2)
        if cfg.self_condition:
            self.self_cond = nn.Linear(P * cfg.num_joints * 2, D, bias=False)
            nn.init.zeros_(self.self_cond.weight)
        self.register_buffer("positions", sinusoidal(torch.arange(self.max_tokens + 1), D), persistent=False)
        ab = alpha_bar_schedule(cfg.schedule, cfg.diffusion_steps).float()
        self.register_buffer("sqrt_ab", ab.sqrt(), persistent=False)
        self.register_buffer("sqrt_one_minus_ab", (1 - ab).sqrt(), persistent=False)
        if cfg.standardise:       # the training data's statistics, in the network's frame (fit_standardisation)
            self.register_buffer("feature_mean", torch.zeros(cfg.num_joints, 2))
            self.register_buffer("feature_std", torch.ones(cfg.num_joints, 2))
            # the variance of unit noise in the network's frame: a joint relative to the root carries both noises
            nv = torch.full((cfg.num_joints, 2), 2.0 if cfg.frame == "root" else 1.0)
            nv[cfg.root] = 1.0
            self.register_buffer("noise_var", nv, persistent=False)
        if cfg.skip_radius:       # the network alone until fit_linear_skip sets them from the data
            self.skip_filter = nn.Parameter(torch.zeros(cfg.diffusion_steps, cfg.skip_radius + 1))
            self.register_buffer("skip_out", torch.ones(cfg.diffusion_steps))
        if cfg.pace_classes:      # class C is "any"; zero at the start, so a warm-started model starts as its source
            self.pace_embed = nn.Embedding(cfg.pace_classes + 1, D)
            nn.init.zeros_(self.pace_embed.weight)
            self.register_buffer("pace_edges", torch.zeros(cfg.pace_classes - 1))   # set by fit_pace

    @torch.no_grad()
    def fit_pace(self, pose: torch.Tensor, length: torch.Tensor) -> None:
        """Set ``pace_edges`` to the quantiles k / C (k = 1 .. C - 1) of the windows' ``pace`` (pose: N x frames
        x joints x 2, normalised; ``length`` N), so that each class holds as many windows."""
        paces = torch.cat([self.pace(p, n) for p, n in zip(pose.split(4096), length.split(4096))])
        q = torch.arange(1, self.cfg.pace_classes, dtype=paces.dtype) / self.cfg.pace_classes
        self.pace_edges.copy_(torch.quantile(paces, q))

    def pace(self, x0: torch.Tensor, length: torch.Tensor | None = None) -> torch.Tensor:
        """How much clean motions x0 (batch x frames x joints x 2) move, by the model's ``pace_measure``: batch."""
        if self.cfg.pace_measure == "reach":
            return window_reach(x0, length, self.cfg.root)
        return window_pace(x0, length)

    def pace_class(self, x0: torch.Tensor, length: torch.Tensor | None = None) -> torch.Tensor:
        """The pace class (batch, long in 0 .. C - 1) of clean motions x0 (batch x frames x joints x 2)."""
        return torch.bucketize(self.pace(x0, length), self.pace_edges.to(x0.dtype))

    @torch.no_grad()
    def fit_standardisation(self, pose: torch.Tensor, length: torch.Tensor) -> None:
        """Set ``feature_mean`` and ``feature_std`` (joints x 2) from clean windows (N x frames x joints x 2,
        normalised; ``length`` N valid frames each), in the network's frame. A std is at least 0.01 (5 mm
        at the human scale), so that a joint that never moves does not blow its input up."""
        y = self.to_root_frame(pose) if self.cfg.frame == "root" else pose
        valid = (torch.arange(pose.shape[1])[None] < length[:, None]).to(y.dtype)[..., None, None]
        n = valid.sum()
        mean = (y * valid).sum((0, 1)) / n
        std = (((y - mean) ** 2 * valid).sum((0, 1)) / n).sqrt().clamp_min(0.01)
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std)

    def to_root_frame(self, x: torch.Tensor) -> torch.Tensor:
        """Image coordinates -> the network's (frame = "root"): B x F x J x 2 both."""
        r = x[:, :, self.cfg.root]                                     # B, F, 2
        y = x - r[:, :, None]
        y[:, :, self.cfg.root] = r
        return y

    def from_root_frame(self, y: torch.Tensor) -> torch.Tensor:
        """The inverse of ``to_root_frame``."""
        r = y[:, :, self.cfg.root]
        x = y + r[:, :, None]
        x[:, :, self.cfg.root] = r
        return x

    def skip_taps(self, x_t: torch.Tensor, length: torch.Tensor | None = None) -> torch.Tensor:
        """The linear skip's inputs: batch x frames x joints x 2 -> the same x (r + 1): the frame itself, then
        the sum of the two frames k before and after it for k = 1 .. r, each window's first and last valid
        frame repeated beyond its ends (so a motion at rest stays at rest, and padding is never read)."""
        B, F = x_t.shape[:2]
        r = self.cfg.skip_radius
        last = ((length.long() - 1).clamp(0, F - 1) if length is not None
                else torch.full((B,), F - 1, dtype=torch.long, device=x_t.device))
        frame = torch.arange(F, device=x_t.device)[None, :, None]
        shift = torch.arange(1, r + 1, device=x_t.device)[None, None]
        rows = torch.arange(B, device=x_t.device)[:, None, None]
        before = x_t[rows, torch.minimum((frame - shift).clamp_min(0), last[:, None, None])]  # B, F, r, J, 2
        after = x_t[rows, torch.minimum(frame + shift, last[:, None, None])]
        return torch.cat([x_t[..., None], (before + after).permute(0, 1, 3, 4, 2)], -1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, length: torch.Tensor | None = None,
                x0_prev: torch.Tensor | None = None, pace: torch.Tensor | None = None) -> torch.Tensor:
        """Predict x0.

        x_t:     batch x frames x joints x 2 (normalised 2D)
        t:       batch (integer steps in 0 .. diffusion_steps - 1)
        length:  batch, valid frames of each motion (None: all frames valid)
        x0_prev: as x_t, an earlier x0 estimate for a self-conditioned model (None: none; ignored by others)
        pace:    batch (long), the pace class of each motion for a model with pace classes (None: "any"; ignored
                 by others)
        Returns batch x frames x joints x 2.
        """
        out = self.network_x0(x_t, t, length, x0_prev, pace)
        if not self.cfg.skip_radius:
            return out
        t = t.long()
        filtered = (self.skip_taps(x_t, length) * self.skip_filter[t][:, None, None, None]).sum(-1)
        return filtered + self.skip_out[t][:, None, None, None] * out

    def network_x0(self, x_t: torch.Tensor, t: torch.Tensor, length: torch.Tensor | None = None,
                   x0_prev: torch.Tensor | None = None, pace: torch.Tensor | None = None) -> torch.Tensor:
        """The network's own x0 (``forward`` without the linear skip): shapes as ``forward``."""
        B, F, J, _ = x_t.shape
        P = self.cfg.frames_per_token
        if F > self.cfg.max_frames:
            raise ValueError(f"{F} frames is longer than the model's maximum of {self.cfg.max_frames}")
        pad = (-F) % P
        x = self.to_root_frame(x_t) if self.cfg.frame == "root" else x_t
        if self.cfg.standardise:
            s = self.sqrt_ab[t.long()][:, None, None, None]
            var = s ** 2 + (1 - s ** 2) * self.noise_var / self.feature_std ** 2   # of each z-scored input coordinate
            x = (x - s * self.feature_mean) / (self.feature_std * var.sqrt())
        N = (F + pad) // P
        tokens = self.input(self._tokens(x, pad))
        if self.cfg.self_condition and x0_prev is not None:
            y = self.to_root_frame(x0_prev) if self.cfg.frame == "root" else x0_prev
            if self.cfg.standardise:
                y = (y - self.feature_mean) / self.feature_std
            tokens = tokens + self.self_cond(self._tokens(y, pad))
        step = self.time_mlp(sinusoidal(t, self.cfg.width))[:, None]
        h = torch.cat([step, tokens], 1) + self.positions[: N + 1]
        if self.cfg.pace_classes:
            if pace is None:
                pace = torch.full((B,), self.cfg.pace_classes, dtype=torch.long, device=x_t.device)
            h = h + self.pace_embed(pace.long())[:, None]
        mask = None
        if length is not None:
            # a token is padding when all its frames are past the motion's end; step token always valid
            tok_valid = torch.arange(N, device=x_t.device)[None] * P < length[:, None]
            mask = torch.cat([tok_valid.new_ones(B, 1), tok_valid], 1).logical_not()
            if not mask.any():
                mask = None
        h = self.encoder(h, src_key_padding_mask=mask)
        out = self.output(self.norm(h[:, 1:]))                          # B, N, P * J * 2
        if self.cfg.output == "upsampled" and P > 1:
            centres = out.reshape(B, N, P, J * 2).mean(2).transpose(1, 2)  # B, J * 2, N
            out = F_.interpolate(centres, size=N * P, mode="linear", align_corners=False).transpose(1, 2)
        out = out.reshape(B, N * P, J, 2)[:, :F]
        if self.cfg.standardise:
            out = out * self.feature_std + self.feature_mean
        if self.cfg.frame == "root":
            out = self.from_root_frame(out)
        if self.cfg.prediction == "v":
            t = t.long()
            return self.sqrt_ab[t, None, None, None] * x_t - self.sqrt_one_minus_ab[t, None, None, None] * out
        return out

    def _tokens(self, x: torch.Tensor, pad: int) -> torch.Tensor:
        """batch x frames x joints x 2 -> batch x tokens x (frames_per_token joints 2), ``pad`` zero frames added."""
        B, F = x.shape[:2]
        x = x.reshape(B, F, -1)
        if pad:
            x = torch.cat([x, x.new_zeros(B, pad, x.shape[-1])], 1)
        return x.reshape(B, (F + pad) // self.cfg.frames_per_token, -1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
