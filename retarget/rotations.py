"""Small batched rotation functions (torch). Matrices act on column vectors: v' = R @ v.

Quaternions are (w, x, y, z). The 6D representation (Zhou et al. 2019) is the first two
columns of the matrix, (..., 3, 2) flattened to (..., 6).
"""
from __future__ import annotations

import torch


def matrix_from_6d(d6: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt on the two columns."""
    a, b = d6[..., :3], d6[..., 3:]
    x = torch.nn.functional.normalize(a, dim=-1)
    y = torch.nn.functional.normalize(b - (x * b).sum(-1, keepdim=True) * x, dim=-1)
    z = torch.cross(x, y, dim=-1)
    return torch.stack([x, y, z], -1)


def matrix_to_6d(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6)."""
    return torch.cat([R[..., :, 0], R[..., :, 1]], -1)


def kabsch(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Rotation R (..., 3, 3) minimising sum_i w_i |R src_i - dst_i|^2; src, dst (..., N, 3)."""
    w = torch.ones_like(src[..., 0]) if weights is None else weights
    H = torch.einsum("...n,...ni,...nj->...ij", w, dst, src)
    U, _, Vh = torch.linalg.svd(H)
    d = torch.sign(torch.linalg.det(U @ Vh))
    D = torch.ones_like(H[..., 0])
    D[..., 2] = d
    return U @ torch.diag_embed(D) @ Vh


def swing(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """The smallest rotation (..., 3, 3) turning direction a into direction b (..., 3)."""
    a = torch.nn.functional.normalize(a, dim=-1)
    b = torch.nn.functional.normalize(b, dim=-1)
    v = torch.cross(a, b, dim=-1)
    c = (a * b).sum(-1)
    K = torch.zeros(a.shape[:-1] + (3, 3), dtype=a.dtype, device=a.device)
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    K = K - K.transpose(-1, -2)
    eye = torch.eye(3, dtype=a.dtype, device=a.device).expand_as(K)
    R = eye + K + K @ K / (1 + c).clamp(min=eps)[..., None, None]
    # opposite directions: a half turn about any axis perpendicular to a
    opposite = c < -1 + 1e-6
    if opposite.any():
        axis = torch.nn.functional.normalize(torch.cross(a, torch.tensor([1.0, 0, 0], dtype=a.dtype).expand_as(a), dim=-1)
                                             + torch.cross(a, torch.tensor([0, 1.0, 0], dtype=a.dtype).expand_as(a), dim=-1) * 1e-3, dim=-1)
        flip = 2 * axis[..., :, None] * axis[..., None, :] - eye
        R = torch.where(opposite[..., None, None], flip, R)
    return R


def quaternion_from_matrix(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 4) unit quaternions (w, x, y, z) with w >= 0."""
    m = R
    t = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = torch.stack([
        torch.stack([1 + t, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2], m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1),
    ], -2)
    # each candidate row is 4 q_k q; take the one with the largest diagonal term (stable)
    diag = torch.stack([1 + t, 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                        1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1)
    best = diag.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4))[..., 0, :]
    q = torch.nn.functional.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def matrix_from_quaternion(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) (w, x, y, z) -> (..., 3, 3)."""
    q = torch.nn.functional.normalize(q, dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def axis_angle_matrix(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotations about unit axes (..., 3) by angles (...,) in radians (Rodrigues)."""
    axis = torch.nn.functional.normalize(axis, dim=-1)
    K = torch.zeros(axis.shape[:-1] + (3, 3), dtype=axis.dtype)
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -axis[..., 2], axis[..., 1], -axis[..., 0]
    K = K - K.transpose(-1, -2)
    s, c = torch.sin(angle)[..., None, None], torch.cos(angle)[..., None, None]
    return torch.eye(3, dtype=axis.dtype) + s * K + (1 - c) * K @ K
