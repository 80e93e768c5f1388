import math

import pytest
import torch
from scipy import stats

from mas_engine.cameras import Cameras
from mas_engine.diffusion import Schedule, alpha_bar_schedule, posterior_step, q_sample
from mas_engine.sampler import draw_noise


def test_projected_3d_noise_is_standard_normal_in_every_view():
    cams = Cameras.ring(5, math.pi / 16, 7.0)
    noise = torch.randn(200_000, 3, generator=torch.Generator().manual_seed(0))
    views = cams.rotate_orthographic(noise)            # N x V x 2
    for v in range(5):
        for axis in range(2):
            x = views[:, v, axis].double().numpy()
            assert abs(x.mean()) < 0.01
            assert abs(x.std() - 1) < 0.01
            assert stats.kstest(x, "norm").pvalue > 1e-3


def test_projected_3d_noise_has_the_cross_view_correlation_of_the_rotations():
    cams = Cameras.ring(4, 0.3, 7.0, dtype=torch.float64)
    noise = torch.randn(200_000, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    views = cams.rotate_orthographic(noise)
    flat = views.reshape(len(noise), -1)               # V*2 columns
    empirical = flat.T @ flat / len(noise)
    expected = (cams.R[:, :2].reshape(-1, 3) @ cams.R[:, :2].reshape(-1, 3).T)
    assert (empirical - expected).abs().max() < 0.01
    # views 90 degrees apart share the vertical axis but not the horizontal one
    assert expected[1, 3] > 0.9 and abs(expected[0, 2]) < 1e-9


def test_noise_of_a_seed_does_not_depend_on_the_batch():
    alone = draw_noise([7], (3, 5, 2), "cpu")
    batch = draw_noise([3, 7, 9], (3, 5, 2), "cpu")
    torch.testing.assert_close(alone[:, 0], batch[:, 1])
    assert not torch.equal(batch[:, 0], batch[:, 1])


@pytest.mark.parametrize("name", ["cosine", "cosine_tau_2"])
def test_schedule_is_monotone_and_in_range(name):
    ab = alpha_bar_schedule(name, 100)
    assert ab.shape == (100,)
    assert (ab[1:] < ab[:-1]).all() and ab[0] < 1 and ab[-1] > 0
    if name == "cosine":
        assert abs(ab[49] - 0.5) < 0.05   # plain cosine: about half the signal mid-way


@pytest.mark.parametrize("sample_steps", [None, 25])
def test_posterior_coefficients_match_the_closed_form(sample_steps):
    s = Schedule.create("cosine", 100, sample_steps)
    full = alpha_bar_schedule("cosine", 100)
    for k in [0, 1, len(s) // 2, len(s) - 1]:
        ab = full[s.timesteps[k]]
        ab_prev = full[s.timesteps[k - 1]] if k > 0 else torch.tensor(1.0, dtype=torch.float64)
        beta = 1 - ab / ab_prev
        assert torch.isclose(s.posterior_c0[k], beta * ab_prev.sqrt() / (1 - ab))
        assert torch.isclose(s.posterior_ct[k], (1 - ab_prev) * (1 - beta).sqrt() / (1 - ab))
        assert torch.isclose(s.posterior_var[k], beta * (1 - ab_prev) / (1 - ab))


def test_posterior_sampling_reproduces_the_forward_marginal():
    """If x_t ~ q(x_t | x0) then a posterior step gives x_{t-1} ~ q(x_{t-1} | x0)."""
    s = Schedule.create("cosine", 100)
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((400_000,), 0.7, dtype=torch.float64)
    k = 60
    x_t = q_sample(x0, s.alpha_bar[k].expand(len(x0)), torch.randn(x0.shape, generator=g, dtype=torch.float64))
    x_prev = posterior_step(s, k, x_t, x0, torch.randn(x0.shape, generator=g, dtype=torch.float64))
    ab_prev = s.alpha_bar_prev[k]
    assert abs(x_prev.mean() - ab_prev.sqrt() * 0.7) < 0.005
    assert abs(x_prev.var() - (1 - ab_prev)) < 0.005


def test_last_posterior_step_returns_x0():
    s = Schedule.create("cosine", 100, 10)
    x0 = torch.randn(5)
    torch.testing.assert_close(posterior_step(s, 0, torch.randn(5), x0, None), x0)


def test_a_noiseless_step_is_the_posterior_mean_with_less_than_its_levels_noise():
    """A step given no noise (MasSettings.noiseless_share) keeps x_{t-1} at the posterior mean: its spread
    is that of x_t shrunk by ct, under the level's own sqrt(1 - alpha_bar_{t-1})."""
    s = Schedule.create("cosine", 100)
    g = torch.Generator().manual_seed(1)
    x0 = torch.full((200_000,), 0.7, dtype=torch.float64)
    k = 4
    x_t = q_sample(x0, s.alpha_bar[k].expand(len(x0)), torch.randn(x0.shape, generator=g, dtype=torch.float64))
    mean = posterior_step(s, k, x_t, x0, None)
    torch.testing.assert_close(mean, s.posterior_c0[k] * x0 + s.posterior_ct[k] * x_t)
    assert abs(mean.std() - s.posterior_ct[k] * (1 - s.alpha_bar[k]).sqrt()) < 0.01 * mean.std()
    assert mean.var() < 0.8 * (1 - s.alpha_bar_prev[k])
