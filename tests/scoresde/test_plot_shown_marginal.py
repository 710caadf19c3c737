"""Density outlines under plots of data in more than two dimensions: the exact 2-D marginal.

`plot_snapshots`, `plot_solver_grid` and the animations draw two coordinates of the points;
a `GaussianMixture` target in `D > 2` used to be skipped silently (no outline). Its marginal
on the shown coordinates is a 2-D mixture with the same weights (`shown_marginal`); checked
here against numerical integration of the 3-D `p_t` over the hidden coordinate.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.contour import QuadContourSet  # noqa: E402

import scoresde as sd  # noqa: E402
import solvers  # noqa: E402
from scoresde.plotting import plot_snapshots, plot_solver_grid  # noqa: E402
from scoresde.plotting.marginals import shown_marginal  # noqa: E402


def _target3() -> sd.GaussianMixture:
    return sd.GaussianMixture([[1.0, 0.0, -1.0], [-1.0, 0.5, 1.0]], stds=[[0.2, 0.3, 0.1], [0.1, 0.2, 0.4]],
                              weights=[0.3, 0.7])


@pytest.mark.parametrize("dims", [(0, 1), (2, 0), (1, -1)])
@pytest.mark.parametrize("t", [0.0, 0.05, 0.5])
def test_shown_marginal_is_the_exact_marginal_of_p_t(dims: tuple[int, int], t: float) -> None:
    target, sde = _target3(), sd.VPSDE()
    shown = shown_marginal(target, dims)
    assert shown is not None and shown.dim == 2
    i, j = (k % 3 for k in dims)
    hidden = ({0, 1, 2} - {i, j}).pop()
    pts = torch.tensor([[0.9, 0.1], [-1.0, 0.6], [0.0, 0.0], [-0.8, 1.2]], dtype=torch.float64)
    z = torch.linspace(-6.0, 6.0, 24001, dtype=torch.float64)
    for p in pts:
        full = torch.zeros(z.numel(), 3, dtype=torch.float64)
        full[:, i], full[:, j], full[:, hidden] = p[0], p[1], z
        dens = target.marginal_log_prob(full, t, sde).exp() if t > 0 else target.log_prob(full).exp()
        integral = torch.trapezoid(dens, z)
        got = (shown.marginal_log_prob(p[None], t, sde) if t > 0 else shown.log_prob(p[None])).exp()
        torch.testing.assert_close(got[0], integral, rtol=1e-6, atol=1e-12)


def test_a_two_d_target_is_returned_as_it_is_and_others_are_refused() -> None:
    t2 = sd.targets.get_target("eight_gaussians")
    assert shown_marginal(t2) is t2
    assert shown_marginal(None) is None
    with pytest.raises(ValueError, match="out of range"):
        shown_marginal(_target3(), (0, 3))

    class NotAMixture:
        dim = 3

    with pytest.raises(ValueError, match="cannot be outlined"):
        shown_marginal(NotAMixture())  # type: ignore[arg-type]


def _has_contour(ax: plt.Axes) -> bool:
    return any(isinstance(c, QuadContourSet) for c in ax.collections)


def test_plots_of_three_d_samples_outline_the_marginal() -> None:
    target, sde = _target3(), sd.VPSDE()
    res = solvers.sample(sde, target.score_fn(sde), (300, 3), "ddim", steps=10, seed=0, keep_trajectory=True)
    fig = plot_snapshots(res, target=target, sde=sde, n_panels=3)
    assert len(fig.axes) == 3 and all(_has_contour(a) for a in fig.axes)  # a 3-D target was skipped before
    plt.close(fig)
    fig = plot_solver_grid({"ddim": res}, target=target, sde=sde, rows=("samples",))
    assert _has_contour(fig.axes[0])
    plt.close(fig)


def test_animation_of_three_d_samples_outlines_the_marginal() -> None:
    from scoresde.plotting.animation import animate_particles

    target, sde = _target3(), sd.VPSDE()
    res = solvers.sample(sde, target.score_fn(sde), (200, 3), "ddim", steps=6, seed=0, keep_trajectory=True)
    fig, ax = plt.subplots()
    anim = animate_particles(res, target=target, sde=sde, ax=ax, hold=0)
    assert _has_contour(ax)  # frame 0 is drawn when the animation is built
    anim._draw_was_started = True  # not rendered on purpose: no warning about that
    plt.close(fig)
