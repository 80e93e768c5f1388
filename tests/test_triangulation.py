import math

import pytest
import torch

from mas_engine.cameras import Cameras, look_at_rotations
from mas_engine.triangulate import gauss_newton_step, reprojection_error, solve3, triangulate, triangulate_linear


def random_cameras(V, gen):
    az = torch.rand(V, generator=gen, dtype=torch.float64) * 2 * math.pi
    el = (torch.rand(V, generator=gen, dtype=torch.float64) - 0.3) * 0.8
    dist = 5 + 5 * torch.rand(V, generator=gen, dtype=torch.float64)
    return Cameras.orbit(az, el, dist, dtype=torch.float64)


@pytest.mark.parametrize("views", [2, 3, 5, 8])
def test_projection_then_triangulation_recovers_random_3d_exactly(views):
    gen = torch.Generator().manual_seed(views)
    cams = random_cameras(views, gen)
    X = torch.randn(3, 40, 16, 3, generator=gen, dtype=torch.float64)
    uv = cams.project(X)
    assert uv.shape == (3, 40, 16, views, 2)
    torch.testing.assert_close(triangulate_linear(cams, uv)[0], X, atol=1e-9, rtol=0)
    torch.testing.assert_close(triangulate(cams, uv), X, atol=1e-9, rtol=0)


def test_ring_cameras_look_at_origin_and_are_orthogonal():
    cams = Cameras.ring(5, math.pi / 16, 7.0, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(cams.R @ cams.R.transpose(1, 2), eye.expand(5, 3, 3))
    # the origin projects to the image centre, at depth = distance
    p = cams.to_camera(torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(p, torch.tensor([0, 0, 7.0], dtype=torch.float64).expand(5, 3))
    # world up projects upwards in every view, and +Y is to the right of a camera on +X
    assert (cams.project(torch.tensor([0, 0, 1.0], dtype=torch.float64))[..., 1] > 0).all()
    R0 = look_at_rotations(torch.tensor(0.0), torch.tensor(0.0))
    torch.testing.assert_close(R0[0], torch.tensor([0.0, 1.0, 0.0]))


def test_triangulation_weights_confidences():
    gen = torch.Generator().manual_seed(1)
    cams = random_cameras(4, gen)
    X = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    uv = cams.project(X)
    corrupt = uv.clone()
    corrupt[:, 0] += 0.5  # view 0 is wrong
    w = torch.ones(50, 4, dtype=torch.float64)
    w_zero, w_low = w.clone(), w.clone()
    w_zero[:, 0], w_low[:, 0] = 0.0, 0.1
    err_equal = (triangulate(cams, corrupt, w) - X).norm(dim=-1).mean()
    err_low = (triangulate(cams, corrupt, w_low) - X).norm(dim=-1).mean()
    err_zero = (triangulate(cams, corrupt, w_zero) - X).norm(dim=-1).max()
    assert err_zero < 1e-9           # a zero-confidence view is ignored
    assert err_low < 0.5 * err_equal  # a low-confidence view counts less


def test_joint_seen_in_one_view_keeps_previous_solution():
    cams = Cameras.ring(3, 0.2, 6.0, dtype=torch.float64)
    X = torch.randn(10, 3, dtype=torch.float64)
    w = torch.zeros(10, 3, dtype=torch.float64)
    w[:, 0] = 1.0
    init = torch.full((10, 3), 7.0, dtype=torch.float64)
    out = triangulate(cams, cams.project(X), w, init=init)
    torch.testing.assert_close(out, init)


def test_gauss_newton_lowers_reprojection_error_on_noisy_views():
    gen = torch.Generator().manual_seed(2)
    cams = Cameras.ring(5, math.pi / 16, 3.0, dtype=torch.float64)  # close cameras: strong perspective
    X = torch.randn(200, 3, generator=gen, dtype=torch.float64)
    uv = cams.project(X) + 0.05 * torch.randn(200, 5, 2, generator=gen, dtype=torch.float64)
    lin, _ = triangulate_linear(cams, uv)
    gn = gauss_newton_step(cams, lin, uv)
    assert reprojection_error(cams, gn, uv) < reprojection_error(cams, lin, uv)


def test_solve3_matches_linalg_and_flags_singular():
    gen = torch.Generator().manual_seed(3)
    M = torch.randn(100, 3, 3, generator=gen, dtype=torch.float64)
    r = torch.randn(100, 3, generator=gen, dtype=torch.float64)
    X, ok = solve3(M, r)
    assert ok.all()
    torch.testing.assert_close(X, torch.linalg.solve(M, r))
    sing = torch.zeros(1, 3, 3, dtype=torch.float64)
    sing[0, 0, 0] = 1
    X, ok = solve3(sing, torch.ones(1, 3, dtype=torch.float64))
    assert not ok.any() and (X == 0).all()


def test_fast_and_reference_style_triangulation_agree():
    from mas_engine.reference import ReferenceConsistency

    gen = torch.Generator().manual_seed(4)
    cams = Cameras.ring(5, math.pi / 16, 12.0)
    X = torch.randn(1, 30, 16, 3, generator=gen)
    views = cams.project(X)
    ref = ReferenceConsistency(cams)
    # the reference warm-starts across diffusion steps: a few calls on the same views converge
    for _ in range(6):
        slow = ref.triangulate(views)
    fast = triangulate(cams, views)
    assert (fast - X).abs().max() < 1e-4
    assert (slow - fast).abs().max() < 0.02          # Adam with lr 0.01 ends within about a step of the optimum
    assert ref.iterations[0] > 100                   # from zeros it needs hundreds of iterations
    # on inconsistent views both land on (nearly) the same least-squares compromise
    noisy = views + 0.05 * torch.randn(views.shape, generator=gen)
    for _ in range(6):
        slow = ref.triangulate(noisy)
    assert (slow - triangulate(cams, noisy)).abs().max() < 0.03


def test_a_point_missing_in_some_views_is_masked_like_low_confidence():
    torch.manual_seed(3)
    cams = Cameras.ring(5, math.radians(10), 6.0, dtype=torch.float64)
    X = torch.randn(40, 3, dtype=torch.float64)
    uv = cams.project(X)
    uv[:20, :3] = float("nan")                       # the ball unseen by three of five views
    uv[30:, :] = float("nan")                        # and by all of them
    init = torch.full_like(X, 7.0)
    Y = triangulate(cams, uv, init=init)
    assert torch.allclose(Y[:30], X[:30], atol=1e-9)          # two views are enough
    assert torch.equal(Y[30:], init[30:])                     # none: the previous solution stays
