"""The default likelihood of points far from sharp data: accurate relative to their log-density.

A point a few units from modes of std 0.02-0.03 has `log p_0` of -1e3 to -1e4 nats; its
probability-flow path runs along the boundary between two modes (a stiff stretch, thousands
of steps), and the accumulated log-density is large. With a tolerance relative to that
accumulated value every step may add `rtol |l|`, and the sum came out 0.4 to 2 nats off here
(1e3 nats at (5, 5)). The log-density column is now held to `atol` per step
(`AugmentedFlow.relative_weights`, `solve_adaptive(relative=)`).
"""

from __future__ import annotations

import torch

import scoresde as sd
from scoresde.likelihood import likelihood
from scoresde.likelihood.flow import AugmentedFlow


def _anisotropic() -> sd.GaussianMixture:
    return sd.GaussianMixture([[-1.0, 0.0], [1.0, 0.0]], stds=[[0.02, 0.3], [0.25, 0.03]], weights=[0.8, 0.2])


def test_far_points_are_accurate_to_a_relative_1e5_of_their_log_density() -> None:
    target, sde = _anisotropic(), sd.VPSDE()
    far = torch.tensor([[2.0, 1.5], [2.5, 2.0]], dtype=torch.float64)
    exact = target.log_prob(far)
    assert bool((exact < -1000).all())
    r = likelihood(sde, target.score_fn(sde), far, prior=lambda z: target.marginal_log_prob(z, sde.T, sde))
    err = (r.log_prob - exact).abs()
    # 3.8e-3 and 4.4e-3 measured (was 0.40 and 2.1 with the relative tolerance on l)
    assert bool((err <= 1e-5 * exact.abs()).all()), err.tolist()


def test_only_the_data_columns_get_a_relative_tolerance() -> None:
    sde, target = sd.VPSDE(), _anisotropic()
    x = torch.zeros(3, 2, dtype=torch.float64)
    flow = AugmentedFlow(sde, target.score_fn(sde), (2,))
    y = flow.pack(x)
    assert flow.relative_weights(y).tolist() == [1.0, 1.0, 0.0]


def test_a_far_point_in_float32_is_not_held_below_float32_rounding() -> None:
    # At x = (100, 100) log p_0 is -4.3e5: a float32 addition to it rounds by 0.03, and its
    # score . x (the goal's size) is about 4e5 too. Held to atol = 1e-5 per step, the step size
    # shrank without end: max_steps=500 ran out at t = 0.055 (179 rejected), and the default
    # ran for minutes. Both are now floored at a few units of float32 rounding.
    target, sde = sd.targets.eight_gaussians(), sd.VPSDE()
    far = torch.full((3, 2), 100.0)
    p_T = lambda z: target.marginal_log_prob(z, sde.T, sde)  # noqa: E731
    single = likelihood(sde, target.score_fn(sde), far, prior=p_T, max_steps=1000)
    double = likelihood(sde, target.score_fn(sde), far.double(), prior=p_T)
    assert single.log_prob.dtype == torch.float32
    rel = ((single.log_prob.double() - double.log_prob) / double.log_prob).abs()
    assert float(rel.max()) < 1e-4
    exact = target.log_prob(far.double())
    assert float(((double.log_prob - exact) / exact).abs().max()) < 1e-4
