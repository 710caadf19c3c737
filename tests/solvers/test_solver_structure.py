"""The shape shared by every solver: capabilities asked of the SDE, one name table, the solve
template (per-solve context, end-of-run hook) and chunked sampling."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as sd
import solvers
from solvers.base import FixedGridSolver, SolveContext

F64 = torch.float64


class BareOU:
    """A drift/diffusion-only SDE: VP with constant beta, nothing else (no marginals, no prior).

    With data ``N(0, I)`` every marginal is ``N(0, I)`` (``alpha^2 + sigma^2 = 1``), so the
    exact score is ``-x`` at every ``t``.
    """

    T = 1.0
    eps = 1e-3
    beta = 4.0

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -0.5 * self.beta * x

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(t, math.sqrt(self.beta))


def _score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return -x


NO_MARGINALS = [n for n in solvers.available() if not solvers.SOLVERS[n].needs_marginals]
WITH_MARGINALS = [n for n in solvers.available() if solvers.SOLVERS[n].needs_marginals]


def test_capability_split_is_the_expected_one():
    assert set(NO_MARGINALS) == {
        "euler_maruyama", "ode_euler", "ode_heun", "ode_rk4", "ode_rk45", "ode_dop853",
        "torchsde_euler", "torchsde_milstein", "torchsde_srk", "torchsde_midpoint",
        "torchsde_reversible_heun", "ode_dopri5", "ode_bosh3", "adaptive_sde",
    }


@pytest.mark.parametrize("name", [*NO_MARGINALS, "pc_em"])
def test_drift_diffusion_only_sde_runs_through_solvers_without_marginals(name):
    sde = BareOU()
    opts = {}
    if name == "pc_em":
        name, opts = "pc", {"predictor": "euler_maruyama", "corrector": "none"}
    if solvers.SOLVERS[name].adaptive:
        opts.update(rtol=1e-3, atol=1e-3)
    x_T = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    r = solvers.sample(sde, _score, solver=name, x_T=x_T, steps=40, seed=1, **opts)
    # p_t = N(0, I) for all t: the variance stays 1 (4000 samples: std error of the variance
    # about 0.03 per coordinate; 0.15 also covers the O(h) bias of 40-step first-order schemes).
    var = r.samples.var(dim=0)
    assert torch.all((var - 1.0).abs() < 0.15), (name, var)


@pytest.mark.parametrize("name", WITH_MARGINALS)
def test_solvers_needing_marginals_name_the_missing_method(name):
    x_T = torch.zeros(4, 2)
    with pytest.raises(TypeError, match="marginal_coeffs"):
        solvers.sample(BareOU(), _score, solver=name, x_T=x_T, steps=4, grid="uniform", seed=0)


def test_missing_prior_asks_for_x_T_and_denoise_needs_marginals():
    with pytest.raises(TypeError, match="prior_sample.*x_T"):
        solvers.sample(BareOU(), _score, (4, 2), "euler_maruyama", steps=4)
    with pytest.raises(TypeError, match="marginal_coeffs"):
        solvers.sample(BareOU(), _score, x_T=torch.zeros(4, 2), steps=4, denoise=True)
    with pytest.raises(TypeError, match=r"missing \['diffusion'\]"):
        solvers.ReverseSDE(object.__new__(type("NoG", (), {"T": 1.0, "eps": 0.1, "drift": None})), _score)


def test_reverse_sde_and_pf_ode_are_classes_of_one_family():
    sde = sd.VPSDE()
    assert isinstance(solvers.ReverseSDE(sde, _score), solvers.ReverseDynamics)
    assert solvers.ProbabilityFlowODE(sde, _score).lam == 0.0 and solvers.ReverseSDE(sde, _score).lam == 1.0


def test_one_lookup_error_everywhere():
    for call, kind in [
        (lambda: solvers.get_solver("nope"), "solver 'nope'; valid solvers: euler_maruyama"),
        (lambda: solvers.grids.get_grid("nope"), "grid 'nope'; valid grids: uniform"),
        (lambda: solvers.ScipyODE("nope"), "scipy method 'nope'; valid methods: RK45"),
        (lambda: solvers.TorchSDE("nope"), "torchsde method 'nope'; valid methods: euler"),
        (lambda: solvers.PredictorCorrector(predictor="nope"), "predictor 'nope'; valid predictors"),
        (lambda: solvers.PredictorCorrector(corrector="nope"), "corrector 'nope'; valid correctors"),
        (lambda: solvers.AdaptiveODE("nope"), "method 'nope'; valid methods: dopri5, bosh3"),
    ]:
        with pytest.raises(ValueError, match=f"unknown {kind}"):
            call()


def test_table_entries_are_options_of_one_class():
    spec = solvers.SOLVERS["ode_dop853"]
    assert spec.factory is solvers.ScipyODE and spec.order == 8 and spec.adaptive
    s = solvers.get_solver("ode_dop853", rtol=1e-3)
    assert s.method == "DOP853" and s.rtol == 1e-3
    assert solvers.get_solver("torchsde_srk").strong_order == 1.5
    assert solvers.get_solver("dpm_solver_3").order == 3
    with pytest.raises(TypeError, match="unknown option.*accepts: .*rtol"):
        solvers.get_solver("ode_dop853", snr=0.1)


def test_per_solve_state_lives_in_the_context_not_on_the_solver():
    sde, target = sd.VPSDE(), sd.targets.eight_gaussians()
    for name in ("dpm_solver_2", "edm_heun", "unipc", "torchsde_euler", "pc"):
        solver = solvers.get_solver(name)
        before = dict(vars(solver))
        solvers.sample(sde, target.score_fn(sde), (8, 2), solver, steps=6, seed=0)
        assert vars(solver) == before, name


class _ZeroAtEnd(solvers.EulerMaruyama):
    def finish(self, dynamics, x, ctx: SolveContext):
        return torch.zeros_like(x)


def test_end_of_run_is_one_overridable_method():
    sde, target = sd.VPSDE(), sd.targets.eight_gaussians()
    r = solvers.sample(sde, target.score_fn(sde), (8, 2), _ZeroAtEnd(), steps=5, seed=0, denoise=False)
    assert torch.equal(r.samples, torch.zeros(8, 2)) and r.nfe == 5
    plain = solvers.sample(sde, target.score_fn(sde), (8, 2), steps=5, seed=0, denoise=False)
    den = solvers.sample(sde, target.score_fn(sde), (8, 2), steps=5, seed=0, denoise=True)
    ref = solvers.tweedie_denoise(solvers.ReverseSDE(sde, target.score_fn(sde)), plain.samples, sde.eps)
    assert den.nfe == 6 and torch.equal(den.samples, ref)
    assert issubclass(solvers.EulerMaruyama, FixedGridSolver)


# --- chunked sampling ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ode_heun", "ddim", "dpmpp_2m", "unipc", "dpm_solver_3", "edm_heun"])
def test_chunks_are_identical_for_deterministic_fixed_grid_solvers(name):
    sde, target = sd.VPSDE(), sd.targets.eight_gaussians()
    score = target.score_fn(sde)
    full = solvers.sample(sde, score, (50, 2), name, steps=8, seed=4)
    chunked = solvers.sample(sde, score, (50, 2), name, steps=8, seed=4, batch_size=16)
    # Same x_T, same per-sample operations: equal to the last bit.
    assert torch.equal(full.samples, chunked.samples)
    assert chunked.nfe == full.nfe and chunked.stats["score_calls"] == 4 * full.nfe


def test_chunked_stochastic_sampling_is_reproducible_per_seed_and_batch_size():
    sde, target = sd.VPSDE(), sd.targets.eight_gaussians()
    score = target.score_fn(sde)
    a = solvers.sample(sde, score, (50, 2), "euler_maruyama", steps=8, seed=4, batch_size=16)
    b = solvers.sample(sde, score, (50, 2), "euler_maruyama", steps=8, seed=4, batch_size=16)
    c = solvers.sample(sde, score, (50, 2), "euler_maruyama", steps=8, seed=4, batch_size=20)
    assert torch.equal(a.samples, b.samples) and not torch.equal(a.samples, c.samples)


def test_chunked_trajectory_and_user_x_T_untouched():
    sde, target = sd.VPSDE(), sd.targets.eight_gaussians()
    x_T = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    keep = x_T.clone()
    r = solvers.sample(sde, target.score_fn(sde), solver="ode_euler", x_T=x_T, steps=4,
                       batch_size=3, keep_trajectory=True)
    assert torch.equal(x_T, keep) and r.trajectory is not None and r.trajectory.shape == (5, 10, 2)
    full = solvers.sample(sde, target.score_fn(sde), solver="ode_euler", x_T=x_T, steps=4, keep_trajectory=True)
    assert torch.equal(full.trajectory, r.trajectory)


def test_bad_batch_size_and_dtype_are_refused():
    sde, target = sd.VPSDE(), sd.targets.eight_gaussians()
    score = target.score_fn(sde)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            solvers.sample(sde, score, (4, 2), steps=2, batch_size=bad)
    for dtype in (torch.int64, torch.bool):
        with pytest.raises(ValueError, match="floating-point dtype"):
            solvers.sample(sde, score, (4, 2), steps=2, dtype=dtype)
    with pytest.raises(ValueError, match="floating-point dtype"):
        solvers.sample(sde, score, x_T=torch.zeros(4, 2, dtype=torch.long), steps=2)
    with pytest.raises(ValueError, match="brownian"):
        solvers.sample(sde, score, (4, 2), steps=2, noise="brownian", batch_size=2, seed=0)
    with pytest.raises(ValueError, match="fixed-grid"):
        solvers.sample(sde, score, (4, 2), "ode_dopri5", steps=2, batch_size=2, keep_trajectory=True)


@pytest.mark.parametrize(("asked", "meant"), [
    ("DPMPP_2M", "dpmpp_2m"), ("dpmpp-2m", "dpmpp_2m"), (" dpmpp_2m ", "dpmpp_2m"),
    ("dpmp_2m", "dpmpp_2m"), ("dpmpp3m", "dpmpp_3m"), ("eulr_maruyama", "euler_maruyama"),
])
def test_a_misspelt_name_is_refused_with_the_closest_valid_name(asked, meant):
    """Names are exact (no silent aliasing), but the error leads with the likely intent."""
    with pytest.raises(ValueError, match=f"unknown solver '{asked}'; did you mean '{meant}'\\? valid solvers: "):
        solvers.get_solver(asked)
    with pytest.raises(ValueError, match=f"'{asked}' -> '{meant}'"):
        solvers.check_solver_names(["ddim", asked])
    with pytest.raises(ValueError, match="did you mean 'karras'"):
        solvers.grids.get_grid("Karras")


@pytest.mark.parametrize("asked", ["nope", "ddpmx", 3, None])  # ("ddpm" is diffusers' name of `ancestral`)
def test_an_unrelated_name_gets_no_guess(asked):
    with pytest.raises(ValueError, match=r"; valid solvers: euler_maruyama") as info:
        solvers.get_solver(asked)
    assert "did you mean" not in str(info.value)
    solvers.check_solver_names(["ddim", "pc"])  # all valid: no error
