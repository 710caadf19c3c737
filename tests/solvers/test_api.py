"""The convenience entry point solvers.sample and the composable layer underneath it."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers


@pytest.fixture(scope="module")
def problem():
    sde = sd.VPSDE()
    target = sd.targets.eight_gaussians()
    return sde, target, target.score_fn(sde)


def test_unknown_solver_lists_valid_names(problem):
    sde, _, score = problem
    with pytest.raises(ValueError, match="valid solvers: .*euler_maruyama"):
        solvers.sample(sde, score, (4, 2), solver="rk9000")


def test_unknown_option_lists_accepted(problem):
    sde, _, score = problem
    with pytest.raises(TypeError, match="accepts: .*final_noise"):
        solvers.sample(sde, score, (4, 2), solver="euler_maruyama", snr=0.1)


def test_every_registered_solver_has_a_summary_and_capabilities():
    for name, line in solvers.summaries().items():
        assert line and not line.startswith("``"), name
        cls = solvers.SOLVERS[name]
        assert cls.dynamics_kind in ("ode", "sde", "any")
        assert cls.order > 0


def test_nfe_is_counted_and_denoise_adds_one(problem):
    sde, _, score = problem
    r = solvers.sample(sde, score, (16, 2), steps=37, seed=0, denoise=False)
    assert r.nfe == 37 and r.times.shape == (38,)
    r = solvers.sample(sde, score, (16, 2), steps=37, seed=0, denoise=True)
    assert r.nfe == 38


def test_seed_reproducible_and_distinct(problem):
    sde, _, score = problem
    a = solvers.sample(sde, score, (32, 2), steps=20, seed=1).samples
    b = solvers.sample(sde, score, (32, 2), steps=20, seed=1).samples
    c = solvers.sample(sde, score, (32, 2), steps=20, seed=2).samples
    assert torch.equal(a, b) and not torch.equal(a, c)
    g = torch.Generator().manual_seed(1)
    d = solvers.sample(sde, score, (32, 2), steps=20, generator=g).samples
    assert torch.equal(a, d)
    with pytest.raises(ValueError, match="either seed or generator"):
        solvers.sample(sde, score, (32, 2), steps=20, seed=1, generator=g)


def test_trajectory_is_thinned_and_ordered(problem):
    sde, _, score = problem
    r = solvers.sample(sde, score, (8, 2), steps=200, seed=0, keep_trajectory=True, max_frames=11, denoise=False)
    assert r.trajectory.shape == (11, 8, 2)
    assert r.trajectory_times[0] == sde.T and r.trajectory_times[-1] == sde.eps
    assert torch.equal(r.trajectory[-1], r.samples)
    r = solvers.sample(sde, score, (8, 2), steps=5, seed=0, keep_trajectory=True, max_frames=None, denoise=False)
    assert r.trajectory.shape == (6, 8, 2)
    assert solvers.sample(sde, score, (8, 2), steps=5, seed=0, denoise=False).trajectory is None


def test_after_step_hook_sees_every_step(problem):
    sde, _, score = problem
    seen: list[float] = []

    def clamp_first_coordinate(x, t):
        seen.append(float(t[0]))
        x = x.clone()
        x[:, 0] = 0.5
        return x

    r = solvers.sample(sde, score, (8, 2), steps=10, seed=0, after_step=clamp_first_coordinate, denoise=False)
    assert len(seen) == 10 and abs(seen[-1] - sde.eps) < 1e-9  # t is float32 like x
    assert torch.all(r.samples[:, 0] == 0.5)


def test_shape_and_grid_errors(problem):
    sde, _, score = problem
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        solvers.sample(sde, score, (4, 3), steps=5)
    with pytest.raises(ValueError, match="shape"):
        solvers.sample(sde, score, (4,), steps=5)
    with pytest.raises(ValueError, match="does not match x_T"):
        solvers.sample(sde, score, (4, 2), x_T=torch.zeros(5, 2), steps=5)
    with pytest.raises(ValueError, match=r"must lie in \[eps"):
        solvers.sample(sde, score, (4, 2), grid=torch.tensor([1.0, 0.5, 0.0]))
    with pytest.raises(ValueError, match=r"must lie in \[eps"):
        solvers.sample(sde, score, (4, 2), grid=torch.tensor([1.5, 0.5]))
    with pytest.raises(ValueError, match="strictly decreasing"):
        solvers.sample(sde, score, (4, 2), grid=torch.tensor([0.5, 0.9]))
    with pytest.raises(ValueError, match="positive integer"):
        solvers.sample(sde, score, (4, 2), steps=0)
    with pytest.raises(ValueError, match="valid grids"):
        solvers.sample(sde, score, (4, 2), grid="cubic")
    x_bad = torch.zeros(4, 2)
    x_bad[1, 0] = torch.inf
    with pytest.raises(ValueError, match="x_T has 1 NaN/inf"):
        solvers.sample(sde, score, (4, 2), x_T=x_bad, steps=5)


def test_hook_output_and_score_dtype_are_checked(problem):
    sde, _, score = problem
    # A hook must hand back the state as it got it: a dropped row or a new dtype is an error.
    for hook, what in ((lambda x, t: x[:2], r"\(2, 2\)"), (lambda x, t: x.double(), "float64"),
                       (lambda x, t: None, "NoneType")):
        with pytest.raises(ValueError, match=f"after_step must return.*{what}"):
            solvers.sample(sde, score, (4, 2), solver="pc", steps=3, seed=0, after_step=hook)
    # A float64 score on a float32 run: the state's dtype decides, for every solver family.
    for name in ("ddim", "adaptive_sde", "reverse_diffusion"):
        r = solvers.sample(sde, lambda x, t: score(x, t).double(), (4, 2), solver=name, steps=8, seed=0)
        assert r.samples.dtype == torch.float32
        ref = solvers.sample(sde, score, (4, 2), solver=name, steps=8, seed=0)
        torch.testing.assert_close(r.samples, ref.samples, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="floating-point"):
        solvers.sample(sde, lambda x, t: score(x, t).long(), (4, 2), solver="ddim", steps=3, seed=0)


def test_non_finite_score_is_reported(problem):
    sde, _, _ = problem

    def bad_score(x, t):
        return torch.where(t[:, None] < 0.5, torch.nan, 0.0) * x

    with pytest.raises(solvers.NonFiniteScoreError, match="NaN/inf"):
        solvers.sample(sde, bad_score, (4, 2), steps=10, seed=0)

    def wrong_shape(x, t):
        return x[:, :1]

    with pytest.raises(ValueError, match="score returned shape"):
        solvers.sample(sde, wrong_shape, (4, 2), steps=10, seed=0)

    with pytest.raises(TypeError, match=r"score returned a tuple, expected a tensor of the shape of x \(4, 2\)"):
        solvers.sample(sde, lambda x, t: (x,), (4, 2), steps=10, seed=0)


def test_ode_solver_refuses_sde_dynamics(problem):
    sde, _, score = problem

    class ToyODE(solvers.FixedGridSolver):
        dynamics_kind = "ode"

        def step(self, dynamics, x, t, t_next, ctx):
            return x

    with pytest.raises(TypeError, match="ProbabilityFlowODE"):
        ToyODE().solve(solvers.ReverseSDE(sde, score), torch.zeros(2, 2), solvers.grids.uniform(sde, 3))


def test_any_dynamics_lambda_family(problem):
    """Euler-Maruyama on lam = 0 is deterministic (Euler on the PF-ODE), on lam = 1 it is not."""
    sde, _, score = problem
    x_T = sde.prior_sample((16, 2), generator=torch.Generator().manual_seed(0))
    a = solvers.sample(sde, score, x_T=x_T, steps=20, lam=0.0, seed=1).samples
    b = solvers.sample(sde, score, x_T=x_T, steps=20, lam=0.0, seed=2).samples
    c = solvers.sample(sde, score, x_T=x_T, steps=20, lam=1.0, seed=2).samples
    assert torch.equal(a, b) and not torch.equal(b, c)
    with pytest.raises(ValueError, match="lam"):
        solvers.ReverseDynamics(sde, score, lam=1.5)


def test_reverse_family_drift_formula(problem):
    sde, target, score = problem
    x = torch.randn(6, 2, dtype=torch.float64)
    t = torch.full((6,), 0.3, dtype=torch.float64)
    s = target.marginal_score(x, t, sde)
    g2 = sde.diffusion(t)[:, None] ** 2
    for lam in (0.0, 0.5, 1.0):
        dyn = solvers.ReverseDynamics(sde, score, lam)
        torch.testing.assert_close(dyn.drift(x, t), sde.drift(x, t) - 0.5 * (1 + lam**2) * g2 * s)
    dyn = solvers.ProbabilityFlowODE(sde, score)
    alpha, sigma = sde.marginal_coeffs(t)
    torch.testing.assert_close(dyn.x0_pred(x, t), (x + sigma[:, None] ** 2 * s) / alpha[:, None])
    torch.testing.assert_close(dyn.noise_pred(x, t), -sigma[:, None] * s)


def test_brownian_noise_is_shared_across_grids():
    """The same BrownianPath gives the same total increment whatever the grid."""
    path = solvers.BrownianPath((5, 2), 1e-3, 1.0, seed=3, dtype=torch.float64)
    like = torch.zeros(5, 2, dtype=torch.float64)
    fine = solvers.grids.uniform(sd.VPSDE(), 64).tolist()
    coarse_total = path.increment(fine[0], fine[-1], like)
    fine_total = sum(path.increment(a, b, like) for a, b in zip(fine[:-1], fine[1:], strict=True))
    torch.testing.assert_close(fine_total, coarse_total, atol=1e-6, rtol=0)  # tree tol 1e-7


@pytest.mark.parametrize("grid", ["uniform", "quadratic", "logsnr", "karras"])
@pytest.mark.parametrize("sde", [sd.VPSDE(), sd.SubVPSDE(), sd.VESDE(), sd.CosineVPSDE()], ids=repr)
def test_grids(grid, sde):
    ts = solvers.grids.get_grid(grid)(sde, 10)
    assert ts.shape == (11,) and ts[0] == sde.T and ts[-1] == sde.eps
    assert bool((ts[1:] < ts[:-1]).all())
    if grid == "logsnr":
        lam = sde.log_snr(ts)
        torch.testing.assert_close(lam.diff(), lam.diff().mean().expand(10), rtol=1e-6, atol=1e-8)
    if grid == "karras":
        r = sde.edm_sigma(ts) ** (1 / 7)
        torch.testing.assert_close(r.diff(), r.diff().mean().expand(10), rtol=1e-6, atol=1e-8)


def test_float64_end_to_end(problem):
    sde, _, score = problem
    r = solvers.sample(sde, score, (8, 2), steps=10, seed=0, dtype=torch.float64, denoise=True)
    assert r.samples.dtype == torch.float64


def test_image_shaped_state():
    """Solvers are shape-agnostic: (B, C, H, W) states work with a matching score."""
    sde = sd.VPSDE()

    def gaussian_score(x, t):  # score of N(0, I) data under VP: -x
        return -x

    r = solvers.sample(sde, gaussian_score, (4, 1, 3, 3), steps=10, seed=0)
    assert r.samples.shape == (4, 1, 3, 3)


def test_a_lam_the_solver_cannot_take_names_the_solver_as_called():
    sde, target = sd.VPSDE(), sd.targets.eight_gaussians()
    with pytest.raises(ValueError, match=r"^'dpmpp_2m' is an ODE solver; lam must be 0$"):
        solvers.sample(sde, target.score_fn(sde), shape=(4, 2), solver="dpmpp_2m", steps=3, lam=0.5)
    with pytest.raises(ValueError, match=r"^'ancestral' needs the reverse SDE; lam must be 1$"):
        solvers.sample(sde, target.score_fn(sde), shape=(4, 2), solver="ancestral", steps=3, lam=0.0)
