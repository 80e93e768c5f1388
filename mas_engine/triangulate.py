"""Triangulation: one 3D point per joint and frame from V perspective views, for all at once.

1. Linear least squares (DLT): each view gives two equations linear in X,
   (u r3 - f r1) . X + (u t3 - f t1) = 0 and the same with v and r2, weighted by the
   view's confidence; the 3x3 normal equations are solved in closed form.
2. Gauss-Newton steps on the confidence-weighted perspective reprojection error
   sum_v w_v |pi_v(X) - uv_v|^2, again with closed-form 3x3 solves.

Both are exact on noise-free views. The 3x3 systems are solved in closed form, not with
``torch.linalg.solve``: millions of tiny batched solves are slow through LAPACK on a CPU.
"""
from __future__ import annotations

import torch

from .cameras import Cameras, perspective


def solve3(M: torch.Tensor, r: torch.Tensor, eps: float = 1e-12):
    """Solve M X = r for batches of 3x3 systems: M (..., 3, 3), r (..., 3).

    The rows of M's inverse are the cross products of its columns over the determinant
    (c1 x c2, c2 x c0, c0 x c1) / det: a few batched operations instead of a LAPACK call per
    system. Returns (X, ok) where ok is False for (near-)singular systems (X is 0 there).
    """
    c0, c1, c2 = M[..., 0], M[..., 1], M[..., 2]
    rows = torch.stack([torch.linalg.cross(c1, c2), torch.linalg.cross(c2, c0), torch.linalg.cross(c0, c1)], -2)
    det = (c0 * rows[..., 0, :]).sum(-1)
    scale = M.abs().amax(dim=(-1, -2)).clamp(min=1e-30)
    ok = det.abs() > eps * scale ** 3
    X = (rows @ r[..., None])[..., 0] / torch.where(ok, det, torch.ones_like(det))[..., None]
    return torch.where(ok[..., None], X, torch.zeros_like(X)), ok


def weighted_least_squares(A: torch.Tensor, b: torch.Tensor, w: torch.Tensor | None):
    """argmin_X sum_i w_i (A_i . X + b_i)^2 for batches: A (..., N, 3), b (..., N), w (..., N) or None.

    Returns ((..., 3), ok) via the 3x3 normal equations.
    """
    Aw = A if w is None else A * w[..., None]
    M = Aw.transpose(-1, -2) @ A
    r = -(Aw.transpose(-1, -2) @ b[..., None])[..., 0]
    return solve3(M, r)


def _per_equation(weights: torch.Tensor | None) -> torch.Tensor | None:
    """View weights (..., V) -> equation weights (..., 2V): two equations per view."""
    return None if weights is None else weights.repeat_interleave(2, dim=-1)


def triangulate_linear(cams: Cameras, uv: torch.Tensor, weights: torch.Tensor | None = None):
    """Weighted DLT. uv: (..., V, 2) image points; weights: (..., V) or None. Returns ((..., 3), ok)."""
    R, t, f = cams.R, cams.t, cams.focal[:, None, None]
    # rows (u r3 - f r1) and (v r3 - f r2) of each view, interleaved: (..., V, 2, 3) -> (..., 2V, 3)
    A = uv[..., None] * R[:, None, 2] - f * R[:, :2]
    b = uv * t[:, None, 2] - f[..., 0] * t[:, :2]
    return weighted_least_squares(A.flatten(-3, -2), b.flatten(-2), _per_equation(weights))


def gauss_newton_step(cams: Cameras, X: torch.Tensor, uv: torch.Tensor, weights: torch.Tensor | None = None):
    """One Gauss-Newton step on the weighted reprojection error. X (..., 3), uv (..., V, 2)."""
    p = cams.to_camera(X)                                    # ..., V, 3
    z = p[..., 2:3]
    proj = perspective(p, cams.focal[:, None])
    # d proj / d X = f / z * (R_xy - proj / f * R_z), (..., V, 2, 3)
    Jac = (cams.focal[:, None] / z)[..., None] * cams.R[:, :2] - (proj / z)[..., None] * cams.R[:, None, 2]
    delta, _ = weighted_least_squares(Jac.flatten(-3, -2), (proj - uv).flatten(-2), _per_equation(weights))
    return X + delta


def triangulate(cams: Cameras, uv: torch.Tensor, weights: torch.Tensor | None = None,
                iters: int = 1, init: torch.Tensor | None = None) -> torch.Tensor:
    """3D points (..., 3) from views uv (..., V, 2) with confidences (..., V).

    The closed-form linear solution starts the Gauss-Newton steps, so no warm start is
    needed where two or more views see a joint; ``init`` (the previous diffusion step's
    solution, in MAS) is kept where the system is degenerate (a joint confidently seen in
    fewer than two views), where Gauss-Newton then leaves it. A point that is NaN in a view (a
    ball out of sight) counts there with weight 0, like a joint of low confidence.
    """
    missing = ~torch.isfinite(uv).all(-1)
    if missing.any():
        uv = torch.where(missing[..., None], torch.zeros_like(uv), uv)
        seen = (~missing).to(uv.dtype)
        weights = seen if weights is None else torch.where(missing, torch.zeros_like(weights), weights)
    X, ok = triangulate_linear(cams, uv, weights)
    if init is not None:
        X = torch.where(ok[..., None], X, init)
    for _ in range(iters):
        X = gauss_newton_step(cams, X, uv, weights)
    return X


def reprojection_error(cams: Cameras, X: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Mean distance between the projections of X (..., 3) and uv (..., V, 2)."""
    return (cams.project(X) - uv).norm(dim=-1).mean()
