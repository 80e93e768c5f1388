"""The MAS reference code's triangulation, for benchmarks and comparisons only.

One Adam optimiser (lr 0.01) over the 3D motion, created once and kept across diffusion
steps, up to 1000 iterations per step on the plain mean squared reprojection error, stopped
when the loss stops decreasing. This is what the fast closed-form path replaces.
"""
from __future__ import annotations

import time

import torch

from .cameras import Cameras


class ReferenceConsistency:
    """Drop-in for sampler.MultiViewConsistency with the reference's optimiser."""

    def __init__(self, cams: Cameras, max_iters: int = 1000, lr: float = 0.01):
        self.cams, self.max_iters, self.lr = cams, max_iters, lr
        self.X = None          # the latest solution (what the sampler reads)
        self.param = None      # the tensor Adam optimises
        self.opt = None
        self.seconds = 0.0
        self.iterations: list[int] = []

    def triangulate(self, uv: torch.Tensor) -> torch.Tensor:
        """uv: (..., V, 2) -> X (..., 3), continuing from the previous solution."""
        with torch.inference_mode(False), torch.enable_grad():
            uv = uv.clone()
            if self.param is None:
                # tensors made under inference mode (the sampler's cameras) cannot enter autograd: copy them
                self.cams = Cameras(self.cams.R.clone(), self.cams.t.clone(), self.cams.focal.clone())
                # the reference starts from zeros (the subject's centre)
                self.param = torch.zeros(uv.shape[:-2] + (3,), dtype=uv.dtype, device=uv.device, requires_grad=True)
                self.opt = torch.optim.Adam([self.param], lr=self.lr)
            best = float("inf")
            n = 0
            for n in range(1, self.max_iters + 1):
                self.opt.zero_grad()
                loss = ((self.cams.project(self.param) - uv) ** 2).mean()
                loss.backward()
                self.opt.step()
                value = float(loss.detach())  # a host sync every iteration, as in the reference
                if value >= best:
                    break
                best = value
            self.iterations.append(n)
            self.X = self.param.detach().clone()
        return self.X

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        X = self.triangulate(x0.permute(0, 2, 3, 1, 4))
        out = self.cams.project(X).permute(0, 3, 1, 2, 4)
        self.seconds += time.perf_counter() - t0
        return out
