"""3D priors MAS applies to every step's triangulated motion (``MultiViewConsistency``): a real
skeleton is rigid (``rigid_bones``) and a person stands on one floor (``on_floor``).

X: motions x frames x joints x 3 (normalised units, Z up), a torch tensor.
"""
from __future__ import annotations

import functools

import torch

from .windows import loop_travel


@functools.lru_cache(maxsize=32)
def ancestry(parents: tuple) -> torch.Tensor:
    """J x J matrix A with A[j, k] = 1 where k is j or one of its ancestors (its chain to the root).
    Cached per layout: the sampling loop asks for it at every step (treat it as read-only)."""
    A = torch.zeros(len(parents), len(parents))
    for j in range(len(parents)):
        k = j
        while k >= 0:
            A[j, k] = 1.0
            k = parents[k]
    return A


def rigid_bones(X: torch.Tensor, parents, keep=(), lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Each bone of X (motions x frames x joints x 3) at its median length over the frames, in its
    own direction: a real skeleton is rigid, and triangulated views need not be. A joint is its
    root plus the rescaled bones of its chain (one product with ``ancestry``, whatever the
    layout's order). The root and the joints in ``keep`` (a prop such as the ball, not a bone)
    stay where they are; a kept joint's children hang from it as from a root. ``lengths``
    (joints, the bone from each joint's parent; NaN where unknown): the skeleton's own lengths
    where they are known, e.g. from a pose the motion must pass through (``constraint_lengths``)."""
    parents = tuple(-1 if j in keep else p for j, p in enumerate(parents))
    roots = [j for j, p in enumerate(parents) if p < 0]
    d = X - X[:, :, [p if p >= 0 else j for j, p in enumerate(parents)]]
    length = d.norm(dim=-1, keepdim=True)
    target = length.median(dim=1, keepdim=True).values                 # motions x 1 x joints x 1
    if lengths is not None:
        known = torch.isfinite(lengths).to(X.device)[None, None, :, None]
        target = torch.where(known, torch.nan_to_num(lengths).to(X)[None, None, :, None], target)
    bones = d / length.clamp(min=1e-9) * target
    bones[:, :, roots] = X[:, :, roots]
    return torch.einsum("jk,bfkc->bfjc", ancestry(parents).to(X), bones)


def on_floor(X: torch.Tensor, feet: list[int]) -> torch.Tensor:
    """Each frame of X (motions x frames x joints x 3, Z up) moved up or down so that its lowest foot
    stands on the motion's floor: the median over frames of the lowest foot's height. A person
    does not float or sink: the views' wish to see a walk away from them as 'up in the image' can
    no longer be met by lifting the body (measured: floating gone, gliding not; docs/results.md)."""
    low = X[..., feet, 2].amin(-1)                                   # motions x frames
    floor = low.median(dim=1, keepdim=True).values
    lift = torch.zeros_like(X)
    lift[..., 2] = (floor - low)[..., None]
    return X + lift


def constraint_lengths(targets: torch.Tensor, mask: torch.Tensor, parents) -> torch.Tensor:
    """The bone lengths of the poses a motion must pass through (targets, mask: frames x joints x
    3, mask 0/1): for each joint, the mean length of the bone from its parent over the frames
    where both ends are fixed; NaN where no frame fixes both (joints, the targets' units). A
    motion that continues from a pose keeps that pose's skeleton, so the frames after the pose
    do not jump to the model's proportions (measured: docs/results.md)."""
    out = torch.full((len(parents),), float("nan"), dtype=targets.dtype, device=targets.device)
    fixed = mask.bool().all(-1)                                          # frames x joints
    for j, p in enumerate(parents):
        both = fixed[:, j] & fixed[:, p] if p >= 0 else None
        if both is not None and both.any():
            out[j] = (targets[both, j] - targets[both, p]).norm(dim=-1).mean()
    return out


def level_loop(X: torch.Tensor, root: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A travelling loop (motions x frames x joints x 3, Z up) that travels on the floor only: its
    travel per period (``windows.loop_travel`` of the root) loses its vertical part, taken out of
    the frames as a straight ramp, so a walk cycle that repeats does not climb or sink a little
    more every period. Returns (X, travel: motions x 3, Z = 0)."""
    travel = loop_travel(X[:, :, root])                              # motions x 3
    ramp = torch.arange(X.shape[1], device=X.device, dtype=X.dtype) / X.shape[1]
    lift = torch.zeros_like(X)
    lift[..., 2] = ramp[None, :, None] * travel[:, None, None, 2]
    travel = travel.clone()
    travel[:, 2] = 0
    return X - lift, travel
