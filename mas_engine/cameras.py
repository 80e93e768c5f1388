"""Cameras around the subject: look-at rotations and batched projections.

World: Z up, the subject near the origin. A camera at azimuth ``a`` (about Z, 0 = on the
+X axis looking towards -X), elevation ``e`` (above the horizon) and distance ``d`` looks
at the origin. Camera coordinates: x right, y up, z forward (depth), so a 2D motion has
its y axis up, as a person reads it. World to camera: ``p_cam = R @ (p - C)``.

Perspective uses focal length ``f = d``: points in the plane through the origin facing
the camera keep their size, so 2D coordinates are in the same units as the 3D (metres,
or normalised units) and perspective and orthographic agree near the subject.
"""
from __future__ import annotations

import math

import torch


def perspective(p, focal):
    """Pinhole projection of camera-space points p (..., 3; Z is depth, in front > 0) with
    ``focal`` (broadcast against ..., 1): (..., 2). Works on tensors and arrays alike."""
    return focal * p[..., :2] / p[..., 2:3]


def look_at_rotations(azimuth: torch.Tensor, elevation: torch.Tensor) -> torch.Tensor:
    """World-to-camera rotations (... x 3 x 3) for cameras looking at the origin.

    Rows of R are the camera's right, up and forward axes in world coordinates. (x right,
    y up, z forward is a left-handed basis, so det R = -1: the image is not mirrored, and
    R is orthogonal, which is all the projected noise needs.)
    """
    azimuth, elevation = torch.broadcast_tensors(torch.as_tensor(azimuth), torch.as_tensor(elevation))
    ca, sa = torch.cos(azimuth), torch.sin(azimuth)
    ce, se = torch.cos(elevation), torch.sin(elevation)
    zero = torch.zeros_like(ca)
    forward = torch.stack([-ce * ca, -ce * sa, -se], -1)   # from the camera to the origin
    right = torch.stack([-sa, ca, zero], -1)               # horizontal
    up = torch.stack([-se * ca, -se * sa, ce], -1)         # orthogonal to both, Z-ward
    return torch.stack([right, up, forward], -2)


def camera_centres(azimuth, elevation, distance) -> torch.Tensor:
    """Camera positions (... x 3) in the world."""
    azimuth, elevation, distance = torch.broadcast_tensors(
        torch.as_tensor(azimuth), torch.as_tensor(elevation), torch.as_tensor(distance))
    ce = torch.cos(elevation)
    return distance[..., None] * torch.stack(
        [ce * torch.cos(azimuth), ce * torch.sin(azimuth), torch.sin(elevation)], -1)


class Cameras:
    """A batch of V look-at cameras: rotations R (V x 3 x 3), translations t (V x 3), focal f (V).

    ``to_camera(X)`` maps world points ``(..., 3)`` to every camera: ``(..., V, 3)`` with
    ``p_cam = R @ X + t`` where ``t = -R @ C``.
    """

    def __init__(self, R: torch.Tensor, t: torch.Tensor, focal: torch.Tensor):
        self.R, self.t, self.focal = R, t, focal

    @classmethod
    def orbit(cls, azimuth, elevation, distance, dtype=torch.float32, device=None) -> "Cameras":
        azimuth = torch.as_tensor(azimuth, dtype=torch.float64)
        elevation = torch.as_tensor(elevation, dtype=torch.float64)
        distance = torch.as_tensor(distance, dtype=torch.float64)
        azimuth, elevation, distance = torch.broadcast_tensors(azimuth, elevation, distance)
        R = look_at_rotations(azimuth, elevation)
        C = camera_centres(azimuth, elevation, distance)
        t = -(R @ C[..., None])[..., 0]
        kw = dict(dtype=dtype, device=device)
        return cls(R.to(**kw), t.to(**kw), distance.to(**kw).clone())

    @classmethod
    def ring(cls, views: int, elevation: float, distance: float, **kw) -> "Cameras":
        """V views evenly spread in azimuth over the full circle, same elevation and distance."""
        az = torch.arange(views, dtype=torch.float64) * (2 * math.pi / views)
        return cls.orbit(az, torch.full_like(az, elevation), torch.full_like(az, distance), **kw)

    def __len__(self) -> int:
        return self.R.shape[0]

    def to(self, device=None, dtype=None) -> "Cameras":
        return Cameras(self.R.to(device, dtype), self.t.to(device, dtype), self.focal.to(device, dtype))

    def to_camera(self, X: torch.Tensor) -> torch.Tensor:
        """World points (..., 3) -> camera coordinates (..., V, 3)."""
        return torch.einsum("vij,...j->...vi", self.R, X) + self.t

    def project(self, X: torch.Tensor) -> torch.Tensor:
        """Perspective projection of world points (..., 3) into every view: (..., V, 2)."""
        return perspective(self.to_camera(X), self.focal[:, None])

    def rotate_orthographic(self, X: torch.Tensor) -> torch.Tensor:
        """Rotate vectors (..., 3) into every view and drop depth: (..., V, 2).

        Used for the 3D noise: a rotation keeps an isotropic Gaussian isotropic, so each
        view's noise is N(0, I) while all views come from one 3D draw.
        """
        return torch.einsum("vij,...j->...vi", self.R[:, :2], X)
