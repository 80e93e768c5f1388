"""Gaussian diffusion in the DDPM form: schedule, forward noising, posterior.

Notation as in Ho et al. 2020: alpha_bar_t = prod_{s<=t} (1 - beta_s),
q(x_t | x0) = N(sqrt(alpha_bar_t) x0, (1 - alpha_bar_t) I), and the posterior
q(x_{t-1} | x_t, x0) = N(c0_t x0 + ct_t x_t, var_t) with
    c0_t  = beta_t sqrt(alpha_bar_{t-1}) / (1 - alpha_bar_t)
    ct_t  = (1 - alpha_bar_{t-1}) sqrt(alpha_t) / (1 - alpha_bar_t)
    var_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t).
Steps are indexed 0 .. T-1 (the model's t); alpha_bar_{-1} = 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def alpha_bar_schedule(name: str, steps: int) -> torch.Tensor:
    """alpha_bar_t for t = 0 .. steps-1 (float64).

    cosine: Nichol & Dhariwal 2021, f(t) = cos^2((t/T + s) / (1 + s) * pi/2), s = 0.008.
    cosine_tau_2: the same raised to the power 2 (the MAS reference's default: more noise mid-way).
    """
    s = 0.008
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    if name == "cosine":
        pass
    elif name == "cosine_tau_2":
        f = f ** 2
    else:
        raise ValueError(f"unknown noise schedule {name!r}; use 'cosine' or 'cosine_tau_2'")
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0)


@dataclass
class Schedule:
    """The coefficients of a (possibly respaced) chain of sampling steps.

    timesteps: the model's step index of each chain step, descending order of use is
    ``reversed(range(len(timesteps)))``; alpha_bar is that of each chain step.
    """

    timesteps: torch.Tensor      # K, int64, ascending
    alpha_bar: torch.Tensor      # K, float64
    alpha_bar_prev: torch.Tensor
    betas: torch.Tensor
    posterior_c0: torch.Tensor
    posterior_ct: torch.Tensor
    posterior_var: torch.Tensor

    @classmethod
    def create(cls, name: str, train_steps: int, sample_steps: int | None = None) -> "Schedule":
        """The full schedule, or ``sample_steps`` of it evenly spaced (as improved DDPM respaces)."""
        ab_full = alpha_bar_schedule(name, train_steps)
        K = sample_steps or train_steps
        if not 1 <= K <= train_steps:
            raise ValueError(f"steps must be between 1 and {train_steps}, got {K}")
        ts = torch.round(torch.linspace(0, train_steps - 1, K)).long() if K < train_steps else torch.arange(train_steps)
        ab = ab_full[ts]
        ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        betas = 1 - ab / ab_prev
        alphas = 1 - betas
        return cls(ts, ab, ab_prev, betas,
                   posterior_c0=betas * ab_prev.sqrt() / (1 - ab),
                   posterior_ct=(1 - ab_prev) * alphas.sqrt() / (1 - ab),
                   posterior_var=betas * (1 - ab_prev) / (1 - ab))

    def __len__(self) -> int:
        return len(self.timesteps)


def q_sample(x0: torch.Tensor, alpha_bar_t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Forward noising x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) noise; alpha_bar_t is batch-shaped."""
    ab = alpha_bar_t.to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def posterior_step(schedule: Schedule, k: int, x_t: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Ancestral step: a sample of q(x_{t-1} | x_t, x0) for chain step k; its mean at k = 0, or where
    ``noise`` is None (a noiseless step)."""
    mean = float(schedule.posterior_c0[k]) * x0 + float(schedule.posterior_ct[k]) * x_t
    if k == 0 or noise is None:
        return mean
    return mean + math.sqrt(float(schedule.posterior_var[k])) * noise
